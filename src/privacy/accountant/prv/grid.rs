//! The PRV on a grid: the aligned domain, the discretized pmf, and δ(ε) of a composed pmf.
use super::mechanism::Truncated;
use super::quad::neumaier;
use super::MAX_DOMAIN_SIZE;
use crate::{Error, Result};

/// The aligned grid `t_min + i·dt`, `i < size`, `size` even, containing 0.
#[derive(Debug, Clone, Copy)]
pub(super) struct Domain {
    pub(super) t_min: f64,
    pub(super) dt: f64,
    size: usize,
}

impl Domain {
    pub(super) fn aligned(t_min: f64, t_max: f64, dt: f64) -> Result<Self> {
        let lo = (t_min / dt).floor();
        let hi = (t_max / dt).ceil();
        let mut size = (hi - lo).round() + 1.0;
        if size % 2.0 == 1.0 {
            size += 1.0;
        }
        if size.is_nan() || size > MAX_DOMAIN_SIZE as f64 {
            return Err(Error::field(
                "accountant",
                format!(
                    "the PRV accountant would need {size:.3e} grid points (more than {MAX_DOMAIN_SIZE}) \
                     for this setting; use the RDP accountant"
                ),
            ));
        }
        Ok(Domain {
            t_min: lo * dt,
            dt,
            size: size as usize,
        })
    }

    pub(super) fn t_max(&self) -> f64 {
        self.t_min + (self.size - 1) as f64 * self.dt
    }

    fn t(&self, i: usize) -> f64 {
        self.t_min + i as f64 * self.dt
    }
}

/// The pmf of `y` on the grid (each point gets the mass of the cell around it) and the shift
/// that moves the grid so its mean matches the continuous one.
pub(super) fn discretize(y: &Truncated, d: &Domain) -> Result<(Vec<f64>, f64)> {
    let n = d.size;
    let half = d.dt / 2.0;
    // Cell edges; F is used left of 0 and 1 − F right of it, each where it is small.
    let edge = |k: usize| d.t(k) - half;
    let f_at = |t: f64| if t <= 0.0 { y.cdf(t) } else { f64::NAN };
    let s_at = |t: f64| if t >= 0.0 { y.sf(t) } else { f64::NAN };
    let mut pmf = vec![0.0; n];
    let mut lower = edge(0);
    let (mut f_lower, mut s_lower) = (f_at(lower), s_at(lower));
    for (i, p) in pmf.iter_mut().enumerate() {
        let upper = edge(i + 1);
        let (f_upper, s_upper) = (f_at(upper), s_at(upper));
        *p = if upper <= 0.0 {
            f_upper - f_lower
        } else if lower >= 0.0 {
            s_lower - s_upper
        } else {
            (y.cdf(0.0) - f_lower) + (y.sf(0.0) - s_upper)
        };
        lower = upper;
        f_lower = f_upper;
        s_lower = s_upper;
    }
    let mean_d = neumaier(pmf.iter().enumerate().map(|(i, &p)| d.t(i) * p));
    let shift = y.mean() - mean_d;
    if shift.is_nan() || shift.abs() >= half {
        return Err(Error::failed(
            "PRV accountant",
            format!(
                "the discrete mean differs from the continuous one by {shift:e} \
             (mesh {:e})",
                d.dt
            ),
        ));
    }
    Ok((pmf, shift))
}

/// δ(ε) of a pmf on a grid, through the tail sums d1[i] = Σ_{j≥i} p_j and
/// d2[i] = Σ_{j≥i} p_j e^{−t_j}: δ(t_i) = d1[i] − e^{t_i} d2[i], decreasing in i.
pub(super) struct DeltaCurve {
    d1: Vec<f64>,
    d2: Vec<f64>,
    t0: f64,
    dt: f64,
}

impl DeltaCurve {
    pub(super) fn new(pmf: &[f64], t0: f64, dt: f64) -> Self {
        let n = pmf.len();
        let mut d1 = vec![0.0; n];
        let mut d2 = vec![0.0; n];
        let (mut a1, mut a2) = (0.0, 0.0);
        for i in (0..n).rev() {
            a1 += pmf[i];
            a2 += pmf[i] * (-(t0 + i as f64 * dt)).exp();
            d1[i] = a1;
            d2[i] = a2;
        }
        DeltaCurve { d1, d2, t0, dt }
    }

    /// The ε with δ(ε) = target: find the first grid point where δ ≤ target (binary
    /// search, as numpy's searchsorted), then solve exactly in the cell before it.
    pub(super) fn epsilon(&self, target: f64) -> Result<f64> {
        let n = self.d1.len();
        let ndelta = |i: usize| (self.t0 + i as f64 * self.dt).exp() * self.d2[i] - self.d1[i];
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if ndelta(mid) < -target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 || lo >= n {
            return Err(Error::failed(
                "PRV accountant",
                "cannot compute epsilon (δ out of the discretized range)",
            ));
        }
        Ok(((self.d1[lo] - target) / self.d2[lo]).ln())
    }
}
