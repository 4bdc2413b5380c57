//! The student: the first `queries` rows of the votes go through a noisy aggregator, the
//! answered pool items with their noisy labels become the training set of a normal run
//! (`train::Run::train_on`, so `fool predict|bench|audit` take it), evaluated on the rows of
//! the test split held out from the pool. Its ε is the PATE analysis of those answers,
//! computed before training and recorded in `metadata.json` (`epsilon`, `delta`, `pate`) and
//! `pate.json`. Its `members.npy` lists the *private* data (the teachers' pool) and its
//! metadata the held-out `nonmembers`: `fool audit` then measures what the student leaks about
//! the teachers' training examples.
use super::pool::{self, PoolItems, PoolSpec};
use super::vote::{self, VotesInfo};
use super::Manifest;
use crate::datasets::{self, Split, TensorDataset};
use crate::privacy::pate::{aggregate, analyse, Aggregator, Settings, Votes};
use crate::train::{
    Metadata, Observer, Outcome, PateRecord, Progress, Resume, Run, RunDir, Splits, StudentData,
    TrainConfig,
};
use crate::{Error, Result};
use std::ops::Range;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// A student to train.
#[derive(Debug, Clone)]
pub struct StudentJob {
    /// The ensemble folder (its `pate.json`).
    pub ensemble: PathBuf,
    /// The votes [default: ENSEMBLE/votes.npy], with their `votes.json` beside them.
    pub votes: Option<PathBuf>,
    pub aggregator: Aggregator,
    pub queries: usize,
    pub delta: f64,
    /// Seed of the aggregator's noise, of the release of ε (derived) and of the training.
    pub seed: u64,
    /// The held-out test rows (`mnist:test[9000:10000]`) [default: the rest of the test split
    /// when the pool is a slice of it].
    pub test: Option<String>,
    /// The training settings (architecture, epochs, batch, lr, optimizer); its data set,
    /// seed and data folder are replaced by the ensemble's and the job's.
    pub training: TrainConfig,
    pub out: PathBuf,
    pub device: Device,
    /// Test images saved as PNG into OUT/samples.
    pub samples: usize,
}

/// `OUT/pate.json` of a student.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StudentReport {
    pub ensemble: PathBuf,
    pub votes: PathBuf,
    pub pool: String,
    pub test_rows: Range<usize>,
    /// Seed of the aggregator's noise, and of the noisy release of ε.
    pub noise_seed: u64,
    pub release_seed: u64,
    /// The ε the student publishes (see [`PateRecord::epsilon`]).
    pub epsilon: f64,
    pub delta: f64,
    pub record: PateRecord,
}

/// How [`train_student`] ended.
#[derive(Debug, Clone)]
pub enum StudentOutcome {
    Finished {
        metadata: Box<Metadata>,
        report: Box<StudentReport>,
    },
    /// The observer stopped the training (resumable with the same command).
    Stopped,
}

/// The held-out test rows: `test` when given (a slice of the test split, disjoint from the
/// pool), else the rest of the test split after or before a pool that is a slice of it.
fn held_out(
    job: &StudentJob,
    pool: &PoolItems,
    test_len: usize,
    m: &Manifest,
) -> Result<Range<usize>> {
    let pool_rows = match pool {
        PoolItems::Rows { split, start, end } if split == "test" => Some(*start..*end),
        _ => None,
    };
    let rows = match &job.test {
        Some(spec) => match PoolSpec::parse(spec).map_err(|e| rename(e, "test"))? {
            PoolSpec::Slice { dataset, split: Split::Test, start, end } if dataset == m.dataset => {
                PoolSpec::rows(spec, start, end, test_len).map_err(|e| rename(e, "test"))?
            }
            _ => {
                return Err(Error::field(
                    "test",
                    format!("'{spec}': expected a slice of the {} test split, e.g. {}:test[9000:10000]", m.dataset, m.dataset),
                ))
            }
        },
        None => match &pool_rows {
            Some(p) if p.start == 0 && p.end < test_len => p.end..test_len,
            Some(p) if p.start > 0 && p.end == test_len => 0..p.start,
            _ => {
                return Err(Error::field(
                    "test",
                    "needed: the pool is not a slice at the start or end of the test split, so give the held-out test rows (e.g. mnist:test[9000:10000])",
                ))
            }
        },
    };
    if let Some(p) = pool_rows {
        if rows.start < p.end && p.start < rows.end {
            return Err(Error::field(
                "test",
                format!(
                    "test rows [{}:{}] overlap the pool [{}:{}]",
                    rows.start, rows.end, p.start, p.end
                ),
            ));
        }
    }
    Ok(rows)
}

