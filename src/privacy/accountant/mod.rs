//! Privacy accountants for DP-SGD: the (ε, δ) guarantee of `steps` steps of the
//! Poisson-subsampled Gaussian mechanism with sampling rate `q` and noise multiplier `σ`,
//! matching Opacus 1.6.
//!
//! * [`AccountantKind::Rdp`]: Rényi DP ([`rdp`]), Opacus's `RDPAccountant` with its default
//!   orders; a valid upper bound, a little loose.
//! * [`AccountantKind::Prv`]: numerical composition of privacy random variables ([`prv`]),
//!   Opacus's `PRVAccountant` with `eps_error = 0.01`, `delta_error = δ/1000`; the upper
//!   bound it returns is tighter than RDP's.
//! * [`gdp`]: Gaussian DP, the exact composition of Gaussian mechanisms (Private Evolution).
//!
//! [`Schedule`] turns a training schedule (n and batch or q, epochs or steps, δ) into what
//! the accountants take, and [`Schedule::epsilon`] / [`Schedule::calibrate`] account for it.
//! Argument errors name the field at fault (`noise`, `sample_rate`, `delta`, `steps`,
//! `target_epsilon`, …).
mod calibrate;
pub mod gdp;
pub mod prv;
pub mod rdp;
mod schedule;

pub use calibrate::{noise_for_epsilon, MAX_NOISE, NOISE_RTOL};
pub use schedule::{Length, Sampling, Schedule, Spent};

use crate::{Error, Result};

/// Which accountant turns (σ, q, steps, δ) into ε.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountantKind {
    Rdp,
    Prv,
}

impl std::str::FromStr for AccountantKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "rdp" => Ok(AccountantKind::Rdp),
            "prv" => Ok(AccountantKind::Prv),
            _ => Err(Error::field(
                "accountant",
                format!("'{s}': expected rdp or prv"),
            )),
        }
    }
}

impl std::fmt::Display for AccountantKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AccountantKind::Rdp => "rdp",
            AccountantKind::Prv => "prv",
        })
    }
}

pub fn check_noise(noise: f64) -> Result<()> {
    if noise.is_finite() && noise > 0.0 {
        Ok(())
    } else {
        Err(Error::field(
            "noise",
            format!("the noise multiplier must be a positive number, got {noise}"),
        ))
    }
}

pub fn check_sample_rate(q: f64) -> Result<()> {
    if (0.0..=1.0).contains(&q) {
        Ok(())
    } else {
        Err(Error::field(
            "sample_rate",
            format!("the sampling rate must be in [0, 1], got {q}"),
        ))
    }
}

pub fn check_delta(delta: f64) -> Result<()> {
    if delta > 0.0 && delta < 1.0 {
        Ok(())
    } else {
        Err(Error::field(
            "delta",
            format!("δ must be in (0, 1), got {delta}"),
        ))
    }
}

fn check_all(noise: f64, q: f64, delta: f64) -> Result<()> {
    check_noise(noise)?;
    check_sample_rate(q)?;
    check_delta(delta)
}

/// ε after `steps` homogeneous steps of DP-SGD with noise multiplier `noise` and Poisson
/// rate `sample_rate`. No steps or q = 0 gives 0.
pub fn epsilon(
    kind: AccountantKind,
    noise: f64,
    sample_rate: f64,
    steps: u64,
    delta: f64,
) -> Result<f64> {
    match kind {
        AccountantKind::Rdp => Ok(rdp_epsilon(noise, sample_rate, steps, delta)?.0),
        AccountantKind::Prv => {
            check_all(noise, sample_rate, delta)?;
            prv::epsilon(noise, sample_rate, steps, delta)
        }
    }
}

/// RDP ε and the order that gives it (None when there is nothing to account: no steps or
/// q = 0, ε = 0): the [`rdp::RdpCurve`] of `steps` DP-SGD steps at Opacus's default orders.
pub fn rdp_epsilon(
    noise: f64,
    sample_rate: f64,
    steps: u64,
    delta: f64,
) -> Result<(f64, Option<f64>)> {
    rdp::RdpCurve::default()
        .add_sampled_gaussian(sample_rate, noise, steps)?
        .epsilon(delta)
        .map_err(|e| match e {
            Error::Failed { .. } => Error::failed(
                "RDP accountant",
                format!("no finite ε for σ = {noise}, q = {sample_rate}, {steps} steps"),
            ),
            e => e,
        })
}
