//! Rényi DP accounting, as Opacus's `RDPAccountant` and TF Privacy's `rdp_accountant` do it:
//! mechanisms add their RDP, order by order, to an [`RdpCurve`] (composition is addition at
//! each order), which converts to (ε, δ)-DP at the best order (Balle et al. 2020, Theorem 21).
//!
//! The mechanism of DP-SGD is the Poisson-subsampled Gaussian ([`sgm`]: Mironov, Talwar &
//! Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian Mechanism"); a plain
//! Gaussian release is its q = 1 case.
mod curve;
pub mod sgm;

pub use curve::RdpCurve;
pub use sgm::{gaussian_rdp, rdp_one_step};

/// Opacus's `RDPAccountant.DEFAULT_ALPHAS`: 1.1, 1.2, …, 10.9, then 12, 13, …, 63.
pub fn default_orders() -> Vec<f64> {
    (1..100)
        .map(|x| 1.0 + f64::from(x) / 10.0)
        .chain((12..64).map(f64::from))
        .collect()
}

/// RDP of `steps` compositions of the sampled Gaussian mechanism (sampling rate `q`, noise
/// multiplier `noise`), one value per order. Orders must be > 1; arguments are not checked
/// here (see [`RdpCurve::add_sampled_gaussian`]); a numerically failed order gives NaN, which
/// [`eps_from_rdp`] skips.
pub fn compute_rdp(q: f64, noise: f64, steps: u64, orders: &[f64]) -> Vec<f64> {
    orders
        .iter()
        .map(|&a| rdp_one_step(q, noise, a) * steps as f64)
        .collect()
}

/// (ε, best order) for a target δ from RDP values at the given orders: the smallest over the
/// orders of `rdp − (ln δ + ln α)/(α − 1) + ln((α − 1)/α)` (Balle et al. 2020), NaNs skipped.
/// (∞, NaN) when every order is NaN.
pub fn eps_from_rdp(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    let mut best = (f64::INFINITY, f64::NAN);
    let mut found = false;
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = r - (delta.ln() + a.ln()) / (a - 1.0) + ((a - 1.0) / a).ln();
        if eps.is_nan() {
            continue;
        }
        if !found || eps < best.0 {
            best = (eps, a);
            found = true;
        }
    }
    best
}

/// (ε, best order) after `steps` steps with Opacus's default orders, unchecked: the raw
/// [`eps_from_rdp`] of [`compute_rdp`], (∞, NaN) when no order is finite (the PRV accountant
/// sizes its domain with it).
pub fn epsilon_and_order(noise: f64, q: f64, steps: u64, delta: f64) -> (f64, f64) {
    let orders = default_orders();
    let rdp = compute_rdp(q, noise, steps, &orders);
    eps_from_rdp(&orders, &rdp, delta)
}
