//! The privacy analysis of a student's queries, as TF Privacy's `smooth_sensitivity_table.py`
//! does it (and with the same numbers): per-query RDP composed on an [`RdpCurve`] at the
//! reference's orders, ε data-independent and data-dependent, then the smooth-sensitivity
//! release of the data-dependent ε — which the reference only sizes and fool also draws.
use super::rdp::{self, reference_orders};
use super::smooth::{self, Gnmax};
use super::{Aggregator, Votes};
use crate::privacy::accountant::rdp::RdpCurve;
use crate::rng::SplitMix64;
use crate::{Error, Result};

/// What was released and how it is accounted.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    pub aggregator: Aggregator,
    pub delta: f64,
    /// Analyse the first N queries (default: every row).
    pub queries: Option<usize>,
    /// Seed of the noisy release of the data-dependent ε.
    pub seed: u64,
}

/// The smooth-sensitivity release of the data-dependent ε (Papernot et al. 2018, §4.3,
/// App. C), at the order of the data-dependent ε.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SmoothRelease {
    /// β of the β-smooth sensitivity, chosen (as the reference does, over 0.30/α … 0.49/α)
    /// to minimise ε + release cost + 2 noise standard deviations.
    pub beta: f64,
    /// The β-smooth sensitivity of the composed data-dependent RDP (expected over the
    /// threshold step for Confident-GNMax, as the reference computes it).
    pub ss: f64,
    /// σ of the GNSS mechanism, in units of `ss`.
    pub sigma_ss: f64,
    /// The standard deviation of the noise added to ε: ss · σ_ss.
    pub noise_std: f64,
    /// RDP of releasing the data-dependent RDP with that noise (Theorem 23), at `order`.
    pub release_cost: f64,
    /// The data-dependent ε plus the release cost: what the data-dependent analysis spends.
    pub epsilon_total: f64,
    /// ε_total plus the seeded noise: the value that may be published.
    pub epsilon_released: f64,
    pub seed: u64,
}

/// The analysis (`fool privacy pate --json` prints it; the student's run keeps it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Analysis {
    pub aggregator: Aggregator,
    pub teachers: u32,
    pub classes: usize,
    pub queries: usize,
    /// Expected number of queries answered (Σ Pr[answered]; = queries without a threshold).
    pub answered: f64,
    pub delta: f64,
    /// The order of the data-dependent ε.
    pub order: f64,
    /// ε = min_α RDP(α) + ln(1/δ)/(α − 1) of the data-independent bounds, at
    /// `order_data_independent` (for Confident-GNMax the argmax step is weighted by the
    /// chance each query is answered, as in the reference).
    pub epsilon_data_independent: f64,
    pub order_data_independent: f64,
    /// The same conversion of the data-dependent bounds: depends on the votes, so it is not
    /// private to publish as it is (see `smooth_sensitivity`).
    pub epsilon_data_dependent: f64,
    /// The tighter RDP → (ε, δ) conversion (Balle et al. 2020, as Opacus converts):
    /// min_α RDP(α) + ln((α−1)/α) − (ln δ + ln α)/(α − 1), data-independent and -dependent.
    pub epsilon_data_independent_tight: f64,
    pub epsilon_data_dependent_tight: f64,
    /// Whether the threshold (argmax) step's data-independent bound is the tighter one at
    /// `order` whatever the votes: its sensitivity is then 0.
    pub data_independent_threshold: bool,
    pub data_independent_argmax: bool,
    /// Whether the sufficient conditions C5–C6 of the smooth-sensitivity analysis hold at
    /// `order` (checked numerically).
    pub conditions_hold: bool,
    /// None when nothing data-dependent is left to release (both steps data-independent), the
    /// conditions fail, or for LNMax (no smooth-sensitivity analysis).
    pub smooth_sensitivity: Option<SmoothRelease>,
}

/// What a query's RDP depends on: ln q of its argmax step (GNMax or LNMax) and ln
/// Pr[answered] (0 without a threshold).
#[derive(Clone, Copy)]
struct Row {
    logq: f64,
    logpr: f64,
}

fn row_stats(agg: &Aggregator, row: &[f64]) -> Row {
    match *agg {
        Aggregator::Gnmax { sigma } => Row {
            logq: rdp::logq_gnmax(row, sigma),
            logpr: 0.0,
        },
        Aggregator::Confident {
            threshold,
            sigma1,
            sigma,
        } => Row {
            logq: rdp::logq_gnmax(row, sigma),
            logpr: rdp::logpr_answered(threshold, sigma1, row),
        },
        Aggregator::Laplace { scale } => Row {
            logq: rdp::logq_laplace(row, scale),
            logpr: 0.0,
        },
    }
}

