//! A model being trained: the data of a run, the step loop of one epoch (plain SGD/Adam or
//! DP-SGD), evaluation and the membership audits during training.
//!
//! Randomness: torch's generator is re-seeded from (seed, epoch) at the start of every epoch,
//! so a run resumed from the state saved after epoch k continues with exactly the batches and
//! noise an uninterrupted run would have drawn (same final model and ε on the same device).
use super::data::Data;
use super::optim::Optimizer;
use super::{Observer, TrainConfig};
use crate::datasets::{Feed, TensorDataset};
use crate::nets::{Net, Pass};
use crate::privacy::accountant;
use crate::privacy::dpsgd::{DpSgd, StepStats};
use crate::{Error, Result};
use tch::{nn, Device, Kind, Reduction, Tensor};

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
    /// DP: the mean per-example gradient norm (before clipping); otherwise the mean norm of
    /// the batch gradient over the epoch's steps.
    pub mean_grad_norm: Option<f64>,
    /// The learning rate of the epoch's last step (None in records of older fool versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Wall time of the epoch, evaluation included.
    pub seconds: f64,
    /// Wall time of the training steps alone.
    #[serde(default)]
    pub train_seconds: f64,
    /// Training examples processed per second (train_seconds).
    #[serde(default)]
    pub examples_per_second: f64,
    /// With adversarial training: accuracy under PGD-20 at the training eps on the first test
    /// images ([`super::adversarial::robust_accuracy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub robust_accuracy: Option<f64>,
    /// Membership-inference results at this epoch (with `audit_every`): threshold and
    /// logistic-regression attacks, members = training examples, non-members = test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Vec<crate::audit::AuditResult>>,
}

pub(crate) fn seed_for_epoch(seed: u64, epoch: usize) -> i64 {
    (seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64) & 0x7fff_ffff_ffff) as i64
}

/// Logits of `net` (eval mode) on rows `idx` of `ds`, computed on `device` in chunks of
/// 1000 and returned on the CPU.
pub fn logits(net: &Net, ds: &TensorDataset, idx: &Tensor, device: Device) -> Tensor {
    let rows: Vec<usize> = Vec::<i64>::try_from(idx.to_device(Device::Cpu).to_kind(Kind::Int64))
        .expect("row indices are a 1-D integer tensor")
        .into_iter()
        .map(|i| i as usize)
        .collect();
    tch::no_grad(|| {
        let out: Vec<Tensor> = ds
            .batches(&rows, 1000, device, Feed::Normalized)
            .map(|b| {
                net.forward(&b.images, &mut Pass::eval())
                    .to_device(Device::Cpu)
            })
            .collect();
        Tensor::cat(&out, 0)
    })
}

/// The learning rate of global step `t` (0-based) of `total`, `per_epoch` an epoch.
fn lr_for(cfg: &TrainConfig, t: u64, per_epoch: u64, total: u64) -> f64 {
    let r = &cfg.recipe;
    r.schedule.lr_at(cfg.lr, t, per_epoch, total, r.warmup)
}

