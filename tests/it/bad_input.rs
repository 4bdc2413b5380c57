//! Bad input: a clear one-line error naming the file or flag, a non-zero exit, no panic, and
//! no output file left behind. Odd-but-valid images (greyscale, RGBA, 16-bit, CMYK) convert.

use crate::common::{asset, fool, ok, ok_json};
use ndarray::Array4;
use ndarray_npy::WriteNpyExt;
use std::path::Path;

/// Run fool, expect failure with `code`, a single stderr line containing every `needles`.
fn fails(args: &[&std::ffi::OsStr], code: i32, needles: &[&str]) {
    let out = fool().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "args {args:?}\nstderr: {err}"
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
    if code == 1 {
        assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
        assert!(err.starts_with("fool: error: "), "{err}");
    }
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

fn empty(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

#[test]
fn unreadable_and_non_image_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "just text, not a picture").unwrap();
    let truncated = dir.path().join("truncated.png");
    let dog = std::fs::read(asset("dog.png")).unwrap();
    std::fs::write(&truncated, &dog[..dog.len() / 3]).unwrap();
    let missing = dir.path().join("missing.png");
    for (img, needle) in [
        (missing.as_path(), "missing.png"),
        (text.as_path(), "not a recognised image"),
        (truncated.as_path(), "cannot decode image"),
        (dir.path(), "is a directory"),
    ] {
        fails(&[os("predict"), img.as_os_str()], 1, &[needle]);
        fails(
            &[
                img.as_os_str(),
                os("--target"),
                os("1"),
                os("--out"),
                out.as_os_str(),
            ],
            1,
            &[needle],
        );
    }
    assert!(empty(&out), "output left behind after failures");
}

#[test]
fn huge_image_is_refused_before_decoding() {
    // A PNG whose header claims 30000×30000 pixels (the data is not there).
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.png");
    let mut buf = Vec::new();
    {
        let mut enc = png_header(30000, 30000);
        buf.append(&mut enc);
    }
    std::fs::write(&p, &buf).unwrap();
    fails(
        &[os("predict"), p.as_os_str()],
        1,
        &["huge.png", "too large"],
    );
}

/// PNG signature + IHDR chunk (8-bit RGB) for the given size.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut v = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut chunk = b"IHDR".to_vec();
    chunk.extend_from_slice(&w.to_be_bytes());
    chunk.extend_from_slice(&h.to_be_bytes());
    chunk.extend_from_slice(&[8, 2, 0, 0, 0]);
    v.extend_from_slice(&13u32.to_be_bytes());
    v.extend_from_slice(&chunk);
    v.extend_from_slice(&crc32(&chunk).to_be_bytes());
    v
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn greyscale_rgba_16bit_and_cmyk_images_are_converted() {
    let dir = tempfile::tempdir().unwrap();
    let dog = image::open(asset("dog.png")).unwrap();
    let cases = [
        ("grey.png", image::DynamicImage::ImageLuma8(dog.to_luma8())),
        ("rgba.png", image::DynamicImage::ImageRgba8(dog.to_rgba8())),
        ("deep.png", image::DynamicImage::ImageRgb16(dog.to_rgb16())),
    ];
    for (name, img) in cases {
        let p = dir.path().join(name);
        img.save(&p).unwrap();
        let v = ok_json(fool().args(["predict", "--json", "--quiet"]).arg(&p));
        if name != "grey.png" {
            // Colour preserved exactly (RGBA drops alpha; 16-bit rounds back to 8).
            assert_eq!(v["top"][0]["index"], 263, "{name}");
        }
    }
    let cmyk = crate::common::root().join("tests/fixtures/cmyk.jpg");
    ok(fool().args(["predict", "--json", "--quiet"]).arg(&cmyk));
    // The CMYK pixels decode to the RGB gradient the fixture was made from (not inverted).
    let img = fool::imageio::load_rgb(&cmyk).unwrap();
    let px = img.get_pixel(39, 29).0;
    assert!(
        px[0] > 200 && px[1] > 200 && (px[2] as i32 - 128).abs() < 20,
        "{px:?}"
    );
}

