//! Additive Gaussian noise: `clamp(x + sigma·N(0,1), 0, 1)`, one independent draw per pixel
//! and channel from libtorch's generator for the input's device (seed it with
//! `tch::manual_seed`). Differentiable (identity gradient inside the range), random.
use super::Defense;
use crate::error::first_line;
use crate::{Error, Result};
use tch::Kind;
use tch::Tensor;

#[derive(Debug, Clone, Copy)]
pub struct Noise {
    /// Standard deviation in pixel units ([0,1] scale), > 0.
    pub sigma: f64,
}

impl Defense for Noise {
    fn name(&self) -> String {
        format!("noise:{}", self.sigma)
    }

    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let x = x
            .f_to_kind(Kind::Float)
            .map_err(|e| Error::Torch(first_line(&e.to_string())))?;
        let eps = x.randn_like().detach();
        Ok((x + eps * self.sigma).clamp(0.0, 1.0))
    }

    fn differentiable(&self) -> bool {
        true
    }

    fn random(&self) -> bool {
        true
    }
}
