//! Preprocessing that matches torchvision's `Resize(resize)` → `CenterCrop(size)` →
//! `ToTensor()` → `Normalize(mean, std)` on a PIL image, bit for bit where it matters:
//! the resize is a port of Pillow's antialiased bilinear resampling (fixed-point, two
//! passes, rounding to 8 bits in between), and the crop offsets use Python's rounding.
//!
//! One deliberate difference: an image that is already `size`×`size` is taken as the model
//! input as it is (no resize, no crop) unless `resize_always` is set. That is what makes
//! fool's own outputs — which are saved at model resolution — classify the same when loaded
//! again; torchvision would zoom such an image by `resize/size`.
use crate::{Error, Result};
use image::RgbImage;
use tch::{Device, Tensor};

pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// How an image becomes a model input.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    /// Model input side (the crop), e.g. 224.
    pub size: u32,
    /// Shorter side after resizing, before the center crop (torchvision `Resize(resize)`).
    pub resize: u32,
    pub mean: [f64; 3],
    pub std: [f64; 3],
    /// Resize and crop even when the image is already `size`×`size`.
    pub resize_always: bool,
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            size: 224,
            resize: 256,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            resize_always: false,
        }
    }
}

impl Preprocess {
    /// Check the settings; errors name the flag.
    pub fn validate(&self) -> Result<()> {
        if self.size == 0 || self.size > 4096 {
            return Err(Error::field(
                "size",
                format!("{} is out of range 1..=4096", self.size),
            ));
        }
        if self.resize < self.size || self.resize > 8192 {
            return Err(Error::field(
                "resize",
                format!(
                    "{} must be at least the input size ({}) and at most 8192",
                    self.resize, self.size
                ),
            ));
        }
        if let Some(s) = self.std.iter().find(|s| !(**s > 0.0 && s.is_finite())) {
            return Err(Error::field("std", format!("{s} is not a positive number")));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::field("mean", "values must be finite numbers"));
        }
        Ok(())
    }

    /// The 8-bit image the model sees, before normalization: resized and center-cropped.
    pub fn geometry(&self, img: &RgbImage) -> RgbImage {
        let (w, h) = img.dimensions();
        if !self.resize_always && w == self.size && h == self.size {
            return img.clone();
        }
        let (nw, nh) = resized_size(w, h, self.resize);
        if (nw, nh) == (w, h) {
            return center_crop(img, self.size, self.size);
        }
        // Resize only the part the crop keeps: the same pixels as resizing the whole image and
        // cropping, without materializing a resized image that can be huge (a 1×20000 image
        // resized to a shorter side of 256 would be 256×5,120,000).
        let (s, nw, nh) = (self.size as i64, nw as i64, nh as i64);
        let top = round_half_even((nh - s) as f64 / 2.0);
        let left = round_half_even((nw - s) as f64 / 2.0);
        let (x0, x1) = (left.max(0), (left + s).min(nw));
        let (y0, y1) = (top.max(0), (top + s).min(nh));
        let part = resize_bilinear_pil_window(
            img,
            (nw as u32, nh as u32),
            (x0 as usize..x1 as usize, y0 as usize..y1 as usize),
        );
        RgbImage::from_fn(self.size, self.size, |x, y| {
            let (px, py) = (left + x as i64 - x0, top + y as i64 - y0);
            if px >= 0 && py >= 0 && px < x1 - x0 && py < y1 - y0 {
                *part.get_pixel(px as u32, py as u32)
            } else {
                image::Rgb([0, 0, 0])
            }
        })
    }

    /// Image → float tensor (3, size, size) in [0, 1] ("pixel space"), on `device`.
    pub fn pixels(&self, img: &RgbImage, device: Device) -> Tensor {
        crate::imageio::rgb_to_tensor(&self.geometry(img)).to_device(device)
    }

    fn channel_tensor(&self, v: &[f64; 3], like: &Tensor) -> Tensor {
        Tensor::from_slice(&[v[0] as f32, v[1] as f32, v[2] as f32])
            .view([1, 3, 1, 1])
            .to_device(like.device())
            .to_kind(like.kind())
    }

    /// Pixel space (N,3,H,W) in [0,1] → the model's normalized input space.
    pub fn normalize(&self, x: &Tensor) -> Tensor {
        (x - self.channel_tensor(&self.mean, x)) / self.channel_tensor(&self.std, x)
    }

    /// A difference in normalized space → the same difference in pixel space.
    pub fn delta_to_pixels(&self, r: &Tensor) -> Tensor {
        r * self.channel_tensor(&self.std, r)
    }

    /// A difference in pixel space → the same difference in normalized space.
    pub fn delta_to_normalized(&self, d: &Tensor) -> Tensor {
        d / self.channel_tensor(&self.std, d)
    }
}

