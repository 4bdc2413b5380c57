//! Per-query Rényi DP of the PATE aggregators (Papernot et al. 2018, App. B; the 2017 paper for
//! LNMax), data-independent and data-dependent, all in log space: the data-dependent bounds
//! start from an upper bound on q = Pr[answer ≠ plurality], which for a large vote gap is far
//! below the smallest double.
use super::votes::argmax;
use crate::special::{log1mexp, norm_logsf};

/// The orders of TF Privacy's PATE analysis: 2 to 100.5 by 0.5, then 100 orders log-spaced
/// from 100 to 500 (numpy's `arange(2, 101, .5)` and `logspace(log10(100), log10(500), 100)`,
/// computed as numpy does; 100 appears twice).
pub fn reference_orders() -> Vec<f64> {
    let mut orders: Vec<f64> = (0..198).map(|i| 2.0 + 0.5 * f64::from(i)).collect();
    let (start, stop) = (2.0f64, 500f64.log10());
    let step = (stop - start) / 99.0;
    for i in 0..100 {
        let y = if i == 99 {
            stop
        } else {
            f64::from(i) * step + start
        };
        orders.push(10f64.powf(y));
    }
    orders
}

/// ln(e^a + e^b) as numpy's `logaddexp`.
pub(crate) fn logaddexp(a: f64, b: f64) -> f64 {
    if a == b {
        return a + std::f64::consts::LN_2;
    }
    let m = a.max(b);
    m + (-(a - b).abs()).exp().ln_1p()
}

/// ln Σ e^{x_i}, shifted by the largest term.
fn logsumexp(x: &[f64]) -> f64 {
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + x.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// Upper bound on ln q for GNMax with noise σ (Proposition 7: a union bound over the classes
/// that are not the plurality, Pr[n_j + N(0,σ²) > n_max + N(0,σ²)]), capped at ln(1 − 1/C).
pub fn logq_gnmax(counts: &[f64], sigma: f64) -> f64 {
    let top = argmax(counts);
    let scale = std::f64::consts::SQRT_2 * sigma;
    let tails: Vec<f64> = counts
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != top)
        .map(|(_, &c)| norm_logsf((counts[top] - c) / scale))
        .collect();
    let cap = (1.0 - 1.0 / counts.len() as f64).ln();
    logsumexp(&tails).min(cap)
}

/// Data-independent RDP of GNMax: α/σ² (Proposition 8).
pub fn rdp_gnmax_independent(sigma: f64, order: f64) -> f64 {
    order / (sigma * sigma)
}

/// Data-dependent RDP of GNMax at `order` from an upper bound on ln q (Theorem 6, with the
/// higher orders μ2 = σ√(ln 1/q), μ1 = μ2 + 1 of Proposition 10), or the data-independent
/// bound where the theorem's conditions fail or it is not smaller. 0 for q = 0.
pub fn rdp_gnmax(logq: f64, sigma: f64, order: f64) -> f64 {
    GnmaxBound::new(logq, sigma).at(order)
}

/// [`rdp_gnmax`] at one ln q for many orders: what does not depend on the order, once.
#[derive(Debug, Clone, Copy)]
pub struct GnmaxBound {
    sigma: f64,
    /// None: q = 0 (RDP 0); Some(None): Theorem 6 does not apply at any order.
    terms: Option<Option<Terms>>,
}

/// The order-free parts of Theorem 6's bound at one ln q (see [`theorem6`]).
#[derive(Debug, Clone, Copy)]
pub struct Terms {
    mu1: f64,
    /// ln(1 − q), ln q, and the per-(α−1) logs of A and B.
    log1q: f64,
    logq: f64,
    a: f64,
    b: f64,
}

impl Terms {
    /// Theorem 6's bound at `order`, whether or not its conditions hold (the caller checks).
    pub fn at(&self, order: f64) -> f64 {
        logaddexp(
            self.log1q + (order - 1.0) * self.a,
            self.logq + (order - 1.0) * self.b,
        ) / (order - 1.0)
    }
}

/// Theorem 6's terms at ln q > −∞ and σ: μ2 = σ√(ln 1/q), μ1 = μ2 + 1 (Proposition 10).
pub fn theorem6(logq: f64, sigma: f64) -> Terms {
    let var = sigma * sigma;
    let mu2 = (var * -logq).sqrt();
    let mu1 = mu2 + 1.0;
    let log1q = log1mexp(logq);
    Terms {
        mu1,
        log1q,
        logq,
        a: log1q - log1mexp((logq + mu2 / var) * (1.0 - 1.0 / mu2)),
        b: mu1 / var - logq / (mu1 - 1.0),
    }
}

impl GnmaxBound {
    pub fn new(logq: f64, sigma: f64) -> GnmaxBound {
        if logq == f64::NEG_INFINITY {
            return GnmaxBound { sigma, terms: None };
        }
        let var = sigma * sigma;
        let mu2 = (var * -logq).sqrt();
        let mu1 = mu2 + 1.0;
        let rdp2 = mu2 / var;
        // The order-free conditions of Theorem 6: μ2 > 1, q in the range where the bound
        // increases with q (Lemma 9) and A positive; the order must also be below μ1.
        let applies = mu2 > 1.0
            && logq
                <= (mu2 - 1.0) * rdp2
                    - mu2 * ((1.0 + 1.0 / (mu1 - 1.0)).ln() + (1.0 + 1.0 / (mu2 - 1.0)).ln())
            && -logq > rdp2;
        GnmaxBound {
            sigma,
            terms: Some(applies.then(|| theorem6(logq, sigma))),
        }
    }

