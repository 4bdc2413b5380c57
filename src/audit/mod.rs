//! Membership-inference audits: how well can an attacker tell the examples a model was
//! trained on (members) from examples it never saw (non-members), given the model's outputs?
//!
//! Semantics follow TF Privacy's `membership_inference_attack` module:
//!
//! * threshold attacks rank examples by one statistic of the model's output (see
//!   [`attacks::ExampleStats`]): `threshold-loss` (score −loss), `threshold-confidence`
//!   (score max probability, ranked through its log), `threshold-entropy` (score −modified
//!   entropy of Song & Mittal, which uses the label, as TF Privacy does when labels are
//!   known);
//! * `logistic-regression` trains an attack model on the sorted probability vector plus the
//!   loss, with balanced, stratified k-fold cross-validation (see [`attacks::lr_scores`]),
//!   and is measured on the held-out scores of the balanced subset only; one fixed L2
//!   strength (`C = 1` on standardized features) instead of TF Privacy's grid search over C;
//! * every attack runs on every slice ([`Slice`]) with at least one member and one
//!   non-member;
//! * the metrics ([`metrics`]) treat members as positives;
//! * `lira-offline` and `lira-online` ([`lira`]) need shadow models trained like the
//!   target and are run by [`lira::run`], not by [`audit`] (which ignores them).
//!
//! Everything is computed in f64 on the CPU; model outputs are read once into [`Outputs`].
pub mod attacks;

pub mod metrics;
pub mod slices;

pub use metrics::{roc, Metrics, Roc};
pub use slices::{Slice, SliceSpec};

use crate::datasets::TensorDataset;
use crate::files::write_atomic;
use crate::plot::{write_png_svg, COLORS};
use crate::{Error, Result};
use attacks::{example_stats, lr_features, lr_scores, ExampleStats, LrSettings};
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    ThresholdLoss,
    ThresholdConfidence,
    ThresholdEntropy,
    LogisticRegression,
    /// LiRA with OUT shadow models only ([`lira`]).
    LiraOffline,
    /// LiRA with IN and OUT shadow models ([`lira`]).
    LiraOnline,
}

impl AttackKind {
    /// The attacks that need only the target's outputs (what [`audit`] runs).
    pub const ALL: [AttackKind; 4] = [
        AttackKind::ThresholdLoss,
        AttackKind::ThresholdConfidence,
        AttackKind::ThresholdEntropy,
        AttackKind::LogisticRegression,
    ];
    /// The LiRA attacks, which need shadow models ([`lira::run`]).
    pub const LIRA: [AttackKind; 2] = [AttackKind::LiraOffline, AttackKind::LiraOnline];

    pub fn is_lira(&self) -> bool {
        AttackKind::LIRA.contains(self)
    }
}

/// The names accepted by `--attacks`.
pub const ATTACK_CHOICES: &str =
    "threshold-loss, threshold-confidence, threshold-entropy, logistic-regression (or lr), threshold, lira-offline, lira-online, lira (the two), all";

impl fmt::Display for AttackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttackKind::ThresholdLoss => "threshold-loss",
            AttackKind::ThresholdConfidence => "threshold-confidence",
            AttackKind::ThresholdEntropy => "threshold-entropy",
            AttackKind::LogisticRegression => "logistic-regression",
            AttackKind::LiraOffline => "lira-offline",
            AttackKind::LiraOnline => "lira-online",
        })
    }
}

