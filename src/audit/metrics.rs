//! ROC curve and the membership-inference metrics computed on it.
//!
//! Members are the positive class: an attack assigns every example a *membership score*
//! (higher = more likely a member), and a threshold `t` predicts "member" for scores ≥ `t`.
//!
//! The curve is computed exactly like scikit-learn's `roc_curve(y, s,
//! drop_intermediate=False)`: one point per distinct score (tied scores move together), in
//! decreasing order of score, preceded by the point (0, 0) (threshold +∞). The rates are the
//! integer counts divided by the class sizes in f64, the same operations scikit-learn does,
//! so the points agree bit for bit.
//!
//! * AUC: trapezoid rule on that curve (= `roc_auc_score`), computed from the integer counts
//!   (one division at the end, so it is exact up to that rounding).
//! * attacker advantage: max over the curve's points of TPR − FPR (≥ 0, thanks to (0, 0));
//!   TF Privacy reports max |TPR − FPR|, which differs only for an attack worse than chance.
//! * TPR at FPR ≤ α: the largest TPR among the curve's points whose FPR ≤ α — no
//!   interpolation between points. With fewer than 1/α non-members this is the TPR at
//!   FPR = 0: the fraction of members scored strictly above every non-member.
//! * balanced accuracy: max over the points of (TPR + 1 − FPR) / 2 = (1 + advantage) / 2.

/// A ROC curve: `fpr[i]`, `tpr[i]` are the rates when predicting "member" for scores
/// ≥ `thresholds[i]` (`thresholds[0]` = +∞, the point (0, 0)).
#[derive(Debug, Clone, PartialEq)]
pub struct Roc {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    pub thresholds: Vec<f64>,
    /// Members (positives) scored ≥ each threshold.
    pub tps: Vec<u64>,
    /// Non-members (negatives) scored ≥ each threshold.
    pub fps: Vec<u64>,
    pub n_members: usize,
    pub n_nonmembers: usize,
}

/// The ROC curve of an attack that scores members `scores_members` and non-members
/// `scores_nonmembers` (higher = more likely a member). Scores must not be NaN. With no
/// members (non-members) the TPRs (FPRs) are NaN, as in scikit-learn.
pub fn roc(scores_members: &[f64], scores_nonmembers: &[f64]) -> Roc {
    let mut all: Vec<(f64, bool)> = scores_members
        .iter()
        .map(|&s| (s, true))
        .chain(scores_nonmembers.iter().map(|&s| (s, false)))
        .collect();
    // Decreasing score; the order inside a group of ties does not matter.
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut tps = vec![0u64];
    let mut fps = vec![0u64];
    let mut thresholds = vec![f64::INFINITY];
    let (mut tp, mut fp) = (0u64, 0u64);
    for (i, &(s, member)) in all.iter().enumerate() {
        if member {
            tp += 1;
        } else {
            fp += 1;
        }
        // The last of a run of equal scores closes a point (-0.0 == 0.0, as in numpy).
        if i + 1 == all.len() || all[i + 1].0 != s {
            tps.push(tp);
            fps.push(fp);
            thresholds.push(s);
        }
    }
    let rate = |counts: &[u64], total: usize| -> Vec<f64> {
        counts
            .iter()
            .map(|&c| {
                if total == 0 {
                    f64::NAN
                } else {
                    c as f64 / total as f64
                }
            })
            .collect()
    };
    Roc {
        fpr: rate(&fps, scores_nonmembers.len()),
        tpr: rate(&tps, scores_members.len()),
        thresholds,
        tps,
        fps,
        n_members: scores_members.len(),
        n_nonmembers: scores_nonmembers.len(),
    }
}

impl Roc {
    /// Area under the curve by the trapezoid rule (= scikit-learn's `roc_auc_score`).
    pub fn auc(&self) -> f64 {
        if self.n_members == 0 || self.n_nonmembers == 0 {
            return f64::NAN;
        }
        // Twice the area in units of one member × one non-member: Σ Δfp · (tp_i + tp_{i+1}),
        // an integer (at most 2·P·N).
        let twice: u128 = self
            .fps
            .windows(2)
            .zip(self.tps.windows(2))
            .map(|(f, t)| (f[1] - f[0]) as u128 * (t[0] + t[1]) as u128)
            .sum();
        twice as f64 / (2.0 * self.n_members as f64 * self.n_nonmembers as f64)
    }

