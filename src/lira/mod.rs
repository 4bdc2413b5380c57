//! LiRA, the likelihood-ratio membership-inference attack of Carlini et al., "Membership
//! Inference Attacks From First Principles" (IEEE S&P 2022).
//!
//! Setup (as in the paper): a *pool* of examples — the first `limit` rows of the training
//! split the target was trained on — of which the target saw a random half (its
//! `members.npy`, trained with the `half` setting); the other half are the non-members. N
//! *shadow* models are trained with the target's configuration on other random halves of
//! the same pool (`half = 1000 + i`, seed `seed + 1000 + i`), so every pool example is IN
//! about half of the shadows and OUT of the others.
//!
//! For every pool example and every model the attack reads the *logit-scaled confidence*
//! φ = log p_y − log Σ_{j≠y} p_j, computed from the logits z as z_y − logsumexp_{j≠y} z_j
//! (exact, no clipping of probabilities; see [`score::logit_confidence`]). Then, per example:
//!
//! * **online** (`lira-online`): Gaussians N(μ_in, σ_in²) and N(μ_out, σ_out²) fitted to φ
//!   over the shadows that had the example IN, resp. OUT; score = log N(φ_target; μ_in,
//!   σ_in) − log N(φ_target; μ_out, σ_out).
//! * **offline** (`lira-offline`): only the OUT fit; one-sided test, score = log
//!   Φ((φ_target − μ_out) / σ_out) (higher = member), with a stable log-CDF
//!   ([`crate::special::norm_logcdf`]).
//!
//! μ is the mean of the shadows' φ (the paper's code uses the median). σ is either per
//! example (population std, as `np.std`) or one *global* σ shared by every example and by
//! the IN and OUT fits — the paper's "fixed variance", which it recommends with few shadows
//! ([`Variance::Auto`]: global below 64 shadows). The global σ is the pooled within-example
//! standard deviation of the IN and OUT values; with one σ for everything the ranking of
//! the examples (hence every metric) does not depend on its value, as in the paper's code.
//! Per-example fits that have fewer than 2 values (or zero spread) fall back to the global
//! σ. Examples that no shadow had IN (online) or OUT (online and offline) cannot be scored:
//! they are left out of that attack's metrics and counted in the report's `skipped`.
//!
//! Queries: the paper averages the per-augmentation scores over training augmentations
//! (horizontal flips and shifts on CIFAR-10). Training does not augment, so by default
//! there is one query (the image itself); [`LiraOptions::flip`] adds the horizontal flip
//! as a second query, fitted separately and averaged in the score as the paper does.
//!
//! Shadow models ([`shadows`]) are trained in-process by [`crate::train::Run`], each in the
//! run directory `DIR/shadow-NNN/` (`model.pt`, `metadata.json`, `members.npy`, …) with its
//! state saved after every epoch: an interrupted run resumes the partial shadow from its
//! `state/` and does not retrain the finished ones. Shadows evaluate their per-epoch test
//! accuracy on the first 1000 test examples only (their metadata says so); that does not
//! touch the attack. The statistics are in [`score`].
//!
//! [`job`] runs a whole membership audit as `fool audit` does: the classic attacks of
//! [`crate::audit`] on a model's run directory or saved outputs, and LiRA.
pub mod job;
pub mod score;
pub mod shadows;

pub use crate::special::norm_logcdf;
pub use job::{
    run_audit, AuditJob, AuditObserver, Examples, JobOutcome, LiraSettings, ModelSource,
};
pub use score::{
    logit_confidence, norm_logpdf, scores, Confidences, Scores, Variance, GLOBAL_VARIANCE_BELOW,
};
pub use shadows::{shadow_config, shadow_dir, Shadows, HALF_BASE};

use crate::audit::{result_row, AuditReport, MiaKind, ModelRun, Skipped, SliceSpec};
use crate::rng::subsample;
use crate::train::{self, RunDir, Splits, TrainConfig};
use crate::{Error, Result};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use tch::Device;

/// The target of a LiRA audit: a run trained on a random half of its pool.
#[derive(Debug, Clone)]
pub struct Target {
    pub model: PathBuf,
    /// The run directory that holds it.
    pub run: RunDir,
    /// Its training configuration (from `metadata.json`).
    pub config: TrainConfig,
    /// Its members (rows of the training split, sorted), from `members.npy`.
    pub members: Vec<usize>,
}

/// What LiRA needs of its target, said in the errors.
const NEED: &str = "LiRA needs a target trained on a random half of its pool (the `half` training setting), listed in members.npy";

