//! The seed corpus, made by code: tiny valid files of each format and a few edge cases
//! (huge declared sizes, odd dtypes, bad magic). `--write-corpus` writes them to
//! `tests/fuzz/corpus/<target>/seed-*`; nothing here comes from a data set or a third party.
use crate::harness::{
    cifar_record, gzip, idx_bytes, idx_images_2, idx_labels_2, npy_bytes, PNG_SIGNATURE,
};
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use std::io::{Cursor, Write};

/// Seeds of one target: (name, bytes).
type Seeds = Vec<(&'static str, Vec<u8>)>;

/// (target, file name, bytes) of every seed.
pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let groups: [(&str, Seeds); 7] = [
        ("image", images()),
        ("npy", npys()),
        ("idx", idxs()),
        ("cifar10", cifars()),
        ("labels", labels()),
        ("labels-csv", csvs()),
        ("model-card", cards()),
    ];
    for (target, seeds) in groups {
        for (name, bytes) in seeds {
            out.push((target, format!("seed-{name}"), bytes));
        }
    }
    out
}

fn rgb(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x * 40) as u8, (y * 60) as u8, ((x + y) * 25) as u8])
    })
}

fn rgba(w: u32, h: u32) -> RgbaImage {
    RgbaImage::from_fn(w, h, |x, y| {
        Rgba([(x * 40) as u8, (y * 60) as u8, 200, (x * 50 + 5) as u8])
    })
}

fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut c = Cursor::new(Vec::new());
    img.write_to(&mut c, format).expect("encode a seed image");
    c.into_inner()
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// A PNG from raw (already filtered) scanline bytes.
fn png(
    w: u32,
    h: u32,
    depth: u8,
    colour: u8,
    interlace: u8,
    extra: &[(&[u8; 4], Vec<u8>)],
    raw: &[u8],
) -> Vec<u8> {
    let mut out = PNG_SIGNATURE.to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[depth, colour, 0, 0, interlace]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    for (kind, data) in extra {
        png_chunk(&mut out, kind, data);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(raw).unwrap();
    png_chunk(&mut out, b"IDAT", &z.finish().unwrap());
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// 8-bit grey Adam7 scanlines of a w×h image (filter type 0 on every row).
fn adam7_grey(w: u32, h: u32) -> Vec<u8> {
    let passes = [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ];
    let mut raw = Vec::new();
    for (x0, y0, dx, dy) in passes {
        let pw = (w + dx - 1 - x0.min(w)) / dx;
        let ph = (h + dy - 1 - y0.min(h)) / dy;
        if w <= x0 || h <= y0 || pw == 0 || ph == 0 {
            continue;
        }
        for y in 0..ph {
            raw.push(0);
            raw.extend((0..pw).map(|x| ((x * 31 + y * 17) % 256) as u8));
        }
    }
    raw
}

fn jpeg(
    space: mozjpeg::ColorSpace,
    store_as: Option<mozjpeg::ColorSpace>,
    fast: bool,
    progressive: bool,
    w: usize,
    h: usize,
) -> Vec<u8> {
    let comps = match space {
        mozjpeg::ColorSpace::JCS_GRAYSCALE => 1,
        mozjpeg::ColorSpace::JCS_CMYK => 4,
        _ => 3,
    };
    let pixels: Vec<u8> = (0..w * h * comps).map(|i| (i * 37 % 251) as u8).collect();
    let mut c = mozjpeg::Compress::new(space);
    if fast {
        c.set_fastest_defaults();
    }
    if let Some(s) = store_as {
        c.set_color_space(s);
    }
    if progressive {
        c.set_progressive_mode();
    }
    c.set_size(w, h);
    c.set_quality(75.0);
    let mut s = c.start_compress(Vec::new()).expect("start a seed JPEG");
    s.write_scanlines(&pixels).expect("write a seed JPEG");
    s.finish().expect("finish a seed JPEG")
}

/// A JPEG whose frame header (SOF0/SOF2) declares `w`×`h`.
fn jpeg_declaring(mut data: Vec<u8>, w: u16, h: u16) -> Vec<u8> {
    if let Some(i) = data
        .windows(2)
        .position(|m| m == [0xff, 0xc0] || m == [0xff, 0xc2])
    {
        data[i + 5..i + 7].copy_from_slice(&h.to_be_bytes());
        data[i + 7..i + 9].copy_from_slice(&w.to_be_bytes());
    }
    data
}

fn bmp_rle8() -> Vec<u8> {
    let rle: &[u8] = &[4, 1, 0, 0, 2, 2, 0, 3, 7, 8, 9, 0, 0, 1];
    let palette: Vec<u8> = (0..4u8)
        .flat_map(|i| [i * 60, 255 - i * 60, 128, 0])
        .collect();
    let offset = 14 + 40 + palette.len() as u32;
    let mut out = b"BM".to_vec();
    out.extend_from_slice(&(offset + rle.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&5i32.to_le_bytes());
    out.extend_from_slice(&2i32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&8u16.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // BI_RLE8
    out.extend_from_slice(&(rle.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&4u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&palette);
    out.extend_from_slice(rle);
    out
}

/// A 24-bit BMP, top-down (negative height) when `top_down`, declaring `w`×`h`.
fn bmp24(w: i32, h: i32, top_down: bool) -> Vec<u8> {
    let row = ((w.unsigned_abs() * 3).div_ceil(4) * 4) as usize;
    let rows = h.unsigned_abs().min(4) as usize;
    // Huge declared sizes get a few bytes only (the corpus stays small).
    let data: Vec<u8> = (0..(row * rows).min(256))
        .map(|i| (i * 11 % 256) as u8)
        .collect();
    let mut out = b"BM".to_vec();
    out.extend_from_slice(&(54 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&54u32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&w.to_le_bytes());
    out.extend_from_slice(&(if top_down { -h } else { h }).to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&[0; 24]);
    out.extend_from_slice(&data);
    out
}

fn gif_animated() -> Vec<u8> {
    use image::codecs::gif::{GifEncoder, Repeat};
    let mut buf = Vec::new();
    {
        let mut e = GifEncoder::new(&mut buf);
        e.set_repeat(Repeat::Infinite).unwrap();
        let frames = (0..2).map(|k| {
            let img = RgbaImage::from_fn(4, 3, |x, y| {
                Rgba([(x * 60) as u8, (y * 80) as u8, k * 200, 255])
            });
            image::Frame::from_parts(img, 0, 0, image::Delay::from_numer_denom_ms(100, 1))
        });
        e.encode_frames(frames).unwrap();
    }
    buf
}

fn images() -> Seeds {
    use mozjpeg::ColorSpace as C;
    let pal: Vec<u8> = (0..4u8).flat_map(|i| [i * 80, 255 - i * 80, 40]).collect();
    let pal_raw: Vec<u8> = (0..4)
        .flat_map(|y| [0u8, 0b0001_1011 ^ (y as u8 * 0x55)])
        .collect();
    let bits_raw: Vec<u8> = (0..2).flat_map(|y| [0u8, 0xa5 ^ y, 0x80]).collect();
    let mut huge_png = PNG_SIGNATURE.to_vec();
    {
        let mut ihdr = 100_000u32.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        png_chunk(&mut huge_png, b"IHDR", &ihdr);
        png_chunk(
            &mut huge_png,
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        );
        png_chunk(&mut huge_png, b"IEND", &[]);
    }
    let mut huge_gif = encode(DynamicImage::ImageRgb8(rgb(2, 2)), ImageFormat::Gif);
    huge_gif[6..10].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    let l16 = ImageBuffer::<Luma<u16>, Vec<u16>>::from_fn(3, 2, |x, y| {
        Luma([(x * 20000 + y * 7) as u16])
    });
    let rgb16 = ImageBuffer::<Rgb<u16>, Vec<u16>>::from_fn(3, 2, |x, y| {
        Rgb([(x * 20000) as u16, (y * 30000) as u16, 999])
    });
    vec![
        (
            "png-rgb8.png",
            encode(DynamicImage::ImageRgb8(rgb(5, 3)), ImageFormat::Png),
        ),
        (
            "png-rgba8.png",
            encode(DynamicImage::ImageRgba8(rgba(3, 3)), ImageFormat::Png),
        ),
        (
            "png-rgb16.png",
            encode(DynamicImage::ImageRgb16(rgb16), ImageFormat::Png),
        ),
        (
            "png-l16.png",
            encode(DynamicImage::ImageLuma16(l16.clone()), ImageFormat::Png),
        ),
        (
            "png-palette-trns.png",
            png(
                4,
                4,
                2,
                3,
                0,
                &[(b"PLTE", pal), (b"tRNS", vec![0, 128])],
                &pal_raw,
            ),
        ),
        ("png-grey1.png", png(9, 2, 1, 0, 0, &[], &bits_raw)),
        ("png-adam7.png", png(5, 5, 8, 0, 1, &[], &adam7_grey(5, 5))),
        ("png-huge-ihdr.png", huge_png),
        ("jpeg-ycbcr.jpg", jpeg(C::JCS_RGB, None, true, false, 16, 8)),
        (
            "jpeg-ycbcr-progressive.jpg",
            jpeg(C::JCS_RGB, None, false, true, 9, 7),
        ),
        (
            "jpeg-grey.jpg",
            jpeg(C::JCS_GRAYSCALE, None, true, false, 8, 8),
        ),
        (
            "jpeg-rgb-space.jpg",
            jpeg(C::JCS_RGB, Some(C::JCS_RGB), true, false, 8, 8),
        ),
        ("jpeg-cmyk.jpg", jpeg(C::JCS_CMYK, None, true, false, 8, 8)),
        (
            "jpeg-ycck.jpg",
            jpeg(C::JCS_CMYK, Some(C::JCS_YCCK), true, false, 8, 8),
        ),
        (
            "jpeg-huge-sof.jpg",
            jpeg_declaring(jpeg(C::JCS_RGB, None, true, false, 8, 8), 65_500, 65_500),
        ),
        (
            "bmp-rgb24.bmp",
            encode(DynamicImage::ImageRgb8(rgb(3, 2)), ImageFormat::Bmp),
        ),
        (
            "bmp-l8.bmp",
            encode(
                DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(rgb(3, 2)).to_luma8()),
                ImageFormat::Bmp,
            ),
        ),
        (
            "bmp-rgba32.bmp",
            encode(DynamicImage::ImageRgba8(rgba(2, 2)), ImageFormat::Bmp),
        ),
        ("bmp-rle8.bmp", bmp_rle8()),
        ("bmp-top-down.bmp", bmp24(3, 2, true)),
        ("bmp-huge.bmp", bmp24(50_000, 50_000, false)),
        (
            "gif-still.gif",
            encode(DynamicImage::ImageRgb8(rgb(4, 4)), ImageFormat::Gif),
        ),
        ("gif-animated.gif", gif_animated()),
        ("gif-huge-screen.gif", huge_gif),
        (
            "tiff-rgb8.tif",
            encode(DynamicImage::ImageRgb8(rgb(3, 2)), ImageFormat::Tiff),
        ),
        (
            "tiff-l16.tif",
            encode(DynamicImage::ImageLuma16(l16), ImageFormat::Tiff),
        ),
        (
            "webp-lossless-rgb.webp",
            encode(DynamicImage::ImageRgb8(rgb(4, 3)), ImageFormat::WebP),
        ),
        (
            "webp-lossless-rgba.webp",
            encode(DynamicImage::ImageRgba8(rgba(3, 3)), ImageFormat::WebP),
        ),
        ("pnm-p1.pbm", b"P1\n3 2\n1 0 1\n0 1 0\n".to_vec()),
        (
            "pnm-p2.pgm",
            b"P2\n# a comment\n3 2\n15\n0 5 10\n15 3 7\n".to_vec(),
        ),
        (
            "pnm-p3.ppm",
            b"P3\n2 2\n255\n255 0 0  0 255 0\n0 0 255  255 255 255\n".to_vec(),
        ),
        (
            "pnm-p4.pbm",
            [b"P4\n9 2\n".as_slice(), &[0xaa, 0x80, 0x55, 0x00]].concat(),
        ),
        (
            "pnm-p5.pgm",
            [b"P5\n3 2\n255\n".as_slice(), &[0, 50, 100, 150, 200, 250]].concat(),
        ),
        (
            "pnm-p5-16bit.pgm",
            [
                b"P5\n2 2\n65535\n".as_slice(),
                &[0, 1, 0x80, 0, 0xff, 0xff, 0x12, 0x34],
            ]
            .concat(),
        ),
        (
            "pnm-p6.ppm",
            [
                b"P6\n2 2\n255\n".as_slice(),
                &[255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9],
            ]
            .concat(),
        ),
        (
            "pnm-p7.pam",
            [
                b"P7\nWIDTH 2\nHEIGHT 1\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n"
                    .as_slice(),
                &[1, 2, 3, 4, 5, 6, 7, 8],
            ]
            .concat(),
        ),
        (
            "other-qoi.qoi",
            [b"qoif".as_slice(), &[0, 0, 0, 2, 0, 0, 0, 2, 3, 0], &[0; 8]].concat(),
        ),
        (
            "other-ico.ico",
            [&[0u8, 0, 1, 0, 1, 0, 2, 2, 0, 0, 1, 0, 32, 0][..], &[0; 8]].concat(),
        ),
        (
            "other-hdr.hdr",
            b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 1 +X 1\n\x80\x80\x80\x81".to_vec(),
        ),
    ]
}

fn f32s(values: impl IntoIterator<Item = f32>, big: bool) -> Vec<u8> {
    values
        .into_iter()
        .flat_map(|v| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        })
        .collect()
}

fn npys() -> Seeds {
    let r: Vec<f32> = (0..48).map(|i| (i as f32 - 24.0) / 100.0).collect();
    let logits = [2.0f32, -1.0, 0.5, -0.3, 1.5, 0.0];
    let probs = [0.7f64, 0.2, 0.1, 0.1, 0.3, 0.6];
    let f64s = |v: &[f64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let ints = |v: &[i64], size: usize| -> Vec<u8> {
        v.iter()
            .flat_map(|x| x.to_le_bytes()[..size].to_vec())
            .collect()
    };
    let mut v2 = npy_bytes(b"<f4", false, "(1, 3, 4, 4)", &f32s(r.clone(), false));
    // Version 2.0: a 4-byte header length.
    {
        let header_len = u16::from_le_bytes([v2[8], v2[9]]) as u32;
        v2[6] = 2;
        v2.splice(8..10, header_len.to_le_bytes());
    }
    vec![
        (
            "perturbation-f32.npy",
            npy_bytes(b"<f4", false, "(1, 3, 4, 4)", &f32s(r.clone(), false)),
        ),
        (
            "perturbation-fortran.npy",
            npy_bytes(b"<f4", true, "(1, 3, 4, 4)", &f32s(r.clone(), false)),
        ),
        (
            "perturbation-big-endian.npy",
            npy_bytes(b">f4", false, "(1, 3, 4, 4)", &f32s(r.clone(), true)),
        ),
        ("perturbation-v2.npy", v2),
        (
            "perturbation-nan.npy",
            npy_bytes(
                b"<f4",
                false,
                "(1, 3, 4, 4)",
                &f32s(r.iter().map(|&x| if x > 0.2 { f32::NAN } else { x }), false),
            ),
        ),
        (
            "perturbation-f64.npy",
            npy_bytes(
                b"<f8",
                false,
                "(1, 3, 4, 4)",
                &f64s(&r.iter().map(|&x| x as f64).collect::<Vec<_>>()),
            ),
        ),
        (
            "logits-f32.npy",
            npy_bytes(b"<f4", false, "(2, 3)", &f32s(logits, false)),
        ),
        (
            "probs-f64.npy",
            npy_bytes(b"<f8", false, "(2, 3)", &f64s(&probs)),
        ),
        (
            "labels-i64.npy",
            npy_bytes(b"<i8", false, "(2,)", &ints(&[0, 1], 8)),
        ),
        (
            "labels-i32.npy",
            npy_bytes(b"<i4", false, "(3,)", &ints(&[2, 0, 1], 4)),
        ),
        ("labels-u8.npy", npy_bytes(b"|u1", false, "(2,)", &[1, 0])),
        (
            "labels-u64-huge.npy",
            npy_bytes(b"<u8", false, "(1,)", &u64::MAX.to_le_bytes()),
        ),
        (
            "labels-2d.npy",
            npy_bytes(b"<i2", false, "(2, 1)", &ints(&[1, 0], 2)),
        ),
        (
            "scalar.npy",
            npy_bytes(b"<f8", false, "()", &1.5f64.to_le_bytes()),
        ),
        ("empty.npy", npy_bytes(b"<f4", false, "(0, 3)", &[])),
        ("bool.npy", npy_bytes(b"|b1", false, "(2,)", &[1, 0])),
        (
            "unicode.npy",
            npy_bytes(b"<U1", false, "(1,)", &[97, 0, 0, 0]),
        ),
        ("object.npy", npy_bytes(b"|O", false, "(1,)", &[0; 8])),
        (
            "half.npy",
            npy_bytes(b"<f2", false, "(2,)", &[0, 0x3c, 0, 0x40]),
        ),
    ]
}

fn idxs() -> Seeds {
    vec![
        ("images.idx3", idx_images_2()),
        ("labels.idx1", idx_labels_2()),
        ("images.idx3.gz", gzip(&idx_images_2())),
        ("labels.idx1.gz", gzip(&idx_labels_2())),
        ("labels-none.idx1", idx_bytes(2049, &[0], &[])),
        (
            "images-32x32.idx3",
            idx_bytes(2051, &[1, 32, 32], &[7; 1024]),
        ),
        (
            "images-huge-count.idx3",
            idx_bytes(2051, &[u32::MAX, 28, 28], &[0; 16]),
        ),
        ("labels-out-of-range.idx1", idx_bytes(2049, &[2], &[3, 10])),
    ]
}

fn cifars() -> Seeds {
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    vec![
        (
            "test_batch-2.bin",
            [cifar_record(3), cifar_record(9)].concat(),
        ),
        ("test_batch-1-short.bin", cifar_record(0)[..3000].to_vec()),
        ("batches.meta.txt", names.as_bytes().to_vec()),
        (
            "batches.meta-crlf.txt",
            names.replace('\n', "\r\n\r\n").into_bytes(),
        ),
        (
            "batches.meta-9.txt",
            names
                .lines()
                .skip(1)
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes(),
        ),
    ]
}

fn labels() -> Seeds {
    let s = |t: &str| t.as_bytes().to_vec();
    vec![
        (
            "list.json",
            s(
                r#"["tench, Tinca tinca", "goldfish, Carassius auratus", "tabby, tabby cat", "tiger cat"]"#,
            ),
        ),
        (
            "object.json",
            s(r#"{"0": "cat", "1": "dog", "2": "great white shark, white shark, man-eater"}"#),
        ),
        (
            "unicode.json",
            s("[\"caf\u{e9}\", \"\u{1f41f} fish\", \"\\u00e9t\\u00e9\"]"),
        ),
        ("gap.json", s(r#"{"0": "a", "2": "c"}"#)),
        ("not-string.json", s(r#"["a", 1, null]"#)),
        ("empty.json", s("[]")),
        (
            "nested.json",
            s(&format!("{}{}", "[".repeat(200), "]".repeat(200))),
        ),
    ]
}

fn csvs() -> Seeds {
    let s = |t: &str| t.as_bytes().to_vec();
    vec![
        ("labels.csv", s("index,wnid,file,label\n1,n01443537,\"goldfish, 1.JPEG\",goldfish\n0,n01440764,a.png,tench\n")),
        ("labels-crlf-bom.csv", s("\u{feff}file,index\r\na.png,3\r\n\"b \"\"q\"\".png\",0\r\n")),
        ("labels-missing.csv", s("file,index\na.png\n")),
        ("wnids.txt", s("n00000001 first thing\nn00000002 second, other\n")),
    ]
}

fn cards() -> Seeds {
    let s = |t: &str| t.as_bytes().to_vec();
    vec![
        (
            "card.json",
            s(
                r#"{"format": "fool-model/1", "size": 28, "resize": 28, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "labels": "labels.json", "input": "pixels in [0, 1]"}"#,
            ),
        ),
        (
            "card-imagenet.json",
            s(
                r#"{"format":"fool-model/1","size":224,"resize":256,"mean":[0.485,0.456,0.406],"std":[0.229,0.224,0.225],"labels":"imagenet.json","input":"rgb","extra":1}"#,
            ),
        ),
        (
            "card-missing.json",
            s(r#"{"format": "fool-model/1", "size": 28}"#),
        ),
        (
            "card-zero-std.json",
            s(
                r#"{"format": "x", "size": 0, "resize": 4294967295, "mean": [0, 0, 0], "std": [0, -1, 1e308], "labels": "", "input": ""}"#,
            ),
        ),
    ]
}
