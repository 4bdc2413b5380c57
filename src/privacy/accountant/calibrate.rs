//! Noise calibration: the smallest noise multiplier that keeps ε within a budget.
use super::{check_delta, check_sample_rate, epsilon, AccountantKind};
use crate::{Error, Result};

/// The largest noise multiplier [`noise_for_epsilon`] tries (Opacus's `MAX_SIGMA`).
pub const MAX_NOISE: f64 = 1e6;

/// Relative precision of [`noise_for_epsilon`] on σ.
pub const NOISE_RTOL: f64 = 1e-5;

/// Smallest noise multiplier whose ε ≤ `target_epsilon` after `steps` steps at Poisson rate
/// `sample_rate`, to a relative precision of [`NOISE_RTOL`] (the returned σ always has
/// ε ≤ target). σ is bracketed (starting, for PRV, from RDP's answer, which is a little
/// larger), then the bracket is closed by secant steps on ln ε versus ln σ (nearly linear),
/// safeguarded by bisection.
pub fn noise_for_epsilon(
    kind: AccountantKind,
    target_epsilon: f64,
    sample_rate: f64,
    steps: u64,
    delta: f64,
) -> Result<f64> {
    if !(target_epsilon.is_finite() && target_epsilon > 0.0) {
        return Err(Error::field(
            "target_epsilon",
            format!("must be a positive number, got {target_epsilon}"),
        ));
    }
    check_sample_rate(sample_rate)?;
    check_delta(delta)?;
    if sample_rate == 0.0 {
        return Err(Error::field(
            "sample_rate",
            "is 0: nothing is ever sampled, so no noise is needed",
        ));
    }
    if steps == 0 {
        return Err(Error::field(
            "steps",
            "is 0: no step is taken, so no noise is needed",
        ));
    }
    let eps = |s: f64| epsilon(kind, s, sample_rate, steps, delta);
    // (σ, first factor to move it by): PRV starts from RDP's answer, a few % above its own.
    let (guess, mut factor) = match kind {
        AccountantKind::Prv => {
            match noise_for_epsilon(
                AccountantKind::Rdp,
                target_epsilon,
                sample_rate,
                steps,
                delta,
            ) {
                Ok(s) => (s, 1.1),
                Err(_) => (1.0, 2.0),
            }
        }
        AccountantKind::Rdp => (1.0, 2.0),
    };
    // Too little noise: ε above the target, or an accountant that gives up (a PRV grid too
    // large for a tiny σ).
    let above = |e: &Result<f64>| !matches!(e, Ok(v) if *v <= target_epsilon);
    // g(σ) = ln(ε/target): > 0 below the answer, ≤ 0 from it on.
    let g = |e: &Result<f64>| match e {
        Ok(v) if *v > 0.0 => (v / target_epsilon).ln(),
        Ok(_) => f64::NEG_INFINITY,
        Err(_) => f64::INFINITY,
    };
    let first = eps(guess);
    // Bracket: (σ, g) at both ends.
    let (mut lo, mut hi);
    if above(&first) {
        lo = (guess, g(&first));
        loop {
            let s = (lo.0 * factor).min(MAX_NOISE);
            let e = eps(s);
            if !above(&e) {
                hi = (s, g(&e));
                break;
            }
            if s >= MAX_NOISE {
                let e = e?;
                return Err(Error::field(
                    "target_epsilon",
                    format!(
                        "ε = {target_epsilon} is out of reach: even σ = {s:e} gives ε = {e:.4} \
                         (δ = {delta:e}, {steps} steps, q = {sample_rate})"
                    ),
                ));
            }
            lo = (s, g(&e));
            factor *= factor;
        }
    } else {
        hi = (guess, g(&first));
        loop {
            let s = hi.0 / factor;
            let e = eps(s);
            if above(&e) {
                lo = (s, g(&e));
                break;
            }
            if s < 1e-6 {
                // ε → ∞ as σ → 0 when q > 0 and steps > 0: only a bug gets here.
                return Err(Error::failed(
                    "noise calibration",
                    format!("cannot bracket the noise multiplier for ε = {target_epsilon}"),
                ));
            }
            hi = (s, g(&e));
            factor *= factor;
        }
    }
    // Close the bracket in x = ln σ. Secant through the two latest points, kept inside the
    // bracket and at least tol/2 from its ends (so that once the estimate is right the next
    // step straddles the answer), bisection when the bracket stops shrinking.
    let tol = NOISE_RTOL.ln_1p();
    let (mut x_lo, mut x_hi) = (lo.0.ln(), hi.0.ln());
    let mut recent = [(x_lo, lo.1), (x_hi, hi.1)];
    let mut widths = vec![x_hi - x_lo];
    for _ in 0..200 {
        let width = x_hi - x_lo;
        if width <= tol {
            break;
        }
        let [(xa, ga), (xb, gb)] = recent;
        let stalled = widths.len() >= 4 && width > 0.5 * widths[widths.len() - 4];
        let secant = xb - gb * (xb - xa) / (gb - ga);
        let mut x = if ga.is_finite() && gb.is_finite() && secant.is_finite() && !stalled {
            secant
        } else {
            0.5 * (x_lo + x_hi)
        };
        x = x.clamp(x_lo + 0.5 * tol, x_hi - 0.5 * tol);
        let sigma = x.exp();
        let e = eps(sigma);
        if above(&e) {
            x_lo = x;
        } else {
            (x_hi, hi.0) = (x, sigma);
        }
        recent = [recent[1], (x, g(&e))];
        widths.push(x_hi - x_lo);
    }
    Ok(hi.0)
}
