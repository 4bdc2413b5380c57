//! Gaussian differential privacy (Dong, Roth & Su 2019): the exact accounting of `T`
//! adaptively composed Gaussian mechanisms of L2 sensitivity 1 and noise `σ` (Private
//! Evolution's noisy histograms, one per iteration).
//!
//! One such mechanism is μ-GDP with μ = 1/σ; `T` of them compose to μ = √T/σ exactly (the
//! composition of Gaussian trade-off functions is Gaussian). μ-GDP is (ε, δ(ε))-DP for every
//! ε ≥ 0 with the tight
//!
//! δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2),
//!
//! which this module evaluates in log space and inverts by bisection: [`epsilon`] (ε for a
//! δ) and [`mu_for`] / [`noise_for_epsilon`] (μ, then σ, for a target (ε, δ)).
use super::check_delta;
use crate::special::{log_sub, norm_logcdf};
use crate::{Error, Result};

/// μ of `iterations` composed Gaussian mechanisms of sensitivity 1 and noise `noise`.
pub fn mu(noise: f64, iterations: u64) -> Result<f64> {
    super::check_noise(noise)?;
    Ok((iterations as f64).sqrt() / noise)
}

/// ln δ(ε) of μ-GDP (−∞ when δ underflows, i.e. for ε far beyond μ's reach).
pub fn ln_delta(mu: f64, eps: f64) -> f64 {
    if mu <= 0.0 {
        return f64::NEG_INFINITY;
    }
    let a = norm_logcdf(-eps / mu + mu / 2.0);
    let b = eps + norm_logcdf(-eps / mu - mu / 2.0);
    if b >= a {
        // Rounding at the far tail: the true difference is positive but below f64's reach.
        return f64::NEG_INFINITY;
    }
    log_sub(a, b)
}

/// δ(ε) of μ-GDP.
pub fn delta(mu: f64, eps: f64) -> f64 {
    ln_delta(mu, eps).exp()
}

/// The smallest ε ≥ 0 with δ(ε) ≤ `delta` for μ-GDP (0 when δ(0) already is), to 1e-12
/// relative precision. δ(ε) falls strictly with ε, so bisection on ln δ finds it.
pub fn epsilon(mu: f64, delta: f64) -> Result<f64> {
    check_delta(delta)?;
    if !(mu.is_finite() && mu >= 0.0) {
        return Err(Error::field(
            "mu",
            format!("μ must be a finite number ≥ 0, got {mu}"),
        ));
    }
    let target = delta.ln();
    if mu == 0.0 || ln_delta(mu, 0.0) <= target {
        return Ok(0.0);
    }
    let mut hi = mu.max(1.0);
    while ln_delta(mu, hi) > target {
        hi *= 2.0;
        if hi > 1e9 {
            return Err(Error::failed(
                "GDP accountant",
                format!("no finite ε for μ = {mu}, δ = {delta}"),
            ));
        }
    }
    let mut lo = 0.0;
    while hi - lo > 1e-12 * hi {
        let mid = 0.5 * (lo + hi);
        if ln_delta(mu, mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(hi)
}

/// ε of `iterations` Gaussian mechanisms of sensitivity 1 and noise `noise` at `delta`.
pub fn epsilon_of(noise: f64, iterations: u64, delta: f64) -> Result<f64> {
    epsilon(mu(noise, iterations)?, delta)
}

/// The largest μ whose ε at `delta` is at most `target_epsilon` (δ(ε) grows with μ, so
/// bisection on μ), to 1e-12 relative precision, rounded down.
pub fn mu_for(target_epsilon: f64, delta: f64) -> Result<f64> {
    check_delta(delta)?;
    if !(target_epsilon.is_finite() && target_epsilon > 0.0) {
        return Err(Error::field(
            "epsilon",
            format!("ε must be a positive number, got {target_epsilon}"),
        ));
    }
    let target = delta.ln();
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while ln_delta(hi, target_epsilon) <= target {
        lo = hi;
        hi *= 2.0;
        if hi > 1e6 {
            return Err(Error::failed(
                "GDP accountant",
                format!("ε = {target_epsilon} at δ = {delta} allows any μ"),
            ));
        }
    }
    while hi - lo > 1e-12 * hi {
        let mid = 0.5 * (lo + hi);
        if ln_delta(mid, target_epsilon) <= target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// The noise σ for which `iterations` Gaussian mechanisms of sensitivity 1 spend at most
/// `target_epsilon` at `delta`: σ = √T / μ with μ from [`mu_for`].
pub fn noise_for_epsilon(target_epsilon: f64, iterations: u64, delta: f64) -> Result<f64> {
    if iterations == 0 {
        return Err(Error::field("iterations", "must be at least 1"));
    }
    let mu = mu_for(target_epsilon, delta)?;
    Ok((iterations as f64).sqrt() / mu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_is_the_tight_gdp_curve() {
        // μ = 1, ε = 0: δ = Φ(1/2) − Φ(−1/2) = 0.38292492254802624.
        assert!((delta(1.0, 0.0) - 0.382_924_922_548_026_2).abs() < 1e-14);
        // Falls with ε, grows with μ.
        assert!(delta(1.0, 1.0) < delta(1.0, 0.5));
        assert!(delta(2.0, 1.0) > delta(1.0, 1.0));
        assert_eq!(delta(0.0, 1.0), 0.0);
    }

    #[test]
    fn epsilon_inverts_delta_and_mu_for_inverts_epsilon() {
        for &(mu, d) in &[(0.5, 1e-5), (1.0, 1e-6), (3.0, 1e-3), (0.1, 1e-8)] {
            let e = epsilon(mu, d).unwrap();
            assert!((delta(mu, e) / d - 1.0).abs() < 1e-8, "μ {mu} δ {d}: ε {e}");
            let back = mu_for(e, d).unwrap();
            assert!((back / mu - 1.0).abs() < 1e-9, "{back} vs {mu}");
        }
        assert_eq!(epsilon(0.0, 1e-5).unwrap(), 0.0);
        // δ(0) = 0.38 for μ = 1: a δ above it costs nothing.
        assert_eq!(epsilon(1.0, 0.5).unwrap(), 0.0);
        assert!(epsilon(1.0, 0.0).is_err());
        assert!(mu_for(-1.0, 1e-5).is_err());
        assert!(noise_for_epsilon(1.0, 0, 1e-5).is_err());
    }
}
