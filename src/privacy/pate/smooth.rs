//! Smooth sensitivity of the data-dependent RDP (Papernot et al. 2018, App. C): how much the
//! per-query bound can change when one teacher's vote moves, at distance d from the actual
//! votes (Algorithms 3–5 for GNMax; the threshold step's analogue), the β-smooth sensitivity,
//! and the RDP of releasing a value with Gaussian noise scaled to it (the GNSS mechanism,
//! Theorem 23). Everything is computed from ln q: at vote gaps of many σ, q and the bounds on
//! it (`bl`, `bu`, which go through erfc⁻¹) are far below the smallest double.
use super::rdp::{logq_gnmax, rdp_gnmax_independent, rdp_threshold, theorem6};
use crate::special::{erfcinv_ln, log_erfc, norm_logsf};

/// Theorem 6's bound at `logq` without checking its conditions (the caller compares ln q
/// against ln q0, below which they hold); 0 for q = 0.
pub fn data_dependent_bound(sigma: f64, logq: f64, order: f64) -> f64 {
    if logq == f64::NEG_INFINITY {
        return 0.0;
    }
    theorem6(logq, sigma).at(order)
}

/// The per-order constants of GNMax's smooth sensitivity: ln q0, above which the
/// data-independent bound is the smaller, and ln q1 = ln bl(q0).
#[derive(Debug, Clone, Copy)]
pub struct Gnmax {
    pub sigma: f64,
    pub order: f64,
    pub classes: usize,
    pub logq0: f64,
    pub logq1: f64,
    /// The local sensitivity between q1 and q0.
    pub plateau: f64,
}

impl Gnmax {
    pub fn new(sigma: f64, order: f64, classes: usize) -> Gnmax {
        let logq0 = logq0(sigma, order);
        let mut g = Gnmax {
            sigma,
            order,
            classes,
            logq0,
            logq1: 0.0,
            plateau: 0.0,
        };
        g.logq1 = g.log_bl(logq0);
        g.plateau = g.local_sensitivity(g.logq1);
        g
    }

    /// The bound used for the sensitivity analysis: data-dependent below q0, else α/σ².
    pub fn rdp(&self, logq: f64) -> f64 {
        if logq >= self.logq0 {
            rdp_gnmax_independent(self.sigma, self.order)
        } else {
            data_dependent_bound(self.sigma, logq, self.order)
        }
    }

    /// ln of x = erfc⁻¹(2q/(C−1)); 2q/(C−1) ≤ 1 since q ≤ 1 − 1/C.
    fn inv(&self, logq: f64) -> f64 {
        let m1 = (self.classes - 1) as f64;
        erfcinv_ln((logq + std::f64::consts::LN_2 - m1.ln()).min(0.0))
    }

    /// ln bl(q): the smallest q at a neighbouring vote vector, ln((C−1)/2 · erfc(1/σ + x)).
    pub fn log_bl(&self, logq: f64) -> f64 {
        let half = ((self.classes - 1) as f64 / 2.0).ln();
        half + log_erfc(1.0 / self.sigma + self.inv(logq))
    }

    /// ln bu(q): the largest, ln min(1, (C−1)/2 · erfc(x − 1/σ)).
    pub fn log_bu(&self, logq: f64) -> f64 {
        let half = ((self.classes - 1) as f64 / 2.0).ln();
        (half + log_erfc(self.inv(logq) - 1.0 / self.sigma)).min(0.0)
    }

    /// Upper bound on the local sensitivity of the bound at ln q (Algorithm 3). Between q1
    /// and q0 it is the plateau, the value at q1, whose upper neighbour bu(q1) is q0 itself
    /// (q1 = bl(q0)): there the bound is the data-independent one, taken exactly rather than
    /// from a rounded ln bu(q1), which can land on either side of ln q0 (the reference's
    /// plateau does, and where the bound jumps at q0 it then takes the smaller side).
    pub fn local_sensitivity(&self, logq: f64) -> f64 {
        let plateau = self.logq1 <= logq && logq <= self.logq0;
        let logq = if plateau { self.logq1 } else { logq };
        let beta = self.rdp(logq);
        let up = if plateau {
            self.rdp(self.logq0)
        } else {
            self.rdp(self.log_bu(logq))
        };
        let down = self.rdp(self.log_bl(logq));
        (up - beta).max(beta - down)
    }

    /// The largest local sensitivity at distance d = 0, 1, …, N−1 from `counts` (Algorithms 4
    /// and 5 in O(N·C)): moving votes between the two largest counts widens the gap (while
    /// ln q > ln q0) or narrows it (while ln q < ln q1); between q1 and q0 it is the plateau.
    pub fn sensitivity_at_distance(&self, counts: &[f64], teachers: usize) -> Vec<f64> {
        let mut res = vec![self.plateau; teachers];
        let mut logq = logq_gnmax(counts, self.sigma);
        if self.logq1 <= logq && logq <= self.logq0 {
            return res;
        }
        let mut v: Vec<f64> = counts.to_vec();
        v.sort_by(|a, b| b.total_cmp(a));
        res[0] = self.local_sensitivity(logq);
        let go_left = logq > self.logq0;
        let mut d = 0;
        while (go_left && logq > self.logq0 && v[1] > 0.0) || (!go_left && logq < self.logq1) {
            d += 1;
            if d >= teachers {
                break;
            }
            if go_left {
                v[0] += 1.0;
                v[1] -= 1.0;
                let mut i = 1;
                while i < v.len() - 1 && v[i] < v[i + 1] {
                    v.swap(i, i + 1);
                    i += 1;
                }
            } else {
                v[0] -= 1.0;
                v[1] += 1.0;
            }
            logq = logq_gnmax(&v, self.sigma);
            res[d] = self.local_sensitivity(logq);
        }
        res
    }
}

