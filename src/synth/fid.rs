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
    /// From the rows of `x`, in chunks of 8,192 rows (float64 sums of x and x xᵀ; the data
    /// itself is never copied whole to float64).
    pub fn of(x: &Tensor) -> Stats {
        let n = x.size()[0];
        let d = x.size()[1];
        let opts = (Kind::Double, tch::Device::Cpu);
        let (mut sum, mut outer) = (Tensor::zeros([d], opts), Tensor::zeros([d, d], opts));
        let mut start = 0;
        while start < n {
            let len = 8192.min(n - start);
            let c = x
                .narrow(0, start, len)
                .to_device(tch::Device::Cpu)
                .to_kind(Kind::Double);
            sum += c.sum_dim_intlist(0, false, Kind::Double);
            outer += c.transpose(0, 1).matmul(&c);
            start += len;
        }
        let mean = &sum / (n.max(1) as f64);
        // Σ (x − μ)(x − μ)ᵀ = Σ x xᵀ − n μ μᵀ, over n − 1 (numpy's cov).
        let cov = (outer - mean.unsqueeze(1).matmul(&mean.unsqueeze(0)) * (n as f64))
            / ((n - 1).max(1) as f64);
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
    fn stats_match_the_two_pass_formula() {
        tch::manual_seed(1);
        let x = Tensor::randn([20_000, 5], (Kind::Float, tch::Device::Cpu)) * 3.0 + 7.0;
        let s = Stats::of(&x);
        let xd = x.to_kind(Kind::Double);
        let m = xd.mean_dim(0, false, Kind::Double);
        let c = &xd - m.unsqueeze(0);
        let cov = c.transpose(0, 1).matmul(&c) / 19_999.0;
        assert!(s.mean.allclose(&m, 1e-9, 1e-9, false));
        assert!(s.cov.allclose(&cov, 1e-7, 1e-7, false));
    }

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