    /// max over the points of TPR − FPR.
    pub fn advantage(&self) -> f64 {
        self.tpr
            .iter()
            .zip(&self.fpr)
            .map(|(t, f)| t - f)
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// The largest TPR among the points with FPR ≤ `max_fpr` (no interpolation).
    pub fn tpr_at_fpr(&self, max_fpr: f64) -> f64 {
        if self.n_members == 0 || self.n_nonmembers == 0 {
            return f64::NAN;
        }
        self.tpr
            .iter()
            .zip(&self.fpr)
            .filter(|(_, &f)| f <= max_fpr)
            .map(|(&t, _)| t)
            .fold(0.0, f64::max)
    }

    /// max over the points of (TPR + 1 − FPR) / 2.
    pub fn balanced_accuracy(&self) -> f64 {
        self.tpr
            .iter()
            .zip(&self.fpr)
            .map(|(t, f)| (t + 1.0 - f) / 2.0)
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// The points (FPR, TPR) thinned for plotting on log-log axes: a point is kept when it
    /// moves at least 1/500 of a decade away from the last kept one, with rates below `lo`
    /// counted as `lo` (the first and last points are always kept; values are unchanged).
    pub fn plot_points(&self, lo: f64) -> Vec<(f64, f64)> {
        let lg = |v: f64| v.max(lo).log10();
        let mut out: Vec<(f64, f64)> = Vec::new();
        let n = self.fpr.len();
        for i in 0..n {
            let p = (self.fpr[i], self.tpr[i]);
            if !(p.0.is_finite() && p.1.is_finite()) {
                continue;
            }
            let keep = match out.last() {
                None => true,
                Some(&(fx, ty)) => {
                    i + 1 == n || (lg(p.0) - lg(fx)).abs() + (lg(p.1) - lg(ty)).abs() >= 0.002
                }
            };
            if keep {
                out.push(p);
            }
        }
        out
    }
}

/// The metrics reported for one attack on one slice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    pub auc: f64,
    pub advantage: f64,
    pub tpr_at_fpr_0_001: f64,
    pub tpr_at_fpr_0_01: f64,
    pub balanced_accuracy: f64,
}

impl Metrics {
    pub fn of(roc: &Roc) -> Metrics {
        Metrics {
            auc: roc.auc(),
            advantage: roc.advantage(),
            tpr_at_fpr_0_001: roc.tpr_at_fpr(0.001),
            tpr_at_fpr_0_01: roc.tpr_at_fpr(0.01),
            balanced_accuracy: roc.balanced_accuracy(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sklearn_docstring_example() {
        // roc_curve([1, 1, 2, 2], [0.1, 0.4, 0.35, 0.8], pos_label=2)
        let r = roc(&[0.35, 0.8], &[0.1, 0.4]);
        assert_eq!(r.fpr, vec![0.0, 0.0, 0.5, 0.5, 1.0]);
        assert_eq!(r.tpr, vec![0.0, 0.5, 0.5, 1.0, 1.0]);
        assert_eq!(r.thresholds[1..], [0.8, 0.4, 0.35, 0.1]);
        assert_eq!(r.auc(), 0.75);
        assert_eq!(r.advantage(), 0.5);
        assert_eq!(r.balanced_accuracy(), 0.75);
        assert_eq!(r.tpr_at_fpr(0.01), 0.5);
    }

    #[test]
    fn ties_make_one_point() {
        let r = roc(&[1.0, 1.0], &[1.0, 0.0]);
        assert_eq!(r.fpr, vec![0.0, 0.5, 1.0]);
        assert_eq!(r.tpr, vec![0.0, 1.0, 1.0]);
        assert_eq!(r.auc(), 0.75);
        assert_eq!(r.tpr_at_fpr(0.1), 0.0);
    }
}