/// The L2 norm of all the gradients together (one read back from the device).
fn norm(grads: &[Tensor]) -> f64 {
    let sq: Vec<Tensor> = grads.iter().map(|g| g.square().sum(Kind::Double)).collect();
    Tensor::stack(&sq, 0)
        .sum(Kind::Double)
        .sqrt()
        .double_value(&[])
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
    /// The average of the weights, with `--ema`.
    pub ema: Option<super::averaging::Ema>,
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
        let mut opt = Optimizer::new(cfg.optimizer, cfg.lr, &net.params());
        opt.weight_decay = cfg.recipe.weight_decay;
        let ema = cfg
            .recipe
            .ema
            .map(|d| super::averaging::Ema::new(d, &net.params()));
        Ok(Trainer {
            cfg,
            vs,
            net,
            opt,
            ema,
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
            multiplicity: self.cfg.recipe.copies(),
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

    /// Train one epoch (1-based `epoch`) and evaluate; `obs` hears of the epoch's start and
    /// of every step (its end is for the caller to report, once the epoch is saved).
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
        let before = self.history.last().map_or(0, |r| r.steps);
        let (per_epoch, all_steps) = (steps, steps * self.cfg.epochs as u64);
        let mut batch_norms = 0.0;
        let augment = self.cfg.recipe.augment;
        let adversarial = self.cfg.recipe.adversarial;
        // The attack of this epoch (eps ramped during --adv-warmup).
        let attack_now = adversarial.map(|a| a.at_epoch(epoch));
        let k = self.cfg.recipe.copies() as i64;
        let net = &self.net;
        let mut load = |pos: &Tensor| -> Result<(Tensor, Tensor)> {
            let idx = data.members.index_select(0, pos);
            let idx = if k == 1 {
                idx
            } else {
                idx.repeat_interleave_self_int(k, Some(0), None::<i64>)
            };
            let y = data.train.labels_at(&idx, device);
            let x = match (augment, attack_now) {
                (None, None) => data.train.normalized(&idx, device),
                _ => {
                    let mut px = data.train.pixels(&idx, device);
                    if let Some(a) = augment {
                        px = a.apply(&px);
                    }
                    match attack_now {
                        // TRADES trains on each example and its twin: both, in that order.
                        Some(adv) if adv.is_trades() => {
                            let twins = adv.perturb(net, &data.train, &px, &y)?;
                            px = Tensor::cat(&[&px, &twins], 0);
                        }
                        Some(adv) => px = adv.perturb(net, &data.train, &px, &y)?,
                        None => {}
                    }
                    data.train.normalize(&px)
                }
            };
            Ok((x, y))
        };
        match self.dp(n) {
            Some(dp) => {
                dp.validate()?;
                for s in 0..steps {
                    let idx = dp.poisson_batch();
                    let (grads, stats) = dp.noisy_grad(&self.net, &idx, &mut load)?;
                    self.check_loss(epoch, s, steps, stats.loss_sum)?;
                    self.opt.lr = lr_for(&self.cfg, before + s, per_epoch, all_steps);
                    self.opt.step(&self.net.params(), &grads);
                    if let Some(e) = &mut self.ema {
                        e.update(&self.net.params());
                    }
                    total.add(&stats);
                    obs.step(&stats);
                }
            }
            None => {
                let perm = Tensor::randperm(n as i64, (Kind::Int64, Device::Cpu));
                for s in 0..steps as i64 {
                    let lo = s * self.cfg.batch as i64;
                    let len = (self.cfg.batch as i64).min(n as i64 - lo);
                    let (x, y) = load(&perm.narrow(0, lo, len))?;
                    let logits = self.net.forward(&x, &mut Pass::train());
                    let (logits, losses) = match adversarial {
                        Some(adv) if adv.is_trades() => {
                            // The twins' logits give the training accuracy (on adversarial
                            // inputs, as for pgd and fgsm-rs).
                            let b = y.size()[0];
                            let twins = logits.narrow(0, b, b);
                            let losses = adv.trades_loss(&logits.narrow(0, 0, b), &twins, &y);
                            (twins, losses)
                        }
                        _ => {
                            let l = logits.cross_entropy_loss::<Tensor>(
                                &y,
                                None,
                                Reduction::None,
                                -100,
                                0.0,
                            );
                            (logits, l)
                        }
                    };
                    let stats = StepStats::of_copies(len, k, &losses, &logits, &y);
                    self.check_loss(epoch, s as u64, steps, stats.loss_sum)?;
                    let params = self.net.params();
                    let grads =
                        Tensor::f_run_backward(&[losses.mean(Kind::Float)], &params, false, false)
                            .map_err(|e| Error::Torch(e.to_string()))?;
                    batch_norms += norm(&grads);
                    self.opt.lr = lr_for(&self.cfg, before + s as u64, per_epoch, all_steps);
                    self.opt.step(&params, &grads);
                    if let Some(e) = &mut self.ema {
                        e.update(&self.net.params());
                    }
                    total.add(&stats);
                    obs.step(&stats);
                }
            }
        }
        let train_seconds = start.elapsed().as_secs_f64();
        let done_steps = self.history.last().map_or(0, |r| r.steps) + steps;
        let finite = tch::no_grad(|| {
            self.net
                .params()
                .iter()
                .all(|p| p.isfinite().all().to_kind(Kind::Int64).int64_value(&[]) == 1)
        });
        if !finite {
            return Err(self.diverged(epoch, format!("after step {steps}"), "a weight".into()));
        }
        self.swap_average();
        let (test_loss, test_accuracy) = evaluate(&self.net, &data.test, data.test.len(), device);
        let robust_accuracy = adversarial
            .map(|a| {
                super::adversarial::robust_accuracy(
                    &self.net,
                    &data.test,
                    a.eval_examples,
                    a.eps,
                    device,
                )
            })
            .transpose();
        self.swap_average();
        let robust_accuracy = robust_accuracy?;
        if !test_loss.is_finite() {
            return Err(self.diverged(
                epoch,
                "evaluation".into(),
                format!("the test loss ({test_loss})"),
            ));
        }
        let every = self.cfg.audit_every;
        let audit = if every > 0 && (epoch.is_multiple_of(every) || epoch == self.cfg.epochs) {
            self.swap_average();
            let a = self.audit(data);
            self.swap_average();
            Some(a?)
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
            mean_grad_norm: Some(match self.cfg.dp {
                Some(_) => total.norm_sum / seen,
                None => batch_norms / steps.max(1) as f64,
            }),
            lr: Some(self.opt.lr),
            seconds: start.elapsed().as_secs_f64(),
            train_seconds,
            examples_per_second: total.examples as f64 / train_seconds.max(1e-9),
            robust_accuracy,
            audit,
        };
        self.history.push(rec.clone());
        Ok(rec)
    }

    /// Exchange the live and the averaged weights (with `--ema`; a second call restores):
    /// evaluation, audits and exports run between two calls.
    pub fn swap_average(&mut self) {
        if let Some(e) = &mut self.ema {
            e.swap(&self.net.params());
        }
    }

    /// Stop at step `s` (0-based) of `steps` of `epoch` when its training loss is not finite.
    fn check_loss(&self, epoch: usize, s: u64, steps: u64, loss_sum: f64) -> Result<()> {
        if loss_sum.is_finite() {
            return Ok(());
        }
        Err(self.diverged(
            epoch,
            format!("step {} of {steps}", s + 1),
            format!("the training loss ({loss_sum})"),
        ))
    }

    /// Training diverged in `epoch`, at `at`: `what` is not finite. Nothing of the epoch is
    /// saved (the state of the epoch before stays).
    fn diverged(&self, epoch: usize, at: String, what: String) -> Error {
        let kept = match epoch {
            1 => String::new(),
            e => format!("; the state saved after epoch {} is kept", e - 1),
        };
        Error::failed(
            "training",
            format!(
                "epoch {epoch}, {at}: {what} is not finite: training diverged (is the learning rate {} too large?); epoch {epoch} was not saved{kept}",
                self.cfg.lr
            ),
        )
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
}
