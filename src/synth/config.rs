//! What determines a Private Evolution run ([`SynthConfig`]), its privacy, its records and
//! progress events, and the checks and the split of samples over classes.
use super::embed::Embedding;
use crate::datasets::DatasetName;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the class counts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassCounts {
    /// Taken as public knowledge (not accounted for).
    Public,
    /// A Gaussian-noised count histogram (one more mechanism).
    Dp,
}

/// Everything that determines a run (a resumed run must match it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthConfig {
    /// The private data: `mnist:train`, a slice, or a labelled folder.
    pub private: String,
    pub dataset: DatasetName,
    pub data_dir: PathBuf,
    /// The API as given (`digits`, `digits:FILE.json`, `http://…`).
    pub api: String,
    pub epsilon: f64,
    /// δ; None: 1/(n ln n) for n private samples.
    pub delta: Option<f64>,
    pub samples: usize,
    pub iterations: usize,
    pub lookahead: usize,
    pub threshold: f64,
    pub neighbours: usize,
    pub embedding: Embedding,
    pub class_counts: ClassCounts,
    pub seed: u64,
}

/// The run's privacy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Privacy {
    pub epsilon: f64,
    pub delta: f64,
    /// How δ was chosen.
    pub delta_rule: String,
    pub noise: f64,
    /// Gaussian mechanisms of sensitivity 1 composed.
    pub mechanisms: usize,
    pub mu: f64,
    pub private_samples: usize,
    pub class_counts: ClassCounts,
}

/// One finished iteration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IterationRecord {
    pub iteration: usize,
    /// ε spent once this iteration is released (GDP, at the run's δ).
    pub epsilon_spent: f64,
    /// Fréchet distance to the private data in the embedding (not Inception FID).
    pub frechet_distance: f64,
    pub seconds_generation: f64,
    pub seconds_embedding: f64,
    pub seconds_vote: f64,
    /// Distinct parents drawn, over all classes.
    pub distinct_parents: usize,
    /// Classes whose thresholded histogram was all zero (parents drawn uniformly).
    pub uniform_classes: Vec<usize>,
}

/// What happened, for progress display.
pub enum Event<'a> {
    Started {
        privacy: &'a Privacy,
        resumed_at: usize,
    },
    Phase {
        iteration: usize,
        class: usize,
        what: &'static str,
    },
    Iteration(&'a IterationRecord),
}

/// The result of a finished run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub config: SynthConfig,
    pub privacy: Privacy,
    pub api: serde_json::Value,
    pub samples_per_class: Vec<usize>,
    pub iterations: Vec<IterationRecord>,
}

pub fn validate(cfg: &SynthConfig) -> Result<()> {
    if !(cfg.epsilon > 0.0 && cfg.epsilon.is_finite()) {
        return Err(Error::field(
            "epsilon",
            format!("{} must be a positive number", cfg.epsilon),
        ));
    }
    if let Some(d) = cfg.delta {
        crate::privacy::accountant::check_delta(d)?;
    }
    if cfg.iterations == 0 {
        return Err(Error::field("iterations", "must be at least 1"));
    }
    let classes = cfg.dataset.num_classes();
    if cfg.samples < classes {
        return Err(Error::field(
            "samples",
            format!(
                "{} is fewer than the {classes} classes: every class needs a sample",
                cfg.samples
            ),
        ));
    }
    if cfg.neighbours == 0 {
        return Err(Error::field("neighbours", "must be at least 1"));
    }
    if !(cfg.threshold >= 0.0 && cfg.threshold.is_finite()) {
        return Err(Error::field(
            "threshold",
            format!("{} must be ≥ 0", cfg.threshold),
        ));
    }
    Ok(())
}

/// `total` split over classes in proportion to `weights` (largest remainders; every class at
/// least 1).
pub fn allocate(total: usize, weights: &[f64]) -> Vec<usize> {
    let k = weights.len();
    let w: Vec<f64> = weights.iter().map(|w| w.max(0.0)).collect();
    let sum: f64 = w.iter().sum();
    let spare = total - k;
    let share: Vec<f64> = w
        .iter()
        .map(|x| {
            if sum > 0.0 {
                spare as f64 * x / sum
            } else {
                spare as f64 / k as f64
            }
        })
        .collect();
    let mut out: Vec<usize> = share.iter().map(|s| s.floor() as usize + 1).collect();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| (share[b] - share[b].floor()).total_cmp(&(share[a] - share[a].floor())));
    let mut left = total - out.iter().sum::<usize>();
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::allocate;

    #[test]
    fn allocate_splits_in_proportion_with_every_class_served() {
        assert_eq!(allocate(10, &[1.0, 1.0, 2.0]), vec![3, 3, 4]);
        assert_eq!(allocate(3, &[0.0, 5.0, 0.0]), vec![1, 1, 1]);
        let a = allocate(
            60_000,
            &[
                5923.0, 6742.0, 5958.0, 6131.0, 5842.0, 5421.0, 5918.0, 6265.0, 5851.0, 5949.0,
            ],
        );
        assert_eq!(a.iter().sum::<usize>(), 60_000);
        assert_eq!(
            a,
            vec![5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
        );
        // Noisy (DP) counts may be negative: such a class still gets one sample.
        assert_eq!(allocate(5, &[-3.0, 4.0]), vec![1, 4]);
    }
}