/// torchvision's output size for `Resize(short)`: the shorter side becomes `short`, the longer
/// side `int(short * long / short_in)` (truncated).
pub fn resized_size(w: u32, h: u32, short: u32) -> (u32, u32) {
    if w <= h {
        let nh = (short as u64 * h as u64 / w as u64) as u32;
        (short, nh)
    } else {
        let nw = (short as u64 * w as u64 / h as u64) as u32;
        (nw, short)
    }
}

/// Python's `round()` (half to even), as torchvision's `CenterCrop` uses it.
fn round_half_even(x: f64) -> i64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 {
        (r - x.signum()) as i64
    } else {
        r as i64
    }
}

/// torchvision `CenterCrop`: zero padding when the image is smaller than the crop.
pub fn center_crop(img: &RgbImage, cw: u32, ch: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let top = round_half_even((h as f64 - ch as f64) / 2.0);
    let left = round_half_even((w as f64 - cw as f64) / 2.0);
    RgbImage::from_fn(cw, ch, |x, y| {
        let sx = left + x as i64;
        let sy = top + y as i64;
        if sx >= 0 && sy >= 0 && (sx as u32) < w && (sy as u32) < h {
            *img.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Fixed-point filter taps for one axis, as Pillow's `precompute_coeffs` +
/// `normalize_coeffs_8bpc` compute them for the bilinear (triangle) filter.
struct Taps {
    bounds: Vec<(usize, usize)>, // (first source index, count)
    ksize: usize,
    k: Vec<i32>,
}

/// Taps of the output indices `range` (of `out_size`), indexed from `range.start`.
fn taps(in_size: usize, out_size: usize, range: std::ops::Range<usize>) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support 1.0 × filterscale
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(range.len());
    let mut k = vec![0i32; range.len() * ksize];
    let ss = 1.0 / filterscale;
    let first = range.start;
    for xx in range {
        let center = (xx as f64 + 0.5) * scale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize; // C cast truncates
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut w = vec![0f64; n];
        let mut total = 0.0;
        for (x, wx) in w.iter_mut().enumerate() {
            let t = ((x + xmin) as f64 - center + 0.5) * ss;
            let t = t.abs();
            *wx = if t < 1.0 { 1.0 - t } else { 0.0 };
            total += *wx;
        }
        for (x, wx) in w.iter().enumerate() {
            let v = if total != 0.0 { wx / total } else { *wx };
            let f = v * (1u32 << PRECISION_BITS) as f64;
            k[(xx - first) * ksize + x] = if v < 0.0 {
                (f - 0.5) as i32
            } else {
                (f + 0.5) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Taps { bounds, ksize, k }
}

#[inline]
fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize(size, Image.BILINEAR)` on an RGB image (antialiased when shrinking).
pub fn resize_bilinear_pil(img: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    resize_bilinear_pil_window(img, (out_w, out_h), (0..out_w as usize, 0..out_h as usize))
}

/// The pixels `cols` × `rows` of [`resize_bilinear_pil`]`(img, size.0, size.1)`, computed alone
/// (each output pixel is computed exactly as in the full resize).
pub fn resize_bilinear_pil_window(
    img: &RgbImage,
    size: (u32, u32),
    (cols, rows): (std::ops::Range<usize>, std::ops::Range<usize>),
) -> RgbImage {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let (full_w, full_h) = (size.0 as usize, size.1 as usize);
    let (ow, oh) = (cols.len(), rows.len());
    let src = img.as_raw();
    let need_h = full_w != in_w;
    let need_v = full_h != in_h;
    if ow == 0 || oh == 0 {
        return RgbImage::new(ow as u32, oh as u32);
    }
    let horiz = taps(in_w, full_w, cols.clone());
    // Without a vertical pass the rows are the source rows themselves.
    let vert = if need_v {
        taps(in_h, full_h, rows.clone())
    } else {
        Taps {
            bounds: rows.clone().map(|y| (y, 1)).collect(),
            ksize: 1,
            k: vec![1 << PRECISION_BITS; oh],
        }
    };
    // Horizontal pass over the rows the vertical pass will read.
    let (first_row, rows, mid, mid_w) = if need_h {
        let first = vert.bounds[0].0;
        let last = vert.bounds[oh - 1].0 + vert.bounds[oh - 1].1;
        let rows = last - first;
        let mut mid = vec![0u8; rows * ow * 3];
        let half = 1i64 << (PRECISION_BITS - 1);
        for y in 0..rows {
            let row = &src[(y + first) * in_w * 3..(y + first + 1) * in_w * 3];
            for xx in 0..ow {
                let (xmin, n) = horiz.bounds[xx];
                let k = &horiz.k[xx * horiz.ksize..xx * horiz.ksize + n];
                for c in 0..3 {
                    let mut ss = half;
                    for (x, kx) in k.iter().enumerate() {
                        ss += row[(x + xmin) * 3 + c] as i64 * *kx as i64;
                    }
                    mid[(y * ow + xx) * 3 + c] = clip8(ss);
                }
            }
        }
        (first, rows, mid, ow)
    } else {
        // Columns `cols` of the source rows the vertical pass reads.
        let first = vert.bounds[0].0;
        let last = vert.bounds[oh - 1].0 + vert.bounds[oh - 1].1;
        let mut mid = Vec::with_capacity((last - first) * ow * 3);
        for y in first..last {
            mid.extend_from_slice(&src[(y * in_w + cols.start) * 3..(y * in_w + cols.end) * 3]);
        }
        (first, last - first, mid, ow)
    };
    let _ = rows;
    if !need_v {
        return RgbImage::from_raw(mid_w as u32, oh as u32, mid).expect("buffer size");
    }
    let mut out = vec![0u8; ow * oh * 3];
    let half = 1i64 << (PRECISION_BITS - 1);
    for yy in 0..oh {
        let (ymin, n) = vert.bounds[yy];
        let ymin = ymin - first_row;
        let k = &vert.k[yy * vert.ksize..yy * vert.ksize + n];
        for xx in 0..mid_w {
            for c in 0..3 {
                let mut ss = half;
                for (y, ky) in k.iter().enumerate() {
                    ss += mid[((y + ymin) * mid_w + xx) * 3 + c] as i64 * *ky as i64;
                }
                out[(yy * mid_w + xx) * 3 + c] = clip8(ss);
            }
        }
    }
    RgbImage::from_raw(mid_w as u32, oh as u32, out).expect("buffer size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resized_size_matches_torchvision() {
        assert_eq!(resized_size(500, 375, 256), (341, 256));
        assert_eq!(resized_size(224, 224, 256), (256, 256));
        assert_eq!(resized_size(300, 1000, 224), (224, 746));
    }

    #[test]
    fn python_rounding() {
        assert_eq!(round_half_even(0.5), 0);
        assert_eq!(round_half_even(1.5), 2);
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(16.0), 16);
        assert_eq!(round_half_even(42.5), 42);
    }

    #[test]
    fn resize_of_constant_image_is_constant() {
        let img = RgbImage::from_pixel(37, 53, image::Rgb([10, 128, 250]));
        for (w, h) in [(20, 30), (80, 100), (37, 10)] {
            let r = resize_bilinear_pil(&img, w, h);
            assert_eq!(r.dimensions(), (w, h));
            assert!(r.pixels().all(|p| p.0 == [10, 128, 250]));
        }
    }

    #[test]
    fn geometry_passes_model_sized_images_through() {
        let p = Preprocess::default();
        let img = RgbImage::from_fn(224, 224, |x, y| image::Rgb([x as u8, y as u8, 7]));
        assert_eq!(p.geometry(&img), img);
        let p2 = Preprocess {
            resize_always: true,
            ..Preprocess::default()
        };
        assert_ne!(p2.geometry(&img), img);
        assert_eq!(p2.geometry(&img).dimensions(), (224, 224));
    }

    #[test]
    fn geometry_equals_full_resize_then_crop() {
        // The windowed resize must give the pixels of the full resize + center crop, for
        // shrinking, enlarging, thin and crop-larger-than-image cases.
        let mut seed = 7u32;
        for (w, h, size, resize) in [
            (300, 200, 224, 256),
            (97, 410, 64, 80),
            (40, 30, 64, 72),
            (1, 300, 32, 32),
            (500, 3, 16, 20),
            (256, 256, 224, 256),
        ] {
            let img = RgbImage::from_fn(w, h, |_, _| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                image::Rgb([(seed >> 8) as u8, (seed >> 16) as u8, (seed >> 24) as u8])
            });
            let pre = Preprocess {
                size,
                resize,
                ..Preprocess::default()
            };
            let (nw, nh) = resized_size(w, h, resize);
            let full = center_crop(&resize_bilinear_pil(&img, nw, nh), size, size);
            assert_eq!(
                pre.geometry(&img),
                full,
                "{w}x{h} -> {size} (resize {resize})"
            );
        }
    }
}
