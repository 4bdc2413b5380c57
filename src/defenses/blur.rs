//! Gaussian blur: a normalized Gaussian of standard deviation `sigma` pixels, truncated to
//! `2·ceil(3σ)+1` taps, applied separably (rows then columns, one depthwise `conv2d` each,
//! the same as the 2-D outer-product kernel) with reflect padding (`dcb|abcd|cba`; the
//! sides must be larger than `ceil(3σ)`). Differentiable, not random.
use super::Defense;
use crate::error::first_line;
use crate::{Error, Result};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy)]
pub struct Blur {
    /// Standard deviation in pixels, > 0.
    pub sigma: f64,
}

impl Blur {
    /// Half-width of the kernel, `ceil(3σ)`.
    pub fn radius(&self) -> i64 {
        (3.0 * self.sigma).ceil().max(1.0) as i64
    }

    /// The normalized 1-D kernel (2·radius+1 taps), float32 on the CPU.
    pub fn kernel_1d(&self) -> Tensor {
        let r = self.radius();
        let taps: Vec<f32> = (-r..=r)
            .map(|i| (-((i * i) as f64) / (2.0 * self.sigma * self.sigma)).exp() as f32)
            .collect();
        let t = Tensor::from_slice(&taps);
        &t / t.sum(Kind::Float)
    }
}

impl Defense for Blur {
    fn name(&self) -> String {
        format!("blur:{}", self.sigma)
    }

    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let r = self.radius();
        let sz = x.size();
        if sz.len() != 4 || sz[2] <= r || sz[3] <= r {
            return Err(Error::failed(
                &self.name(),
                format!("needs a (N,C,H,W) batch with H and W > {r}, got {sz:?}"),
            ));
        }
        let c = sz[1];
        let k = self.kernel_1d().to_device(x.device());
        let taps = 2 * r + 1;
        let kw = k.view([1, 1, 1, taps]).repeat([c, 1, 1, 1]); // along W
        let kh = k.view([1, 1, taps, 1]).repeat([c, 1, 1, 1]); // along H
        let torch = |e: tch::TchError| {
            Error::Torch(format!("{}: {}", self.name(), first_line(&e.to_string())))
        };
        let y = x
            .f_to_kind(Kind::Float)
            .and_then(|x| x.f_reflection_pad2d([r, r, r, r]))
            .and_then(|p| p.f_conv2d::<Tensor>(&kw, None, [1, 1], [0, 0], [1, 1], c))
            .and_then(|p| p.f_conv2d::<Tensor>(&kh, None, [1, 1], [0, 0], [1, 1], c))
            .map_err(torch)?;
        // A convex combination of values in [0,1]; clamp only rounding error.
        Ok(y.clamp(0.0, 1.0))
    }

    fn differentiable(&self) -> bool {
        true
    }

    fn random(&self) -> bool {
        false
    }
}
