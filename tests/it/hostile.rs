//! Hostile inputs and faults (issue: "no crash, no hang, no lost file"): files that are not
//! regular files, models that pass a naive probe but break attacks, huge declared images, a
//! closed or full stdout. Each case: one clear line, the right exit code, no panic, no hang.
use crate::common::{asset, fool, trace};
use std::path::Path;
use std::time::Duration;
use tch::Kind;

/// Run fool with a time limit; return (exit code, stderr).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = fool()
        .args(args)
        .timeout(Duration::from_secs(120))
        .output()
        .expect("run fool");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Expect exit 1 with one `fool: error:` line containing every needle, no panic.
fn refused(args: &[&str], needles: &[&str]) {
    let (code, err) = run(args);
    assert_eq!(code, Some(1), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {err}"
    );
    assert!(err.starts_with("fool: error: "), "{args:?}: {err}");
    assert!(
        !err.chars().any(|c| c.is_control() && c != '\n'),
        "control characters: {err:?}"
    );
    for n in needles {
        assert!(err.contains(n), "{args:?}: stderr lacks {n:?}: {err}");
    }
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

#[test]
fn fifos_are_refused_not_read() {
    // Opening a FIFO for reading blocks until a writer comes: fool must refuse it up front.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.png");
    mkfifo(&fifo);
    let f = fifo.to_str().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let dog = asset("dog.png");
    let d = dog.to_str().unwrap();
    refused(&["predict", f], &["pipe.png", "not a regular file"]);
    refused(
        &["predict", d, "--model", f],
        &["pipe.png", "not a regular file"],
    );
    refused(
        &["predict", d, "--labels", f],
        &["pipe.png", "not a regular file"],
    );
    refused(
        &["apply", d, "--perturbation", f, "--output", o],
        &["pipe.png", "not a regular file"],
    );
    assert!(!out.exists(), "an output was written");
}

#[test]
fn models_that_attacks_cannot_use_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let dog = asset("dog.png");
    let d = dog.to_str().unwrap();
    let linear = |x: &tch::Tensor| {
        x.mean_dim([2i64, 3].as_slice(), false, Kind::Float)
            .matmul(&tch::Tensor::eye(3, (Kind::Float, tch::Device::Cpu)))
    };
    type Forward = Box<dyn Fn(&tch::Tensor) -> tch::Tensor>;
    let cases: Vec<(&str, Forward, &str)> = vec![
        (
            "detached.pt",
            Box::new(move |x: &tch::Tensor| linear(&x.detach())),
            "no gradient path",
        ),
        (
            "integer.pt",
            Box::new(move |x: &tch::Tensor| (linear(x) * 100.0).to_kind(Kind::Int64)),
            "floating-point logits",
        ),
        (
            "one-row.pt",
            Box::new(move |x: &tch::Tensor| linear(x).narrow(0, 0, 1)),
            "expected (2, C)",
        ),
        (
            "nan.pt",
            Box::new(move |x: &tch::Tensor| linear(x) * f64::NAN),
            "NaN or infinite",
        ),
    ];
    for (name, f, needle) in cases {
        let p = dir.path().join(name);
        trace(&p, 32, f);
        let m = p.to_str().unwrap();
        for cmd in [
            vec!["predict", d, "--model", m, "--size", "32"],
            vec![d, "--target", "1", "--model", m, "--size", "32", "--out"],
        ] {
            let mut args = cmd.clone();
            let out = dir.path().join(format!("out-{name}"));
            if args.last() == Some(&"--out") {
                args.push(out.to_str().unwrap());
            }
            refused(&args, &[name, "refused", needle]);
            assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());
        }
    }
}

/// A PNG of `w`×`h` grey pixels (tiny on disk: zlib squeezes the constant rows).
fn grey_png(path: &Path, w: u32, h: u32) {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb([90, 100, 110]));
    img.save(path).unwrap();
}

