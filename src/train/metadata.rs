//! `metadata.json` of a run or checkpoint: what the model is, how it was trained, what it
//! was trained on and how private it is, with the history of every epoch.
use super::{Data, EpochRecord, TrainConfig, Trainer};
use crate::datasets::DatasetName;
use crate::privacy::accountant::AccountantKind;

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
            members: match self.cfg.half {
                None => format!(
                    "the first {} examples of the {} training split",
                    data.train_len, self.cfg.dataset
                ),
                Some(seed) => format!(
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
        }
    }
}
