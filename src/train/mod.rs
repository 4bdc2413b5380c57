//! `fool train`: train a classifier on MNIST or CIFAR-10, privately (DP-SGD) or not, with a
//! resumable state after every epoch, TorchScript exports the rest of fool loads, and
//! `metadata.json` with ε per epoch.
//!
//! Randomness: torch's generator is re-seeded from (seed, epoch) at the start of every epoch,
//! so a run resumed from the state saved after epoch k continues with exactly the batches and
//! noise an uninterrupted run would have drawn (same final model and ε on the same device).
pub mod chart;
pub mod export;
pub mod optim;

use crate::datasets::{self, DatasetName, Split, TensorDataset};
use crate::nets::{Arch, Net, Pass};
use crate::privacy::accountant::{self, AccountantKind};
use crate::privacy::dpsgd::{DpSgd, StepStats};
use crate::{Error, Result};
use optim::{OptKind, Optimizer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Reduction, Tensor};

/// Differential-privacy settings as the user gave them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DpConfig {
    pub clip: f64,
    /// σ; when `target_epsilon` is set this is the calibrated value.
    pub noise: f64,
    pub delta: f64,
    pub target_epsilon: Option<f64>,
    pub accountant: AccountantKind,
    pub max_physical_batch: usize,
}

/// Everything that determines a run (saved in the state and the metadata; a resumed run must
/// match it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub dataset: DatasetName,
    pub data_dir: PathBuf,
    pub arch: Arch,
    pub epochs: usize,
    /// Batch size; with DP the expected batch size of Poisson sampling (q = batch / n).
    pub batch: usize,
    pub lr: f64,
    pub optimizer: OptKind,
    pub seed: u64,
    /// Train on the first N training examples only.
    pub limit: Option<usize>,
    /// Train on a random half of those examples, drawn with this seed (shadow models for LiRA).
    #[serde(default)]
    pub half: Option<u64>,
    pub dp: Option<DpConfig>,
    pub checkpoint_every: usize,
    /// Run the threshold and logistic-regression membership attacks every K epochs (0: never).
    #[serde(default)]
    pub audit_every: usize,
    /// Members and non-members used by those audits (each at most this many).
    #[serde(default = "default_audit_examples")]
    pub audit_examples: usize,
}

fn default_audit_examples() -> usize {
    10_000
}

/// One epoch's results.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub steps: u64,
    /// Mean loss / accuracy over the training examples seen this epoch (before each update).
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
    /// ε spent so far (null when not private).
    pub epsilon: Option<f64>,
    /// Fraction of per-example gradients that were clipped (DP only).
    pub clipped_fraction: Option<f64>,
    pub mean_grad_norm: Option<f64>,
    /// Wall time of the epoch, evaluation included.
    pub seconds: f64,
    /// Wall time of the training steps alone.
    #[serde(default)]
    pub train_seconds: f64,
    /// Training examples processed per second (train_seconds).
    #[serde(default)]
    pub examples_per_second: f64,
    /// Membership-inference results at this epoch (with `--audit-every`): threshold and
    /// logistic-regression attacks, members = training examples, non-members = test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Vec<crate::audit::AuditResult>>,
}

/// `metadata.json` of a run or checkpoint.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Metadata {
    pub fool_version: String,
    pub dataset: DatasetName,
    pub arch: String,
    pub epsilon: Option<f64>,
    pub delta: Option<f64>,
    pub accountant: Option<AccountantKind>,
    pub noise: Option<f64>,
    pub clip: Option<f64>,
    pub sample_rate: Option<f64>,
    pub steps: u64,
    pub epochs_done: usize,
    pub test_accuracy: Option<f64>,
    pub train_examples: usize,
    pub test_examples: usize,
    /// Which examples the model was trained on (the members for a membership audit).
    pub members: String,
    pub seed: u64,
    pub device: String,
    pub config: TrainConfig,
    pub history: Vec<EpochRecord>,
}

/// Progress callbacks (the CLI draws bars with them).
pub trait Observer {
    fn epoch_start(&mut self, _epoch: usize, _steps: u64) {}
    fn step(&mut self, _stats: &StepStats) {}
    fn epoch_end(&mut self, _rec: &EpochRecord) {}
}

