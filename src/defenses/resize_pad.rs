//! Random resize and pad (Xie, Wang, Zhang, Ren & Yuille 2018, "Mitigating adversarial
//! effects through randomization"), adapted to keep the model's input size: each image of
//! the batch is shrunk from H×W to a random h×w and padded back to H×W at a random offset.
//!
//! Draws, independently per image (from libtorch's CPU generator, so `tch::manual_seed`
//! makes them reproducible and the same on every device):
//! - the new height `h`, uniform over the integers in `[max(1, round(H·(1−ratio))), H]`, and
//!   the width `w = round(W·h/H)` (so `w = h` for square inputs: the aspect is kept);
//! - the top offset, uniform in `[0, H−h]`, and the left offset, uniform in `[0, W−w]`.
//!
//! Resizing is bilinear (`align_corners=false`, no antialiasing, as Xie et al.'s
//! `tf.image.resize_images`), differentiable. The border is filled with `fill`, 0.5 (mid
//! grey) for parsed specs: Xie et al. pad with 0 in the model's [-1,1] input range, which is
//! mid grey in pixel space, and mid grey is also close to 0 after ImageNet normalization.
//! When `h = H` the image is returned unchanged. Differentiable, random.
use super::Defense;
use crate::error::first_line;
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy)]
pub struct ResizePad {
    /// Largest shrink, as a fraction of the side, in (0, 1).
    pub ratio: f64,
    /// Value of the padded border, in [0,1].
    pub fill: f64,
}

impl Default for ResizePad {
    fn default() -> Self {
        ResizePad {
            ratio: 0.1,
            fill: 0.5,
        }
    }
}

impl ResizePad {
    /// Smallest drawn height for input height `h`.
    pub fn min_side(&self, h: i64) -> i64 {
        ((h as f64 * (1.0 - self.ratio)).round() as i64).clamp(1, h)
    }
}

impl Defense for ResizePad {
    fn name(&self) -> String {
        format!("resize-pad:{}", self.ratio)
    }

    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let sz = x.size();
        if sz.len() != 4 || sz[2] < 1 || sz[3] < 1 {
            return Err(Error::failed(
                &self.name(),
                format!("needs a (N,C,H,W) batch, got {sz:?}"),
            ));
        }
        let (n, hh, ww) = (sz[0], sz[2], sz[3]);
        let x = x
            .f_to_kind(Kind::Float)
            .map_err(|e| Error::Torch(first_line(&e.to_string())))?;
        if n == 0 {
            return Ok(x);
        }
        // Three uniform draws per image: size, top, left.
        let u = Tensor::rand([n, 3], (Kind::Double, Device::Cpu));
        let u = Vec::<f64>::try_from(u.flatten(0, -1)).unwrap_or_default();
        let pick = |u: f64, lo: i64, hi: i64| (lo + (u * (hi - lo + 1) as f64) as i64).min(hi);
        let lo = self.min_side(hh);
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let img = x.narrow(0, i, 1);
            let r = &u[3 * i as usize..3 * i as usize + 3];
            let h = pick(r[0], lo, hh);
            if h == hh {
                out.push(img);
                continue;
            }
            let w = ((ww as f64 * h as f64 / hh as f64).round() as i64).clamp(1, ww);
            let top = pick(r[1], 0, hh - h);
            let left = pick(r[2], 0, ww - w);
            let small = img
                .f_upsample_bilinear2d([h, w], false, None, None)
                .map_err(|e| Error::Torch(first_line(&e.to_string())))?;
            let padded = small
                .f_pad(
                    [left, ww - w - left, top, hh - h - top],
                    "constant",
                    self.fill,
                )
                .map_err(|e| Error::Torch(first_line(&e.to_string())))?;
            out.push(padded);
        }
        Ok(Tensor::cat(&out, 0).clamp(0.0, 1.0))
    }

    fn differentiable(&self) -> bool {
        true
    }

    fn random(&self) -> bool {
        true
    }
}