/// A query's RDP as a function of the order, data-dependent or not; for Confident-GNMax the
/// threshold step plus the argmax step weighted by the chance it runs (as the reference).
fn query_rdp(agg: &Aggregator, r: Row, independent: bool) -> Box<dyn Fn(f64) -> f64> {
    let pr = r.logpr.exp();
    match *agg {
        Aggregator::Gnmax { sigma } | Aggregator::Confident { sigma, .. } => {
            let sigma1 = match *agg {
                Aggregator::Confident { sigma1, .. } => Some(sigma1),
                _ => None,
            };
            if independent {
                return Box::new(move |a| {
                    sigma1.map_or(0.0, |s1| rdp::rdp_threshold_independent(s1, a))
                        + pr * rdp::rdp_gnmax_independent(sigma, a)
                });
            }
            // The order-free parts of the bounds once per query.
            let step2 = rdp::GnmaxBound::new(r.logq, sigma);
            let step1 = sigma1.map(|s1| rdp::threshold_bound(r.logpr, s1));
            Box::new(move |a| step1.map_or(0.0, |s| s.at(a)) + pr * step2.at(a))
        }
        Aggregator::Laplace { scale } => {
            let eps = 2.0 / scale;
            if independent {
                Box::new(move |a| (0.5 * eps * eps * a).min(eps))
            } else {
                Box::new(move |a| rdp::rdp_pure_eps(r.logq, eps, a))
            }
        }
    }
}

/// ε = min_α RDP(α) − ln δ/(α − 1) (the reference's conversion; the first best order).
fn classic_epsilon(curve: &RdpCurve, delta: f64) -> (f64, f64) {
    let mut best = (f64::INFINITY, f64::NAN);
    for (&a, &r) in curve.orders().iter().zip(curve.values()) {
        let e = r - delta.ln() / (a - 1.0);
        if e < best.0 {
            best = (e, a);
        }
    }
    best
}

/// Compose every query on a curve at the reference's orders; also Σ Pr[answered].
fn compose(agg: &Aggregator, rows: &[Vec<f64>], independent: bool) -> Result<(RdpCurve, f64)> {
    let mut curve = RdpCurve::with_orders(reference_orders())?;
    let orders = curve.orders().to_vec();
    let mut total = vec![0.0; orders.len()];
    let mut answered = 0.0;
    for row in rows {
        let r = row_stats(agg, row);
        let rdp = query_rdp(agg, r, independent);
        for (t, &a) in total.iter_mut().zip(&orders) {
            *t += rdp(a);
        }
        answered += r.logpr.exp();
    }
    curve.add(&total)?;
    Ok((curve, answered))
}

/// np.isclose(a, b): |a − b| ≤ 1e-8 + 1e-5·|b|.
fn isclose(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-8 + 1e-5 * b.abs()
}

/// Analyse the answers to the first queries of `votes`.
pub fn analyse(votes: &Votes, settings: &Settings) -> Result<Analysis> {
    let agg = settings.aggregator;
    agg.check()?;
    crate::privacy::accountant::check_delta(settings.delta)?;
    let votes = match settings.queries {
        Some(n) => votes.head(n)?,
        None => votes.clone(),
    };
    let rows: Vec<Vec<f64>> = votes
        .rows()
        .map(|r| r.iter().map(|&c| f64::from(c)).collect())
        .collect();
    let delta = settings.delta;
    let (dependent, answered) = compose(&agg, &rows, false)?;
    let (independent, _) = compose(&agg, &rows, true)?;
    let (eps_dd, order) = classic_epsilon(&dependent, delta);
    let (eps_di, order_di) = classic_epsilon(&independent, delta);
    if !(eps_dd.is_finite() && eps_di.is_finite()) {
        return Err(Error::failed("PATE analysis", "no order gives a finite ε"));
    }
    let teachers = votes.teachers() as usize;
    let mut out = Analysis {
        aggregator: agg,
        teachers: votes.teachers(),
        classes: votes.classes(),
        queries: votes.queries(),
        answered,
        delta,
        order,
        epsilon_data_independent: eps_di,
        order_data_independent: order_di,
        epsilon_data_dependent: eps_dd,
        epsilon_data_independent_tight: independent.epsilon(delta)?.0,
        epsilon_data_dependent_tight: dependent.epsilon(delta)?.0,
        data_independent_threshold: true,
        data_independent_argmax: true,
        conditions_hold: false,
        smooth_sensitivity: None,
    };
    let (sigma, step1) = match agg {
        Aggregator::Gnmax { sigma } => (sigma, None),
        Aggregator::Confident {
            threshold,
            sigma1,
            sigma,
        } => (sigma, Some((threshold, sigma1))),
        Aggregator::Laplace { .. } => return Ok(out),
    };
    // Is the data-independent bound always the tighter one at this order? For the threshold
    // step it suffices to look at the extreme largest counts 0 and N; for GNMax at unanimity.
    if let Some((t, s1)) = step1 {
        let ind = rdp::rdp_threshold_independent(s1, order);
        out.data_independent_threshold = [0.0, teachers as f64].iter().all(|&m| {
            isclose(
                rdp::rdp_threshold(rdp::logpr_answered(t, s1, &[m]), s1, order),
                ind,
            )
        });
    }
    let mut unanimous = vec![0.0; votes.classes()];
    unanimous[0] = teachers as f64;
    out.data_independent_argmax = isclose(
        rdp::rdp_gnmax(rdp::logq_gnmax(&unanimous, sigma), sigma, order),
        rdp::rdp_gnmax_independent(sigma, order),
    );
    if out.data_independent_threshold && out.data_independent_argmax {
        out.conditions_hold = true;
        return Ok(out);
    }
    let g = Gnmax::new(sigma, order, votes.classes());
    out.conditions_hold = smooth::conditions_hold(&g);
    if !out.conditions_hold {
        return Ok(out);
    }
    out.smooth_sensitivity = Some(release(&out, &g, step1, &rows, settings.seed));
    Ok(out)
}