/// An observer that does nothing.
pub struct Silent;
impl Observer for Silent {}

/// The state saved after every epoch for `--resume`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct State {
    config: TrainConfig,
    history: Vec<EpochRecord>,
}

const STATE_DIR: &str = "state";

fn seed_for_epoch(seed: u64, epoch: usize) -> i64 {
    (seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64) & 0x7fff_ffff_ffff) as i64
}

/// Check the settings; errors name the flag.
pub fn validate(cfg: &TrainConfig) -> Result<()> {
    if cfg.epochs == 0 {
        return Err(Error::field("epochs", "must be at least 1"));
    }
    if cfg.batch == 0 {
        return Err(Error::field("batch", "must be at least 1"));
    }
    if !(cfg.lr > 0.0 && cfg.lr.is_finite()) {
        return Err(Error::field(
            "lr",
            format!("{} must be a positive number", cfg.lr),
        ));
    }
    if let OptKind::Sgd { momentum } = cfg.optimizer {
        if !(0.0..1.0).contains(&momentum) {
            return Err(Error::field(
                "momentum",
                format!("{momentum} must be in [0, 1)"),
            ));
        }
    }
    if cfg.audit_every > 0 && cfg.audit_examples == 0 {
        return Err(Error::field(
            "audit_examples",
            "must be at least 1 with --audit-every",
        ));
    }
    if cfg.limit == Some(0) {
        return Err(Error::field("limit", "must be at least 1"));
    }
    if let Some(dp) = &cfg.dp {
        if !cfg.arch.dp_compatible() {
            return Err(Error::field(
                "arch",
                format!(
                    "{} uses BatchNorm, which mixes the examples of a batch: per-example gradients \
                     and so DP-SGD are undefined with it; use resnet18 (GroupNorm) with --dp",
                    cfg.arch
                ),
            ));
        }
        if !(dp.delta > 0.0 && dp.delta < 1.0) {
            return Err(Error::field(
                "delta",
                format!("{} must be in (0, 1)", dp.delta),
            ));
        }
        if !(dp.clip > 0.0 && dp.clip.is_finite()) {
            return Err(Error::field(
                "clip",
                format!("{} must be a positive number", dp.clip),
            ));
        }
    }
    Ok(())
}

/// Where a run keeps things.
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }
    pub fn checkpoint_dir(&self, epoch: usize) -> PathBuf {
        self.root
            .join("checkpoints")
            .join(format!("epoch-{epoch:03}"))
    }
}

/// Number of DP steps in the whole run, and the resolved noise multiplier.
pub fn resolve_noise(cfg: &mut TrainConfig, n: usize) -> Result<()> {
    let epochs = cfg.epochs as u64;
    let batch = cfg.batch;
    if let Some(dp) = &mut cfg.dp {
        let q = batch as f64 / n as f64;
        if q > 1.0 {
            return Err(Error::field(
                "batch",
                format!("{batch} is larger than the {n} training examples"),
            ));
        }
        let steps = epochs * ((1.0 / q).floor() as u64).max(1);
        if let Some(target) = dp.target_epsilon {
            dp.noise = accountant::noise_for_epsilon(dp.accountant, target, q, steps, dp.delta)?;
        }
        if !(dp.noise > 0.0 && dp.noise.is_finite()) {
            return Err(Error::field(
                "noise",
                format!(
                    "{} must be a positive number (or give --target-epsilon)",
                    dp.noise
                ),
            ));
        }
    }
    Ok(())
}

/// Data of a run on its device.
pub struct Data {
    pub train: TensorDataset,
    pub test: TensorDataset,
    pub train_len: usize,
    /// Row indices (into the training split) of the examples trained on, sorted.
    pub members: Tensor,
}

