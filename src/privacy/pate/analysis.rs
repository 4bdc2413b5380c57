//! The privacy analysis of a student's queries (placeholder: being written).
use super::{Aggregator, Votes};
use crate::Result;

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

/// The smooth-sensitivity release of the data-dependent ε (Papernot et al. 2018, §4.3).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SmoothRelease {
    pub beta: f64,
    pub ss: f64,
    pub sigma_ss: f64,
    pub noise_std: f64,
    pub epsilon_total: f64,
    pub epsilon_released: f64,
}

/// The analysis (`fool privacy pate --json` prints it; the student's run keeps it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Analysis {
    pub aggregator: Aggregator,
    pub teachers: u32,
    pub classes: usize,
    pub queries: usize,
    /// Expected number of queries answered.
    pub answered: f64,
    pub delta: f64,
    /// The order of the data-dependent ε.
    pub order: f64,
    pub epsilon_data_independent: f64,
    pub epsilon_data_dependent: f64,
    /// None when the data-independent bound is always the tighter one (nothing data-dependent
    /// to release) or the sufficient conditions for the smooth-sensitivity analysis fail.
    pub smooth_sensitivity: Option<SmoothRelease>,
}

/// Analyse the answers to the first queries of `votes`.
pub fn analyse(votes: &Votes, settings: &Settings) -> Result<Analysis> {
    let _ = (votes, settings);
    Err(crate::Error::failed("PATE analysis", "not written yet"))
}
