//! A whole membership audit as `fool audit` runs it: members and non-members from saved
//! outputs or from a model run on its data set (its run directory says which examples it
//! was trained on), the classic attacks of [`crate::audit`], LiRA on the model's run, and the
//! files of [`audit::write_outputs`].
use super::{LiraObserver, LiraOptions, LiraOutcome, Quiet, Target, Variance};
use crate::audit::{self, AuditOptions, AuditReport, ModelRun, OutputKind, Outputs};
use crate::datasets::{self, DatasetName, Split};
use crate::files::ensure_writable_dir;
use crate::rng::subsample;
use crate::train::RunDir;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tch::Device;

/// Where the members' and non-members' outputs come from.
#[derive(Debug, Clone)]
pub enum Examples {
    /// Saved outputs, (n, C) float32/float64 `.npy`, and their labels, (n,) integer `.npy`.
    Arrays {
        member_outputs: PathBuf,
        member_labels: PathBuf,
        nonmember_outputs: PathBuf,
        nonmember_labels: PathBuf,
        kind: OutputKind,
    },
    /// A model run on its data set.
    Model(ModelSource),
}

/// A TorchScript model (taking (N,3,H,W) pixels in [0,1]) to run on its data set: the
/// members are training examples, the non-members the test split.
#[derive(Debug, Clone)]
pub struct ModelSource {
    pub model: PathBuf,
    /// The data set [default: the one in the metadata.json beside the model].
    pub dataset: Option<DatasetName>,
    /// Its folder [default: the data set's default folder, for LiRA the target's].
    pub data_dir: Option<PathBuf>,
    /// Members: the first N training examples [default: the run's members.npy, else the
    /// first `train_examples` of its metadata.json].
    pub members: Option<usize>,
    /// Images per forward pass.
    pub batch: usize,
    pub device: Device,
    /// Also run LiRA on the model's run.
    pub lira: Option<LiraSettings>,
}

/// LiRA's settings (see [`LiraOptions`]).
#[derive(Debug, Clone)]
pub struct LiraSettings {
    pub shadows: usize,
    pub shadow_dir: Option<PathBuf>,
    pub epochs: Option<usize>,
    pub variance: Variance,
    pub flip: bool,
}

/// A membership audit.
#[derive(Debug, Clone)]
pub struct AuditJob {
    pub examples: Examples,
    /// Attacks (LiRA's only run with [`ModelSource::lira`], ignored without), slices, the
    /// logistic regression's settings, and the seed of the `max_examples` subsets.
    pub options: AuditOptions,
    /// Use at most N members and N non-members (a random subset chosen with the seed).
    pub max_examples: Option<usize>,
    /// Also write audit.json, audit.csv and roc.png/svg into this folder.
    pub out: Option<PathBuf>,
}

/// Progress of [`run_audit`]: LiRA's, and the model run on the members and non-members.
pub trait AuditObserver: LiraObserver {
    /// The model is about to be run on `examples` examples.
    fn running(&mut self, _examples: usize) {}
    /// It has been run on `examples` more.
    fn ran(&mut self, _examples: usize) {}
    /// It has been run on all of them.
    fn ran_all(&mut self) {}
}

impl AuditObserver for Quiet {}

/// How [`run_audit`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// The rows, and one sentence per audit saying what was audited.
    Done {
        report: AuditReport,
        audited: Vec<String>,
    },
    /// The observer stopped LiRA's shadow training; the next run resumes it.
    Stopped,
}

