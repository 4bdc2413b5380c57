//! LiRA, the likelihood-ratio membership-inference attack of Carlini et al., "Membership
//! Inference Attacks From First Principles" (IEEE S&P 2022).
//!
//! Setup (as in the paper): a *pool* of examples — the first `limit` rows of the training
//! split the target was trained on — of which the target saw a random half (its
//! `members.npy`, from `fool train --half SEED`); the other half are the non-members. N
//! *shadow* models are trained with the target's configuration on other random halves of
//! the same pool (`half = 1000 + i`, seed `seed + 1000 + i`), so every pool example is IN
//! about half of the shadows and OUT of the others.
//!
//! For every pool example and every model the attack reads the *logit-scaled confidence*
//! φ = log p_y − log Σ_{j≠y} p_j, computed from the logits z as z_y − logsumexp_{j≠y} z_j
//! (exact, no clipping of probabilities; see [`logit_confidence`]). Then, per example:
//!
//! * **online** (`lira-online`): Gaussians N(μ_in, σ_in²) and N(μ_out, σ_out²) fitted to φ
//!   over the shadows that had the example IN, resp. OUT; score = log N(φ_target; μ_in,
//!   σ_in) − log N(φ_target; μ_out, σ_out).
//! * **offline** (`lira-offline`): only the OUT fit; one-sided test, score = log
//!   Φ((φ_target − μ_out) / σ_out) (higher = member), with a stable log-CDF
//!   ([`norm_logcdf`]).
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
//! (horizontal flips and shifts on CIFAR-10). `fool train` does not augment, so by default
//! there is one query (the image itself); [`LiraOptions::flip`] adds the horizontal flip
//! as a second query, fitted separately and averaged in the score as the paper does.
//!
//! Shadow models are trained in-process with [`crate::train`], each in `DIR/shadow-NNN/`
//! (`model.pt`, `metadata.json`, `members.npy`, …) with its state saved after every epoch:
//! an interrupted run resumes the partial shadow from its `state/` and does not retrain the
//! finished ones. Shadows evaluate their per-epoch test accuracy on the first 1000 test
//! examples only (their metadata says so); that does not touch the attack.
use crate::audit::{read_labels_npy, result_row, AttackKind, AuditReport, Skipped, SliceSpec};
use crate::datasets::{self, DatasetName, Split, TensorDataset};
use crate::rng::subsample;
use crate::train::{self, export, Data, Observer, TrainConfig, Trainer};
use crate::{Error, Result};
use std::f64::consts::{PI, SQRT_2};
use std::path::{Path, PathBuf};
use tch::{CModule, Device, Kind, Tensor};

/// Shadow `i` trains on the half drawn with seed `HALF_BASE + i`.
pub const HALF_BASE: u64 = 1000;
/// Below this many shadows [`Variance::Auto`] uses one global σ.
pub const GLOBAL_VARIANCE_BELOW: usize = 64;
/// Test examples a shadow evaluates itself on after each epoch.
const SHADOW_TEST_EXAMPLES: usize = 1000;

/// φ = log p_y − log Σ_{j≠y} p_j of a logit row, computed as z_y − logsumexp_{j≠y} z_j
/// (exact for any logits; +∞ when every other logit is −∞). `label` must index `logits`,
/// which must have at least 2 entries.
pub fn logit_confidence(logits: &[f64], label: usize) -> f64 {
    let m = logits
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != label)
        .map(|(_, &z)| z)
        .fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return f64::INFINITY;
    }
    let s: f64 = logits
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != label)
        .map(|(_, &z)| (z - m).exp())
        .sum();
    logits[label] - (m + s.ln())
}

/// log of the normal density N(x; μ, σ²) (σ > 0).
pub fn norm_logpdf(x: f64, mu: f64, sigma: f64) -> f64 {
    let u = (x - mu) / sigma;
    -0.5 * u * u - sigma.ln() - 0.5 * (2.0 * PI).ln()
}