impl Target {
    /// Read the configuration and members of the run `model` belongs to; it must have been
    /// trained on a random half of its pool.
    pub fn load(model: &Path) -> Result<Target> {
        let run = RunDir::of_model(model);
        let Some(meta) = run.metadata()? else {
            return Err(Error::field(
                "lira_shadows",
                format!("no metadata.json beside {}; {NEED}", model.display()),
            ));
        };
        if meta.config.half.is_none() {
            return Err(Error::field(
                "lira_shadows",
                format!(
                    "{} was trained on all of its examples, not on a random half; {NEED}",
                    model.display()
                ),
            ));
        }
        let members = run
            .members()?
            .ok_or_else(|| Error::bad_file(&run.members_path(), format!("missing; {NEED}")))?;
        Ok(Target {
            model: model.to_path_buf(),
            run,
            config: meta.config,
            members,
        })
    }

    /// Pool size: the first `limit` rows of a training split of `train_len` rows.
    pub fn pool(&self, train_len: usize) -> usize {
        self.config.pool(train_len)
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct LiraOptions {
    /// Number of shadow models (≥ 2).
    pub shadows: usize,
    /// Where the shadows live [default: `lira-shadows` beside the target].
    pub shadow_dir: Option<PathBuf>,
    /// Epochs of each shadow [default: the target's].
    pub epochs: Option<usize>,
    pub variance: Variance,
    /// Also query the horizontally flipped image (see the module docs).
    pub flip: bool,
    /// Which of `lira-offline` / `lira-online` to report (others are ignored).
    pub attacks: Vec<MiaKind>,
    pub slices: SliceSpec,
    /// Data set folder [default: the target's `data_dir`].
    pub data_dir: Option<PathBuf>,
    /// Score at most this many members and this many non-members (chosen with `seed`).
    pub max_examples: Option<usize>,
    pub seed: u64,
    /// Images per forward pass when scoring.
    pub batch: usize,
    pub device: Device,
}

impl LiraOptions {
    pub fn new(shadows: usize, device: Device) -> LiraOptions {
        LiraOptions {
            shadows,
            shadow_dir: None,
            epochs: None,
            variance: Variance::Auto,
            flip: false,
            attacks: MiaKind::LIRA.to_vec(),
            slices: SliceSpec::default(),
            data_dir: None,
            max_examples: None,
            seed: 0,
            batch: 500,
            device,
        }
    }
}

/// Progress of [`run`]; every method has a default that does nothing / goes on.
pub trait LiraObserver {
    /// Shadow training begins: `total` epochs over all shadows, `done` of them already
    /// done (finished shadows and saved epochs of a partial one).
    fn training(&mut self, _total: usize, _done: usize) {}
    /// Shadow `shadow` starts (or resumes) at epoch `epoch` of `epochs`.
    fn shadow_start(&mut self, _shadow: usize, _epoch: usize, _epochs: usize) {}
    /// One training step of the current shadow.
    fn step(&mut self) {}
    /// Epoch `epoch` of shadow `shadow` is saved; `Break` stops here.
    fn epoch_end(&mut self, _shadow: usize, _epoch: usize) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    /// Shadow `shadow` is finished (`trained`: by this run, not found finished); `Break`
    /// stops here.
    fn shadow_end(&mut self, _shadow: usize, _trained: bool) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    /// Scoring begins: `models` models (the target and the shadows) to run on the pool.
    fn scoring(&mut self, _models: usize) {}
    /// One more model has been run on the pool.
    fn scored(&mut self) {}
}

/// A [`LiraObserver`] that does nothing.
pub struct Quiet;
impl LiraObserver for Quiet {}

/// The result of [`run`].
#[derive(Debug, Clone, PartialEq)]
pub enum LiraOutcome {
    Done(LiraReport),
    /// The observer asked to stop; what was saved is resumed by the next run.
    Stopped,
}

/// The rows of a LiRA audit and a description of its setup.
#[derive(Debug, Clone, PartialEq)]
pub struct LiraReport {
    pub report: AuditReport,
    pub shadow_dir: PathBuf,
    /// Pool size, and the members and non-members of it that were scored.
    pub pool: usize,
    pub members: usize,
    pub nonmembers: usize,
    /// Whether one global σ was used.
    pub global_variance: bool,
    pub scores: Scores,
}

/// Train the missing shadows (resuming a partial one), run every model on the pool and
/// compute the LiRA rows for `target`.
pub fn run(target: &Target, opts: &LiraOptions, obs: &mut dyn LiraObserver) -> Result<LiraOutcome> {
    if opts.shadows < 2 {
        return Err(Error::field(
            "lira_shadows",
            format!("{}: need at least 2 shadow models", opts.shadows),
        ));
    }
    if opts.epochs == Some(0) {
        return Err(Error::field("lira_epochs", "must be at least 1"));
    }
    if opts.max_examples == Some(0) {
        return Err(Error::field("max_examples", "must be at least 1"));
    }
    let cfg = &target.config;
    let dataset = cfg.dataset;
    let data_dir = opts.data_dir.as_deref().unwrap_or(&cfg.data_dir);
    let splits = Splits::load(dataset, data_dir)?;
    let train_ds = &splits.train;
    let pool = target.pool(train_ds.len());
    let expected = Vec::<i64>::try_from(train::member_indices(
        pool,
        cfg.half,
        cfg.partition.as_ref(),
    ))?;
    if expected.len() != target.members.len()
        || expected
            .iter()
            .zip(&target.members)
            .any(|(&a, &b)| a as usize != b)
    {
        return Err(Error::bad_file(
            &target.run.members_path(),
            format!(
                "does not list the half (seed {}) of the first {pool} {dataset} training examples that metadata.json describes",
                cfg.half.unwrap_or(0)
            ),
        ));
    }
    let root = opts
        .shadow_dir
        .clone()
        .unwrap_or_else(|| target.run.root().join("lira-shadows"));
    std::fs::create_dir_all(&root).map_err(|e| {
        Error::field(
            "shadow_dir",
            format!("cannot create {}: {e}", root.display()),
        )
    })?;
    let shadows = Shadows::new(root, cfg, opts.shadows, opts.epochs, pool)?;
    if shadows.train(&splits, opts.device, obs)?.is_break() {
        return Ok(LiraOutcome::Stopped);
    }

    // The scored examples: members and non-members of the pool (at most max_examples each).
    let mut is_member = vec![false; pool];
    for &i in &target.members {
        is_member[i] = true;
    }
    let (mem, non): (Vec<usize>, Vec<usize>) = (0..pool).partition(|&i| is_member[i]);
    let max = opts.max_examples.unwrap_or(usize::MAX);
    let mut idx: Vec<usize> = subsample(mem.len(), max, opts.seed)
        .into_iter()
        .map(|k| mem[k])
        .chain(
            subsample(non.len(), max, opts.seed)
                .into_iter()
                .map(|k| non[k]),
        )
        .collect();
    idx.sort_unstable();

    obs.scoring(opts.shadows + 1);
    let phi_of = |path: &Path| -> Result<(Vec<f64>, Vec<usize>)> {
        let module = crate::model::load_torchscript(path, opts.device)?;
        let run = ModelRun {
            module: &module,
            path,
            batch: opts.batch,
            device: opts.device,
        };
        shadows::confidences(&run, train_ds, &idx, opts.flip)
    };
    let (target_phi, predicted) = phi_of(&target.model)?;
    obs.scored();
    let mut shadow_phi = Vec::with_capacity(opts.shadows);
    let mut shadow_in = Vec::with_capacity(opts.shadows);
    for i in 0..opts.shadows {
        let (phi, _) = phi_of(&shadows.dir(i).model_path())?;
        let inn = shadows.members(i, pool)?;
        shadow_phi.push(phi);
        shadow_in.push(idx.iter().map(|&e| inn[e]).collect());
        obs.scored();
    }
    let conf = Confidences {
        queries: if opts.flip { 2 } else { 1 },
        target: target_phi,
        shadows: shadow_phi,
        shadow_in,
    };
    let global = opts.variance.global(opts.shadows);
    let sc = scores(&conf, global);

    // Rows.
    let labels: Vec<usize> = train_ds
        .labels_of(&idx)?
        .into_iter()
        .map(|l| l as usize)
        .collect();
    let mut report = AuditReport {
        results: Vec::new(),
        skipped: Vec::new(),
    };
    for attack in MiaKind::LIRA {
        if !opts.attacks.contains(&attack) {
            continue;
        }
        let s = match attack {
            MiaKind::LiraOnline => &sc.online,
            _ => &sc.offline,
        };
        let left_out = s.iter().filter(|v| v.is_none()).count();
        if left_out > 0 {
            let why = match attack {
                MiaKind::LiraOnline => {
                    "no shadow model trained on them (IN) or none without them (OUT)"
                }
                _ => "no shadow model trained without them (OUT)",
            };
            report.skipped.push(Skipped {
                slice: "all".into(),
                attack: Some(attack),
                reason: format!(
                    "{left_out} of {} examples left out: {why}; train more shadows",
                    idx.len()
                ),
            });
        }
        for slice in opts.slices.slices(dataset.num_classes()) {
            let name = slice.to_string();
            let (mut sm, mut sn) = (Vec::new(), Vec::new());
            for (e, &i) in idx.iter().enumerate() {
                if let Some(v) = s[e] {
                    if slice.contains(labels[e], predicted[e]) {
                        if is_member[i] {
                            sm.push(v);
                        } else {
                            sn.push(v);
                        }
                    }
                }
            }
            if sm.is_empty() || sn.is_empty() {
                report.skipped.push(Skipped {
                    slice: name,
                    attack: Some(attack),
                    reason: if sm.is_empty() {
                        "no scored members"
                    } else {
                        "no scored non-members"
                    }
                    .into(),
                });
                continue;
            }
            report.results.push(result_row(attack, name, &sm, &sn));
        }
    }
    let members = idx.iter().filter(|&&i| is_member[i]).count();
    Ok(LiraOutcome::Done(LiraReport {
        report,
        shadow_dir: shadows.root.clone(),
        pool,
        members,
        nonmembers: idx.len() - members,
        global_variance: global,
        scores: sc,
    }))
}
