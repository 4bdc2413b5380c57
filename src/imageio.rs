//! Reading images of any common kind as 8-bit RGB, converting between images and tensors,
//! and writing files atomically (temp file in the same directory, then rename).
use crate::{Error, Result};
use image::{ImageReader, RgbImage};
use std::io::Write;
use std::path::Path;
use tch::{Kind, Tensor};

use std::sync::atomic::{AtomicU64, Ordering};

/// Default limit on an image's pixels (width × height), checked before decoding.
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;
/// Default limit on the memory a decoder may allocate for one image, in MiB.
pub const DEFAULT_MAX_MIB: u64 = 2048;
static MAX_PIXELS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_PIXELS);
static MAX_MIB: AtomicU64 = AtomicU64::new(DEFAULT_MAX_MIB);

/// Set the process-wide decoding limits (pixels per image, decoder memory in MiB): a small
/// file can declare a huge image, and decoding it would take the machine's memory.
pub fn set_decode_limits(max_pixels: u64, max_mib: u64) {
    MAX_PIXELS.store(max_pixels.max(1), Ordering::Relaxed);
    MAX_MIB.store(max_mib.max(1), Ordering::Relaxed);
}

/// The decoding limits in force: (pixels, MiB).
pub fn decode_limits() -> (u64, u64) {
    (
        MAX_PIXELS.load(Ordering::Relaxed),
        MAX_MIB.load(Ordering::Relaxed),
    )
}

/// Refuse a `w`×`h` image over the pixel limit, before it is decoded.
fn check_pixels(path: &Path, w: u64, h: u64) -> Result<()> {
    let (max, _) = decode_limits();
    if w.saturating_mul(h) > max {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            field: "max_image_pixels".into(),
            msg: format!(
                "image too large: {w}×{h} = {} pixels, over the limit of {max}",
                w.saturating_mul(h)
            ),
        });
    }
    Ok(())
}

/// Read an image file as 8-bit RGB. Greyscale, alpha (dropped, as Pillow's `convert('RGB')`),
/// 16-bit and CMYK JPEGs are converted. Errors name the file.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    crate::files::check_regular(path, "an image file")?;
    // The file is read whole before decoding: one larger than the decoder may allocate is no
    // image fool would decode, and is not read into memory.
    let bytes = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let (_, max_mib) = decode_limits();
    if bytes > max_mib.saturating_mul(1 << 20) {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            field: "max_image_mib".into(),
            msg: format!(
                "a {} MiB file, over the decoder's {max_mib} MiB",
                bytes >> 20
            ),
        });
    }
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_rgb(&data, path)
}

/// Decode an encoded image (PNG, JPEG, BMP, GIF, TIFF, WebP, PNM) held in memory as 8-bit RGB,
/// as [`load_rgb`] decodes a file, within the decoding limits; errors name `name` (a file, or
/// e.g. `request body`).
pub fn decode_rgb(data: &[u8], name: &Path) -> Result<RgbImage> {
    let path = name;
    // Trust the content, not the extension.
    let format =
        image::guess_format(&data[..data.len().min(64)]).map_err(|_| Error::Unsupported {
            path: path.to_path_buf(),
            msg: "not a recognised image file (expected PNG, JPEG, BMP, GIF, TIFF, WebP or PNM)"
                .into(),
        })?;
    // The declared size, from the header alone, before any decoder runs.
    if let Ok(d) = imagesize::blob_size(data) {
        let (w, h) = (d.width as u64, d.height as u64);
        // imagesize reads a BMP's signed height as unsigned: a top-down BMP (negative height)
        // would look 4 billion rows tall (found by the fuzzer).
        let h = match format {
            image::ImageFormat::Bmp => u64::from((h as u32 as i32).unsigned_abs()),
            _ => h,
        };
        check_pixels(path, w, h)?;
    }
    if format == image::ImageFormat::Jpeg {
        if let Some(img) = decode_jpeg_like_pillow(data, path)? {
            return Ok(img);
        }
    }
    let mut reader = ImageReader::new(std::io::Cursor::new(data));
    reader.set_format(format);
    let (max_pixels, max_mib) = decode_limits();
    let side = u32::try_from(max_pixels).unwrap_or(u32::MAX);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    limits.max_alloc = Some(max_mib.saturating_mul(1 << 20));
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| decode_error(path, e))?;
    let (w, h) = image::ImageDecoder::dimensions(&decoder);
    check_pixels(path, w as u64, h as u64)?;
    let img = image::DynamicImage::from_decoder(decoder).map_err(|e| decode_error(path, e))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(Error::bad_file(path, "image has no pixels"));
    }
    Ok(img.to_rgb8())
}

