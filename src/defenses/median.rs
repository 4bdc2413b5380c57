//! Median filter (the spatial-smoothing squeezer of Xu, Evans & Qi 2018): each output pixel
//! is the median of the K×K window around it, per channel. Borders use reflect padding
//! (`dcb|abcd|cba`, excluding the edge pixel, as `torch`'s `reflect` mode and scipy's
//! `mirror` mode; the sides must be larger than K/2). Computed with `unfold` and `median`
//! over the K² window values (K odd, so the median is one of them). Declared not
//! differentiable (its gradient is a sparse selection; attackers use BPDA), not random.
use super::Defense;
use crate::error::first_line;
use crate::{Error, Result};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy)]
pub struct Median {
    /// Window side, odd, ≥ 3.
    pub size: i64,
}

impl Defense for Median {
    fn name(&self) -> String {
        format!("median:{}", self.size)
    }

    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let k = self.size;
        let p = k / 2;
        let torch = |e: tch::TchError| {
            Error::Torch(format!(
                "median:{k} on input {:?}: {}",
                x.size(),
                first_line(&e.to_string())
            ))
        };
        let sz = x.size();
        if sz.len() != 4 || sz[2] <= p || sz[3] <= p {
            return Err(Error::failed(
                &format!("median:{k}"),
                format!("needs a (N,C,H,W) batch with H and W > {p}, got {sz:?}"),
            ));
        }
        let padded = x
            .f_to_kind(Kind::Float)
            .and_then(|x| x.f_reflection_pad2d([p, p, p, p]))
            .map_err(torch)?;
        // (N,C,H,W,K,K) windows → (N,C,H,W,K²) → median over the last dim.
        let windows = padded.unfold(2, k, 1).unfold(3, k, 1);
        let (n, c, h, w) = (sz[0], sz[1], sz[2], sz[3]);
        let (med, _) = windows
            .f_reshape([n, c, h, w, k * k])
            .and_then(|t| t.f_median_dim(-1, false))
            .map_err(torch)?;
        Ok(med)
    }

    fn differentiable(&self) -> bool {
        false
    }

    fn random(&self) -> bool {
        false
    }
}