#[test]
fn huge_declared_images_are_refused_and_thin_ones_are_cheap() {
    let dir = tempfile::tempdir().unwrap();
    // Over the pixel limit: refused before decoding, naming the flag that raises it.
    let wide = dir.path().join("wide.png");
    grey_png(&wide, 400, 300);
    let w = wide.to_str().unwrap();
    refused(
        &["predict", w, "--max-image-pixels", "100000"],
        &["wide.png", "120000 pixels", "--max-image-pixels"],
    );
    let (code, err) = run(&["predict", w, "--max-image-pixels", "120000", "-q"]);
    assert_eq!(code, Some(0), "{err}");
    // 1×20000: resizing its shorter side to 256 would make a 256×5,120,000 image; only the
    // center crop is computed, so it classifies like any image.
    let thin = dir.path().join("thin.png");
    grey_png(&thin, 1, 20000);
    let (code, err) = run(&["predict", thin.to_str().unwrap(), "-q"]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_closed_or_full_stdout_ends_quietly() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let bin = assert_cmd::cargo::cargo_bin("fool");
    // Closed pipe: the reader goes away before fool prints.
    let mut child = Command::new(&bin)
        .args(["predict", asset("dog.png").to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
    // A full device: one error line, exit 1.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(&bin)
        .args(["predict", asset("dog.png").to_str().unwrap()])
        .stdout(full)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("stdout") && !err.contains("panicked"), "{err}");
}

#[test]
fn truncated_jpegs_and_overwrites_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A JPEG cut in the middle of its scan: libjpeg would fill the rest with grey.
    let jpg = dir.path().join("whole.jpg");
    image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 4, y as u8 * 4, 128]))
        .save(&jpg)
        .unwrap();
    let bytes = std::fs::read(&jpg).unwrap();
    let cut = dir.path().join("cut.jpg");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    refused(
        &["predict", cut.to_str().unwrap()],
        &["cut.jpg", "truncated JPEG"],
    );
    let (code, err) = run(&["predict", jpg.to_str().unwrap(), "-q"]);
    assert_eq!(code, Some(0), "{err}");

    // `apply -o MODEL`: the output would replace the model (and the labels, the image, the
    // perturbation): refused, nothing touched.
    let model = dir.path().join("model.pt");
    crate::common::tiny_model(&model, 3, 32, 1);
    let labels = dir.path().join("labels.json");
    std::fs::write(&labels, r#"["a","b","c"]"#).unwrap();
    let r = dir.path().join("r.npy");
    {
        use ndarray_npy::WriteNpyExt;
        let z = ndarray::Array4::<f32>::zeros((1, 3, 32, 32));
        z.write_npy(std::fs::File::create(&r).unwrap()).unwrap();
    }
    let before = std::fs::read(&model).unwrap();
    let m = model.to_str().unwrap();
    let l = labels.to_str().unwrap();
    let common = ["--model", m, "--labels", l, "--size", "32"];
    for target in [m, l] {
        let mut args = vec![
            "apply",
            jpg.to_str().unwrap(),
            "-p",
            r.to_str().unwrap(),
            "-o",
            target,
        ];
        args.extend(common);
        refused(&args, &["refusing to overwrite an input file"]);
    }
    // A hard link to the model is the same file.
    let link = dir.path().join("link.png");
    std::fs::hard_link(&model, &link).unwrap();
    let mut args = vec![
        "apply",
        jpg.to_str().unwrap(),
        "-p",
        r.to_str().unwrap(),
        "-o",
    ];
    args.push(link.to_str().unwrap());
    args.extend(common);
    refused(&args, &["refusing to overwrite an input file"]);
    assert_eq!(
        std::fs::read(&model).unwrap(),
        before,
        "the model was modified"
    );

    // A device as the output is refused, never replaced by a regular file.
    let mut args = vec![
        "apply",
        jpg.to_str().unwrap(),
        "-p",
        r.to_str().unwrap(),
        "-o",
    ];
    args.push("/dev/full");
    args.extend(common);
    refused(&args, &["/dev/full", "not a regular file"]);
    let meta = std::fs::metadata("/dev/full").unwrap();
    assert!(!meta.is_file(), "/dev/full was replaced by a regular file");
}

#[test]
fn attack_settings_are_checked_and_usage_errors_exit_2() {
    let dog = asset("dog.png");
    let d = dog.to_str().unwrap();
    for (setting, needle) in [
        ("--lr=-0.01", "--lr"),
        ("--lr=nan", "--lr"),
        ("--momentum=nan", "--momentum"),
        ("--steps=0", "--steps"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o");
        let o = out.to_str().unwrap();
        refused(&[d, "--target", "goldfish", setting, "--out", o], &[needle]);
        assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());
    }
    // No image: a usage error like any missing argument.
    let (code, err) = run(&["--target", "goldfish"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("no image given") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn damaged_png_chunks_are_named_not_dumped() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.png");
    grey_png(&good, 8, 8);
    let mut bytes = std::fs::read(&good).unwrap();
    bytes[29] ^= 0xFF; // the IHDR chunk's CRC
    let bad = dir.path().join("crc.png");
    std::fs::write(&bad, &bytes).unwrap();
    refused(
        &["predict", bad.to_str().unwrap()],
        &["crc.png", "CRC error", "IHDR"],
    );
    let (_, err) = run(&["predict", bad.to_str().unwrap()]);
    assert!(!err.contains("ChunkType {"), "{err}");
}

/// A tmpfs of `kib` KiB on `dir` (CI runs as root and can mount), unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, kib: u64) -> Option<Tmpfs> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_leaves_no_partial_attack_output() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    // 200 KiB: room for some of the attack's outputs (the adversarial PNG is ~150 KiB), not all.
    let Some(_mount) = Tmpfs::mount(&disk, 200) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot mount a tmpfs in CI: the full-disk test would not run"
        );
        eprintln!("note: not allowed to mount a tmpfs here; full-disk test not run");
        return;
    };
    let dog = asset("dog.png");
    let out = disk.join("attack");
    let (code, err) = run(&[
        dog.to_str().unwrap(),
        "--target",
        "goldfish",
        "--steps",
        "3",
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "partial outputs left: {left:?}");
}
