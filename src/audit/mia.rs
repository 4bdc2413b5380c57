//! The membership-inference attacks (MIA): per-example statistics the threshold attacks
//! rank by, and the logistic-regression attack trained with cross-validation.
//!
//! All scores are *membership scores* (higher = more likely a member). Only their order
//! matters for the ROC curve, so a threshold attack may use any strictly increasing function
//! of its statistic; logarithms are used where they keep resolution that f64 would lose
//! near 1 (a confident member's max probability rounds to 1.0, its log does not).
use crate::rng::SplitMix64 as Rng;

/// Logarithms of probabilities are clipped below at ln(1e-30), as TF Privacy's `_log_value`.
const LOG_FLOOR: f64 = -69.07755278982137; // ln(1e-30)

/// Per-example statistics of a model's output.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleStats {
    /// Cross-entropy loss −ln p_y (from logits: log-sum-exp − z_y, exact, unclipped; from
    /// probabilities: −ln max(p_y, 1e-30)).
    pub loss: f64,
    /// ln max_i p_i (monotone in the confidence max_i p_i).
    pub log_confidence: f64,
    /// Song & Mittal's modified prediction entropy (arXiv:2003.10595, eq. 8), what TF
    /// Privacy's threshold-entropy attack uses when labels are known:
    /// −(1−p_y) ln p_y − Σ_{i≠y} p_i ln(1−p_i), logs clipped at ln(1e-30).
    pub entropy: f64,
    /// argmax_i p_i (the first on ties).
    pub predicted: usize,
}

/// Log-probabilities of one row: from logits by a stable log-softmax, from probabilities
/// by a clipped log.
pub fn log_probs(row: &[f64], logits: bool) -> Vec<f64> {
    if logits {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|&z| (z - m).exp()).sum::<f64>().ln();
        row.iter().map(|&z| z - lse).collect()
    } else {
        row.iter().map(|&p| p.max(1e-30).ln()).collect()
    }
}

/// The statistics of one example with output row `row` and true label `y`.
pub fn example_stats(row: &[f64], y: usize, logits: bool) -> ExampleStats {
    let lp = log_probs(row, logits);
    let p: Vec<f64> = if logits {
        lp.iter().map(|l| l.exp()).collect()
    } else {
        row.to_vec()
    };
    let mut predicted = 0;
    for (i, v) in lp.iter().enumerate() {
        if *v > lp[predicted] {
            predicted = i;
        }
    }
    // 1 − p_i, accurately: ln_1p(−p_i) for small p_i; the sum of the others for the (at
    // most one) p_i ≥ 0.5, where 1 − p_i would cancel.
    let one_minus = |i: usize| -> f64 {
        if p[i] < 0.5 {
            1.0 - p[i]
        } else {
            p.iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, v)| v)
                .sum()
        }
    };
    let ln_one_minus = |i: usize| -> f64 {
        if p[i] < 0.5 {
            (-p[i]).ln_1p().max(LOG_FLOOR)
        } else {
            one_minus(i).max(1e-30).ln()
        }
    };
    let mut entropy = -one_minus(y) * lp[y].max(LOG_FLOOR);
    for (i, pi) in p.iter().enumerate() {
        if i != y {
            entropy -= pi * ln_one_minus(i);
        }
    }
    ExampleStats {
        loss: if logits {
            -lp[y]
        } else {
            -lp[y].max(LOG_FLOOR)
        },
        log_confidence: lp[predicted],
        entropy,
        predicted,
    }
}

/// The logistic-regression attack's features of one example: the probability vector
/// sorted in decreasing order, then the loss.
pub fn lr_features(row: &[f64], loss: f64, logits: bool) -> Vec<f64> {
    let mut p: Vec<f64> = if logits {
        log_probs(row, true).iter().map(|l| l.exp()).collect()
    } else {
        row.to_vec()
    };
    p.sort_by(|a, b| b.total_cmp(a));
    p.push(loss);
    p
}

/// L2-regularized logistic regression, the model scikit-learn's
/// `LogisticRegression(C=c)` fits: minimize ½‖w‖² + C Σ log(1 + exp(−ỹ_i (w·x_i + b)))
/// with ỹ = ±1 and the intercept b not penalized. Fitted by Newton's method with a
/// backtracking line search (deterministic; converges to the unique optimum).
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticRegression {
    pub coef: Vec<f64>,
    pub intercept: f64,
}