/// Parse a comma-separated `--attacks` list (`threshold` = the three threshold attacks,
/// `lira` = the two LiRA attacks, `all` = every attack, LiRA included), in the canonical
/// order, without duplicates.
pub fn parse_attacks(s: &str) -> Result<Vec<AttackKind>> {
    let mut chosen = Vec::new();
    let every: Vec<AttackKind> = AttackKind::ALL
        .into_iter()
        .chain(AttackKind::LIRA)
        .collect();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let add: &[AttackKind] = match part.to_ascii_lowercase().as_str() {
            "all" => &every,
            "threshold" => &AttackKind::ALL[..3],
            "threshold-loss" | "loss" => &[AttackKind::ThresholdLoss],
            "threshold-confidence" | "confidence" => &[AttackKind::ThresholdConfidence],
            "threshold-entropy" | "entropy" => &[AttackKind::ThresholdEntropy],
            "logistic-regression" | "lr" => &[AttackKind::LogisticRegression],
            "lira" => &AttackKind::LIRA,
            "lira-offline" => &[AttackKind::LiraOffline],
            "lira-online" => &[AttackKind::LiraOnline],
            _ => {
                return Err(Error::field(
                    "attacks",
                    format!("unknown attack '{part}'; choose from: {ATTACK_CHOICES}"),
                ))
            }
        };
        chosen.extend_from_slice(add);
    }
    if chosen.is_empty() {
        return Err(Error::field(
            "attacks",
            format!("no attack given; choose from: {ATTACK_CHOICES}"),
        ));
    }
    Ok(every.into_iter().filter(|a| chosen.contains(a)).collect())
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditOptions {
    pub attacks: Vec<AttackKind>,
    pub slices: SliceSpec,
    /// Cross-validation folds of the logistic-regression attack (≥ 2).
    pub folds: usize,
    /// Inverse L2 strength of the logistic-regression attack (scikit-learn's `C`).
    pub lr_c: f64,
    /// Seed of the logistic-regression attack's balancing and folds.
    pub seed: u64,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            attacks: AttackKind::ALL.to_vec(),
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
    pub attack: AttackKind,
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
    pub attack: Option<AttackKind>,
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

/// Where model outputs came from, to name it in errors.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    File(PathBuf),
    /// A flag or argument name (`--members`, `member_logits`).
    Arg(String),
}

impl Source {
    fn error(&self, msg: impl Into<String>) -> Error {
        match self {
            Source::File(p) => Error::bad_file(p, msg),
            Source::Arg(a) => Error::field(a, msg),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Arg(a) => f.write_str(a),
        }
    }
}

/// Whether output rows are logits or probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Logits,
    Probabilities,
}

/// A model's outputs on a set of labelled examples, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    /// n × classes, row-major.
    pub values: Vec<f64>,
    pub n: usize,
    pub classes: usize,
    pub labels: Vec<usize>,
    pub kind: OutputKind,
    pub source: Source,
}

impl Outputs {
    /// Check and wrap outputs of shape `shape` (must be (n, C), C ≥ 2) with labels.
    /// `source` names the outputs in errors, `labels_source` the labels.
    pub fn new(
        values: Vec<f64>,
        shape: &[usize],
        labels: &[i64],
        kind: OutputKind,
        source: Source,
        labels_source: Source,
    ) -> Result<Outputs> {
        let what = match kind {
            OutputKind::Logits => "logits",
            OutputKind::Probabilities => "probabilities",
        };
        let &[n, classes] = shape else {
            return Err(source.error(format!(
                "expected a 2-D array of {what} with shape (n, C), got shape {shape:?}"
            )));
        };
        if n == 0 {
            return Err(source.error(format!("no examples: {what} of shape {shape:?}")));
        }
        if classes < 2 {
            return Err(source.error(format!(
                "expected {what} of shape (n, C) with C ≥ 2 classes, got shape {shape:?}"
            )));
        }
        if labels.len() != n {
            return Err(labels_source.error(format!(
                "{} labels, but {source} has {n} rows of {what}; expected one label per row",
                labels.len()
            )));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(source.error(format!(
                "{what} contain NaN or infinite values (row {}, column {})",
                i / classes,
                i % classes
            )));
        }
        if kind == OutputKind::Probabilities {
            for (i, row) in values.chunks(classes).enumerate() {
                let sum: f64 = row.iter().sum();
                if row.iter().any(|p| !(0.0..=1.0).contains(p)) || (sum - 1.0).abs() > 1e-3 {
                    return Err(source.error(format!(
                        "row {i} is not a probability vector (values in [0, 1] summing to 1; its sum is {sum}); drop --probabilities if these are logits"
                    )));
                }
            }
        }
        let mut checked = Vec::with_capacity(n);
        for (i, &l) in labels.iter().enumerate() {
            if l < 0 || l as u64 >= classes as u64 {
                return Err(labels_source.error(format!(
                    "label {l} at row {i} is out of range for {classes} classes (expected 0..={})",
                    classes - 1
                )));
            }
            checked.push(l as usize);
        }
        Ok(Outputs {
            values,
            n,
            classes,
            labels: checked,
            kind,
            source,
        })
    }