/// Run the audit: check everything, read or compute the outputs, run the classic attacks and
/// LiRA, write the files of `out`.
pub fn run_audit(job: &AuditJob, obs: &mut dyn AuditObserver) -> Result<JobOutcome> {
    job.options.validate()?;
    let lira = match &job.examples {
        Examples::Model(src) => match &src.lira {
            Some(l) => Some(lira_setup(job, src, l)?),
            None => None,
        },
        Examples::Arrays { .. } => None,
    };
    let mut options = job.options.clone();
    if lira.is_none() {
        options.attacks.retain(|k| !k.is_lira());
    }
    let mut audited = Vec::new();
    let mut report = AuditReport {
        results: Vec::new(),
        skipped: Vec::new(),
    };
    if options.attacks.iter().any(|k| !k.is_lira()) {
        let (members, nonmembers, what) = match &job.examples {
            Examples::Model(src) => from_model(job, src, obs)?,
            Examples::Arrays {
                member_outputs,
                member_labels,
                nonmember_outputs,
                nonmember_labels,
                kind,
            } => {
                if job.max_examples == Some(0) {
                    return Err(Error::field("max_examples", "must be at least 1"));
                }
                let m = audit::read_outputs_npy(member_outputs, member_labels, *kind)?;
                let n = audit::read_outputs_npy(nonmember_outputs, nonmember_labels, *kind)?;
                audit::check_pair(&m, &n)?;
                let what = format!(
                    "members = {} ({} rows), non-members = {} ({} rows)",
                    member_outputs.display(),
                    m.n,
                    nonmember_outputs.display(),
                    n.n
                );
                let (m, n) = match job.max_examples {
                    Some(max) => (
                        m.select(&subsample(m.n, max, options.seed)),
                        n.select(&subsample(n.n, max, options.seed)),
                    ),
                    None => (m, n),
                };
                options.check_folds(m.n, n.n)?;
                (m, n, what)
            }
        };
        audited.push(what);
        if let Some(dir) = &job.out {
            ensure_writable_dir(dir, "out")?;
        }
        report = audit::audit(&members, &nonmembers, &options)?;
    } else if let Some(dir) = &job.out {
        ensure_writable_dir(dir, "out")?;
    }
    if let Some((target, lo)) = &lira {
        let r = match super::run(target, lo, obs)? {
            LiraOutcome::Stopped => return Ok(JobOutcome::Stopped),
            LiraOutcome::Done(r) => r,
        };
        audited.push(format!(
            "LiRA on {}: {} shadow models in {} ({} σ); pool = the first {} {} training examples, members = {} of them (members.npy), non-members = {} others",
            target.model.display(),
            lo.shadows,
            r.shadow_dir.display(),
            if r.global_variance { "global" } else { "per-example" },
            r.pool,
            target.config.dataset,
            r.members,
            r.nonmembers
        ));
        report.results.extend(r.report.results);
        report.skipped.extend(r.report.skipped);
    }
    if let Some(dir) = &job.out {
        audit::write_outputs(dir, &report.results)?;
    }
    Ok(JobOutcome::Done { report, audited })
}

/// The data set of a model: the one asked for, which must be the one its metadata names.
fn dataset_of(
    asked: Option<DatasetName>,
    trained: Option<DatasetName>,
    model: &Path,
) -> Result<DatasetName> {
    match (asked, trained) {
        (Some(d), Some(m)) if d != m => Err(Error::field(
            "dataset",
            format!(
                "{d}, but the metadata.json beside {} says the model was trained on {m}",
                model.display()
            ),
        )),
        (Some(d), _) | (None, Some(d)) => Ok(d),
        (None, None) => Err(Error::field(
            "dataset",
            format!(
                "needed: there is no metadata.json beside {} to say which data set the model was trained on (mnist or cifar10)",
                model.display()
            ),
        )),
    }
}

/// The LiRA part of a job: the target and its options, checked before anything runs.
fn lira_setup(
    job: &AuditJob,
    src: &ModelSource,
    l: &LiraSettings,
) -> Result<(Target, LiraOptions)> {
    if src.members.is_some() {
        return Err(Error::field(
            "members",
            "not used by LiRA (its members are the target's members.npy)",
        ));
    }
    let attacks: Vec<_> = job
        .options
        .attacks
        .iter()
        .copied()
        .filter(|k| k.is_lira())
        .collect();
    if attacks.is_empty() {
        return Err(Error::field(
            "attacks",
            "none of them is a LiRA attack (lira-offline, lira-online, lira), but LiRA shadow models were asked for",
        ));
    }
    let target = Target::load(&src.model)?;
    dataset_of(src.dataset, Some(target.config.dataset), &src.model)?;
    let lo = LiraOptions {
        shadow_dir: l.shadow_dir.clone(),
        epochs: l.epochs,
        variance: l.variance,
        flip: l.flip,
        attacks,
        slices: job.options.slices,
        data_dir: src.data_dir.clone(),
        max_examples: job.max_examples,
        seed: job.options.seed,
        batch: src.batch,
        ..LiraOptions::new(l.shadows, src.device)
    };
    Ok((target, lo))
}

