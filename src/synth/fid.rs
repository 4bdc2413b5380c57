//! The Fréchet distance between two sets of embeddings, each summarised by a Gaussian (mean,
//! covariance): ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁^½ Σ₂ Σ₁^½)^½), in float64 through symmetric
//! eigendecompositions (both matrices are positive semi-definite; tiny negative eigenvalues
//! from rounding count as 0).
use tch::{Kind, Tensor};

/// Mean and covariance (unbiased, as numpy's `cov`) of the rows of `x` ((N, d), N ≥ 2).
pub struct Stats {
    pub mean: Tensor,
    pub cov: Tensor,
}

impl Stats {
    pub fn of(x: &Tensor) -> Stats {
        let x = x.to_device(tch::Device::Cpu).to_kind(Kind::Double);
        let n = x.size()[0];
        let mean = x.mean_dim(0, false, Kind::Double);
        let c = &x - mean.unsqueeze(0);
        let cov = c.transpose(0, 1).matmul(&c) / ((n - 1).max(1) as f64);
        Stats { mean, cov }
    }
}

/// The symmetric square root of a positive semi-definite matrix.
fn sqrtm_psd(m: &Tensor) -> Tensor {
    let (vals, vecs) = m.linalg_eigh("L");
    let s = vals.clamp_min(0.0).sqrt();
    (&vecs * s.unsqueeze(0)).matmul(&vecs.transpose(0, 1))
}

/// The Fréchet distance between two Gaussians.
pub fn frechet(a: &Stats, b: &Stats) -> f64 {
    let diff = (&a.mean - &b.mean)
        .square()
        .sum(Kind::Double)
        .double_value(&[]);
    let ra = sqrtm_psd(&a.cov);
    let m = ra.matmul(&b.cov).matmul(&ra);
    let m = (&m + m.transpose(0, 1)) * 0.5;
    let tr_sqrt = m
        .linalg_eigvalsh("L")
        .clamp_min(0.0)
        .sqrt()
        .sum(Kind::Double)
        .double_value(&[]);
    let tr = a.cov.trace().double_value(&[]) + b.cov.trace().double_value(&[]);
    (diff + tr - 2.0 * tr_sqrt).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frechet_of_known_gaussians() {
        // Diagonal covariances: FD = ‖Δμ‖² + Σ (√a − √b)².
        let a = Stats {
            mean: Tensor::from_slice(&[0.0f64, 1.0]),
            cov: Tensor::from_slice(&[4.0f64, 0.0, 0.0, 1.0]).view([2, 2]),
        };
        let b = Stats {
            mean: Tensor::from_slice(&[3.0f64, 1.0]),
            cov: Tensor::from_slice(&[1.0f64, 0.0, 0.0, 9.0]).view([2, 2]),
        };
        let want = 9.0 + 1.0 + 4.0;
        assert!((frechet(&a, &b) - want).abs() < 1e-9, "{}", frechet(&a, &b));
        assert!(frechet(&a, &a).abs() < 1e-9);
    }
}