    pub fn at(&self, order: f64) -> f64 {
        let independent = rdp_gnmax_independent(self.sigma, order);
        match self.terms {
            None => 0.0,
            Some(Some(t)) if t.mu1 > order => independent.min(t.at(order)),
            Some(_) => independent,
        }
    }
}

/// ln Pr[max_j n_j + N(0, σ1²) ≥ T], the chance Confident-GNMax answers (the maximum rounded
/// to an integer, as the reference does for fractional votes).
pub fn logpr_answered(threshold: f64, sigma1: f64, counts: &[f64]) -> f64 {
    let max = counts.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    norm_logsf((threshold - max.round_ties_even()) / sigma1)
}

/// Data-independent RDP of the threshold step: its input (the largest count) has
/// sensitivity 1, half GNMax's, so it is GNMax's bound at √2·σ1: α/(2σ1²).
pub fn rdp_threshold_independent(sigma1: f64, order: f64) -> f64 {
    rdp_gnmax_independent(std::f64::consts::SQRT_2 * sigma1, order)
}

/// Data-dependent RDP of the threshold step, from ln Pr[answered]: the bound of
/// [`rdp_gnmax`] at √2·σ1 with q the smaller of the two outcomes' probabilities.
pub fn rdp_threshold(logpr_answered: f64, sigma1: f64, order: f64) -> f64 {
    threshold_bound(logpr_answered, sigma1).at(order)
}

/// [`rdp_threshold`] for many orders.
pub fn threshold_bound(logpr_answered: f64, sigma1: f64) -> GnmaxBound {
    let logq = logpr_answered.min(log1mexp(logpr_answered));
    GnmaxBound::new(logq, std::f64::consts::SQRT_2 * sigma1)
}

/// Upper bound on ln q for LNMax with Laplace scale λ (the 2017 paper's Lemma 4, a union
/// bound: Pr[j beats the plurality] = (2 + g)/4 · e^{−g} for the gap g/λ), capped at
/// ln(1 − 1/C).
pub fn logq_laplace(counts: &[f64], scale: f64) -> f64 {
    let top = argmax(counts);
    let terms: Vec<f64> = counts
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != top)
        .map(|(_, &c)| {
            let g = (c - counts[top]) / scale;
            (2.0 - g).ln() + 0.25f64.ln() + g
        })
        .collect();
    let cap = (1.0 - 1.0 / counts.len() as f64).ln();
    logsumexp(&terms).min(cap)
}

/// RDP at `order` of a pure ε-DP mechanism whose non-plurality outcome has probability
/// e^logq (the 2017 paper's Theorem 3): the smallest of ½ε²α (Bun & Steinke), the
/// data-dependent moment bound (when q ≤ 1/(e^ε + 1)) and ε.
pub fn rdp_pure_eps(logq: f64, eps: f64, order: f64) -> f64 {
    let q = logq.exp();
    let mut log_t = f64::INFINITY;
    if q <= 1.0 / (eps.exp() + 1.0) {
        let l1q = (-q).ln_1p();
        let one = l1q + (l1q - log1mexp(eps + logq)) * (order - 1.0);
        let two = logq + eps * (order - 1.0);
        log_t = logaddexp(one, two);
    }
    (0.5 * eps * eps * order)
        .min(log_t / (order - 1.0))
        .min(eps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_is_the_reference_grid() {
        let o = reference_orders();
        assert_eq!(o.len(), 298);
        assert_eq!((o[0], o[197], o[198]), (2.0, 100.5, 100.0));
        assert!((o[297] - 500.0).abs() < 1e-12);
        assert!(o[199] > 100.0 && o[199] < 102.0);
    }

    #[test]
    fn data_dependent_bounds_never_exceed_the_independent_ones() {
        for gap in [0.0, 5.0, 50.0, 200.0, 1e4] {
            let counts = [150.0 + gap / 2.0, 150.0 - gap / 2.0, 0.0];
            for sigma in [1.0, 5.0, 40.0] {
                let lq = logq_gnmax(&counts, sigma);
                assert!(lq <= (2.0f64 / 3.0).ln() && !lq.is_nan());
                for order in [2.0, 8.5, 50.0, 300.0] {
                    let r = rdp_gnmax(lq, sigma, order);
                    assert!(
                        (0.0..=order / (sigma * sigma)).contains(&r),
                        "{gap} {sigma} {order}"
                    );
                }
            }
        }
        // Unanimous 100 votes at σ = 1: ln q ≈ −2500, far below the smallest double.
        let lq = logq_gnmax(&[100.0, 0.0, 0.0], 1.0);
        assert!(lq < -2400.0 && lq.is_finite());
        assert!(rdp_gnmax(lq, 1.0, 20.0) < 1e-300 * 1e300);
    }
}