/// An error about the pool spec parser's `pool` field, renamed to `field`.
fn rename(e: Error, field: &str) -> Error {
    match e {
        Error::Invalid { msg, .. } => Error::field(field, msg),
        other => other,
    }
}

/// The student's run folder may not be the ensemble folder or inside it: its `pate.json` would
/// replace the ensemble's manifest, its files would sit among the teachers'.
fn refuse_inside(out: &Path, ensemble: &Path) -> Result<()> {
    let ens = ensemble
        .canonicalize()
        .map_err(|e| Error::io(ensemble, e))?;
    // `out` may not exist yet: resolve its deepest existing ancestor.
    let abs = std::path::absolute(out).map_err(|e| Error::io(out, e))?;
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(p), Some(name)) => {
                rest.push(name.to_os_string());
                existing = p;
            }
            _ => break,
        }
    }
    let mut resolved = existing
        .canonicalize()
        .map_err(|e| Error::io(existing, e))?;
    for name in rest.iter().rev() {
        resolved.push(name);
    }
    if resolved.starts_with(&ens) {
        return Err(Error::field(
            "out",
            format!(
                "{} is the ensemble folder {} or inside it; give the student a folder of its own",
                out.display(),
                ensemble.display()
            ),
        ));
    }
    Ok(())
}

