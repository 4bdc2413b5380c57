//! Aggregation of per-image results into per-setting rows, with 95% Wilson intervals.
use super::Row;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// 95% Wilson score interval for `k` successes out of `n`.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let center = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// One line of `summary.json` / `summary.csv`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SummaryRow {
    pub attack: String,
    /// Budget, pixel space 0..1, in the norm `norm`.
    pub eps: f64,
    #[serde(default)]
    pub norm: crate::attacks::Norm,
    pub defense: String,
    pub mode: String,
    /// Images the success rate is computed over: those the (defended) model classifies
    /// correctly when clean.
    pub n: usize,
    pub successes: usize,
    pub success_rate: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// All images of the run.
    pub n_images: usize,
    /// Clean accuracy through the defense, over all images.
    pub clean_accuracy: f64,
    /// Accuracy on the attacked images through the defense, over all images.
    pub robust_accuracy: f64,
    /// Success rate over all images (misclassified ones included).
    pub success_rate_all: f64,
    /// Mean L∞ / L2 (pixel space) of the successful perturbations on correct images.
    pub mean_linf: Option<f64>,
    pub mean_l2: Option<f64>,
    /// Mean model queries per image (forward passes).
    pub mean_queries: f64,
    /// Images of the run (readable ones) with no row for this setting: only a partial merge
    /// has any (absent from the JSON when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missing: usize,
    /// With a detector (absent without one): see [`Detection`].
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub detection: Option<Detection>,
    /// For a cascade attack (AutoAttack; absent otherwise): see [`Cascade`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cascade: Option<Cascade>,
}

/// A cascade's log as AutoAttack prints it: after each stage, the images it broke and the
/// robust accuracy so far (over all images of the setting), with the final robust accuracy's
/// 95% Wilson interval and the sanity checks on the attacked images.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cascade {
    pub stages: Vec<CascadeStage>,
    pub robust_ci_low: f64,
    pub robust_ci_high: f64,
    /// The largest perturbation of any attacked image in the budget's norm (≤ eps).
    pub max_perturbation: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CascadeStage {
    pub stage: String,
    pub broken: usize,
    pub robust_accuracy: f64,
}

/// The cascade log of a setting's rows, when any carries a stage (the attack is a cascade).
fn cascade(g: &[&Row], stages: &[String]) -> Option<Cascade> {
    if stages.is_empty() {
        return None;
    }
    let n = g.len();
    let mut left = n;
    let stages = stages
        .iter()
        .map(|name| {
            let broken = g
                .iter()
                .filter(|r| r.broken_by.as_deref() == Some(name.as_str()))
                .count();
            left -= broken.min(left);
            CascadeStage {
                stage: name.clone(),
                broken,
                robust_accuracy: if n == 0 { 0.0 } else { left as f64 / n as f64 },
            }
        })
        .collect();
    let robust = g.iter().filter(|r| r.adv_pred == r.label).count();
    let (lo, hi) = wilson(robust, n);
    let max_perturbation = g
        .iter()
        .map(|r| match r.norm {
            crate::attacks::Norm::Linf => r.linf,
            crate::attacks::Norm::L2 => r.l2,
        })
        .fold(0.0, f64::max);
    Some(Cascade {
        stages,
        robust_ci_low: lo,
        robust_ci_high: hi,
        max_perturbation,
    })
}

/// A setting's detection statistics, over the rows that carry detector scores.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Detection {
    /// Successful adversarial examples (on correct images) the detector flags, and their
    /// fraction of `successes`, with its 95% Wilson interval (0 of 0 gives rate 0, CI [0, 1]).
    pub detected: usize,
    pub detection_rate: f64,
    pub detection_ci_low: f64,
    pub detection_ci_high: f64,
    /// Clean images flagged, over all images of the setting (each image once).
    pub clean_flagged: usize,
    pub clean_fpr: f64,
    pub clean_fpr_ci_low: f64,
    pub clean_fpr_ci_high: f64,
    /// Successes the detector does not flag (the attacker's real success), over `n`.
    pub undetected_successes: usize,
    pub undetected_success_rate: f64,
    pub undetected_ci_low: f64,
    pub undetected_ci_high: f64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

pub const CSV_HEADER: &str = "attack,eps,norm,defense,mode,n,successes,success_rate,ci_low,ci_high,n_images,clean_accuracy,robust_accuracy,success_rate_all,mean_linf,mean_l2,mean_queries";

/// The columns [`SummaryRow::csv`] appends when the run has a detector.
pub const CSV_DETECTION_HEADER: &str = ",detected,detection_rate,detection_ci_low,detection_ci_high,clean_flagged,clean_fpr,clean_fpr_ci_low,clean_fpr_ci_high,undetected_successes,undetected_success_rate,undetected_ci_low,undetected_ci_high";