/// Members and non-members from a model run on its data set, and a description.
fn from_model(
    job: &AuditJob,
    src: &ModelSource,
    obs: &mut dyn AuditObserver,
) -> Result<(Outputs, Outputs, String)> {
    let model = &src.model;
    let run = RunDir::of_model(model);
    let meta = run.metadata()?;
    let dataset = dataset_of(src.dataset, meta.as_ref().map(|m| m.dataset), model)?;
    if job.max_examples == Some(0) {
        return Err(Error::field("max_examples", "must be at least 1"));
    }
    let members_npy = run.members_path();
    let (members, members_what): (Vec<usize>, String) = if let Some(n) = src.members {
        ((0..n).collect(), format!("the first {n} training examples"))
    } else if let Some(idx) = run.members()? {
        let what = format!(
            "the {} training examples listed in {}",
            idx.len(),
            members_npy.display()
        );
        (idx, what)
    } else if let Some(m) = &meta {
        let n = m.train_examples;
        (
            (0..n).collect(),
            format!("the first {n} training examples (metadata.json)"),
        )
    } else {
        return Err(Error::field(
            "members",
            format!(
                "no metadata.json with train_examples (nor members.npy) beside {}; give the number N of members (the model was trained on the first N training examples)",
                model.display()
            ),
        ));
    };
    if members.is_empty() {
        return Err(Error::field(
            "members",
            "0 members; need at least one training example",
        ));
    }
    let dir = src
        .data_dir
        .clone()
        .unwrap_or_else(|| dataset.default_dir());
    let train = datasets::load(dataset, &dir, Split::Train)?;
    let test = datasets::load(dataset, &dir, Split::Test)?;
    if let Some(&i) = members.iter().find(|&&i| i >= train.len()) {
        let msg = format!(
            "member index {i} is outside the {dataset} training split, which has {} examples",
            train.len()
        );
        return Err(match src.members {
            Some(_) => Error::field("members", msg),
            None => Error::bad_file(&members_npy, msg),
        });
    }
    if !model.exists() {
        return Err(Error::bad_file(
            model,
            "no such model file (expected a TorchScript .pt)",
        ));
    }
    let module = crate::model::load_torchscript(model, src.device)?;
    let seed = job.options.seed;
    let max = job.max_examples.unwrap_or(usize::MAX);
    let idx_m: Vec<usize> = subsample(members.len(), max, seed)
        .into_iter()
        .map(|i| members[i])
        .collect();
    // Non-members: the rows the run's metadata names (a PATE student's held-out rows), else
    // the whole test split.
    let (nonmembers, nonmembers_what): (Vec<usize>, String) =
        match meta.as_ref().and_then(|m| m.nonmembers.clone()) {
            Some(r) if r.end <= test.len() && r.start < r.end => (
                r.clone().collect(),
                format!(
                    "the {} held-out test examples [{}:{}] (metadata.json)",
                    r.len(),
                    r.start,
                    r.end
                ),
            ),
            Some(r) => {
                return Err(Error::bad_file(
                    &run.metadata_path(),
                    format!(
                        "nonmembers [{}:{}] are not rows of the {dataset} test split, which has {} examples",
                        r.start,
                        r.end,
                        test.len()
                    ),
                ))
            }
            None => (
                (0..test.len()).collect(),
                format!("the {} test examples", test.len()),
            ),
        };
    let idx_n: Vec<usize> = subsample(nonmembers.len(), max, seed)
        .into_iter()
        .map(|i| nonmembers[i])
        .collect();
    job.options.check_folds(idx_m.len(), idx_n.len())?;
    obs.running(idx_m.len() + idx_n.len());
    let mr = ModelRun {
        module: &module,
        path: model,
        batch: src.batch,
        device: src.device,
    };
    let m = audit::model_outputs(&mr, &train, &idx_m, &mut |k| obs.ran(k))?;
    let n = audit::model_outputs(&mr, &test, &idx_n, &mut |k| obs.ran(k))?;
    obs.ran_all();
    let sub = |k: usize, of: usize| {
        if k < of {
            format!(" ({k} of them, seed {seed})")
        } else {
            String::new()
        }
    };
    let what = format!(
        "{} on {dataset}: members = {members_what}{}, non-members = {nonmembers_what}{}",
        model.display(),
        sub(idx_m.len(), members.len()),
        sub(idx_n.len(), nonmembers.len())
    );
    Ok((m, n, what))
}
