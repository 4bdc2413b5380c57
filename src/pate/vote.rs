//! The teachers' votes on a pool: every teacher's exported model (loaded once) predicts every
//! pool item (batched, no gradients), the predictions are counted into a `(Q, C)`
//! [`Votes`] matrix written as `votes.npy`, with `votes.json` beside it saying which items
//! they are, their true labels (when known) and each teacher's agreement with them. Both
//! files are written together or not at all.
use super::pool::{self, PoolItems};
use super::{check, Manifest};
use crate::datasets::{DatasetName, Feed};
use crate::privacy::pate::Votes;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The format tag of `votes.json`.
pub const FORMAT: &str = "fool-pate-votes/1";

/// What to vote on.
#[derive(Debug, Clone)]
pub struct VotesJob {
    pub ensemble: PathBuf,
    pub pool: String,
    /// The `.npy` file [default: ENSEMBLE/votes.npy]; the `.json` goes beside it.
    pub out: Option<PathBuf>,
    /// Images per forward pass.
    pub batch: usize,
    pub device: Device,
}

/// `votes.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VotesInfo {
    pub format: String,
    pub fool_version: String,
    pub ensemble: PathBuf,
    /// The pool spec.
    pub pool: String,
    pub dataset: DatasetName,
    pub items: PoolItems,
    /// The pool's true labels, when it has them.
    pub labels: Option<Vec<usize>>,
    pub teachers: usize,
    pub classes: usize,
    pub queries: usize,
    /// Per teacher: the fraction of pool items it labels correctly.
    pub agreement: Option<Vec<f64>>,
    /// The fraction of pool items whose plurality vote (no noise) is the true label.
    pub plurality_accuracy: Option<f64>,
    /// The rows of the training split the teachers trained on (the private data).
    pub private_rows: usize,
    pub seconds: f64,
}

impl VotesInfo {
    /// `votes.json` beside a votes `.npy` file.
    pub fn path(npy: &Path) -> PathBuf {
        npy.with_extension("json")
    }

    pub fn read(npy: &Path) -> Result<VotesInfo> {
        let p = VotesInfo::path(npy);
        let info: VotesInfo = crate::files::read_json(&p)?;
        if info.format != FORMAT {
            return Err(Error::bad_file(
                &p,
                format!("format '{}', expected {FORMAT}", info.format),
            ));
        }
        Ok(info)
    }
}

/// Where the votes of `ensemble` go by default.
pub fn default_path(ensemble: &Path) -> PathBuf {
    ensemble.join("votes.npy")
}

/// Check the ensemble, load the pool, let every teacher vote (`on_teacher(k)` after teacher
/// k), write the two files; return the votes, their description and the `.npy` path.
pub fn collect_votes(
    job: &VotesJob,
    on_teacher: &mut dyn FnMut(usize),
) -> Result<(Votes, VotesInfo, PathBuf)> {
    let start = std::time::Instant::now();
    let out = job
        .out
        .clone()
        .unwrap_or_else(|| default_path(&job.ensemble));
    if out.extension().is_none_or(|e| e != "npy") {
        return Err(Error::field(
            "out",
            format!("{}: the votes file must end in .npy", out.display()),
        ));
    }
    // The two outputs may only replace an earlier pair of votes files: never a teacher's
    // members.npy, the manifest (`--out OUT/pate.npy` would write OUT/pate.json) or any input.
    let json = VotesInfo::path(&out);
    if (out.exists() || json.exists()) && VotesInfo::read(&out).is_err() {
        return Err(Error::field(
            "out",
            format!(
                "{} or {} exists and is not a votes file written by fool pate votes: choose another path",
                out.display(),
                json.display()
            ),
        ));
    }
    if job.batch == 0 {
        return Err(Error::field("batch", "must be at least 1"));
    }
    let (manifest, report) = check(&job.ensemble)?;
    let private_rows: usize = report.rows.iter().map(|r| r.train_examples).sum();
    let pool = pool::load(&job.pool, manifest.dataset, &manifest.template.data_dir)?;
    check_private(&pool.items, &job.pool, private_rows)?;
    let classes = manifest.dataset.num_classes();
    let q = pool.len();
    let rows: Vec<usize> = (0..q).collect();
    let batches: Vec<Tensor> = pool
        .data
        .batches(&rows, job.batch, job.device, Feed::Rgb)
        .map(|b| b.images)
        .collect();
    let mut counts = vec![0u32; q * classes];
    let mut correct = vec![];
    for k in 0..manifest.teachers {
        let predicted = predict(&manifest, &job.ensemble, k, &batches, classes, job.device)?;
        for (i, &c) in predicted.iter().enumerate() {
            counts[i * classes + c] += 1;
        }
        if let Some(l) = &pool.labels {
            correct.push(predicted.iter().zip(l).filter(|(p, t)| p == t).count());
        }
        on_teacher(k);
    }
    let votes = Votes::new(counts, classes)?;
    let plurality = pool.labels.as_ref().map(|l| {
        let right = votes
            .rows()
            .zip(l)
            .filter(|(r, &t)| crate::privacy::pate::votes::argmax(r) == t)
            .count();
        right as f64 / q as f64
    });
    let info = VotesInfo {
        format: FORMAT.into(),
        fool_version: env!("CARGO_PKG_VERSION").into(),
        ensemble: job.ensemble.clone(),
        pool: job.pool.clone(),
        dataset: manifest.dataset,
        items: pool.items.clone(),
        labels: pool.labels.clone(),
        teachers: manifest.teachers,
        classes,
        queries: q,
        agreement: pool
            .labels
            .as_ref()
            .map(|_| correct.iter().map(|&c| c as f64 / q as f64).collect()),
        plurality_accuracy: plurality,
        private_rows,
        seconds: start.elapsed().as_secs_f64(),
    };
    write(&votes, &info, &out)?;
    Ok((votes, info, out))
}