/// log Φ(z), the log of the standard normal CDF, accurate over the whole real line
/// (as scipy's `log_ndtr`): log1p(−Φ(−z)) for z ≥ 0, log(erfc(−z/√2)/2) down to −20,
/// and the asymptotic series of Φ's tail below.
pub fn norm_logcdf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    if z >= 0.0 {
        return (-0.5 * libm::erfc(z / SQRT_2)).ln_1p();
    }
    if z > -20.0 {
        return (0.5 * libm::erfc(-z / SQRT_2)).ln();
    }
    if z == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    // Φ(z) = φ(z)/(−z) · (1 − 1/z² + 3/z⁴ − 15/z⁶ + …); the terms shrink fast for z ≤ −20.
    let z2 = z * z;
    let (mut term, mut sum) = (1.0f64, 1.0f64);
    for k in 1..=20 {
        term *= -((2 * k - 1) as f64) / z2;
        sum += term;
        if term.abs() < 1e-17 {
            break;
        }
    }
    -0.5 * z2 - (-z).ln() - 0.5 * (2.0 * PI).ln() + sum.ln()
}

/// How σ of the Gaussian fits is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variance {
    /// [`Variance::Global`] with fewer than [`GLOBAL_VARIANCE_BELOW`] shadows, else
    /// [`Variance::PerExample`] (the paper's advice).
    Auto,
    /// One σ for every example and both fits (the paper's "fixed variance").
    Global,
    /// σ_in and σ_out per example.
    PerExample,
}

impl std::str::FromStr for Variance {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Variance::Auto),
            "global" | "fixed" => Ok(Variance::Global),
            "per-example" | "example" => Ok(Variance::PerExample),
            _ => Err(Error::field(
                "lira_variance",
                format!("unknown '{s}'; choose from: auto, global, per-example"),
            )),
        }
    }
}

impl Variance {
    /// Whether to use one global σ with `shadows` shadow models.
    pub fn global(self, shadows: usize) -> bool {
        match self {
            Variance::Auto => shadows < GLOBAL_VARIANCE_BELOW,
            Variance::Global => true,
            Variance::PerExample => false,
        }
    }
}

/// φ of every scored example under every model.
#[derive(Debug, Clone, PartialEq)]
pub struct Confidences {
    /// Queries per example (1, or 2 with the flip).
    pub queries: usize,
    /// The target's φ: `[example * queries + query]`.
    pub target: Vec<f64>,
    /// Each shadow's φ, same layout.
    pub shadows: Vec<Vec<f64>>,
    /// `shadow_in[s][e]`: shadow `s` was trained on example `e`.
    pub shadow_in: Vec<Vec<bool>>,
}

/// The two LiRA scores of every example; `None` where the example could not be scored
/// (no IN shadow for online; no OUT shadow for either).
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub online: Vec<Option<f64>>,
    pub offline: Vec<Option<f64>>,
    /// The σ used where the fits share one (or fall back to it).
    pub global_sigma: f64,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// The online and offline scores from the confidences (see the module docs).
pub fn scores(c: &Confidences, global_variance: bool) -> Scores {
    let q = c.queries.max(1);
    let n = c.target.len() / q;
    let values = |e: usize, k: usize, side: bool| -> Vec<f64> {
        c.shadows
            .iter()
            .zip(&c.shadow_in)
            .filter(|(_, inn)| inn[e] == side)
            .map(|(phi, _)| phi[e * q + k])
            .filter(|v| v.is_finite())
            .collect()
    };
    // Pooled within-example σ over the IN and OUT groups of every example and query.
    let (mut ss, mut dof) = (0.0f64, 0usize);
    for e in 0..n {
        for k in 0..q {
            for side in [true, false] {
                let v = values(e, k, side);
                if v.len() >= 2 {
                    let (m, _) = mean_std(&v);
                    ss += v.iter().map(|x| (x - m) * (x - m)).sum::<f64>();
                    dof += v.len() - 1;
                }
            }
        }
    }
    let mut global_sigma = if dof > 0 {
        (ss / dof as f64).sqrt()
    } else {
        0.0
    };
    if !(global_sigma > 0.0 && global_sigma.is_finite()) {
        let all: Vec<f64> = c
            .shadows
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        global_sigma = if all.is_empty() {
            0.0
        } else {
            mean_std(&all).1
        };
        if !(global_sigma > 0.0 && global_sigma.is_finite()) {
            global_sigma = 1.0;
        }
    }
    let fit = |v: &[f64]| -> (f64, f64) {
        let (m, s) = mean_std(v);
        if global_variance || v.len() < 2 || !(s > 0.0 && s.is_finite()) {
            (m, global_sigma)
        } else {
            (m, s)
        }
    };
    let mut online = Vec::with_capacity(n);
    let mut offline = Vec::with_capacity(n);
    for e in 0..n {
        let (mut on, mut off) = (Some(0.0), Some(0.0));
        for k in 0..q {
            let t = c.target[e * q + k];
            let (vin, vout) = (values(e, k, true), values(e, k, false));
            if vout.is_empty() || !t.is_finite() {
                on = None;
                off = None;
                break;
            }
            let (mo, so) = fit(&vout);
            off = off.map(|s| s + norm_logcdf((t - mo) / so) / q as f64);
            if vin.is_empty() {
                on = None;
            } else {
                let (mi, si) = fit(&vin);
                on = on.map(|s| s + (norm_logpdf(t, mi, si) - norm_logpdf(t, mo, so)) / q as f64);
            }
        }
        online.push(on);
        offline.push(off);
    }
    Scores {
        online,
        offline,
        global_sigma,
    }
}