    /// From an (n, C) float tensor and an (n,) integer tensor (any device and kind).
    pub fn from_tensors(
        outputs: &Tensor,
        labels: &Tensor,
        kind: OutputKind,
        name: &str,
    ) -> Result<Outputs> {
        let source = Source::Arg(name.to_string());
        let labels_source = Source::Arg(format!("{name} labels"));
        if labels.dim() != 1 {
            return Err(labels_source.error(format!(
                "expected a 1-D tensor of labels, got shape {:?}",
                labels.size()
            )));
        }
        if labels.is_floating_point() {
            return Err(
                labels_source.error(format!("expected integer labels, got {:?}", labels.kind()))
            );
        }
        let shape: Vec<usize> = outputs.size().iter().map(|&d| d.max(0) as usize).collect();
        let values = Vec::<f64>::try_from(
            outputs
                .to_device(Device::Cpu)
                .to_kind(Kind::Double)
                .contiguous()
                .view([-1]),
        )?;
        let labels = Vec::<i64>::try_from(labels.to_device(Device::Cpu).to_kind(Kind::Int64))?;
        Outputs::new(values, &shape, &labels, kind, source, labels_source)
    }

    /// The output row of example `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.classes..(i + 1) * self.classes]
    }

    /// The examples at `idx` (in that order).
    pub fn select(&self, idx: &[usize]) -> Outputs {
        let mut values = Vec::with_capacity(idx.len() * self.classes);
        for &i in idx {
            values.extend_from_slice(self.row(i));
        }
        Outputs {
            values,
            n: idx.len(),
            classes: self.classes,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            kind: self.kind,
            source: self.source.clone(),
        }
    }
}