fn decode_error(path: &Path, e: image::ImageError) -> Error {
    match e {
        image::ImageError::Limits(l) => Error::TooLarge {
            path: path.to_path_buf(),
            field: "max_image_mib".into(),
            msg: format!(
                "image too large to decode within {} MiB ({l})",
                decode_limits().1
            ),
        },
        other => Error::bad_file(path, format!("cannot decode image: {}", one_line(&other))),
    }
}

/// An error's text on one line, without control characters (decoders' messages can carry
/// raw bytes of the file).
/// The PNG decoder names chunks by their debug structure (`ChunkType { type: IHDR, critical:
/// true, … }`): those become the chunk's name (`IHDR`).
fn one_line(e: &dyn std::fmt::Display) -> String {
    let mut s: String = e
        .to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    while let Some(i) = s.find("ChunkType { type: ") {
        let rest = &s[i + "ChunkType { type: ".len()..];
        let Some(end) = rest.find('}') else { break };
        let name = rest
            .split([',', ' ', '}'])
            .next()
            .unwrap_or("?")
            .to_string();
        s = format!("{}{name}{}", &s[..i], &rest[end + 1..]);
    }
    s
}

/// Decode a YCbCr or greyscale JPEG with libjpeg-turbo's decoder (through mozjpeg, default
/// settings: accurate integer IDCT, fancy upsampling) — the decoder Pillow uses, so pixels
/// are identical to torchvision's. `None` for colour spaces it leaves to the `image` crate
/// (CMYK/YCCK).
fn decode_jpeg_like_pillow(data: &[u8], path: &Path) -> Result<Option<RgbImage>> {
    use mozjpeg::ColorSpace;
    // libjpeg fills a truncated scan with grey and only warns; Pillow refuses such a file
    // ("image file is truncated"), and so does fool: an attack on half an image is not what the
    // user asked for.
    let last_scan = data.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    if !last_scan.is_some_and(|i| data[i..].windows(2).any(|w| w == [0xFF, 0xD9])) {
        return Err(Error::bad_file(
            path,
            "truncated JPEG: the data ends before the end-of-image marker",
        ));
    }
    // mozjpeg reports libjpeg errors by unwinding; turn them into an error value.
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<Result<Option<RgbImage>>> {
        let d = mozjpeg::Decompress::new_mem(data)?;
        if !matches!(
            d.color_space(),
            ColorSpace::JCS_YCbCr | ColorSpace::JCS_GRAYSCALE | ColorSpace::JCS_RGB
        ) {
            return Ok(Ok(None));
        }
        let (w, h) = d.size();
        if let Err(e) = check_pixels(path, w as u64, h as u64) {
            return Ok(Err(e));
        }
        let mut started = d.rgb()?;
        let pixels = started.read_scanlines::<u8>()?;
        started.finish()?;
        Ok(Ok(RgbImage::from_raw(w as u32, h as u32, pixels)))
    });
    match decoded {
        Ok(Ok(img)) => img,
        Ok(Err(e)) => Err(Error::bad_file(
            path,
            format!("cannot decode JPEG: {}", one_line(&e)),
        )),
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
    crate::files::write_atomic(path, |f| write_png(img, path, f))
}

/// Encode `img` as PNG into `f` (the file that will become `path`).
pub fn write_png(img: &RgbImage, path: &Path, f: &mut std::fs::File) -> Result<()> {
    let mut buf = std::io::BufWriter::new(f);
    img.write_to(&mut buf, image::ImageFormat::Png)
        .map_err(|e| Error::bad_file(path, format!("cannot encode PNG: {}", one_line(&e))))?;
    buf.flush().map_err(|e| Error::io(path, e))
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