/// A pool from the training split must not overlap the teachers' training examples.
fn check_private(items: &PoolItems, spec: &str, private_rows: usize) -> Result<()> {
    if let PoolItems::Rows { split, start, .. } = items {
        if split == "train" && *start < private_rows {
            return Err(Error::field(
                "pool",
                format!(
                    "'{spec}' overlaps the teachers' private training examples (the first {private_rows} rows of the training split); take the pool from the test split or from rows {private_rows} and above"
                ),
            ));
        }
    }
    Ok(())
}

/// Teacher k's predicted class of every pool item.
fn predict(
    manifest: &Manifest,
    root: &Path,
    k: usize,
    batches: &[Tensor],
    classes: usize,
    device: Device,
) -> Result<Vec<usize>> {
    let path = super::teacher_dir(root, k).model_path();
    let module = crate::model::load_torchscript(&path, device)?;
    let mut out = vec![];
    for x in batches {
        let logits = tch::no_grad(|| module.forward_ts(&[x])).map_err(|e| {
            Error::bad_file(
                &path,
                format!(
                    "forward pass on the pool failed: {}",
                    crate::error::first_line(&e.to_string())
                ),
            )
        })?;
        let shape = logits.size();
        if shape != [x.size()[0], classes as i64] {
            return Err(Error::bad_file(
                &path,
                format!(
                    "output of shape {shape:?} for {} images, expected ({}, {classes}) logits of {}",
                    x.size()[0],
                    x.size()[0],
                    manifest.dataset
                ),
            ));
        }
        let p = logits
            .argmax(1, false)
            .to_device(Device::Cpu)
            .to_kind(Kind::Int64);
        out.extend(Vec::<i64>::try_from(p)?.into_iter().map(|c| c as usize));
    }
    Ok(out)
}

/// Write `votes.npy` and `votes.json` together (all or nothing).
fn write(votes: &Votes, info: &VotesInfo, npy: &Path) -> Result<()> {
    use ndarray_npy::WriteNpyExt;
    let data: Vec<i64> = votes.rows().flatten().map(|&c| i64::from(c)).collect();
    let arr = ndarray::Array2::from_shape_vec((votes.queries(), votes.classes()), data)
        .map_err(|e| Error::internal("vote matrix", e))?;
    let mut batch = crate::files::Batch::default();
    batch.stage(npy, |f| {
        arr.write_npy(std::io::BufWriter::new(f))
            .map_err(|e| Error::bad_file(npy, format!("cannot write .npy: {e}")))
    })?;
    let jp = VotesInfo::path(npy);
    batch.stage(&jp, |f| crate::files::json_into(info, true, &jp, f))?;
    batch.commit()
}
