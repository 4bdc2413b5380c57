//! Bit-depth reduction ("feature squeezing", Xu, Evans & Qi 2018): each channel value is
//! rounded to the nearest of `2^bits` evenly spaced levels in [0,1],
//! `x → round(x·(2^bits−1)) / (2^bits−1)`. Not differentiable (its gradient is zero almost
//! everywhere; attackers use BPDA), not random.
use super::Defense;
use crate::error::first_line;
use crate::{Error, Result};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy)]
pub struct Bits {
    /// Bits per channel, 1..=8.
    pub bits: u8,
}

impl Defense for Bits {
    fn name(&self) -> String {
        format!("bits:{}", self.bits)
    }

    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let levels = ((1u32 << self.bits.clamp(1, 8)) - 1) as f64;
        let y = x
            .f_to_kind(Kind::Float)
            .map_err(|e| Error::Torch(first_line(&e.to_string())))?
            .clamp(0.0, 1.0);
        Ok((y * levels).round() / levels)
    }

    fn differentiable(&self) -> bool {
        false
    }

    fn random(&self) -> bool {
        false
    }
}
