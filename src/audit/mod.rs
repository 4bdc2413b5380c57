//! Membership-inference audits: how well can an attacker tell the examples a model was
//! trained on (members) from examples it never saw (non-members), given the model's outputs?
//!
//! Semantics follow TF Privacy's `membership_inference_attack` module:
//!
//! * threshold attacks rank examples by one statistic of the model's output (see
//!   [`mia::ExampleStats`]): `threshold-loss` (score −loss), `threshold-confidence`
//!   (score max probability, ranked through its log), `threshold-entropy` (score −modified
//!   entropy of Song & Mittal, which uses the label, as TF Privacy does when labels are
//!   known);
//! * `logistic-regression` trains an attack model on the sorted probability vector plus the
//!   loss, with balanced, stratified k-fold cross-validation (see [`mia::lr_scores`]),
//!   and is measured on the held-out scores of the balanced subset only; one fixed L2
//!   strength (`C = 1` on standardized features) instead of TF Privacy's grid search over C;
//! * every attack runs on every slice ([`Slice`]) with at least one member and one
//!   non-member;
//! * the metrics ([`metrics`]) treat members as positives;
//! * `lira-offline` and `lira-online` need shadow models trained like the target and are
//!   run by `crate::lira`, not by [`audit`] (which ignores them).
//!
//! Everything is computed in f64 on the CPU; model outputs are read once into [`Outputs`]
//! ([`outputs`]); [`render`] shows and saves the results.
pub mod metrics;
pub mod mia;
pub mod outputs;
pub mod render;
pub mod slices;

pub use metrics::{roc, Metrics, Roc};
pub use outputs::{
    model_logits, model_outputs, read_float_npy, read_labels_npy, read_outputs_npy, ModelRun,
    OutputKind, Outputs, Source,
};
pub use render::{format_report, to_csv, write_outputs};
pub use slices::{Slice, SliceSpec};

use crate::{Error, Result};
use mia::{example_stats, lr_features, lr_scores, ExampleStats, LrSettings};
use std::fmt;
use tch::Tensor;

/// The membership-inference attacks (not to be confused with the adversarial attacks of
/// `crate::attacks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MiaKind {
    ThresholdLoss,
    ThresholdConfidence,
    ThresholdEntropy,
    LogisticRegression,
    /// LiRA with OUT shadow models only (`crate::lira`).
    LiraOffline,
    /// LiRA with IN and OUT shadow models (`crate::lira`).
    LiraOnline,
}

impl MiaKind {
    /// The attacks that need only the target's outputs (what [`audit`] runs).
    pub const ALL: [MiaKind; 4] = [
        MiaKind::ThresholdLoss,
        MiaKind::ThresholdConfidence,
        MiaKind::ThresholdEntropy,
        MiaKind::LogisticRegression,
    ];
    /// The LiRA attacks, which need shadow models (`crate::lira`).
    pub const LIRA: [MiaKind; 2] = [MiaKind::LiraOffline, MiaKind::LiraOnline];

    pub fn is_lira(&self) -> bool {
        MiaKind::LIRA.contains(self)
    }
}

/// The names [`parse_attacks`] accepts.
pub const MIA_CHOICES: &str =
    "threshold-loss, threshold-confidence, threshold-entropy, logistic-regression (or lr), threshold, lira-offline, lira-online, lira (the two), all";

impl fmt::Display for MiaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MiaKind::ThresholdLoss => "threshold-loss",
            MiaKind::ThresholdConfidence => "threshold-confidence",
            MiaKind::ThresholdEntropy => "threshold-entropy",
            MiaKind::LogisticRegression => "logistic-regression",
            MiaKind::LiraOffline => "lira-offline",
            MiaKind::LiraOnline => "lira-online",
        })
    }
}

/// Parse a comma-separated list of attacks (`threshold` = the three threshold attacks,
/// `lira` = the two LiRA attacks, `all` = every attack, LiRA included), in the canonical
/// order, without duplicates.
pub fn parse_attacks(s: &str) -> Result<Vec<MiaKind>> {
    let mut chosen = Vec::new();
    let every: Vec<MiaKind> = MiaKind::ALL.into_iter().chain(MiaKind::LIRA).collect();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let add: &[MiaKind] = match part.to_ascii_lowercase().as_str() {
            "all" => &every,
            "threshold" => &MiaKind::ALL[..3],
            "threshold-loss" | "loss" => &[MiaKind::ThresholdLoss],
            "threshold-confidence" | "confidence" => &[MiaKind::ThresholdConfidence],
            "threshold-entropy" | "entropy" => &[MiaKind::ThresholdEntropy],
            "logistic-regression" | "lr" => &[MiaKind::LogisticRegression],
            "lira" => &MiaKind::LIRA,
            "lira-offline" => &[MiaKind::LiraOffline],
            "lira-online" => &[MiaKind::LiraOnline],
            _ => {
                return Err(Error::field(
                    "attacks",
                    format!("unknown attack '{part}'; choose from: {MIA_CHOICES}"),
                ))
            }
        };
        chosen.extend_from_slice(add);
    }
    if chosen.is_empty() {
        return Err(Error::field(
            "attacks",
            format!("no attack given; choose from: {MIA_CHOICES}"),
        ));
    }
    Ok(every.into_iter().filter(|a| chosen.contains(a)).collect())
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditOptions {
    pub attacks: Vec<MiaKind>,
    pub slices: SliceSpec,
    /// Cross-validation folds of the logistic-regression attack (≥ 2).
    pub folds: usize,
    /// Inverse L2 strength of the logistic-regression attack (scikit-learn's `C`).
    pub lr_c: f64,
    /// Seed of the logistic-regression attack's balancing and folds.
    pub seed: u64,
}

