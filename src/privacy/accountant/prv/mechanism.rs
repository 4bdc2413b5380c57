//! The privacy random variable of one DP-SGD step, and its truncation to a finite domain.
use super::quad::integrate;

/// The privacy loss of one step of the Poisson-subsampled Gaussian mechanism
/// (Propositions B.1 and B.4 of Gopi et al.), `Y = ln(1 − q + q e^{Z})` for the Gaussian
/// mechanism's loss `Z`; supported on `(ln(1 − q), ∞)`.
#[derive(Debug, Clone, Copy)]
pub(super) struct SubsampledGaussian {
    q: f64,
    sigma: f64,
    /// ln(1 − q): the lower end of the support (−∞ for q = 1).
    t_low: f64,
}

impl SubsampledGaussian {
    pub(super) fn new(q: f64, sigma: f64) -> Self {
        SubsampledGaussian {
            q,
            sigma,
            t_low: (-q).ln_1p(),
        }
    }

    /// The two erfc arguments at t, or None below the support.
    fn args(&self, t: f64) -> Option<(f64, f64)> {
        if t <= self.t_low {
            return None;
        }
        let x = t.exp_m1() / self.q; // (e^t + q − 1)/q − 1
        if x <= -1.0 {
            return None;
        }
        let z = x.ln_1p();
        let s = self.sigma;
        let c = 1.0 / (2.0 * s);
        let r = std::f64::consts::FRAC_1_SQRT_2;
        Some(((z * s - c) * r, (z * s + c) * r))
    }

    /// P(Y ≤ t), computed without cancellation in the lower tail.
    pub(super) fn cdf(&self, t: f64) -> f64 {
        match self.args(t) {
            None => 0.0,
            Some((a, b)) => 0.5 * (self.q * libm::erfc(-a) + (1.0 - self.q) * libm::erfc(-b)),
        }
    }

    /// P(Y > t), computed without cancellation in the upper tail.
    pub(super) fn sf(&self, t: f64) -> f64 {
        match self.args(t) {
            None => 1.0,
            Some((a, b)) => 0.5 * (self.q * libm::erfc(a) + (1.0 - self.q) * libm::erfc(b)),
        }
    }
}

/// Y conditioned on `[t_min, t_max)`, with Opacus's convention that the cdf is 1 from
/// `t_max` on.
pub(super) struct Truncated {
    prv: SubsampledGaussian,
    t_min: f64,
    t_max: f64,
    cdf_min: f64,
    sf_max: f64,
    mass: f64,
}

impl Truncated {
    pub(super) fn new(prv: SubsampledGaussian, t_min: f64, t_max: f64) -> Self {
        let cdf_min = prv.cdf(t_min);
        let sf_max = prv.sf(t_max);
        Truncated {
            prv,
            t_min,
            t_max,
            cdf_min,
            sf_max,
            mass: 1.0 - (cdf_min + sf_max),
        }
    }

    pub(super) fn cdf(&self, t: f64) -> f64 {
        if t < self.t_min {
            0.0
        } else if t < self.t_max {
            (self.prv.cdf(t) - self.cdf_min) / self.mass
        } else {
            1.0
        }
    }

    pub(super) fn sf(&self, t: f64) -> f64 {
        if t < self.t_min {
            1.0
        } else if t < self.t_max {
            (self.prv.sf(t) - self.sf_max) / self.mass
        } else {
            0.0
        }
    }

    /// E[Y | truncation] = −∫_{t_min}^0 F + ∫_0^{t_max} (1 − F), integrated adaptively.
    pub(super) fn mean(&self) -> f64 {
        let mut below = vec![self.t_min];
        let mut above = vec![0.0];
        for k in -9..=2 {
            let p = 10f64.powi(k);
            if -p > self.t_min {
                below.push(-p);
            }
            if p < self.t_max {
                above.push(p);
            }
        }
        if self.prv.t_low > self.t_min {
            below.push(self.prv.t_low);
        }
        below.push(0.0);
        above.push(self.t_max);
        below.sort_by(f64::total_cmp);
        above.sort_by(f64::total_cmp);
        let neg = integrate(|t| self.cdf(t), &below, 1e-15);
        let pos = integrate(|t| self.sf(t), &above, 1e-15);
        pos - neg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_and_sf_are_complementary() {
        for &(q, s) in &[(1.0, 1.0), (0.01, 1.1), (1e-4, 0.7)] {
            let y = SubsampledGaussian::new(q, s);
            for t in [-1.0, -1e-3, 0.0, 1e-4, 0.5, 3.0] {
                let (f, g) = (y.cdf(t), y.sf(t));
                assert!((f + g - 1.0).abs() < 1e-14, "{q} {s} {t}: {f} {g}");
            }
        }
    }

    #[test]
    fn gaussian_prv_mean_is_its_kl_divergence() {
        // q = 1: Y ~ N(μ, 2μ) with μ = 1/(2σ²).
        let s = 1.3;
        let y = Truncated::new(SubsampledGaussian::new(1.0, s), -20.0, 20.0);
        let mu = 1.0 / (2.0 * s * s);
        assert!((y.mean() - mu).abs() < 1e-12, "{} {mu}", y.mean());
    }
}