/// The target of a LiRA audit: a `fool train --half` run.
#[derive(Debug, Clone)]
pub struct Target {
    pub model: PathBuf,
    /// Its training configuration (from `metadata.json`).
    pub config: TrainConfig,
    /// Its members (rows of the training split, sorted), from `members.npy`.
    pub members: Vec<usize>,
}

impl Target {
    /// Read the configuration and members beside `model`; the run must have been trained
    /// with `--half`.
    pub fn load(model: &Path) -> Result<Target> {
        let dir = model.parent().unwrap_or(Path::new("."));
        let meta = dir.join("metadata.json");
        let need = "LiRA needs a target trained by `fool train --half SEED` (on a random half of the pool, listed in members.npy)";
        if !meta.is_file() {
            return Err(Error::field(
                "lira_shadows",
                format!("no metadata.json beside {}; {need}", model.display()),
            ));
        }
        let text = std::fs::read_to_string(&meta).map_err(|e| Error::io(&meta, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(&meta, format!("not valid JSON: {e}")))?;
        let config: TrainConfig = v
            .get("config")
            .cloned()
            .ok_or_else(|| Error::bad_file(&meta, format!("no training config; {need}")))
            .and_then(|c| {
                serde_json::from_value(c).map_err(|e| {
                    Error::bad_file(&meta, format!("unreadable training config ({e}); {need}"))
                })
            })?;
        if config.half.is_none() {
            return Err(Error::field(
                "lira_shadows",
                format!(
                    "{} was trained on all of its examples, not with --half; {need}",
                    model.display()
                ),
            ));
        }
        let mp = dir.join("members.npy");
        if !mp.is_file() {
            return Err(Error::bad_file(&mp, format!("missing; {need}")));
        }
        let members = read_labels_npy(&mp)?
            .into_iter()
            .map(|i| {
                usize::try_from(i)
                    .map_err(|_| Error::bad_file(&mp, format!("negative member index {i}")))
            })
            .collect::<Result<Vec<usize>>>()?;
        Ok(Target {
            model: model.to_path_buf(),
            config,
            members,
        })
    }

    /// Pool size: the first `limit` rows of a training split of `train_len` rows.
    pub fn pool(&self, train_len: usize) -> usize {
        self.config.limit.map_or(train_len, |l| l.min(train_len))
    }
}

/// The configuration of shadow `i` (of a pool of `pool` examples): the target's, on the
/// half drawn with `HALF_BASE + i`, seed `seed + HALF_BASE + i`, `epochs` if given, no
/// checkpoints; DP noise recalibrated when the target gave a target ε and the epochs differ.
pub fn shadow_config(
    target: &TrainConfig,
    i: usize,
    epochs: Option<usize>,
    pool: usize,
) -> Result<TrainConfig> {
    let mut cfg = TrainConfig {
        half: Some(HALF_BASE + i as u64),
        seed: target.seed.wrapping_add(HALF_BASE + i as u64),
        epochs: epochs.unwrap_or(target.epochs),
        checkpoint_every: 0,
        ..target.clone()
    };
    train::validate(&cfg)?;
    train::resolve_noise(&mut cfg, pool / 2)?;
    Ok(cfg)
}

/// Where shadow `i` lives under `dir`.
pub fn shadow_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("shadow-{i:03}"))
}