impl AuditOptions {
    /// Check the settings of the logistic-regression attack.
    pub fn validate(&self) -> Result<()> {
        if self.folds < 2 {
            return Err(Error::field(
                "folds",
                format!("{}: need at least 2 folds", self.folds),
            ));
        }
        if !(self.lr_c > 0.0 && self.lr_c.is_finite()) {
            return Err(Error::field(
                "lr_c",
                format!("{}: must be a positive number", self.lr_c),
            ));
        }
        Ok(())
    }

    /// Check the folds against the members and non-members to audit: the
    /// logistic-regression attack splits a balanced set of the smaller count of each into
    /// folds (with fewer than 2 of either it is skipped).
    pub fn check_folds(&self, members: usize, nonmembers: usize) -> Result<()> {
        let balanced = members.min(nonmembers);
        if self.attacks.contains(&MiaKind::LogisticRegression)
            && balanced >= 2
            && self.folds > balanced
        {
            return Err(Error::field(
                "folds",
                format!(
                    "{} folds, but there are {members} members and {nonmembers} non-members: the logistic-regression attack splits {balanced} of each into folds, so at most {balanced} folds",
                    self.folds
                ),
            ));
        }
        Ok(())
    }
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            attacks: MiaKind::ALL.to_vec(),
            slices: SliceSpec::default(),
            folds: 5,
            lr_c: 1.0,
            seed: 0,
        }
    }
}

/// One attack on one slice: a row of `--json`, `audit.json` and `audit.csv`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditResult {
    pub attack: MiaKind,
    /// `all`, `class=K`, `correct` or `incorrect`.
    pub slice: String,
    pub auc: f64,
    /// max over thresholds of TPR − FPR.
    pub advantage: f64,
    #[serde(rename = "tpr_at_fpr_0.001")]
    pub tpr_at_fpr_0_001: f64,
    #[serde(rename = "tpr_at_fpr_0.01")]
    pub tpr_at_fpr_0_01: f64,
    /// max over thresholds of (TPR + 1 − FPR) / 2.
    pub balanced_accuracy: f64,
    /// Members and non-members scored: those of the slice, except for
    /// `logistic-regression`, which scores a balanced subset (min of the two, each).
    pub n_members: usize,
    pub n_nonmembers: usize,
    /// ROC points (FPR, TPR), thinned for plotting on log-log axes (see
    /// [`Roc::plot_points`]); not serialized. Use [`roc`] on scores for the full curve.
    #[serde(skip)]
    pub roc: Vec<(f64, f64)>,
}

/// A slice (or one attack on a slice) that could not be audited, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    pub slice: String,
    /// `None`: every attack was skipped on this slice.
    pub attack: Option<MiaKind>,
    pub reason: String,
}

/// The results of an audit plus what was skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditReport {
    pub results: Vec<AuditResult>,
    pub skipped: Vec<Skipped>,
}

impl AuditReport {
    /// The row with the highest AUC over every attack and slice (the first on ties).
    pub fn most_vulnerable(&self) -> Option<&AuditResult> {
        self.results.iter().fold(None, |best, r| match best {
            Some(b) if b.auc >= r.auc => Some(b),
            _ => Some(r),
        })
    }
}

/// Check that members' and non-members' outputs come from the same model (same classes,
/// both logits or both probabilities).
pub fn check_pair(members: &Outputs, nonmembers: &Outputs) -> Result<()> {
    if members.classes != nonmembers.classes {
        return Err(nonmembers.source.error(format!(
            "{} classes, but {} has {}; members and non-members must come from the same model",
            nonmembers.classes, members.source, members.classes
        )));
    }
    if members.kind != nonmembers.kind {
        return Err(Error::failed(
            "audit",
            "members and non-members must both be logits or both probabilities",
        ));
    }
    Ok(())
}