/// Run the audit: every attack of `opts` on every slice, members vs non-members.
pub fn audit(members: &Outputs, nonmembers: &Outputs, opts: &AuditOptions) -> Result<AuditReport> {
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
    if opts.folds < 2 {
        return Err(Error::field(
            "folds",
            format!("{}: need at least 2 folds", opts.folds),
        ));
    }
    if !(opts.lr_c > 0.0 && opts.lr_c.is_finite()) {
        return Err(Error::field(
            "lr_c",
            format!("{}: must be a positive number", opts.lr_c),
        ));
    }
    let logits = members.kind == OutputKind::Logits;
    let stats = |o: &Outputs| -> Vec<ExampleStats> {
        (0..o.n)
            .map(|i| example_stats(o.row(i), o.labels[i], logits))
            .collect()
    };
    let (sm, sn) = (stats(members), stats(nonmembers));
    let want_lr = opts.attacks.contains(&AttackKind::LogisticRegression);
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
                AttackKind::ThresholdLoss => threshold(|s| -s.loss),
                AttackKind::ThresholdConfidence => threshold(|s| s.log_confidence),
                AttackKind::ThresholdEntropy => threshold(|s| -s.entropy),
                AttackKind::LiraOffline | AttackKind::LiraOnline => continue,
                AttackKind::LogisticRegression => {
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
    attack: AttackKind,
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

/// Describe why a `.npy` file could not be read as the element type tried last.
fn npy_problem(e: &ReadNpyError) -> String {
    match e {
        ReadNpyError::WrongDescriptor(d) => format!("its dtype is {d}"),
        other => other.to_string(),
    }
}

/// Read a float32 or float64 `.npy` array (any shape) as f64.
pub fn read_float_npy(path: &Path) -> Result<(Vec<f64>, Vec<usize>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let fail = |e: &ReadNpyError| {
        Error::bad_file(
            path,
            format!(
                "expected a float32 or float64 array in .npy format ({})",
                npy_problem(e)
            ),
        )
    };
    match ArrayD::<f32>::read_npy(&bytes[..]) {
        Ok(a) => Ok((a.iter().map(|&v| v as f64).collect(), a.shape().to_vec())),
        Err(ReadNpyError::WrongDescriptor(_)) => match ArrayD::<f64>::read_npy(&bytes[..]) {
            Ok(a) => Ok((a.iter().copied().collect(), a.shape().to_vec())),
            Err(e) => Err(fail(&e)),
        },
        Err(e) => Err(fail(&e)),
    }
}

/// Read a 1-D integer `.npy` array (int8/16/32/64, uint8/16/32/64) as i64.
pub fn read_labels_npy(path: &Path) -> Result<Vec<i64>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    /// Values (None: does not fit in i64) and shape, or why not.
    type Attempt = std::result::Result<(Vec<Option<i64>>, Vec<usize>), ReadNpyError>;
    fn try_read<T: ndarray_npy::ReadableElement + Copy>(
        bytes: &[u8],
        conv: fn(T) -> Option<i64>,
    ) -> Attempt {
        let a = ArrayD::<T>::read_npy(bytes)?;
        Ok((a.iter().map(|&v| conv(v)).collect(), a.shape().to_vec()))
    }
    let attempts: [fn(&[u8]) -> Attempt; 8] = [
        |b| try_read::<i64>(b, Some),
        |b| try_read::<i32>(b, |v| Some(v as i64)),
        |b| try_read::<u8>(b, |v| Some(v as i64)),
        |b| try_read::<i16>(b, |v| Some(v as i64)),
        |b| try_read::<i8>(b, |v| Some(v as i64)),
        |b| try_read::<u16>(b, |v| Some(v as i64)),
        |b| try_read::<u32>(b, |v| Some(v as i64)),
        |b| try_read::<u64>(b, |v| i64::try_from(v).ok()),
    ];
    let mut last = None;
    for attempt in attempts {
        match attempt(&bytes) {
            Ok((values, shape)) => {
                if shape.len() != 1 {
                    return Err(Error::bad_file(
                        path,
                        format!("expected a 1-D array of integer labels, got shape {shape:?}"),
                    ));
                }
                return values
                    .into_iter()
                    .map(|v| v.ok_or_else(|| Error::bad_file(path, "label too large for int64")))
                    .collect();
            }
            Err(ReadNpyError::WrongDescriptor(d)) => last = Some(ReadNpyError::WrongDescriptor(d)),
            Err(e) => {
                last = Some(e);
                break;
            }
        }
    }
    Err(Error::bad_file(
        path,
        format!(
            "expected a 1-D integer array (int64, int32, uint8, …) of labels in .npy format ({})",
            last.as_ref().map(npy_problem).unwrap_or_default()
        ),
    ))
}

/// Read outputs (logits or probabilities, (n, C) float32/float64) and labels ((n,)
/// integers) from `.npy` files.
pub fn read_outputs_npy(outputs: &Path, labels: &Path, kind: OutputKind) -> Result<Outputs> {
    let (values, shape) = read_float_npy(outputs)?;
    let labels_v = read_labels_npy(labels)?;
    Outputs::new(
        values,
        &shape,
        &labels_v,
        kind,
        Source::File(outputs.to_path_buf()),
        Source::File(labels.to_path_buf()),
    )
}

/// Run a TorchScript model (taking (N,3,H,W) pixels in [0,1]) on the examples `idx` of
/// `ds` in batches of `batch` on `device`; single-channel images are repeated to 3
/// channels. `on_batch` is called with the number of examples after each batch. The
/// model's output must be (N, C) logits with C = the data set's class count.
pub fn model_outputs(
    model: &tch::CModule,
    model_path: &Path,
    ds: &TensorDataset,
    idx: &[usize],
    batch: usize,
    device: Device,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Outputs> {
    let classes = ds.name.num_classes();
    let mut values = Vec::with_capacity(idx.len() * classes);
    for chunk in idx.chunks(batch.max(1)) {
        let ids: Vec<i64> = chunk.iter().map(|&i| i as i64).collect();
        let t = Tensor::from_slice(&ids);
        let mut x = ds.pixels(&t, device);
        if x.size()[1] == 1 {
            x = x.expand([-1, 3, -1, -1], false);
        }
        let out = tch::no_grad(|| model.forward_ts(&[x])).map_err(|e| {
            Error::bad_file(
                model_path,
                format!(
                    "forward pass on {} images of shape (3, {s}, {s}) failed: {}",
                    ds.name,
                    crate::error::first_line(&e.to_string()),
                    s = ds.name.side()
                ),
            )
        })?;
        let shape = out.size();
        if shape.len() != 2 || shape[0] != chunk.len() as i64 {
            return Err(Error::bad_file(
                model_path,
                format!(
                    "model output has shape {shape:?} for {} images, expected (N, C) logits",
                    chunk.len()
                ),
            ));
        }
        if shape[1] != classes as i64 {
            return Err(Error::bad_file(
                model_path,
                format!(
                    "model outputs {} classes, but {} has {classes}",
                    shape[1], ds.name
                ),
            ));
        }
        let v = Vec::<f64>::try_from(out.to_device(Device::Cpu).to_kind(Kind::Double).view([-1]))?;
        values.extend(v);
        on_batch(chunk.len());
    }
    let ids: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    let labels = Vec::<i64>::try_from(ds.labels_at(&Tensor::from_slice(&ids), Device::Cpu))?;
    let source = Source::File(model_path.to_path_buf());
    Outputs::new(
        values,
        &[idx.len(), classes],
        &labels,
        OutputKind::Logits,
        source.clone(),
        source,
    )
}

/// The human-readable table: one line per attack × slice, then the most vulnerable slice
/// and the skipped ones.
pub fn format_report(report: &AuditReport) -> String {
    let mut s = format!(
        "{:<21} {:<10} {:>6} {:>9} {:>8} {:>8} {:>9} {:>12}\n",
        "attack", "slice", "AUC", "advantage", "TPR@0.1%", "TPR@1%", "members", "non-members"
    );
    for r in &report.results {
        s += &format!(
            "{:<21} {:<10} {:>6.4} {:>9.4} {:>8.4} {:>8.4} {:>9} {:>12}\n",
            r.attack.to_string(),
            r.slice,
            r.auc,
            r.advantage,
            r.tpr_at_fpr_0_001,
            r.tpr_at_fpr_0_01,
            r.n_members,
            r.n_nonmembers
        );
    }
    if let Some(best) = report.most_vulnerable() {
        s += &format!(
            "most vulnerable slice (highest AUC over all attacks): {} — AUC {:.4}, advantage {:.4} with {} ({} members, {} non-members)\n",
            best.slice, best.auc, best.advantage, best.attack, best.n_members, best.n_nonmembers
        );
    }
    for k in &report.skipped {
        match k.attack {
            None => s += &format!("skipped slice {}: {}\n", k.slice, k.reason),
            Some(a) => s += &format!("skipped {a} on slice {}: {}\n", k.slice, k.reason),
        }
    }
    s
}

/// The CSV of the rows (header + one line per row).
pub fn to_csv(results: &[AuditResult]) -> String {
    let mut s = String::from(
        "attack,slice,auc,advantage,tpr_at_fpr_0.001,tpr_at_fpr_0.01,balanced_accuracy,n_members,n_nonmembers\n",
    );
    for r in results {
        s += &format!(
            "{},{},{},{},{},{},{},{},{}\n",
            r.attack,
            r.slice,
            r.auc,
            r.advantage,
            r.tpr_at_fpr_0_001,
            r.tpr_at_fpr_0_01,
            r.balanced_accuracy,
            r.n_members,
            r.n_nonmembers
        );
    }
    s
}

/// The ROC chart: the `all` slice of every attack on log-log axes, with the diagonal.
fn draw_roc<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, results: &[AuditResult]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = crate::plot::chart_err::<DB::ErrorType>;
    root.fill(&WHITE).map_err(err)?;
    let rows: Vec<&AuditResult> = results.iter().filter(|r| r.slice == "all").collect();
    let n = rows
        .iter()
        .map(|r| r.n_members.max(r.n_nonmembers))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let lo = 10f64.powf((1.0 / n).log10().floor()).min(1e-4);
    let title = match rows.first() {
        Some(r) => format!(
            "membership inference ROC ({} members, {} non-members)",
            r.n_members, r.n_nonmembers
        ),
        None => "membership inference ROC".to_string(),
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((lo..1.0f64).log_scale(), (lo..1.0f64).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("false positive rate (non-members called members)")
        .y_desc("true positive rate (members found)")
        .x_label_formatter(&|v| format!("{v:.0e}"))
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .label_style(("sans-serif", 14))
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    let grey = RGBColor(150, 150, 150);
    chart
        .draw_series(DashedLineSeries::new(
            vec![(lo, lo), (1.0, 1.0)],
            6,
            4,
            grey.stroke_width(1),
        ))
        .map_err(err)?
        .label("chance")
        .legend(crate::plot::legend_line(grey, 1, 1, 0));
    for (i, r) in rows.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = r
            .roc
            .iter()
            .map(|&(x, y)| (x.clamp(lo, 1.0), y.clamp(lo, 1.0)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(err)?
            .label(format!("{} (AUC {:.3})", r.attack, r.auc))
            .legend(crate::plot::legend_line(color, 2, 1, 0));
    }
    crate::plot::draw_legend(&mut chart, SeriesLabelPosition::LowerRight, 14)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Write `audit.json` (the rows), `audit.csv`, `roc.png` and `roc.svg` into `dir` (which
/// must exist), each atomically.
pub fn write_outputs(dir: &Path, results: &[AuditResult]) -> Result<()> {
    let json = serde_json::to_string_pretty(results).map_err(|e| Error::internal("JSON", e))?;
    let path = dir.join("audit.json");
    write_atomic(&path, |f| {
        f.write_all(json.as_bytes())
            .and_then(|_| f.write_all(b"\n"))
            .map_err(|e| Error::io(&path, e))
    })?;
    let csv = to_csv(results);
    let path = dir.join("audit.csv");
    write_atomic(&path, |f| {
        f.write_all(csv.as_bytes()).map_err(|e| Error::io(&path, e))
    })?;
    write_png_svg(
        dir,
        "roc",
        (800, 640),
        |a| draw_roc(a, results),
        |a| draw_roc(a, results),
    )
}