/// log(1 + exp(t)), without overflow.
fn softplus(t: f64) -> f64 {
    if t > 0.0 {
        t + (-t).exp().ln_1p()
    } else {
        t.exp().ln_1p()
    }
}

fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

/// Solve the symmetric positive definite system `a x = b` (a is d×d row-major) by Cholesky.
fn cholesky_solve(a: &[f64], b: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= l[i * d + k] * l[j * d + k];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    let mut y = vec![0.0; d];
    for i in 0..d {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * d + k] * y[k];
        }
        y[i] = s / l[i * d + i];
    }
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        let mut s = y[i];
        for k in i + 1..d {
            s -= l[k * d + i] * x[k];
        }
        x[i] = s / l[i * d + i];
    }
    Some(x)
}

impl LogisticRegression {
    /// Fit on `x` (n rows of `d` features, row-major) with labels `y` (true = positive).
    pub fn fit(x: &[f64], d: usize, y: &[bool], c: f64) -> LogisticRegression {
        let n = y.len();
        assert_eq!(x.len(), n * d, "x must hold n×d values");
        let m = d + 1; // weights, then the intercept
        let mut theta = vec![0.0; m];
        let margin = |theta: &[f64], i: usize| -> f64 {
            let row = &x[i * d..(i + 1) * d];
            row.iter().zip(theta).map(|(a, b)| a * b).sum::<f64>() + theta[d]
        };
        let objective = |theta: &[f64]| -> f64 {
            let reg: f64 = theta[..d].iter().map(|w| w * w).sum::<f64>() * 0.5;
            let loss: f64 = (0..n)
                .map(|i| {
                    let t = margin(theta, i);
                    softplus(if y[i] { -t } else { t })
                })
                .sum();
            reg + c * loss
        };
        let mut f = objective(&theta);
        for _ in 0..100 {
            let mut grad = vec![0.0; m];
            let mut hess = vec![0.0; m * m];
            for i in 0..n {
                let row = &x[i * d..(i + 1) * d];
                let p = sigmoid(margin(&theta, i));
                let r = c * (p - if y[i] { 1.0 } else { 0.0 });
                let s = c * p * (1.0 - p);
                for a in 0..m {
                    let xa = if a < d { row[a] } else { 1.0 };
                    grad[a] += r * xa;
                    for b in 0..=a {
                        let xb = if b < d { row[b] } else { 1.0 };
                        hess[a * m + b] += s * xa * xb;
                    }
                }
            }
            for a in 0..m {
                for b in 0..a {
                    hess[b * m + a] = hess[a * m + b];
                }
            }
            for a in 0..d {
                grad[a] += theta[a];
                hess[a * m + a] += 1.0;
            }
            // Keep the intercept's direction positive definite when every p is 0 or 1.
            hess[m * m - 1] += 1e-12 * (1.0 + c * n as f64);
            let gmax = grad.iter().fold(0.0f64, |a, g| a.max(g.abs()));
            if gmax <= 1e-10 * (1.0 + c * n as f64) {
                break;
            }
            let Some(step) = cholesky_solve(&hess, &grad, m) else {
                break;
            };
            let decrease: f64 = step.iter().zip(&grad).map(|(s, g)| s * g).sum();
            let mut alpha = 1.0;
            let mut accepted = false;
            for _ in 0..50 {
                let cand: Vec<f64> = theta
                    .iter()
                    .zip(&step)
                    .map(|(t, s)| t - alpha * s)
                    .collect();
                let fc = objective(&cand);
                if fc <= f - 1e-4 * alpha * decrease {
                    theta = cand;
                    f = fc;
                    accepted = true;
                    break;
                }
                alpha *= 0.5;
            }
            let size = theta.iter().fold(1.0f64, |a, t| a.max(t.abs()));
            let moved = step.iter().fold(0.0f64, |a, s| a.max((alpha * s).abs()));
            if !accepted || moved <= 1e-15 * size {
                break;
            }
        }
        LogisticRegression {
            coef: theta[..d].to_vec(),
            intercept: theta[d],
        }
    }

    /// w·x + b of one example (the log-odds of the positive class).
    pub fn decision(&self, row: &[f64]) -> f64 {
        row.iter().zip(&self.coef).map(|(a, b)| a * b).sum::<f64>() + self.intercept
    }

    /// The probability of the positive class of one example.
    pub fn predict_proba(&self, row: &[f64]) -> f64 {
        sigmoid(self.decision(row))
    }
}