/// Which rows of the training split a configuration trains on.
pub fn member_indices(limit: usize, half: Option<u64>) -> Tensor {
    let all = Tensor::arange(limit as i64, (Kind::Int64, Device::Cpu));
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

pub fn load_data(cfg: &TrainConfig) -> Result<Data> {
    let train = datasets::load(cfg.dataset, &cfg.data_dir, Split::Train)?;
    let test = datasets::load(cfg.dataset, &cfg.data_dir, Split::Test)?;
    let limit = cfg.limit.map_or(train.len(), |l| l.min(train.len()));
    let members = member_indices(limit, cfg.half);
    let train_len = members.size()[0] as usize;
    Ok(Data {
        train,
        test,
        train_len,
        members,
    })
}

/// Logits of `net` (eval mode) on rows `idx` of `ds`, computed on `device` in chunks of
/// 1000 and returned on the CPU.
pub fn logits(net: &Net, ds: &TensorDataset, idx: &Tensor, device: Device) -> Tensor {
    tch::no_grad(|| {
        let n = idx.size()[0];
        let mut out = Vec::new();
        let mut lo = 0;
        while lo < n {
            let len = 1000.min(n - lo);
            let x = ds.normalized(&idx.narrow(0, lo, len), device);
            out.push(net.forward(&x, &mut Pass::eval()).to_device(Device::Cpu));
            lo += len;
        }
        Tensor::cat(&out, 0)
    })
}

/// Mean loss and accuracy of `net` on the first `n` rows of `ds`.
pub fn evaluate(net: &Net, ds: &TensorDataset, n: usize, device: Device) -> (f64, f64) {
    let idx = Tensor::arange(n as i64, (Kind::Int64, Device::Cpu));
    let logits = logits(net, ds, &idx, device);
    let y = ds.labels_at(&idx, Device::Cpu);
    let loss = logits
        .cross_entropy_loss::<Tensor>(&y, None, Reduction::Sum, -100, 0.0)
        .double_value(&[]);
    let correct = logits
        .argmax(1, false)
        .eq_tensor(&y)
        .sum(Kind::Int64)
        .int64_value(&[]);
    (loss / n.max(1) as f64, correct as f64 / n.max(1) as f64)
}

/// A model being trained.
pub struct Trainer {
    pub cfg: TrainConfig,
    pub vs: nn::VarStore,
    pub net: Net,
    pub opt: Optimizer,
    pub device: Device,
    pub history: Vec<EpochRecord>,
}

impl Trainer {
    /// A fresh model (parameters initialised from `seed`).
    pub fn new(cfg: TrainConfig, device: Device) -> Result<Trainer> {
        tch::manual_seed(seed_for_epoch(cfg.seed, 0));
        let vs = nn::VarStore::new(device);
        let ds = cfg.dataset;
        let net = Net::new(
            &vs,
            &cfg.arch,
            ds.channels(),
            ds.side(),
            ds.num_classes() as i64,
        )?;
        let opt = Optimizer::new(cfg.optimizer, cfg.lr, &net.params());
        Ok(Trainer {
            cfg,
            vs,
            net,
            opt,
            device,
            history: vec![],
        })
    }

    pub fn dp(&self, n: usize) -> Option<DpSgd> {
        self.cfg.dp.as_ref().map(|dp| DpSgd {
            clip: dp.clip,
            noise: dp.noise,
            sample_rate: self.cfg.batch as f64 / n as f64,
            dataset_len: n,
            max_physical_batch: dp.max_physical_batch,
        })
    }

    /// Steps per epoch for `n` training examples.
    pub fn steps_per_epoch(&self, n: usize) -> u64 {
        match self.dp(n) {
            Some(dp) => dp.steps_per_epoch(),
            None => n.div_ceil(self.cfg.batch) as u64,
        }
    }

    /// ε after `steps` steps (None without DP).
    pub fn epsilon(&self, n: usize, steps: u64) -> Result<Option<f64>> {
        match (&self.cfg.dp, self.dp(n)) {
            (Some(c), Some(dp)) => Ok(Some(accountant::epsilon(
                c.accountant,
                dp.noise,
                dp.sample_rate,
                steps,
                c.delta,
            )?)),
            _ => Ok(None),
        }
    }

    /// Train one epoch (1-based `epoch`) and evaluate.
    pub fn epoch(
        &mut self,
        data: &Data,
        epoch: usize,
        obs: &mut dyn Observer,
    ) -> Result<EpochRecord> {
        let start = std::time::Instant::now();
        tch::manual_seed(seed_for_epoch(self.cfg.seed, epoch));
        let n = data.train_len;
        let steps = self.steps_per_epoch(n);
        obs.epoch_start(epoch, steps);
        let device = self.device;
        let mut total = StepStats::default();
        let mut load = |pos: &Tensor| {
            let idx = data.members.index_select(0, pos);
            (
                data.train.normalized(&idx, device),
                data.train.labels_at(&idx, device),
            )
        };
        match self.dp(n) {
            Some(dp) => {
                dp.validate()?;
                for _ in 0..steps {
                    let idx = dp.poisson_batch();
                    let (grads, stats) = dp.noisy_grad(&self.net, &idx, &mut load)?;
                    self.opt.step(&self.net.params(), &grads);
                    total.add(&stats);
                    obs.step(&stats);
                }
            }
            None => {
                let perm = Tensor::randperm(n as i64, (Kind::Int64, Device::Cpu));
                for s in 0..steps as i64 {
                    let lo = s * self.cfg.batch as i64;
                    let len = (self.cfg.batch as i64).min(n as i64 - lo);
                    let (x, y) = load(&perm.narrow(0, lo, len));
                    let logits = self.net.forward(&x, &mut Pass::train());
                    let losses =
                        logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::None, -100, 0.0);
                    let params = self.net.params();
                    let grads =
                        Tensor::f_run_backward(&[losses.mean(Kind::Float)], &params, false, false)
                            .map_err(|e| Error::Torch(e.to_string()))?;
                    self.opt.step(&params, &grads);
                    let stats = StepStats {
                        examples: len,
                        loss_sum: losses.sum(Kind::Double).double_value(&[]),
                        correct: logits
                            .argmax(1, false)
                            .eq_tensor(&y)
                            .sum(Kind::Int64)
                            .int64_value(&[]),
                        ..Default::default()
                    };
                    total.add(&stats);
                    obs.step(&stats);
                }
            }
        }
        let train_seconds = start.elapsed().as_secs_f64();
        let done_steps = self.history.last().map_or(0, |r| r.steps) + steps;
        let (test_loss, test_accuracy) = evaluate(&self.net, &data.test, data.test.len(), device);
        let every = self.cfg.audit_every;
        let audit = if every > 0 && (epoch.is_multiple_of(every) || epoch == self.cfg.epochs) {
            Some(self.audit(data)?)
        } else {
            None
        };
        let seen = total.examples.max(1) as f64;
        let rec = EpochRecord {
            epoch,
            steps: done_steps,
            train_loss: total.loss_sum / seen,
            train_accuracy: total.correct as f64 / seen,
            test_loss,
            test_accuracy,
            epsilon: self.epsilon(n, done_steps)?,
            clipped_fraction: self.cfg.dp.as_ref().map(|_| total.clipped as f64 / seen),
            mean_grad_norm: self.cfg.dp.as_ref().map(|_| total.norm_sum / seen),
            seconds: start.elapsed().as_secs_f64(),
            train_seconds,
            examples_per_second: total.examples as f64 / train_seconds.max(1e-9),
            audit,
        };
        self.history.push(rec.clone());
        obs.epoch_end(&rec);
        Ok(rec)
    }

    /// The TF-Privacy-tutorial audit during training: threshold and logistic-regression
    /// attacks on (at most `audit_examples`) members vs test examples, slice `all`.
    pub fn audit(&self, data: &Data) -> Result<Vec<crate::audit::AuditResult>> {
        let k = self
            .cfg
            .audit_examples
            .min(data.train_len)
            .min(data.test.len()) as i64;
        let members = data.members.narrow(0, 0, k);
        let nonmembers = Tensor::arange(k, (Kind::Int64, Device::Cpu));
        let opts = crate::audit::AuditOptions {
            seed: self.cfg.seed,
            ..Default::default()
        };
        crate::audit::audit_logits(
            &logits(&self.net, &data.train, &members, self.device),
            &data.train.labels_at(&members, Device::Cpu),
            &logits(&self.net, &data.test, &nonmembers, self.device),
            &data.test.labels_at(&nonmembers, Device::Cpu),
            &opts,
        )
    }

    /// Parameters and optimizer state, by name.
    fn named_state(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(k, t)| (format!("param.{k}"), t))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.extend(self.opt.state());
        v
    }

    /// Save the resumable state into `dir` atomically (a temp dir renamed over the old one).
    pub fn save_state(&self, dir: &Path) -> Result<()> {
        let parent = dir.parent().unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".state-")
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        let tensors = tmp.path().join("tensors.pt");
        let named = self.named_state();
        Tensor::save_multi(&named, &tensors).map_err(|e| Error::Torch(e.to_string()))?;
        let state = State {
            config: self.cfg.clone(),
            history: self.history.clone(),
        };
        let json = serde_json::to_vec_pretty(&state).map_err(|e| Error::internal("JSON", e))?;
        let sp = tmp.path().join("state.json");
        std::fs::write(&sp, json).map_err(|e| Error::io(&sp, e))?;
        let tmp = tmp.keep();
        let old = parent.join(".state-old");
        let _ = std::fs::remove_dir_all(&old);
        if dir.exists() {
            std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// Restore from a state dir; the configuration must be the one saved there.
    pub fn load_state(&mut self, dir: &Path) -> Result<()> {
        let sp = dir.join("state.json");
        let text = std::fs::read_to_string(&sp).map_err(|e| Error::io(&sp, e))?;
        let state: State = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(&sp, format!("not a fool training state: {e}")))?;
        if state.config != self.cfg {
            return Err(Error::field(
                "resume",
                format!(
                    "the run in {} was started with other settings; rerun with the same flags or choose another --out",
                    dir.parent().unwrap_or(dir).display()
                ),
            ));
        }
        let tp = dir.join("tensors.pt");
        let named: HashMap<String, Tensor> = Tensor::load_multi_with_device(&tp, self.device)
            .map_err(|e| {
                Error::bad_file(
                    &tp,
                    format!(
                        "unreadable checkpoint: {}",
                        crate::error::first_line(&e.to_string())
                    ),
                )
            })?
            .into_iter()
            .collect();
        tch::no_grad(|| -> Result<()> {
            for (k, mut t) in self.vs.variables() {
                let src = named
                    .get(&format!("param.{k}"))
                    .ok_or_else(|| Error::bad_file(&tp, format!("no parameter '{k}'")))?;
                t.copy_(src);
            }
            Ok(())
        })?;
        self.opt.load_state(&named)?;
        self.history = state.history;
        Ok(())
    }

    /// Metadata describing the model as it is now.
    pub fn metadata(&self, data: &Data) -> Metadata {
        let last = self.history.last();
        let dp = self.cfg.dp.as_ref();
        Metadata {
            fool_version: env!("CARGO_PKG_VERSION").to_string(),
            dataset: self.cfg.dataset,
            arch: self.cfg.arch.to_string(),
            epsilon: last.and_then(|r| r.epsilon),
            delta: dp.map(|d| d.delta),
            accountant: dp.map(|d| d.accountant),
            noise: dp.map(|d| d.noise),
            clip: dp.map(|d| d.clip),
            sample_rate: dp.map(|_| self.cfg.batch as f64 / data.train_len as f64),
            steps: last.map_or(0, |r| r.steps),
            epochs_done: self.history.len(),
            test_accuracy: last.map(|r| r.test_accuracy),
            train_examples: data.train_len,
            test_examples: data.test.len(),
            members: match self.cfg.half {
                None => format!(
                    "the first {} examples of the {} training split",
                    data.train_len, self.cfg.dataset
                ),
                Some(seed) => format!(
                    "a random half ({} examples, seed {seed}) of the first {} examples of the {} training split; indices in members.npy",
                    data.train_len,
                    self.cfg.limit.unwrap_or(data.train.len()).min(data.train.len()),
                    self.cfg.dataset
                ),
            },
            seed: self.cfg.seed,
            device: format!("{:?}", self.device),
            config: self.cfg.clone(),
            history: self.history.clone(),
        }
    }
}