/// Aggregate, analyse, train the student (resumable with the same job), write `pate.json`.
pub fn train_student(job: &StudentJob, obs: &mut dyn Observer) -> Result<StudentOutcome> {
    job.aggregator.check()?;
    if !(job.delta > 0.0 && job.delta < 1.0) {
        return Err(Error::field(
            "delta",
            format!("{} must be in (0, 1)", job.delta),
        ));
    }
    let m = Manifest::open(&job.ensemble)?;
    refuse_inside(&job.out, &job.ensemble)?;
    let votes_path = job
        .votes
        .clone()
        .unwrap_or_else(|| vote::default_path(&job.ensemble));
    let all = Votes::read(&votes_path)?;
    let info = VotesInfo::read(&votes_path)?;
    if info.queries != all.queries() || info.teachers != all.teachers() as usize {
        return Err(Error::bad_file(
            &VotesInfo::path(&votes_path),
            format!(
                "describes {} queries of {} teachers, but {} has {} of {}",
                info.queries,
                info.teachers,
                votes_path.display(),
                all.queries(),
                all.teachers()
            ),
        ));
    }
    let votes = all.head(job.queries)?;
    let answered = answered(&votes, &job.aggregator, job.seed)?;
    if answered.is_empty() {
        return Err(Error::field(
            "threshold",
            format!(
                "none of the {} queries was answered: lower the threshold",
                job.queries
            ),
        ));
    }
    let data_dir = &m.template.data_dir;
    let pool = pool::load(&info.pool, m.dataset, data_dir)?;
    if pool.items != info.items {
        return Err(Error::bad_file(
            &VotesInfo::path(&votes_path),
            format!(
                "the pool {} is no longer the one the teachers voted on",
                info.pool
            ),
        ));
    }
    let test_split = datasets::load(m.dataset, data_dir, Split::Test)?;
    let test_rows = held_out(job, &pool.items, test_split.len(), &m)?;
    let label_accuracy = pool.labels.as_ref().map(|t| {
        answered.iter().filter(|(q, l)| t[*q] == *l).count() as f64 / answered.len() as f64
    });
    let release_seed = crate::rng::fnv1a_parts(&["pate-release", &job.seed.to_string()]);
    let analysis = analyse(
        &all,
        &Settings {
            aggregator: job.aggregator,
            delta: job.delta,
            queries: Some(job.queries),
            seed: release_seed,
        },
    )?;
    let record = PateRecord {
        aggregator: job.aggregator,
        teachers: votes.teachers(),
        queries: job.queries,
        answered: answered.len(),
        label_accuracy,
        epsilon_data_independent: analysis.epsilon_data_independent,
        epsilon_data_dependent: analysis.epsilon_data_dependent,
        epsilon_released: analysis
            .smooth_sensitivity
            .as_ref()
            .map(|s| s.epsilon_released),
        analysis,
    };
    let digest = crate::rng::fnv1a(answered.iter().flat_map(|&(q, l)| {
        (q as u64)
            .to_le_bytes()
            .into_iter()
            .chain((l as u64).to_le_bytes())
    }));
    let config = TrainConfig {
        dataset: m.dataset,
        data_dir: data_dir.clone(),
        limit: None,
        half: None,
        dp: None,
        checkpoint_every: 0,
        audit_every: 0,
        train_folder: None,
        recipe: Default::default(),
        partition: None,
        student: Some(StudentData {
            pool: info.pool.clone(),
            queries: job.queries,
            aggregator: job.aggregator,
            noise_seed: job.seed,
            answered: answered.len(),
            labels_digest: format!("{digest:016x}"),
            test_rows: test_rows.clone(),
            private_rows: info.private_rows,
        }),
        seed: job.seed,
        ..job.training.clone()
    };
    let dir = RunDir::new(&job.out);
    refuse_other_run(&dir, &config)?;
    let positions: Vec<i64> = answered.iter().map(|&(q, _)| q as i64).collect();
    let noisy: Vec<i64> = answered.iter().map(|&(_, l)| l as i64).collect();
    let idx = Tensor::from_slice(&positions);
    let splits = Splits {
        train: TensorDataset {
            name: m.dataset,
            split: Split::Train,
            images: pool.data.images.index_select(0, &idx),
            labels: Tensor::from_slice(&noisy),
            classes: test_split.classes.clone(),
        },
        test: TensorDataset {
            name: m.dataset,
            split: Split::Test,
            images: test_split
                .images
                .narrow(0, test_rows.start as i64, test_rows.len() as i64),
            labels: test_split
                .labels
                .narrow(0, test_rows.start as i64, test_rows.len() as i64),
            classes: test_split.classes.clone(),
        },
    };
    let run = Run {
        resume: Resume::IfSame,
        samples: job.samples,
        keep_state: false,
        pate: Some(record.clone()),
        ..Run::new(config, dir.clone(), job.device)
    };
    let metadata = match run.train_on(&splits, obs)? {
        Outcome::Finished(meta) => meta,
        Outcome::Stopped { .. } => return Ok(StudentOutcome::Stopped),
    };
    let report = StudentReport {
        ensemble: job.ensemble.clone(),
        votes: votes_path,
        pool: info.pool,
        test_rows,
        noise_seed: job.seed,
        release_seed,
        epsilon: record.epsilon(),
        delta: job.delta,
        record,
    };
    crate::files::write_json(&dir.root().join("pate.json"), &report)?;
    Ok(StudentOutcome::Finished {
        metadata,
        report: Box::new(report),
    })
}

/// A folder that holds another run (other settings) is not overwritten.
fn refuse_other_run(dir: &RunDir, config: &TrainConfig) -> Result<()> {
    if dir.progress(config) != Progress::Fresh {
        return Ok(());
    }
    let other = match dir.metadata() {
        Ok(Some(m)) => Some(m.config),
        Ok(None) => dir.state().map(|s| s.config),
        Err(e) => return Err(e),
    };
    if let Some(c) = other {
        let a = serde_json::to_value(config).unwrap_or_default();
        let b = serde_json::to_value(&c).unwrap_or_default();
        let what = super::first_difference(&a, &b, &[])
            .map(|(f, x, y)| format!(" ({f}: {y} there, {x} now)"))
            .unwrap_or_default();
        return Err(Error::field(
            "out",
            format!(
                "{} already holds another training run{what}; choose another folder",
                dir.root().display()
            ),
        ));
    }
    Ok(())
}

/// The queries the aggregator answers, with their noisy labels: (query, label).
pub fn answered(votes: &Votes, agg: &Aggregator, seed: u64) -> Result<Vec<(usize, usize)>> {
    Ok(aggregate(votes, agg, seed)?
        .into_iter()
        .enumerate()
        .filter_map(|(q, l)| l.map(|l| (q, l)))
        .collect())
}
