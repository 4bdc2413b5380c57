//! Rényi DP of one step of the Poisson-subsampled Gaussian mechanism (Mironov, Talwar & Zhang
//! 2019, §3.3), as in Opacus's `analysis/rdp.py` and TF Privacy's `rdp_accountant`.
//!
//! For a sampling rate `q` and noise multiplier `σ`, RDP at order `α` is `ln(A_α)/(α−1)`
//! where `A_α = E_{z∼μ0}[(μ(z)/μ0(z))^α]`, `μ0 = N(0, σ²)`, `μ = (1−q)μ0 + qN(1, σ²)`.
//! `A_α` is summed in log space: a finite binomial sum for integer orders, and for
//! fractional orders the two-sided series split at `z0 = σ² ln(1/q − 1) + 1/2`, whose terms
//! carry Gaussian tail factors `erfc(·)/2` and binomial coefficients of both signs.

use crate::special::{log_add, log_erfc, log_sub};

/// ln(A_α) for an integer order α ≥ 2 and 0 < q < 1.
fn log_a_int(q: f64, sigma: f64, alpha: u32) -> f64 {
    let (lq, l1q) = (q.ln(), (-q).ln_1p());
    let a = f64::from(alpha);
    let mut log_binom = 0.0; // ln C(α, i)
    let mut log_a = f64::NEG_INFINITY;
    for i in 0..=alpha {
        let fi = f64::from(i);
        if i > 0 {
            log_binom += (a - fi + 1.0).ln() - fi.ln();
        }
        let s = log_binom + fi * lq + (a - fi) * l1q + (fi * fi - fi) / (2.0 * sigma * sigma);
        log_a = log_add(log_a, s);
    }
    log_a
}

/// Safety net for the fractional series: far more terms than any sane setting needs.
const MAX_TERMS: u32 = 5_000_000;

/// ln(A_α) for a fractional order α > 1 and 0 < q < 1.
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (lq, l1q) = (q.ln(), (-q).ln_1p());
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let s2 = std::f64::consts::SQRT_2 * sigma;
    let ln_half = 0.5f64.ln();
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    // Generalized binomial coefficient C(α, i), as sign and ln|·|.
    let (mut log_coef, mut positive) = (0.0f64, true);
    let mut i = 0u32;
    loop {
        let fi = f64::from(i);
        let j = alpha - fi;
        let log_t0 = log_coef + fi * lq + j * l1q;
        let log_t1 = log_coef + j * lq + fi * l1q;
        let log_e0 = ln_half + log_erfc((fi - z0) / s2);
        let log_e1 = ln_half + log_erfc((z0 - j) / s2);
        let log_s0 = log_t0 + (fi * fi - fi) / (2.0 * sigma * sigma) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * sigma * sigma) + log_e1;
        if positive {
            log_a0 = log_add(log_a0, log_s0);
            log_a1 = log_add(log_a1, log_s1);
        } else {
            log_a0 = log_sub(log_a0, log_s0);
            log_a1 = log_sub(log_a1, log_s1);
        }
        if log_a0.is_nan() || log_a1.is_nan() || i >= MAX_TERMS {
            return f64::NAN;
        }
        if log_s0.max(log_s1) < -30.0 {
            break;
        }
        // C(α, i+1) = C(α, i)·(α − i)/(i + 1)
        let ratio = (alpha - fi) / (fi + 1.0);
        log_coef += ratio.abs().ln();
        if ratio < 0.0 {
            positive = !positive;
        }
        i += 1;
    }
    log_add(log_a0, log_a1)
}

/// RDP at order `alpha` of the Gaussian mechanism with noise multiplier `z` (noise std over
/// L2 sensitivity): `α/(2z²)`.
pub fn gaussian_rdp(z: f64, alpha: f64) -> f64 {
    alpha / (2.0 * z * z)
}

/// RDP of one step of the sampled Gaussian mechanism at order `alpha` (> 1); can be +∞.
pub fn rdp_one_step(q: f64, sigma: f64, alpha: f64) -> f64 {
    if q == 0.0 {
        return 0.0;
    }
    if sigma == 0.0 {
        return f64::INFINITY;
    }
    if q == 1.0 {
        return gaussian_rdp(sigma, alpha);
    }
    if alpha.is_infinite() {
        return f64::INFINITY;
    }
    let log_a = if alpha.fract() == 0.0 && alpha <= f64::from(u32::MAX) {
        log_a_int(q, sigma, alpha as u32)
    } else {
        log_a_frac(q, sigma, alpha)
    };
    log_a / (alpha - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_and_fractional_paths_agree_near_integers() {
        for &(q, s) in &[(0.01, 1.0), (0.1, 0.7), (0.004, 1.1)] {
            let int = rdp_one_step(q, s, 3.0);
            let frac = rdp_one_step(q, s, 3.0 + 1e-9);
            assert!((int - frac).abs() < 1e-6 * int, "{q} {s}: {int} {frac}");
        }
    }
}
