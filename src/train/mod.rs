//! Training runs: a classifier trained on MNIST or CIFAR-10, privately (DP-SGD) or not, into
//! a run directory with a resumable state after every epoch, TorchScript exports the rest of
//! fool loads, and `metadata.json` with ε per epoch.
//!
//! - [`config`] — what determines a run ([`TrainConfig`]) and its checks;
//! - [`trainer`] — the model being trained, its data and the step loop of an epoch;
//! - [`state`] — the resumable state saved after every epoch;
//! - [`metadata`] — `metadata.json`;
//! - [`run_dir`] — the run directory, the one owner of a run's files ([`RunDir`]);
//! - [`run`] — [`Run::train`], the resumable epoch loop every trainer goes through (the CLI,
//!   LiRA's shadow models, PATE's teachers and students), followed by an [`Observer`] that
//!   may stop it after any epoch;
//! - [`export`], [`chart`], [`optim`] — the TorchScript export, the training chart, the
//!   optimizers;
//! - the recipe: [`schedule`], [`averaging`], [`augment`], [`adversarial`] (adversarial
//!   training through the attack code of `fool bench`).
pub mod adversarial;
pub mod augment;
pub mod averaging;
pub mod chart;
pub mod config;
pub mod data;
pub mod export;
pub mod metadata;
pub mod optim;
pub mod run;
pub mod run_dir;
pub mod schedule;
pub mod state;
pub mod trainer;

pub use config::{resolve_noise, validate, DpConfig, Partition, Recipe, StudentData, TrainConfig};
pub use data::{member_indices, partition_part, Data, Splits};
pub use metadata::{Metadata, PateRecord, SyntheticRecord};
pub use run::{Observer, Outcome, Resume, Run, Silent, Started};
pub use run_dir::{Progress, RunDir};
pub use state::State;
pub use trainer::{evaluate, logits, EpochRecord, Trainer};
