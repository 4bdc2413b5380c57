//! Images embedded in the report as data URIs: small images (≤ 64 px, MNIST, CIFAR-10) as PNG
//! at their own size (the page scales them up without smoothing), larger ones shrunk to
//! `THUMB` px and JPEG-encoded (quality 90) to keep the file small — a view of the kept PNGs,
//! which stay the files that were judged. The perturbation is shown amplified: each channel's
//! change δ (in 8-bit levels) becomes 128 + 127·δ/max|δ|, so the largest change is full scale.
use base64::Engine;
use image::RgbImage;

/// Side of the thumbnails of large images.
pub const THUMB: u32 = 160;

/// A data URI of `img` for the page.
pub fn data_uri(img: &RgbImage) -> String {
    let (w, h) = img.dimensions();
    let mut buf = Vec::new();
    let mime = if w.max(h) <= 64 {
        img.write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png)
            .expect("PNG into memory");
        "image/png"
    } else {
        let scale = THUMB as f64 / w.max(h) as f64;
        let small = if scale < 1.0 {
            let (nw, nh) = (
                ((w as f64 * scale).round() as u32).max(1),
                ((h as f64 * scale).round() as u32).max(1),
            );
            image::imageops::resize(img, nw, nh, image::imageops::FilterType::Triangle)
        } else {
            img.clone()
        };
        let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 90);
        small.write_with_encoder(enc).expect("JPEG into memory");
        "image/jpeg"
    };
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&buf)
    )
}

/// The amplified perturbation `adv − clean` and its amplification (127 / max|δ|; 0 when the
/// images are equal). `None` when the sizes differ.
pub fn perturbation(clean: &RgbImage, adv: &RgbImage) -> Option<(RgbImage, f64)> {
    if clean.dimensions() != adv.dimensions() {
        return None;
    }
    let max = clean
        .as_raw()
        .iter()
        .zip(adv.as_raw())
        .map(|(&a, &b)| (b as i32 - a as i32).abs())
        .max()
        .unwrap_or(0);
    let amp = if max == 0 { 0.0 } else { 127.0 / max as f64 };
    let px: Vec<u8> = clean
        .as_raw()
        .iter()
        .zip(adv.as_raw())
        .map(|(&a, &b)| {
            (128.0 + amp * (b as f64 - a as f64))
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect();
    let (w, h) = clean.dimensions();
    Some((RgbImage::from_raw(w, h, px).expect("same size"), amp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_change_is_full_scale() {
        let clean = RgbImage::from_raw(1, 2, vec![10, 10, 10, 200, 200, 200]).unwrap();
        let adv = RgbImage::from_raw(1, 2, vec![12, 10, 9, 200, 200, 200]).unwrap();
        let (p, amp) = perturbation(&clean, &adv).unwrap();
        assert_eq!(amp, 63.5);
        assert_eq!(&p.as_raw()[..3], &[255, 128, 65]);
        assert_eq!(&p.as_raw()[3..], &[128, 128, 128]);
        assert!(data_uri(&p).starts_with("data:image/png;base64,"));
    }
}