/// The smooth sensitivity of the composed data-dependent RDP at the analysis' order, the
/// best β, and a seeded noisy release.
fn release(
    a: &Analysis,
    g: &Gnmax,
    step1: Option<(f64, f64)>,
    rows: &[Vec<f64>],
    seed: u64,
) -> SmoothRelease {
    let (order, n) = (a.order, a.teachers as usize);
    let list = step1.map(|(t, s1)| smooth::threshold_rdp_list(n, t, s1, order));
    let mut rdp_cum = 0.0;
    let mut ls_cum = vec![0.0; n];
    for row in rows {
        let (mut rdp1, mut pr) = (0.0, 1.0);
        if let (Some((t, s1)), Some(list)) = (step1, &list) {
            let lp = rdp::logpr_answered(t, s1, row);
            pr = lp.exp();
            if a.data_independent_threshold {
                rdp1 = rdp::rdp_threshold_independent(s1, order);
            } else {
                rdp1 = rdp::rdp_threshold(lp, s1, order);
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let ls = smooth::threshold_sensitivity_at_distance(max, n, list);
                for (c, l) in ls_cum.iter_mut().zip(ls) {
                    *c += l;
                }
            }
        }
        let rdp2 = if a.data_independent_argmax {
            rdp::rdp_gnmax_independent(g.sigma, order)
        } else {
            let ls = g.sensitivity_at_distance(row, n);
            for (c, l) in ls_cum.iter_mut().zip(ls) {
                *c += pr * l;
            }
            rdp::rdp_gnmax(rdp::logq_gnmax(row, g.sigma), g.sigma, order)
        };
        rdp_cum += rdp1 + pr * rdp2;
    }
    // β over numpy's arange(0.3/α, 0.495/α, 0.01/α); σ_ss minimises α·e^{2β}/σ² + 2·SS·σ.
    let (start, stop, step) = (0.3 / order, 0.495 / order, 0.01 / order);
    let count = ((stop - start) / step).ceil() as usize;
    let mut best: Option<(f64, f64, f64, f64)> = None; // cost, β, ss, σ_ss
    for i in 0..count {
        let beta = start + i as f64 * step;
        let ss = smooth::discounted_max(beta, &ls_cum);
        let sigma_ss = (order * (2.0 * beta).exp() / ss).cbrt();
        let cost = rdp_cum + smooth::gnss_rdp(beta, sigma_ss, order) + 2.0 * ss * sigma_ss;
        if best.is_none_or(|b| cost < b.0) {
            best = Some((cost, beta, ss, sigma_ss));
        }
    }
    let (_, beta, ss, sigma_ss) = best.unwrap_or((f64::NAN, f64::NAN, f64::NAN, f64::NAN));
    let release_cost = smooth::gnss_rdp(beta, sigma_ss, order);
    let epsilon_total = rdp_cum - a.delta.ln() / (order - 1.0) + release_cost;
    let noise_std = ss * sigma_ss;
    SmoothRelease {
        beta,
        ss,
        sigma_ss,
        noise_std,
        release_cost,
        epsilon_total,
        epsilon_released: epsilon_total + noise_std * SplitMix64::new(seed).normal(),
        seed,
    }
}