/// Standardization fitted on training rows: (x − mean) / std per feature (population std;
/// a constant feature is only centred), as scikit-learn's `StandardScaler`.
struct Scaler {
    mean: Vec<f64>,
    std: Vec<f64>,
}

impl Scaler {
    fn fit(rows: &[&[f64]], d: usize) -> Scaler {
        let n = rows.len().max(1) as f64;
        let mut mean = vec![0.0; d];
        for r in rows {
            for (m, v) in mean.iter_mut().zip(r.iter()) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0.0; d];
        for r in rows {
            for ((s, v), m) in var.iter_mut().zip(r.iter()).zip(&mean) {
                *s += (v - m) * (v - m);
            }
        }
        let std = var
            .into_iter()
            .map(|s| {
                let sd = (s / n).sqrt();
                if sd > 0.0 && sd.is_finite() {
                    sd
                } else {
                    1.0
                }
            })
            .collect();
        Scaler { mean, std }
    }

    fn apply(&self, row: &[f64], out: &mut Vec<f64>) {
        out.extend(
            row.iter()
                .zip(&self.mean)
                .zip(&self.std)
                .map(|((v, m), s)| (v - m) / s),
        );
    }
}

/// Settings of the logistic-regression attack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSettings {
    /// Cross-validation folds (at least 2; fewer when a class has fewer examples).
    pub folds: usize,
    /// Inverse L2 regularization strength, as scikit-learn's `C`.
    pub c: f64,
    pub seed: u64,
}

/// Membership scores of the logistic-regression attack, with TF Privacy's
/// `_run_trained_attack` protocol: subsample the larger of members / non-members to the size
/// of the smaller (seeded), split that balanced set into `folds` stratified folds, and for
/// each fold train on the others (features standardized on them) and score the fold with the
/// attack's log-odds. Returns the held-out scores of the balanced members and non-members
/// (equal counts, in no particular order), or `None` when there are fewer than 2 of either
/// (nothing to cross-validate).
///
/// Unlike TF Privacy, the examples left out by the balancing are not scored (TF Privacy
/// scores them with the last fold's model): mixing one model's scores for most of the larger
/// class with five models' scores for the rest shifts the ROC curve by the differences
/// between the models, which dominates when there is little membership signal (AUCs of 0.35
/// on a model that leaks nothing).
pub fn lr_scores(
    members: &[&[f64]],
    nonmembers: &[&[f64]],
    settings: &LrSettings,
) -> Option<(Vec<f64>, Vec<f64>)> {
    let balanced = members.len().min(nonmembers.len());
    let k = settings.folds.min(balanced);
    if k < 2 {
        return None;
    }
    let d = members[0].len();
    let mut rng = Rng::new(settings.seed);
    let perm_m = rng.permutation(members.len());
    let perm_n = rng.permutation(nonmembers.len());
    // (is member, index in its set, fold or None when left out)
    let mut items: Vec<(bool, usize, Option<usize>)> = Vec::new();
    for (is_member, perm) in [(true, &perm_m), (false, &perm_n)] {
        for (pos, &i) in perm.iter().enumerate() {
            items.push((is_member, i, (pos < balanced).then_some(pos % k)));
        }
    }
    let row = |&(m, i, _): &(bool, usize, Option<usize>)| -> &[f64] {
        if m {
            members[i]
        } else {
            nonmembers[i]
        }
    };
    let mut score_m = Vec::with_capacity(balanced);
    let mut score_n = Vec::with_capacity(balanced);
    let mut buf = Vec::with_capacity(d);
    for fold in 0..k {
        let train: Vec<&(bool, usize, Option<usize>)> = items
            .iter()
            .filter(|it| it.2.is_some_and(|f| f != fold))
            .collect();
        let rows: Vec<&[f64]> = train.iter().map(|it| row(it)).collect();
        let scaler = Scaler::fit(&rows, d);
        let mut x = Vec::with_capacity(rows.len() * d);
        for r in &rows {
            scaler.apply(r, &mut x);
        }
        let y: Vec<bool> = train.iter().map(|it| it.0).collect();
        let model = LogisticRegression::fit(&x, d, &y, settings.c);
        for it in items.iter().filter(|it| it.2 == Some(fold)) {
            buf.clear();
            scaler.apply(row(it), &mut buf);
            let s = model.decision(&buf);
            if it.0 {
                score_m.push(s);
            } else {
                score_n.push(s);
            }
        }
    }
    Some((score_m, score_n))
}
