//! `metadata.json` of a run or checkpoint: what the model is, how it was trained, what it
//! was trained on and how private it is, with the history of every epoch.
use super::{Data, EpochRecord, TrainConfig, Trainer};
use crate::datasets::DatasetName;
use crate::privacy::accountant::AccountantKind;
use crate::privacy::pate::{Aggregator, Analysis};
use std::ops::Range;

/// The privacy of a PATE student: its labels came from the teachers' noisy votes; its
/// training itself is not private (it only saw public data and those labels).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PateRecord {
    pub aggregator: Aggregator,
    pub teachers: u32,
    pub queries: usize,
    /// Queries the aggregator answered (the student's training examples).
    pub answered: usize,
    /// Fraction of the answered labels equal to the pool's true labels (when it has them).
    pub label_accuracy: Option<f64>,
    pub epsilon_data_independent: f64,
    pub epsilon_data_dependent: f64,
    /// The data-dependent ε released with smooth-sensitivity noise, when there is a release.
    pub epsilon_released: Option<f64>,
    pub analysis: Analysis,
}

impl PateRecord {
    /// The ε a student publishes: the noisy release of the data-dependent ε, or the
    /// data-independent ε when there is nothing to release.
    pub fn epsilon(&self) -> f64 {
        self.epsilon_released
            .unwrap_or(self.epsilon_data_independent)
    }

    /// `PATE (confident, 640 q)`.
    pub fn kind(&self) -> String {
        format!("PATE ({}, {} q)", self.aggregator.name(), self.queries)
    }
}

/// The privacy of a model trained only on a differentially private synthetic data set (`fool
/// synth`'s): training on it is post-processing, so the model has the data set's (ε, δ).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SyntheticRecord {
    /// The folder trained on.
    pub folder: std::path::PathBuf,
    pub epsilon: f64,
    pub delta: f64,
    /// The private data the synthetic set was made from (`mnist:train`, a slice …).
    pub private: String,
    /// Its rows of the training split, when it is a slice of it: the members of a membership
    /// audit of this model.
    pub private_rows: Option<Range<usize>>,
}

/// `metadata.json` of a run or checkpoint.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Metadata {
    pub fool_version: String,
    pub dataset: DatasetName,
    pub arch: String,
    pub epsilon: Option<f64>,
    pub delta: Option<f64>,
    pub accountant: Option<AccountantKind>,
    pub noise: Option<f64>,
    pub clip: Option<f64>,
    pub sample_rate: Option<f64>,
    pub steps: u64,
    pub epochs_done: usize,
    pub test_accuracy: Option<f64>,
    pub train_examples: usize,
    pub test_examples: usize,
    /// Which examples the model was trained on (the members for a membership audit).
    pub members: String,
    pub seed: u64,
    pub device: String,
    pub config: TrainConfig,
    pub history: Vec<EpochRecord>,
    /// Rows of the test split that are the non-members of a membership audit (default: the
    /// whole test split); a PATE student's held-out rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonmembers: Option<Range<usize>>,
    /// A PATE student's privacy (its `epsilon` is [`PateRecord::epsilon`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pate: Option<PateRecord>,
    /// Trained on a DP synthetic data set: its privacy (`epsilon`/`delta` are its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<SyntheticRecord>,
}

impl Trainer {
    /// Metadata describing the model as it is now.
    pub fn metadata(&self, data: &Data) -> Metadata {
        let last = self.history.last();
        let dp = self.cfg.dp.as_ref();
        Metadata {
            fool_version: env!("CARGO_PKG_VERSION").to_string(),
            dataset: self.cfg.dataset,
            arch: self.cfg.arch.to_string(),
            epsilon: last.and_then(|r| r.epsilon),
            delta: dp.map(|d| d.delta),
            accountant: dp.map(|d| d.accountant),
            noise: dp.map(|d| d.noise),
            clip: dp.map(|d| d.clip),
            sample_rate: dp.map(|_| self.cfg.batch as f64 / data.train_len as f64),
            steps: last.map_or(0, |r| r.steps),
            epochs_done: self.history.len(),
            test_accuracy: last.map(|r| r.test_accuracy),
            train_examples: data.train_len,
            test_examples: data.test.len(),
            members: match (&self.cfg.student, &self.cfg.partition, self.cfg.half) {
                (Some(s), _, _) => format!(
                    "a PATE student: trained on {} items of the pool {} labelled by the teachers' noisy votes; the private data (members.npy) is the teachers' pool, the first {} examples of the {} training split",
                    data.train_len, s.pool, s.private_rows, self.cfg.dataset
                ),
                (None, Some(p), _) => format!(
                    "part {} of {} ({} examples) of a partition (seed {}) of the first {} examples of the {} training split; indices in members.npy",
                    p.index,
                    p.parts,
                    data.train_len,
                    p.seed,
                    self.cfg.pool(data.train.len()),
                    self.cfg.dataset
                ),
                (None, None, None) => format!(
                    "the first {} examples of the {} training split",
                    data.train_len, self.cfg.dataset
                ),
                (None, None, Some(seed)) => format!(
                    "a random half ({} examples, seed {seed}) of the first {} examples of the {} training split; indices in members.npy",
                    data.train_len,
                    self.cfg.pool(data.train.len()),
                    self.cfg.dataset
                ),
            },
            seed: self.cfg.seed,
            device: format!("{:?}", self.device),
            config: self.cfg.clone(),
            history: self.history.clone(),
            nonmembers: self.cfg.student.as_ref().map(|s| s.test_rows.clone()),
            pate: None,
            synthetic: None,
        }
    }
}