#[test]
fn bad_models_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let dog = asset("dog.png");
    let not_model = dir.path().join("model.pt");
    std::fs::write(&not_model, "this is not TorchScript").unwrap();
    fails(
        &[
            os("predict"),
            dog.as_os_str(),
            os("--model"),
            not_model.as_os_str(),
        ],
        1,
        &["model.pt", "not a loadable TorchScript model"],
    );

    let bad_shape = dir.path().join("spatial.pt");
    crate::common::bad_shape_model(&bad_shape, 224);
    fails(
        &[
            os("predict"),
            dog.as_os_str(),
            os("--model"),
            bad_shape.as_os_str(),
        ],
        1,
        &["spatial.pt", "expected (1, C) logits"],
    );

    let labels = dir.path().join("labels.json");
    std::fs::write(&labels, r#"{"0": "cat", "1": "dog", "2": "bird"}"#).unwrap();
    fails(
        &[
            os("predict"),
            dog.as_os_str(),
            os("--labels"),
            labels.as_os_str(),
        ],
        1,
        &["labels.json", "3 labels", "1000 classes"],
    );
    std::fs::write(&labels, "[1, 2").unwrap();
    fails(
        &[
            os("predict"),
            dog.as_os_str(),
            os("--labels"),
            labels.as_os_str(),
        ],
        1,
        &["labels.json", "not valid JSON"],
    );

    // A 10-class model with matching labels works, and targets resolve against them.
    let tiny = dir.path().join("tiny.pt");
    crate::common::tiny_model(&tiny, 3, 224, 5);
    std::fs::write(&labels, r#"["cat", "dog", "bird"]"#).unwrap();
    let v = ok_json(
        fool()
            .args(["predict", "--json", "--quiet", "--model"])
            .arg(&tiny)
            .arg("--labels")
            .arg(&labels)
            .arg(&dog),
    );
    assert_eq!(v["top"].as_array().unwrap().len(), 3);
}

#[test]
fn bad_targets_and_budgets() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let dog = asset("dog.png");
    let run = |extra: &[&str], code: i32, needles: &[&str]| {
        let mut args = vec![dog.as_os_str(), os("--out"), out.as_os_str()];
        args.extend(extra.iter().map(|s| os(s)));
        fails(&args, code, needles);
    };
    run(
        &["--target", "zzyzxq"],
        1,
        &["--target", "no class matches", "closest"],
    );
    run(
        &["--target", "cat"],
        1,
        &["--target", "ambiguous", "tiger cat"],
    );
    run(&["--target", "1000"], 1, &["--target", "out of range"]);
    run(&["--target", "1", "--eps", "0"], 2, &["--eps"]);
    run(&["--target", "1", "--eps=-0.1"], 2, &["--eps"]);
    run(&["--target", "1", "--eps", "1.5"], 2, &["--eps", "(0, 1]"]);
    run(&["--target", "1", "--eps", "1/0"], 2, &["--eps"]);
    run(
        &["--target", "1", "--eps", "0.001"],
        2,
        &["--eps", "8-bit step"],
    );
    run(
        &["--target", "1", "--device", "tpu"],
        1,
        &["--device", "expected auto, cpu"],
    );
    run(&[], 2, &["--target"]);
    assert!(empty(&out), "output left behind after failures");
}

#[test]
fn bad_perturbation_files() {
    let dir = tempfile::tempdir().unwrap();
    let dog = asset("dog.png");
    let out = dir.path().join("out");
    let write = |name: &str, arr: &dyn Fn(std::fs::File)| {
        let p = dir.path().join(name);
        arr(std::fs::File::create(&p).unwrap());
        p
    };
    let wrong_shape = write("shape.npy", &|f| {
        Array4::<f32>::zeros((1, 3, 32, 32)).write_npy(f).unwrap()
    });
    let wrong_dtype = write("dtype.npy", &|f| {
        Array4::<f64>::zeros((1, 3, 224, 224)).write_npy(f).unwrap()
    });
    let not_npy = dir.path().join("text.npy");
    std::fs::write(&not_npy, "hello").unwrap();
    for (p, needle) in [
        (&wrong_shape, "got shape [1, 3, 32, 32]"),
        (&wrong_dtype, "float32"),
        (&not_npy, "text.npy"),
    ] {
        fails(
            &[
                os("apply"),
                dog.as_os_str(),
                os("--perturbation"),
                p.as_os_str(),
                os("--out"),
                out.as_os_str(),
            ],
            1,
            &[needle, "(1, 3, 224, 224)"],
        );
    }
    assert!(empty(&out));
}

#[test]
fn unwritable_output_and_input_protection() {
    let dir = tempfile::tempdir().unwrap();
    let dog = asset("dog.png");
    let file = dir.path().join("a_file");
    std::fs::write(&file, "x").unwrap();
    let under_file = file.join("sub");
    fails(
        &[
            dog.as_os_str(),
            os("--target"),
            os("1"),
            os("--out"),
            under_file.as_os_str(),
        ],
        1,
        &["--out", "cannot create output directory"],
    );

    // `apply -o` onto its own input is refused and the input is untouched.
    let copy = dir.path().join("dog.png");
    std::fs::copy(&dog, &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let r = dir.path().join("r.npy");
    Array4::<f32>::from_elem((1, 3, 224, 224), 0.1)
        .write_npy(std::fs::File::create(&r).unwrap())
        .unwrap();
    fails(
        &[
            os("apply"),
            copy.as_os_str(),
            os("--perturbation"),
            r.as_os_str(),
            os("-o"),
            copy.as_os_str(),
        ],
        1,
        &["refusing to overwrite an input"],
    );
    assert_eq!(std::fs::read(&copy).unwrap(), before);
}