/// Run the audit: every attack of `opts` on every slice, members vs non-members.
pub fn audit(members: &Outputs, nonmembers: &Outputs, opts: &AuditOptions) -> Result<AuditReport> {
    check_pair(members, nonmembers)?;
    opts.validate()?;
    let logits = members.kind == OutputKind::Logits;
    let stats = |o: &Outputs| -> Vec<ExampleStats> {
        (0..o.n)
            .map(|i| example_stats(o.row(i), o.labels[i], logits))
            .collect()
    };
    let (sm, sn) = (stats(members), stats(nonmembers));
    for (o, s) in [(members, &sm), (nonmembers, &sn)] {
        let bad = |x: &ExampleStats| !(x.loss.is_finite() && x.entropy.is_finite());
        if let Some(i) = s.iter().position(bad) {
            return Err(o.source.error(format!(
                "row {i}: its logits are so far apart that its loss is not finite"
            )));
        }
    }
    let want_lr = opts.attacks.contains(&MiaKind::LogisticRegression);
    let features = |o: &Outputs, s: &[ExampleStats]| -> Vec<Vec<f64>> {
        if !want_lr {
            return Vec::new();
        }
        (0..o.n)
            .map(|i| lr_features(o.row(i), s[i].loss, logits))
            .collect()
    };
    let (fm, fnm) = (features(members, &sm), features(nonmembers, &sn));

    let mut report = AuditReport {
        results: Vec::new(),
        skipped: Vec::new(),
    };
    for slice in opts.slices.slices(members.classes) {
        let name = slice.to_string();
        let pick = |o: &Outputs, s: &[ExampleStats]| -> Vec<usize> {
            (0..o.n)
                .filter(|&i| slice.contains(o.labels[i], s[i].predicted))
                .collect()
        };
        let (im, inn) = (pick(members, &sm), pick(nonmembers, &sn));
        if im.is_empty() || inn.is_empty() {
            let reason = match (im.is_empty(), inn.is_empty()) {
                (true, true) => "no members and no non-members",
                (true, false) => "no members",
                _ => "no non-members",
            };
            report.skipped.push(Skipped {
                slice: name,
                attack: None,
                reason: reason.into(),
            });
            continue;
        }
        for &attack in opts.attacks.iter().filter(|a| !a.is_lira()) {
            let threshold = |f: fn(&ExampleStats) -> f64| -> (Vec<f64>, Vec<f64>) {
                (
                    im.iter().map(|&i| f(&sm[i])).collect(),
                    inn.iter().map(|&i| f(&sn[i])).collect(),
                )
            };
            let scores = match attack {
                MiaKind::ThresholdLoss => threshold(|s| -s.loss),
                MiaKind::ThresholdConfidence => threshold(|s| s.log_confidence),
                MiaKind::ThresholdEntropy => threshold(|s| -s.entropy),
                MiaKind::LiraOffline | MiaKind::LiraOnline => continue,
                MiaKind::LogisticRegression => {
                    let rows_m: Vec<&[f64]> = im.iter().map(|&i| fm[i].as_slice()).collect();
                    let rows_n: Vec<&[f64]> = inn.iter().map(|&i| fnm[i].as_slice()).collect();
                    let settings = LrSettings {
                        folds: opts.folds,
                        c: opts.lr_c,
                        seed: opts.seed ^ crate::rng::fnv1a(name.bytes()),
                    };
                    match lr_scores(&rows_m, &rows_n, &settings) {
                        Some(s) => s,
                        None => {
                            report.skipped.push(Skipped {
                                slice: name.clone(),
                                attack: Some(attack),
                                reason: "fewer than 2 members or non-members to cross-validate"
                                    .into(),
                            });
                            continue;
                        }
                    }
                }
            };
            report
                .results
                .push(result_row(attack, name.clone(), &scores.0, &scores.1));
        }
    }
    Ok(report)
}

/// The row of `attack` on slice `slice` from the members' and non-members' scores.
pub(crate) fn result_row(
    attack: MiaKind,
    slice: String,
    scores_members: &[f64],
    scores_nonmembers: &[f64],
) -> AuditResult {
    let r = roc(scores_members, scores_nonmembers);
    let m = Metrics::of(&r);
    let (nm, nn) = (scores_members.len(), scores_nonmembers.len());
    let floor = 0.1 / nm.max(nn).max(1) as f64;
    AuditResult {
        attack,
        slice,
        auc: m.auc,
        advantage: m.advantage,
        tpr_at_fpr_0_001: m.tpr_at_fpr_0_001,
        tpr_at_fpr_0_01: m.tpr_at_fpr_0_01,
        balanced_accuracy: m.balanced_accuracy,
        n_members: nm,
        n_nonmembers: nn,
        roc: r.plot_points(floor),
    }
}

/// [`audit`] on tensors: (n, C) logits (any float kind and device) and (n,) integer labels
/// of the members and of the non-members. Returns the rows; slices or attacks that could
/// not run are left out (use [`audit`] to learn which).
pub fn audit_logits(
    member_logits: &Tensor,
    member_labels: &Tensor,
    nonmember_logits: &Tensor,
    nonmember_labels: &Tensor,
    opts: &AuditOptions,
) -> Result<Vec<AuditResult>> {
    let m = Outputs::from_tensors(
        member_logits,
        member_labels,
        OutputKind::Logits,
        "member_logits",
    )?;
    let n = Outputs::from_tensors(
        nonmember_logits,
        nonmember_labels,
        OutputKind::Logits,
        "nonmember_logits",
    )?;
    Ok(audit(&m, &n, opts)?.results)
}