impl SummaryRow {
    pub fn csv(&self) -> String {
        let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
        let quote = |s: &str| {
            if s.contains(',') || s.contains('"') {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        format!(
            "{},{:.6},{},{},{},{},{},{:.6},{:.6},{:.6},{},{:.6},{:.6},{:.6},{},{},{:.2}",
            quote(&self.attack),
            self.eps,
            self.norm.name(),
            quote(&self.defense),
            self.mode,
            self.n,
            self.successes,
            self.success_rate,
            self.ci_low,
            self.ci_high,
            self.n_images,
            self.clean_accuracy,
            self.robust_accuracy,
            self.success_rate_all,
            opt(self.mean_linf),
            opt(self.mean_l2),
            self.mean_queries
        ) + &self.detection.as_ref().map_or(String::new(), |d| {
            format!(
                ",{},{:.6},{:.6},{:.6},{},{:.6},{:.6},{:.6},{},{:.6},{:.6},{:.6}",
                d.detected,
                d.detection_rate,
                d.detection_ci_low,
                d.detection_ci_high,
                d.clean_flagged,
                d.clean_fpr,
                d.clean_fpr_ci_low,
                d.clean_fpr_ci_high,
                d.undetected_successes,
                d.undetected_success_rate,
                d.undetected_ci_low,
                d.undetected_ci_high
            )
        })
    }
}

/// Group rows by setting (attack, eps, defense, mode) in a stable order: the order of
/// `attacks`, `eps`, `defenses` as configured, non-adaptive before adaptive.
pub fn summarize(
    rows: &[Row],
    attacks: &[String],
    eps: &[f64],
    defenses: &[String],
) -> Vec<SummaryRow> {
    let mut groups: BTreeMap<(usize, usize, usize, usize), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        let a = attacks
            .iter()
            .position(|x| *x == r.attack)
            .unwrap_or(usize::MAX);
        let e = eps
            .iter()
            .position(|x| super::eps_key(*x) == super::eps_key(r.eps))
            .unwrap_or(usize::MAX);
        let d = defenses
            .iter()
            .position(|x| *x == r.defense)
            .unwrap_or(usize::MAX);
        let m = usize::from(r.mode != "non-adaptive");
        groups.entry((a, m, d, e)).or_default().push(r);
    }
    groups
        .into_values()
        .map(|mut g| {
            g.sort_by(|x, y| x.file.cmp(&y.file));
            let first = g[0];
            let correct: Vec<&&Row> = g.iter().filter(|r| r.clean_pred == r.label).collect();
            let succ: Vec<&&&Row> = correct.iter().filter(|r| r.success).collect();
            let (lo, hi) = wilson(succ.len(), correct.len());
            let frac = |k: usize, n: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
            let mean = |it: Vec<f64>| {
                if it.is_empty() {
                    None
                } else {
                    Some(it.iter().sum::<f64>() / it.len() as f64)
                }
            };
            SummaryRow {
                attack: first.attack.clone(),
                eps: first.eps,
                norm: first.norm,
                defense: first.defense.clone(),
                mode: first.mode.clone(),
                n: correct.len(),
                successes: succ.len(),
                success_rate: frac(succ.len(), correct.len()),
                ci_low: lo,
                ci_high: hi,
                n_images: g.len(),
                clean_accuracy: frac(correct.len(), g.len()),
                robust_accuracy: frac(g.iter().filter(|r| r.adv_pred == r.label).count(), g.len()),
                success_rate_all: frac(g.iter().filter(|r| r.success).count(), g.len()),
                mean_linf: mean(succ.iter().map(|r| r.linf).collect()),
                mean_l2: mean(succ.iter().map(|r| r.l2).collect()),
                mean_queries: g.iter().map(|r| r.queries as f64).sum::<f64>() / g.len() as f64,
                missing: 0,
                detection: detection(&g),
                cascade: cascade(&g, &crate::attacks::registry::stages(&first.attack)),
            }
        })
        .collect()
}

/// The detection statistics of a setting's rows, when every row carries detector scores.
fn detection(g: &[&Row]) -> Option<Detection> {
    if g.is_empty()
        || g.iter()
            .any(|r| r.flagged.is_none() || r.clean_flagged.is_none())
    {
        return None;
    }
    let frac = |k: usize, n: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    let correct: Vec<&&Row> = g.iter().filter(|r| r.clean_pred == r.label).collect();
    let succ = correct.iter().filter(|r| r.success).count();
    let detected = (correct.iter())
        .filter(|r| r.success && r.flagged == Some(true))
        .count();
    let clean_flagged = g.iter().filter(|r| r.clean_flagged == Some(true)).count();
    let undetected = succ - detected;
    let (dl, dh) = wilson(detected, succ);
    let (fl, fh) = wilson(clean_flagged, g.len());
    let (ul, uh) = wilson(undetected, correct.len());
    Some(Detection {
        detected,
        detection_rate: frac(detected, succ),
        detection_ci_low: dl,
        detection_ci_high: dh,
        clean_flagged,
        clean_fpr: frac(clean_flagged, g.len()),
        clean_fpr_ci_low: fl,
        clean_fpr_ci_high: fh,
        undetected_successes: undetected,
        undetected_success_rate: frac(undetected, correct.len()),
        undetected_ci_low: ul,
        undetected_ci_high: uh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_reference_values() {
        // statsmodels proportion_confint(k, n, method="wilson")
        let (lo, hi) = wilson(8, 10);
        assert!(
            (lo - 0.490_162).abs() < 1e-5 && (hi - 0.943_318).abs() < 1e-5,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0, 20);
        assert!(lo == 0.0 && (hi - 0.161_125).abs() < 1e-5, "{hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }
}
