//! What determines a training run ([`TrainConfig`], saved in its state and metadata), and
//! the checks and derived settings of a configuration.
use super::optim::OptKind;
use crate::datasets::DatasetName;
use crate::nets::Arch;
use crate::privacy::accountant::{self, AccountantKind};
use crate::privacy::pate::Aggregator;
use crate::{Error, Result};
use std::ops::Range;
use std::path::PathBuf;

/// One part of a seeded partition of the pool into `parts` disjoint parts (a PATE teacher's
/// share of the private data): a permutation of the pool drawn with `seed`, cut into `parts`
/// contiguous chunks whose sizes differ by at most one; this run trains on chunk `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Partition {
    pub seed: u64,
    pub index: usize,
    pub parts: usize,
}

/// What a PATE student trains on: the first `queries` items of a public pool the teachers
/// voted on, labelled by a noisy aggregator (only the answered ones); evaluated on held-out
/// rows of the test split. The private data is the teachers' pool.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StudentData {
    /// The pool spec (`mnist:test[0:9000]` or a folder).
    pub pool: String,
    pub queries: usize,
    pub aggregator: Aggregator,
    /// Seed of the aggregator's noise.
    pub noise_seed: u64,
    /// Queries answered: the student's training examples.
    pub answered: usize,
    /// FNV-1a (hex) of the (item, label) pairs trained on.
    pub labels_digest: String,
    /// Rows of the test split held out from the pool: the student's test set, and the
    /// non-members of its membership audit.
    pub test_rows: Range<usize>,
    /// The private data: the first `private_rows` examples of the training split (the
    /// teachers' pool), the members of the student's membership audit.
    pub private_rows: usize,
}

/// How the optimizer is driven beyond its base rate: the learning-rate schedule and warm-up,
/// weight decay and parameter averaging (all off by default: a constant rate, no decay, no
/// average).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Recipe {
    pub schedule: super::schedule::LrSchedule,
    /// Linear warm-up steps before the schedule.
    pub warmup: u64,
    /// Coupled L2 weight decay (PyTorch's SGD/Adam `weight_decay`: g + λθ).
    pub weight_decay: f64,
    /// Exponential moving average of the weights with this decay ([`super::averaging`]).
    pub ema: Option<f64>,
    /// Augmentation of the training images ([`super::augment`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub augment: Option<super::augment::Augment>,
    /// Augmentation multiplicity K ≥ 2 (De et al. 2022): every example of a batch enters as K
    /// augmented copies; with DP their gradients are averaged before clipping. None: one copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiplicity: Option<usize>,
    /// Adversarial training ([`super::adversarial`]): the batches are attacked first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adversarial: Option<super::adversarial::Adversarial>,
}

impl Recipe {
    /// Copies of each example per step (1 without multiplicity).
    pub fn copies(&self) -> usize {
        self.multiplicity.unwrap_or(1)
    }
}

/// Differential-privacy settings as the user gave them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DpConfig {
    pub clip: f64,
    /// σ; when `target_epsilon` is set this is the calibrated value.
    pub noise: f64,
    pub delta: f64,
    pub target_epsilon: Option<f64>,
    pub accountant: AccountantKind,
    pub max_physical_batch: usize,
}

/// Everything that determines a run (saved in the state and the metadata; a resumed run must
/// match it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub dataset: DatasetName,
    /// The data set's files; with `train_folder`, only its test split is used.
    pub data_dir: PathBuf,
    /// Train on this labelled image folder (a `labels.csv`; e.g. `fool synth`'s synthetic
    /// data set) instead of the data set's training split; evaluated on the real test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_folder: Option<PathBuf>,
    /// Schedule, warm-up, weight decay, averaging.
    #[serde(default)]
    pub recipe: Recipe,
    pub arch: Arch,
    pub epochs: usize,
    /// Batch size; with DP the expected batch size of Poisson sampling (q = batch / n).
    pub batch: usize,
    pub lr: f64,
    pub optimizer: OptKind,
    pub seed: u64,
    /// Train on the first N training examples only.
    pub limit: Option<usize>,
    /// Train on a random half of those examples, drawn with this seed (shadow models for LiRA).
    #[serde(default)]
    pub half: Option<u64>,
    pub dp: Option<DpConfig>,
    pub checkpoint_every: usize,
    /// Run the threshold and logistic-regression membership attacks every K epochs (0: never).
    #[serde(default)]
    pub audit_every: usize,
    /// Members and non-members used by those audits (each at most this many).
    #[serde(default = "default_audit_examples")]
    pub audit_examples: usize,
    /// Train on one part of a seeded partition of the pool (PATE teachers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<Partition>,
    /// A PATE student: the training split given to the run is the labelled pool (see
    /// [`StudentData`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub student: Option<StudentData>,
}

fn default_audit_examples() -> usize {
    10_000
}

impl TrainConfig {
    /// The rows of a training split of `train_len` rows the run draws its examples from: the
    /// first `limit` (all without a limit).
    pub fn pool(&self, train_len: usize) -> usize {
        self.limit.map_or(train_len, |l| l.min(train_len))
    }
}

