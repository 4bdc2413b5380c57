//! The PRV accountant (Gopi, Lee & Wutschitz 2021, "Numerical Composition of Differential
//! Privacy"), as in Opacus's `PRVAccountant` (after microsoft/prv_accountant).
//!
//! The privacy loss of one step of the Poisson-subsampled Gaussian mechanism is a random
//! variable `Y` (its "PRV"); the loss of `n` steps is the sum of `n` independent copies, and
//! `δ(ε) = E[(1 − e^{ε−Y})⁺]`. The accountant
//! 1. truncates `Y` to `[−L, L]`, `L` from RDP tail bounds (Remark 5.6 of the paper),
//! 2. discretizes it on a grid of mesh `eps_error / sqrt(n ln(12/delta_error)/2)`, each point
//!    carrying the probability of its cell, and shifts the grid so the discrete mean equals
//!    the continuous one,
//! 3. composes by raising the FFT of the pmf to the `n`-th power (circular convolution),
//! 4. inverts `δ(ε)` on the composed pmf at `δ ∓ delta_error` and widens by `∓ eps_error`
//!    to get bounds that hold for the true ε.
//!
//! Steps 1–2 are in `mechanism` (the PRV and its truncation) and `grid` (the discretization),
//! 3 in `fft`, 4 in `grid` (`DeltaCurve`); `quad` has the quadrature and compensated sums.
mod fft;
mod grid;
mod mechanism;
mod quad;

use super::rdp;
use crate::{Error, Result};
use fft::compose;
use grid::{discretize, DeltaCurve, Domain};
use mechanism::{SubsampledGaussian, Truncated};

/// Largest discretization accepted (points); beyond it the FFT would need gigabytes.
pub const MAX_DOMAIN_SIZE: usize = 1 << 23;

/// Lower bound, estimate and upper bound of ε.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpsilonBounds {
    pub lower: f64,
    pub estimate: f64,
    pub upper: f64,
}

/// Opacus's defaults: `eps_error = 0.01`, `delta_error = delta / 1000`, and the upper bound.
pub fn epsilon(noise: f64, q: f64, steps: u64, delta: f64) -> Result<f64> {
    Ok(epsilon_bounds(noise, q, steps, delta, 0.01, delta / 1000.0)?.upper)
}

/// Bounds on ε after `steps` steps, within `eps_error` in ε and `delta_error` in δ.
/// Arguments are expected valid (see [`super::epsilon`]); q = 0 or no steps gives 0.
pub fn epsilon_bounds(
    noise: f64,
    q: f64,
    steps: u64,
    delta: f64,
    eps_error: f64,
    delta_error: f64,
) -> Result<EpsilonBounds> {
    if q == 0.0 || steps == 0 {
        return Ok(EpsilonBounds {
            lower: 0.0,
            estimate: 0.0,
            upper: 0.0,
        });
    }
    let prv = SubsampledGaussian::new(q, noise);
    let n = steps as f64;
    let l = safe_domain_size(noise, q, steps, eps_error, delta_error)?;
    let mesh = eps_error / (n * (12.0 / delta_error).ln() / 2.0).sqrt();
    let domain = Domain::aligned(-l, l, mesh)?;
    let truncated = Truncated::new(prv, domain.t_min, domain.t_max());
    let (pmf, shift) = discretize(&truncated, &domain)?;
    let (composed, pad) = compose(&pmf, steps)?;
    if f64::EPSILON * composed.len() as f64 > delta - delta_error {
        return Err(Error::field(
            "delta",
            "too small for the PRV accountant: rounding errors would dominate",
        ));
    }
    // Every copy carries the mean shift: the composed grid starts at t_min + n·shift (less
    // the padding).
    let t0 = domain.t_min - pad as f64 * domain.dt + n * shift;
    let curve = DeltaCurve::new(&composed, t0, domain.dt);
    Ok(EpsilonBounds {
        lower: curve.epsilon(delta + delta_error)? - eps_error,
        estimate: curve.epsilon(delta)?,
        upper: curve.epsilon(delta - delta_error)? + eps_error,
    })
}

/// Half-width L of the truncation domain: ε bounds (from RDP) at tiny δ of the composition
/// and of a single step, plus a margin, so that the mass left out is below `delta_error`.
fn safe_domain_size(
    noise: f64,
    q: f64,
    steps: u64,
    eps_error: f64,
    delta_error: f64,
) -> Result<f64> {
    let (all, _) = rdp::epsilon_and_order(noise, q, steps, delta_error / 4.0);
    let (one, _) = rdp::epsilon_and_order(noise, q, 1, delta_error / (8.0 * steps as f64));
    let l = all.max(one).max(eps_error) + 3.0;
    if !l.is_finite() {
        return Err(Error::failed(
            "PRV accountant",
            format!("no finite domain for σ = {noise}, q = {q}, {steps} steps"),
        ));
    }
    Ok(l)
}