/// ln q0 for GNMax at σ and `order`: where the data-dependent bound of Theorem 6 meets the
/// data-independent α/σ² (below it, the data-dependent one is smaller). Found by bisection to
/// full precision between a lower bound found by doubling and the natural upper bound.
pub fn logq0(sigma: f64, order: f64) -> f64 {
    let f =
        |logq: f64| data_dependent_bound(sigma, logq, order) - rdp_gnmax_independent(sigma, order);
    let ub = [
        -(1.0 + 1.0 / sigma).powi(2),
        -((order - 0.99) / sigma).powi(2),
        -1.0 / (sigma * sigma),
    ]
    .into_iter()
    .fold(f64::INFINITY, f64::min);
    if f(ub) < 0.0 {
        return ub;
    }
    let mut lb = 2.0 * ub;
    while f(lb) > 0.0 && lb > -1e7 {
        lb *= 1.5;
    }
    let (mut lo, mut hi) = (lb, ub); // f(lo) ≤ 0 < f(hi)
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if f(mid) > 0.0 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The threshold step's RDP for every possible largest count v = 0…N at `order`.
pub fn threshold_rdp_list(teachers: usize, threshold: f64, sigma1: f64, order: f64) -> Vec<f64> {
    (0..=teachers)
        .map(|v| {
            let logp = norm_logsf((threshold - v as f64) / sigma1);
            rdp_threshold(logp, sigma1, order)
        })
        .collect()
}

/// The threshold step's largest local sensitivity at distance d = 0…N−1 from a largest count
/// of `max` (rounded), given [`threshold_rdp_list`].
pub fn threshold_sensitivity_at_distance(max: f64, teachers: usize, list: &[f64]) -> Vec<f64> {
    let ls = |v: usize| {
        let mut s = f64::NEG_INFINITY;
        if v > 0 {
            s = s.max((list[v - 1] - list[v]).abs());
        }
        if v < teachers {
            s = s.max((list[v + 1] - list[v]).abs());
        }
        s
    };
    let cur = max.round_ties_even().clamp(0.0, teachers as f64) as usize;
    let mut out = vec![0.0; teachers];
    for (d, o) in out.iter_mut().enumerate().take(cur.max(teachers - cur)) {
        let mut s = f64::NEG_INFINITY;
        if cur + d <= teachers {
            s = s.max(ls(cur + d));
        }
        if cur >= d {
            s = s.max(ls(cur - d));
        }
        *o = s;
    }
    out
}

/// max_d a_d · e^{−βd}: the β-smooth sensitivity from the sensitivities at distance d.
pub fn discounted_max(beta: f64, a: &[f64]) -> f64 {
    a.iter()
        .enumerate()
        .map(|(d, &x)| x * (-beta * d as f64).exp())
        .fold(f64::NEG_INFINITY, f64::max)
}

/// RDP at `order` of releasing a value plus smooth-sensitivity-scaled Gaussian noise
/// `SS_β · N(0, σ²)` (Theorem 23); defined for 1 < order < 1/(2β).
pub fn gnss_rdp(beta: f64, sigma: f64, order: f64) -> f64 {
    order * (2.0 * beta).exp() / (sigma * sigma)
        + (-0.5 * (1.0 - 2.0 * order * beta).ln() + beta * order) / (order - 1.0)
}

/// The sufficient conditions C5 and C6 of the smooth-sensitivity analysis (App. B.4.2), checked
/// numerically: the data-dependent bound β(q) is non-decreasing on (0, q0), and β(bu(q)) − β(q)
/// is non-decreasing on (0, bl(q0)). Checked on a grid dense in ln q (1,000 points between
/// ln q0 − 200 and ln q0, where the functions vary) and linear in q near q0; the reference
/// verifies the same derivatives with a numerical minimizer.
pub fn conditions_hold(g: &Gnmax) -> bool {
    let beta = |lq: f64| data_dependent_bound(g.sigma, lq, g.order);
    let non_decreasing = |f: &dyn Fn(f64) -> f64, top: f64| {
        let mut grid: Vec<f64> = (0..=1000).map(|i| top - 200.0 + 0.2 * i as f64).collect();
        grid.extend((1..=1000).map(|i| top + (i as f64 / 1000.0).ln()));
        grid.sort_by(f64::total_cmp);
        grid.dedup();
        let vals: Vec<f64> = grid.iter().map(|&lq| f(lq)).collect();
        vals.windows(2).all(|w| {
            !w[0].is_nan() && !w[1].is_nan() && w[1] >= w[0] - 1e-9 * w[0].abs().max(1e-12)
        })
    };
    let c5 = non_decreasing(&beta, g.logq0);
    c5 && non_decreasing(&|lq| beta(g.log_bu(lq)) - beta(lq), g.logq1)
}