/// Check the settings; errors name the field at fault.
pub fn validate(cfg: &TrainConfig) -> Result<()> {
    if cfg.epochs == 0 {
        return Err(Error::field("epochs", "must be at least 1"));
    }
    if cfg.batch == 0 {
        return Err(Error::field("batch", "must be at least 1"));
    }
    if !(cfg.lr > 0.0 && cfg.lr.is_finite()) {
        return Err(Error::field(
            "lr",
            format!("{} must be a positive number", cfg.lr),
        ));
    }
    if let OptKind::Sgd { momentum } = cfg.optimizer {
        if !(0.0..1.0).contains(&momentum) {
            return Err(Error::field(
                "momentum",
                format!("{momentum} must be in [0, 1)"),
            ));
        }
    }
    if cfg.audit_every > 0 && cfg.audit_examples == 0 {
        return Err(Error::field(
            "audit_examples",
            "must be at least 1 when auditing during training",
        ));
    }
    let r = &cfg.recipe;
    if !(r.weight_decay >= 0.0 && r.weight_decay.is_finite()) {
        return Err(Error::field(
            "weight_decay",
            format!("{} must be a number ≥ 0", r.weight_decay),
        ));
    }
    if let Some(d) = r.ema {
        if !(d > 0.0 && d < 1.0) {
            return Err(Error::field(
                "ema",
                format!("{d}: the decay must be in (0, 1)"),
            ));
        }
    }
    if r.augment == Some(super::augment::Augment::CropFlip) && cfg.dataset == DatasetName::Mnist {
        return Err(Error::field(
            "augment",
            "crop-flip mirrors images, which turns digits into other shapes; use crop for mnist",
        ));
    }
    if let Some(a) = &r.adversarial {
        a.validate()?;
        if a.is_trades() && cfg.dp.is_some() {
            return Err(Error::field(
                "adversarial",
                "trades with --dp is not supported (its loss couples each example with its twin); use pgd or fgsm-rs for DP adversarial training",
            ));
        }
    }
    if let Some(k) = r.multiplicity {
        if k < 2 {
            return Err(Error::field(
                "multiplicity",
                format!("{k}: expected at least 2 copies (leave it out for one)"),
            ));
        }
        if r.augment.is_none() {
            return Err(Error::field(
                "multiplicity",
                "needs --augment: without augmentation the copies of an example are identical",
            ));
        }
    }
    if cfg.limit == Some(0) {
        return Err(Error::field("limit", "must be at least 1"));
    }
    if let Some(p) = &cfg.partition {
        if cfg.half.is_some() {
            return Err(Error::field(
                "half",
                "a random half and a partition part cannot be combined",
            ));
        }
        if p.parts == 0 {
            return Err(Error::field("teachers", "must be at least 1"));
        }
        if p.index >= p.parts {
            return Err(Error::field(
                "partition",
                format!(
                    "part {} of {}: the index must be below the number of parts",
                    p.index, p.parts
                ),
            ));
        }
    }
    if let Some(dp) = &cfg.dp {
        if !cfg.arch.dp_compatible() {
            return Err(Error::field(
                "arch",
                format!(
                    "{} uses BatchNorm, which mixes the examples of a batch: per-example gradients \
                     and so DP-SGD are undefined with it; use resnet18 (GroupNorm) for DP training",
                    cfg.arch
                ),
            ));
        }
        if let Some(t) = dp.target_epsilon {
            if !(t > 0.0 && t.is_finite()) {
                return Err(Error::field(
                    "target_epsilon",
                    format!("{t} must be a positive number"),
                ));
            }
        }
        if !(dp.delta > 0.0 && dp.delta < 1.0) {
            return Err(Error::field(
                "delta",
                format!("{} must be in (0, 1)", dp.delta),
            ));
        }
        if !(dp.clip > 0.0 && dp.clip.is_finite()) {
            return Err(Error::field(
                "clip",
                format!("{} must be a positive number", dp.clip),
            ));
        }
    }
    Ok(())
}

/// Resolve the noise multiplier for `n` training examples: calibrate σ to the target ε when
/// one is given, else check the σ given. Idempotent.
pub fn resolve_noise(cfg: &mut TrainConfig, n: usize) -> Result<()> {
    let epochs = cfg.epochs as u64;
    let batch = cfg.batch;
    if let Some(dp) = &mut cfg.dp {
        let q = batch as f64 / n as f64;
        if q > 1.0 {
            return Err(Error::field(
                "batch",
                format!("{batch} is larger than the {n} training examples"),
            ));
        }
        let steps = epochs * ((1.0 / q).floor() as u64).max(1);
        if let Some(target) = dp.target_epsilon {
            dp.noise = accountant::noise_for_epsilon(dp.accountant, target, q, steps, dp.delta)?;
        }
        if !(dp.noise > 0.0 && dp.noise.is_finite()) {
            return Err(Error::field(
                "noise",
                format!(
                    "{} must be a positive number (or give a target ε to calibrate it)",
                    dp.noise
                ),
            ));
        }
    }
    Ok(())
}
