//! Reading images of any common kind as 8-bit RGB, converting between images and tensors,
//! and writing files atomically (temp file in the same directory, then rename).
use crate::{Error, Result};
use image::{ImageReader, RgbImage};
use std::io::Write;
use std::path::Path;
use tch::{Kind, Tensor};

/// Largest accepted side, in pixels; larger images are refused before decoding.
pub const MAX_SIDE: u32 = 20_000;

/// Read an image file as 8-bit RGB. Greyscale, alpha (dropped, as Pillow's `convert('RGB')`),
/// 16-bit and CMYK JPEGs are converted. Errors name the file.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    crate::files::check_regular(path, "an image file")?;
    // Trust the content, not the extension.
    let mut head = [0u8; 64];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        f.read(&mut head).map_err(|e| Error::io(path, e))?
    };
    let format = image::guess_format(&head[..n]).map_err(|_| {
        Error::bad_file(
            path,
            "not a recognised image file (expected PNG, JPEG, BMP, GIF, TIFF, WebP or PNM)",
        )
    })?;
    let mut reader = ImageReader::open(path).map_err(|e| Error::io(path, e))?;
    reader.set_format(format);
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        if let Some(img) = decode_jpeg_like_pillow(path)? {
            return Ok(img);
        }
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(2 << 30);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => Error::bad_file(
            path,
            format!("image too large (limit {MAX_SIDE}×{MAX_SIDE} pixels, 2 GiB decoded)"),
        ),
        other => Error::bad_file(path, format!("cannot decode image: {other}")),
    })?;
    if img.width() == 0 || img.height() == 0 {
        return Err(Error::bad_file(path, "image has no pixels"));
    }
    Ok(img.to_rgb8())
}

/// Decode a YCbCr or greyscale JPEG with libjpeg-turbo's decoder (through mozjpeg, default
/// settings: accurate integer IDCT, fancy upsampling) — the decoder Pillow uses, so pixels
/// are identical to torchvision's. `None` for colour spaces it leaves to the `image` crate
/// (CMYK/YCCK).
fn decode_jpeg_like_pillow(path: &Path) -> Result<Option<RgbImage>> {
    use mozjpeg::ColorSpace;
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    // mozjpeg reports libjpeg errors by unwinding; turn them into an error value.
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<Option<RgbImage>> {
        let d = mozjpeg::Decompress::new_mem(&data)?;
        if !matches!(
            d.color_space(),
            ColorSpace::JCS_YCbCr | ColorSpace::JCS_GRAYSCALE | ColorSpace::JCS_RGB
        ) {
            return Ok(None);
        }
        let (w, h) = d.size();
        if w > MAX_SIDE as usize || h > MAX_SIDE as usize {
            return Err(std::io::Error::other(format!(
                "image too large ({w}×{h}; limit {MAX_SIDE}×{MAX_SIDE} pixels)"
            )));
        }
        let mut started = d.rgb()?;
        let pixels = started.read_scanlines::<u8>()?;
        started.finish()?;
        Ok(RgbImage::from_raw(w as u32, h as u32, pixels))
    });
    match decoded {
        Ok(Ok(img)) => Ok(img),
        Ok(Err(e)) => Err(Error::bad_file(path, format!("cannot decode JPEG: {e}"))),
        Err(_) => Err(Error::bad_file(
            path,
            "cannot decode JPEG: corrupt or truncated data",
        )),
    }
}

/// 8-bit RGB image → float tensor (3,H,W) in [0,1] (torchvision `ToTensor`).
pub fn rgb_to_tensor(img: &RgbImage) -> Tensor {
    let (w, h) = img.dimensions();
    Tensor::from_slice(img.as_raw())
        .view([h as i64, w as i64, 3])
        .permute([2, 0, 1])
        .to_kind(Kind::Float)
        / 255.0
}

/// Round a pixel tensor in [0,1] to the 8-bit grid (values k/255), as saving does.
pub fn quantize(x: &Tensor) -> Tensor {
    (x.clamp(0.0, 1.0) * 255.0).round() / 255.0
}

/// Float tensor (3,H,W) or (1,3,H,W) in [0,1] → 8-bit RGB image (rounded, clamped).
pub fn tensor_to_rgb(x: &Tensor) -> RgbImage {
    let x = if x.dim() == 4 {
        x.squeeze_dim(0)
    } else {
        x.shallow_clone()
    };
    let (h, w) = (x.size()[1], x.size()[2]);
    let bytes = (x.clamp(0.0, 1.0) * 255.0)
        .round()
        .to_kind(Kind::Uint8)
        .permute([1, 2, 0])
        .contiguous()
        .to_device(tch::Device::Cpu);
    let v = Vec::<u8>::try_from(bytes.view([-1])).expect("uint8 tensor");
    RgbImage::from_raw(w as u32, h as u32, v).expect("buffer size")
}

/// Save an RGB image as PNG, atomically.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    crate::files::write_atomic(path, |f| {
        let mut buf = std::io::BufWriter::new(f);
        img.write_to(&mut buf, image::ImageFormat::Png)
            .map_err(|e| Error::bad_file(path, format!("cannot encode PNG: {e}")))?;
        buf.flush().map_err(|e| Error::io(path, e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_round_trip_is_exact() {
        let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 50, y as u8 * 100, 255]));
        let t = rgb_to_tensor(&img);
        assert_eq!(t.size(), vec![3, 3, 5]);
        assert_eq!(tensor_to_rgb(&t), img);
        let q = quantize(&(t.shallow_clone() + 0.001));
        assert_eq!(tensor_to_rgb(&q), img);
    }
}
