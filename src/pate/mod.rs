//! PATE's training half (Papernot et al. 2017, 2018): an ensemble of teachers trained on
//! disjoint parts of the private data, their votes on a public pool, and a student trained on
//! the pool items a noisy aggregator labels. The aggregators and the privacy analysis are in
//! [`crate::privacy::pate`].
//!
//! An ensemble folder:
//!
//! ```text
//! OUT/pate.json              the manifest (`Manifest`): data set, teachers, partition seed,
//!                            the teachers' configuration; written first
//! OUT/teacher-0007/          teacher 7: a run directory (`train::RunDir`), part 7 of the
//!                            partition of the training pool
//! OUT/votes.npy, votes.json  the (Q, C) vote counts on a pool, and which items they are
//! ```
//!
//! - [`teachers`] — training the teachers (resumable, shardable), checking an ensemble;
//! - [`pool`] — the public pool (`mnist:test[0:9000]` or a folder of images; `datasets::pool`);
//! - [`vote`] — the teachers' votes on the pool;
//! - [`student`] — the student: aggregation, analysis, training into a normal run directory.
pub use crate::datasets::pool;
pub mod student;
pub mod teachers;
pub mod vote;

pub use pool::{Pool, PoolItems, PoolSpec};
pub use student::{train_student, StudentJob, StudentOutcome, StudentReport};
pub use teachers::{check, train_teachers, Quiet, TeacherRow, TeachersObserver, TeachersReport};
pub use vote::{collect_votes, VotesInfo, VotesJob};

use crate::datasets::DatasetName;
use crate::train::{Partition, RunDir, TrainConfig};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The format tag of `pate.json`.
pub const FORMAT: &str = "fool-pate-ensemble/1";

/// `OUT/pate.json`: what every teacher of the ensemble shares.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: String,
    pub fool_version: String,
    pub dataset: DatasetName,
    /// N, the number of teachers (= parts of the partition).
    pub teachers: usize,
    /// Seed of the partition of the training pool.
    pub partition_seed: u64,
    /// The teachers' configuration (no partition; `seed` the base seed): teacher k is
    /// [`Manifest::teacher_config`].
    pub template: TrainConfig,
    /// Teachers are evaluated (after every epoch, and in the accuracy table) on the first N
    /// test examples; all when absent. Evaluation on the whole test split is most of a small
    /// teacher's time (10,000 images against a few hundred trained on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_examples: Option<usize>,
}

impl Manifest {
    pub fn new(template: TrainConfig, teachers: usize, partition_seed: u64) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            fool_version: env!("CARGO_PKG_VERSION").into(),
            dataset: template.dataset,
            teachers,
            partition_seed,
            template: TrainConfig {
                train_folder: None,
                partition: None,
                student: None,
                ..template
            },
            test_examples: None,
        }
    }

    /// Teacher k: the template on part k of the partition, with its own seed.
    pub fn teacher_config(&self, k: usize) -> TrainConfig {
        TrainConfig {
            seed: teacher_seed(self.template.seed, k),
            partition: Some(Partition {
                seed: self.partition_seed,
                index: k,
                parts: self.teachers,
            }),
            ..self.template.clone()
        }
    }

    /// The manifest of the ensemble in `root`, or None when there is no `pate.json`.
    pub fn read(root: &Path) -> Result<Option<Manifest>> {
        let p = manifest_path(root);
        if !p.exists() {
            return Ok(None);
        }
        let m: Manifest = crate::files::read_json(&p)?;
        if m.format != FORMAT {
            return Err(Error::bad_file(
                &p,
                format!("format '{}', expected {FORMAT}", m.format),
            ));
        }
        Ok(Some(m))
    }

    /// The manifest that must exist in `root`.
    pub fn open(root: &Path) -> Result<Manifest> {
        Manifest::read(root)?.ok_or_else(|| {
            Error::bad_file(
                root,
                "not a PATE ensemble: no pate.json (written by fool pate teachers)",
            )
        })
    }

    /// The first setting in which `self` (asked for) differs from `saved` (the ensemble's),
    /// the fool version aside: (field, asked, saved).
    pub fn differs(&self, saved: &Manifest) -> Option<(String, String, String)> {
        let a = serde_json::to_value(self).ok()?;
        let b = serde_json::to_value(saved).ok()?;
        first_difference(&a, &b, &["fool_version"])
    }
}

/// Where the manifest of the ensemble in `root` is.
pub fn manifest_path(root: &Path) -> PathBuf {
    root.join("pate.json")
}

/// The run directory of teacher `k` under `root`: `teacher-0007`.
pub fn teacher_dir(root: &Path, k: usize) -> RunDir {
    RunDir::new(root.join(format!("teacher-{k:04}")))
}

/// The seed of teacher `k` of an ensemble with base seed `seed`: a SplitMix64 draw of (seed,
/// k), kept below 2^48 (exact in JSON readers that use doubles).
pub fn teacher_seed(seed: u64, k: usize) -> u64 {
    let mut r = crate::rng::SplitMix64::new(seed ^ (k as u64).wrapping_mul(crate::rng::GOLDEN));
    r.next_u64();
    r.next_u64() & 0xFFFF_FFFF_FFFF
}

/// The first leaf (by key order) where two JSON values differ, keys in `skip` (at the top)
/// ignored: (the leaf's key, its value in `a`, in `b`). Nested keys are named by their last
/// part (`template.lr` → `lr`), except a partition's (`partition_seed`, `partition_index`).
pub(crate) fn first_difference(
    a: &serde_json::Value,
    b: &serde_json::Value,
    skip: &[&str],
) -> Option<(String, String, String)> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                if skip.contains(&k.as_str()) {
                    continue;
                }
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                if va == vb {
                    continue;
                }
                if let (Value::Object(_), Value::Object(_)) = (va, vb) {
                    if let Some((f, p, q)) = first_difference(va, vb, &[]) {
                        let f = match k.as_str() {
                            "partition" => format!("partition_{f}"),
                            _ => f,
                        };
                        return Some((f, p, q));
                    }
                }
                return Some((k.clone(), va.to_string(), vb.to_string()));
            }
            None
        }
        _ if a == b => None,
        _ => Some(("value".into(), a.to_string(), b.to_string())),
    }
}
