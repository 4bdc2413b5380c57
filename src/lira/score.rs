//! LiRA's statistics: the logit-scaled confidence φ of a model on an example, the normal
//! log-density and log-CDF, and the online and offline scores from the φ of the target and
//! the shadow models (see the module docs of `lira`).
use crate::special::norm_logcdf;
use crate::{Error, Result};
use std::f64::consts::PI;

/// Below this many shadows [`Variance::Auto`] uses one global σ.
pub const GLOBAL_VARIANCE_BELOW: usize = 64;

/// φ = log p_y − log Σ_{j≠y} p_j of a logit row, computed as z_y − logsumexp_{j≠y} z_j
/// (exact for any logits; +∞ when every other logit is −∞). `label` must index `logits`,
/// which must have at least 2 entries.
pub fn logit_confidence(logits: &[f64], label: usize) -> f64 {
    let m = logits
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != label)
        .map(|(_, &z)| z)
        .fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return f64::INFINITY;
    }
    let s: f64 = logits
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != label)
        .map(|(_, &z)| (z - m).exp())
        .sum();
    logits[label] - (m + s.ln())
}

/// log of the normal density N(x; μ, σ²) (σ > 0).
pub fn norm_logpdf(x: f64, mu: f64, sigma: f64) -> f64 {
    let u = (x - mu) / sigma;
    -0.5 * u * u - sigma.ln() - 0.5 * (2.0 * PI).ln()
}

/// How σ of the Gaussian fits is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variance {
    /// [`Variance::Global`] with fewer than [`GLOBAL_VARIANCE_BELOW`] shadows, else
    /// [`Variance::PerExample`] (the paper's advice).
    Auto,
    /// One σ for every example and both fits (the paper's "fixed variance").
    Global,
    /// σ_in and σ_out per example.
    PerExample,
}

impl std::str::FromStr for Variance {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Variance::Auto),
            "global" | "fixed" => Ok(Variance::Global),
            "per-example" | "example" => Ok(Variance::PerExample),
            _ => Err(Error::field(
                "lira_variance",
                format!("unknown '{s}'; choose from: auto, global, per-example"),
            )),
        }
    }
}

impl Variance {
    /// Whether to use one global σ with `shadows` shadow models.
    pub fn global(self, shadows: usize) -> bool {
        match self {
            Variance::Auto => shadows < GLOBAL_VARIANCE_BELOW,
            Variance::Global => true,
            Variance::PerExample => false,
        }
    }
}

/// φ of every scored example under every model.
#[derive(Debug, Clone, PartialEq)]
pub struct Confidences {
    /// Queries per example (1, or 2 with the flip).
    pub queries: usize,
    /// The target's φ: `[example * queries + query]`.
    pub target: Vec<f64>,
    /// Each shadow's φ, same layout.
    pub shadows: Vec<Vec<f64>>,
    /// `shadow_in[s][e]`: shadow `s` was trained on example `e`.
    pub shadow_in: Vec<Vec<bool>>,
}

/// The two LiRA scores of every example; `None` where the example could not be scored
/// (no IN shadow for online; no OUT shadow for either).
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub online: Vec<Option<f64>>,
    pub offline: Vec<Option<f64>>,
    /// The σ used where the fits share one (or fall back to it).
    pub global_sigma: f64,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// The online and offline scores from the confidences (see the module docs).
pub fn scores(c: &Confidences, global_variance: bool) -> Scores {
    let q = c.queries.max(1);
    let n = c.target.len() / q;
    let values = |e: usize, k: usize, side: bool| -> Vec<f64> {
        c.shadows
            .iter()
            .zip(&c.shadow_in)
            .filter(|(_, inn)| inn[e] == side)
            .map(|(phi, _)| phi[e * q + k])
            .filter(|v| v.is_finite())
            .collect()
    };
    // Pooled within-example σ over the IN and OUT groups of every example and query.
    let (mut ss, mut dof) = (0.0f64, 0usize);
    for e in 0..n {
        for k in 0..q {
            for side in [true, false] {
                let v = values(e, k, side);
                if v.len() >= 2 {
                    let (m, _) = mean_std(&v);
                    ss += v.iter().map(|x| (x - m) * (x - m)).sum::<f64>();
                    dof += v.len() - 1;
                }
            }
        }
    }
    let mut global_sigma = if dof > 0 {
        (ss / dof as f64).sqrt()
    } else {
        0.0
    };
    if !(global_sigma > 0.0 && global_sigma.is_finite()) {
        let all: Vec<f64> = c
            .shadows
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        global_sigma = if all.is_empty() {
            0.0
        } else {
            mean_std(&all).1
        };
        if !(global_sigma > 0.0 && global_sigma.is_finite()) {
            global_sigma = 1.0;
        }
    }
    let fit = |v: &[f64]| -> (f64, f64) {
        let (m, s) = mean_std(v);
        if global_variance || v.len() < 2 || !(s > 0.0 && s.is_finite()) {
            (m, global_sigma)
        } else {
            (m, s)
        }
    };
    let mut online = Vec::with_capacity(n);
    let mut offline = Vec::with_capacity(n);
    for e in 0..n {
        let (mut on, mut off) = (Some(0.0), Some(0.0));
        for k in 0..q {
            let t = c.target[e * q + k];
            let (vin, vout) = (values(e, k, true), values(e, k, false));
            if vout.is_empty() || !t.is_finite() {
                on = None;
                off = None;
                break;
            }
            let (mo, so) = fit(&vout);
            off = off.map(|s| s + norm_logcdf((t - mo) / so) / q as f64);
            if vin.is_empty() {
                on = None;
            } else {
                let (mi, si) = fit(&vin);
                on = on.map(|s| s + (norm_logpdf(t, mi, si) - norm_logpdf(t, mo, so)) / q as f64);
            }
        }
        online.push(on);
        offline.push(off);
    }
    Scores {
        online,
        offline,
        global_sigma,
    }
}