/// How far a shadow got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowState {
    /// model.pt, metadata.json and members.npy exist with this configuration.
    Finished,
    /// Its `state/` holds this many finished epochs of this configuration.
    Partial(usize),
    /// Nothing usable.
    Fresh,
}

fn config_in(path: &Path, key: &str) -> Option<(TrainConfig, serde_json::Value)> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let cfg = serde_json::from_value(v.get(key)?.clone()).ok()?;
    Some((cfg, v))
}

/// The state of the shadow in `dir` for configuration `cfg`.
pub fn shadow_state(dir: &Path, cfg: &TrainConfig) -> ShadowState {
    let files = ["model.pt", "metadata.json", "members.npy"];
    if files.iter().all(|f| dir.join(f).is_file()) {
        if let Some((c, v)) = config_in(&dir.join("metadata.json"), "config") {
            let done = v.get("epochs_done").and_then(|e| e.as_u64());
            if &c == cfg && done == Some(cfg.epochs as u64) {
                return ShadowState::Finished;
            }
        }
    }
    if let Some((c, v)) = config_in(&dir.join("state").join("state.json"), "config") {
        if &c == cfg {
            let done = v
                .get("history")
                .and_then(|h| h.as_array())
                .map_or(0, |h| h.len());
            return ShadowState::Partial(done);
        }
    }
    ShadowState::Fresh
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
    pub attacks: Vec<AttackKind>,
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
            attacks: AttackKind::LIRA.to_vec(),
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
    /// Epoch `epoch` of shadow `shadow` is saved; return false to stop here.
    fn epoch_end(&mut self, _shadow: usize, _epoch: usize) -> bool {
        true
    }
    /// Shadow `shadow` is finished (`trained`: by this run, not found finished); return
    /// false to stop here.
    fn shadow_end(&mut self, _shadow: usize, _trained: bool) -> bool {
        true
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

struct Steps<'a>(&'a mut dyn LiraObserver);
impl Observer for Steps<'_> {
    fn step(&mut self, _s: &crate::privacy::dpsgd::StepStats) {
        self.0.step();
    }
}

fn shallow(ds: &TensorDataset, rows: Option<usize>) -> TensorDataset {
    let (images, labels) = match rows {
        Some(k) if k < ds.len() => (
            ds.images.narrow(0, 0, k as i64),
            ds.labels.narrow(0, 0, k as i64),
        ),
        _ => (ds.images.shallow_clone(), ds.labels.shallow_clone()),
    };
    TensorDataset {
        name: ds.name,
        split: ds.split,
        images,
        labels,
        classes: ds.classes.clone(),
    }
}

/// What every shadow trains and evaluates on.
struct ShadowData<'a> {
    train: &'a TensorDataset,
    test: &'a TensorDataset,
    pool: usize,
    device: Device,
}

/// Train (or resume) shadow `i` in `dir`; Ok(false) when the observer stopped it.
fn train_shadow(
    cfg: &TrainConfig,
    i: usize,
    dir: &Path,
    d: &ShadowData,
    obs: &mut dyn LiraObserver,
) -> Result<bool> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let members = train::member_indices(d.pool, cfg.half);
    let data = Data {
        train: shallow(d.train, None),
        test: shallow(d.test, Some(SHADOW_TEST_EXAMPLES)),
        train_len: members.size()[0] as usize,
        members,
    };
    let mut trainer = Trainer::new(cfg.clone(), d.device)?;
    let state = dir.join("state");
    match shadow_state(dir, cfg) {
        ShadowState::Partial(_) => trainer.load_state(&state)?,
        _ => {
            if state.exists() {
                std::fs::remove_dir_all(&state).map_err(|e| Error::io(&state, e))?;
            }
        }
    }
    obs.shadow_start(i, trainer.history.len() + 1, cfg.epochs);
    for epoch in trainer.history.len() + 1..=cfg.epochs {
        trainer.epoch(&data, epoch, &mut Steps(&mut *obs))?;
        trainer.save_state(&state)?;
        if !obs.epoch_end(i, epoch) {
            return Ok(false);
        }
    }
    // members.npy before metadata.json (written last by export): a shadow counts as
    // finished only once its metadata.json is there.
    let _ = std::fs::remove_file(dir.join("metadata.json"));
    export::save_members(&data.members, &dir.join("members.npy"))?;
    let meta = trainer.metadata(&data);
    export::export(&trainer.net, &data.train, &meta, dir)?;
    std::fs::remove_dir_all(&state).map_err(|e| Error::io(&state, e))?;
    Ok(true)
}

