//! What a run trains and is tested on: the splits in memory ([`Splits`], from the data set's
//! files or a labelled image folder), the rows a configuration trains on ([`member_indices`]:
//! a limit, a seeded half, a part of a seeded partition) and the run's [`Data`].
use super::config::Partition;
use super::TrainConfig;
use crate::datasets::{self, DatasetName, Split, TensorDataset};
use crate::Result;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The training and test splits of a data set, in memory.
pub struct Splits {
    pub train: TensorDataset,
    pub test: TensorDataset,
}

impl Splits {
    /// Read both splits of `dataset` from `dir`.
    pub fn load(dataset: DatasetName, dir: &Path) -> Result<Splits> {
        Ok(Splits {
            train: datasets::load(dataset, dir, Split::Train)?,
            test: datasets::load(dataset, dir, Split::Test)?,
        })
    }

    /// A labelled image folder (`labels.csv`) as the training split, the test split of
    /// `dataset` from `dir`.
    pub fn with_folder(folder: &Path, dataset: DatasetName, dir: &Path) -> Result<Splits> {
        let spec = folder.to_string_lossy();
        let pool = datasets::pool::load(&spec, dataset, dir).map_err(|e| match e {
            crate::Error::Invalid { msg, .. } => crate::Error::field("data", msg),
            e => e,
        })?;
        if pool.labels.is_none() {
            return Err(crate::Error::bad_file(
                folder,
                "no labels.csv: a training folder needs labels (columns file,index)",
            ));
        }
        let mut train = pool.data;
        train.split = Split::Train;
        Ok(Splits {
            train,
            test: datasets::load(dataset, dir, Split::Test)?,
        })
    }
}

/// Data of a run.
pub struct Data {
    pub train: TensorDataset,
    /// The test split (or its first rows) the run evaluates on.
    pub test: TensorDataset,
    pub train_len: usize,
    /// Row indices (into the training split) of the examples trained on, sorted.
    pub members: Tensor,
}

impl Data {
    /// The data a configuration trains on, sharing the tensors of `splits`; evaluation on the
    /// first `test_rows` test examples when given.
    pub fn new(splits: &Splits, cfg: &TrainConfig, test_rows: Option<usize>) -> Data {
        let members = member_indices(
            cfg.pool(splits.train.len()),
            cfg.half,
            cfg.partition.as_ref(),
        );
        Data {
            train: splits.train.head(None),
            test: splits.test.head(test_rows),
            train_len: members.size()[0] as usize,
            members,
        }
    }
}

/// Which rows of the training split a configuration trains on: the first `limit` rows, a
/// seeded random half of them, or one part of a seeded partition of them ([`partition_part`]).
pub fn member_indices(limit: usize, half: Option<u64>, partition: Option<&Partition>) -> Tensor {
    let all = Tensor::arange(limit as i64, (Kind::Int64, Device::Cpu));
    if let Some(p) = partition {
        let part: Vec<i64> = partition_part(limit, p)
            .into_iter()
            .map(|i| i as i64)
            .collect();
        return Tensor::from_slice(&part);
    }
    match half {
        None => all,
        Some(seed) => {
            // A seeded permutation from the library's generator (not torch's global one), so
            // the split does not depend on anything else the process drew. The legacy stream
            // and modulo draw keep the halves of earlier runs (see `rng`).
            let mut idx: Vec<i64> = (0..limit as i64).collect();
            crate::rng::SplitMix64::legacy(seed).shuffle_mod(&mut idx);
            let mut chosen = idx[..limit / 2].to_vec();
            chosen.sort_unstable();
            Tensor::from_slice(&chosen)
        }
    }
}

/// Part `p.index` of the partition of `0..pool` into `p.parts` parts: a permutation drawn
/// with `p.seed` cut into contiguous chunks (the first `pool % parts` one longer), sorted.
/// The parts are disjoint and cover the pool; a part is empty when there are more parts than
/// rows.
pub fn partition_part(pool: usize, p: &Partition) -> Vec<usize> {
    let parts = p.parts.max(1);
    let (base, extra) = (pool / parts, pool % parts);
    let start = p.index * base + p.index.min(extra);
    let len = if p.index < parts {
        base + usize::from(p.index < extra)
    } else {
        0
    };
    let perm = crate::rng::SplitMix64::new(p.seed).permutation(pool);
    let mut part = perm[start.min(pool)..(start + len).min(pool)].to_vec();
    part.sort_unstable();
    part
}