/// φ of `module` on rows `idx` of `ds` (pixels in [0,1], single channel repeated to 3),
/// `[example * queries + query]`, plus the predicted classes (identity query).
fn model_confidences(
    module: &CModule,
    path: &Path,
    ds: &TensorDataset,
    idx: &[usize],
    flip: bool,
    batch: usize,
    device: Device,
) -> Result<(Vec<f64>, Vec<usize>)> {
    let classes = ds.name.num_classes();
    let q = if flip { 2 } else { 1 };
    let mut phi = vec![0.0; idx.len() * q];
    let mut predicted = Vec::with_capacity(idx.len());
    let mut at = 0;
    for chunk in idx.chunks(batch.max(1)) {
        let ids: Vec<i64> = chunk.iter().map(|&i| i as i64).collect();
        let t = Tensor::from_slice(&ids);
        let mut x = ds.pixels(&t, device);
        if x.size()[1] == 1 {
            x = x.expand([-1, 3, -1, -1], false);
        }
        let labels = Vec::<i64>::try_from(ds.labels_at(&t, Device::Cpu))?;
        for k in 0..q {
            let input = if k == 0 {
                x.shallow_clone()
            } else {
                x.flip([3])
            };
            let out = tch::no_grad(|| module.forward_ts(&[input])).map_err(|e| {
                Error::bad_file(
                    path,
                    format!(
                        "forward pass on {} images failed: {}",
                        ds.name,
                        crate::error::first_line(&e.to_string())
                    ),
                )
            })?;
            if out.size() != [chunk.len() as i64, classes as i64] {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "model output has shape {:?} for {} {} images, expected ({}, {classes}) logits",
                        out.size(),
                        chunk.len(),
                        ds.name,
                        chunk.len()
                    ),
                ));
            }
            let v = Vec::<f64>::try_from(
                out.to_device(Device::Cpu)
                    .to_kind(Kind::Double)
                    .contiguous()
                    .view([-1]),
            )?;
            for (r, row) in v.chunks(classes).enumerate() {
                if row.iter().any(|z| !z.is_finite()) {
                    return Err(Error::bad_file(
                        path,
                        format!("non-finite logits for training example {}", chunk[r]),
                    ));
                }
                phi[(at + r) * q + k] = logit_confidence(row, labels[r] as usize);
                if k == 0 {
                    let arg = (0..classes).fold(0, |b, j| if row[j] > row[b] { j } else { b });
                    predicted.push(arg);
                }
            }
        }
        at += chunk.len();
    }
    Ok((phi, predicted))
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
    let dataset: DatasetName = cfg.dataset;
    let data_dir = opts
        .data_dir
        .clone()
        .unwrap_or_else(|| cfg.data_dir.clone());
    let train_ds = datasets::load(dataset, &data_dir, Split::Train)?;
    let test_ds = datasets::load(dataset, &data_dir, Split::Test)?;
    let pool = target.pool(train_ds.len());
    let expected = Vec::<i64>::try_from(train::member_indices(pool, cfg.half))?;
    let mp = target
        .model
        .parent()
        .unwrap_or(Path::new("."))
        .join("members.npy");
    if expected.len() != target.members.len()
        || expected
            .iter()
            .zip(&target.members)
            .any(|(&a, &b)| a as usize != b)
    {
        return Err(Error::bad_file(
            &mp,
            format!(
                "does not list the half (seed {}) of the first {pool} {dataset} training examples that metadata.json describes",
                cfg.half.unwrap_or(0)
            ),
        ));
    }
    let root = opts.shadow_dir.clone().unwrap_or_else(|| {
        target
            .model
            .parent()
            .unwrap_or(Path::new("."))
            .join("lira-shadows")
    });
    std::fs::create_dir_all(&root).map_err(|e| {
        Error::field(
            "shadow_dir",
            format!("cannot create {}: {e}", root.display()),
        )
    })?;

    // Shadows.
    let configs: Vec<TrainConfig> = (0..opts.shadows)
        .map(|i| shadow_config(cfg, i, opts.epochs, pool))
        .collect::<Result<_>>()?;
    let states: Vec<ShadowState> = configs
        .iter()
        .enumerate()
        .map(|(i, c)| shadow_state(&shadow_dir(&root, i), c))
        .collect();
    let total: usize = configs.iter().map(|c| c.epochs).sum();
    let done: usize = configs
        .iter()
        .zip(&states)
        .map(|(c, s)| match s {
            ShadowState::Finished => c.epochs,
            ShadowState::Partial(k) => (*k).min(c.epochs),
            ShadowState::Fresh => 0,
        })
        .sum();
    obs.training(total, done);
    let sd = ShadowData {
        train: &train_ds,
        test: &test_ds,
        pool,
        device: opts.device,
    };
    for (i, (c, s)) in configs.iter().zip(&states).enumerate() {
        let trained = if *s == ShadowState::Finished {
            false
        } else {
            let dir = shadow_dir(&root, i);
            if !train_shadow(c, i, &dir, &sd, obs)? {
                return Ok(LiraOutcome::Stopped);
            }
            true
        };
        if !obs.shadow_end(i, trained) {
            return Ok(LiraOutcome::Stopped);
        }
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
    let module = crate::model::load_torchscript(&target.model, opts.device)?;
    let (target_phi, predicted) = model_confidences(
        &module,
        &target.model,
        &train_ds,
        &idx,
        opts.flip,
        opts.batch,
        opts.device,
    )?;
    drop(module);
    obs.scored();
    let mut shadows = Vec::with_capacity(opts.shadows);
    let mut shadow_in = Vec::with_capacity(opts.shadows);
    for i in 0..opts.shadows {
        let dir = shadow_dir(&root, i);
        let path = dir.join("model.pt");
        let module = crate::model::load_torchscript(&path, opts.device)?;
        let (phi, _) = model_confidences(
            &module,
            &path,
            &train_ds,
            &idx,
            opts.flip,
            opts.batch,
            opts.device,
        )?;
        let mp = dir.join("members.npy");
        let mut inn = vec![false; pool];
        for m in read_labels_npy(&mp)? {
            match usize::try_from(m).ok().filter(|&m| m < pool) {
                Some(m) => inn[m] = true,
                None => {
                    return Err(Error::bad_file(
                        &mp,
                        format!("member index {m} is outside the pool of {pool} examples"),
                    ))
                }
            }
        }
        shadows.push(phi);
        shadow_in.push(idx.iter().map(|&e| inn[e]).collect());
        obs.scored();
    }
    let conf = Confidences {
        queries: if opts.flip { 2 } else { 1 },
        target: target_phi,
        shadows,
        shadow_in,
    };
    let global = opts.variance.global(opts.shadows);
    let sc = scores(&conf, global);

    // Rows.
    let ids: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    let labels: Vec<usize> =
        Vec::<i64>::try_from(train_ds.labels_at(&Tensor::from_slice(&ids), Device::Cpu))?
            .into_iter()
            .map(|l| l as usize)
            .collect();
    let mut report = AuditReport {
        results: Vec::new(),
        skipped: Vec::new(),
    };
    for attack in AttackKind::LIRA {
        if !opts.attacks.contains(&attack) {
            continue;
        }
        let s = match attack {
            AttackKind::LiraOnline => &sc.online,
            _ => &sc.offline,
        };
        let left_out = s.iter().filter(|v| v.is_none()).count();
        if left_out > 0 {
            let why = match attack {
                AttackKind::LiraOnline => {
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
        shadow_dir: root,
        pool,
        members,
        nonmembers: idx.len() - members,
        global_variance: global,
        scores: sc,
    }))
}
