//! Adversarial training (`--adversarial`): every training batch is replaced by adversarial
//! examples against the current weights, made by the same attack code as `fool bench`
//! ([`crate::attacks::Pgd`], on the 8-bit grid, within the L∞ ball):
//!
//! - `pgd` — Madry et al. 2018: PGD-k from a uniform random start in the ball, step
//!   `--adv-step-size` (default 2.5·eps/k, Madry's rule), untargeted on the true label;
//! - `fgsm-rs` — Wong et al. 2020 ("Fast is better than free"): one signed-gradient step of
//!   1.25·eps from a uniform random start, projected back to the ball;
//! - `trades` — Zhang et al. 2019: the adversarial twin maximizes KL(f(x) ‖ f(x′)) by PGD-k
//!   (sign steps, default 2.5·eps/k, 10 steps) from x + 0.001·N(0, 1), the model in eval mode
//!   as in the reference; the training loss is CE(f(x), y) + β·KL(f(x) ‖ f(x′)) (`--beta`,
//!   default 6), both passes in train mode. The PGD loop is the attacks' own (`iterate`, on the
//!   8-bit grid); the twin is its last iterate.
//!
//! With `--dp` (pgd and fgsm-rs) the per-example gradients of the adversarial examples are clipped and noised (DP
//! adversarial training): an example's adversarial twin depends only on that example and the
//! current weights, so one example still moves the clipped sum by at most C.
//!
//! Each epoch also measures robust accuracy: PGD-20 (random start, step 2.5·eps/20) on the first
//! `eval_examples` test images, recorded next to the clean accuracy.
use crate::attacks::{Attack, Budget, Goal, Pgd, Victim};
use crate::datasets::TensorDataset;
use crate::nets::{Net, Pass};
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

/// Which attack makes the training examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdvKind {
    Pgd,
    FgsmRs,
    Trades,
}

impl std::str::FromStr for AdvKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "pgd" => Ok(AdvKind::Pgd),
            "fgsm-rs" => Ok(AdvKind::FgsmRs),
            "trades" => Ok(AdvKind::Trades),
            o => Err(Error::field(
                "adversarial",
                format!("'{o}': expected pgd, fgsm-rs or trades"),
            )),
        }
    }
}

/// Adversarial-training settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adversarial {
    pub kind: AdvKind,
    /// L∞ radius in pixel space ([0, 1]).
    pub eps: f64,
    /// PGD steps (1 for fgsm-rs).
    pub steps: usize,
    /// Step size; None: 2.5·eps/steps (pgd), 1.25·eps (fgsm-rs).
    pub step_size: Option<f64>,
    /// Test images the per-epoch PGD-20 robust accuracy is measured on.
    pub eval_examples: usize,
    /// TRADES' weight β of the KL term (6 when absent; trades only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    /// Epochs over which the training eps ramps up linearly (eps·e/W in epoch e ≤ W): large
    /// budgets (MNIST at 0.3) otherwise stall PGD training at a constant prediction. 0: none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warmup_epochs: usize,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

/// TRADES' default β (Zhang et al.'s CIFAR-10 and MNIST setting).
pub const TRADES_BETA: f64 = 6.0;

/// Steps of the per-epoch robust-accuracy attack.
pub const EVAL_STEPS: usize = 20;

/// The training model as an attack victim: pixels in [0, 1] → normalized → logits (eval mode).
struct NetVictim<'a> {
    net: &'a Net,
    ds: &'a TensorDataset,
}

impl Victim for NetVictim<'_> {
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.net.forward(&self.ds.normalize(x), &mut Pass::eval()))
    }
}

impl Adversarial {
    pub fn validate(&self) -> Result<()> {
        if !(self.eps > 0.0 && self.eps <= 1.0) {
            return Err(Error::field(
                "adv_eps",
                format!("{}: expected a radius in (0, 1] (pixel scale)", self.eps),
            ));
        }
        if self.steps == 0 {
            return Err(Error::field("adv_steps", "must be at least 1"));
        }
        if self.kind == AdvKind::FgsmRs && self.steps != 1 {
            return Err(Error::field("adv_steps", "fgsm-rs takes one step"));
        }
        if let Some(a) = self.step_size {
            if !(a > 0.0 && a.is_finite()) {
                return Err(Error::field(
                    "adv_step_size",
                    format!("{a}: expected a positive number"),
                ));
            }
        }
        if self.eval_examples == 0 {
            return Err(Error::field("adv_eval", "must be at least 1"));
        }
        match (self.kind, self.beta) {
            (AdvKind::Trades, Some(b)) if !(b > 0.0 && b.is_finite()) => {
                return Err(Error::field(
                    "beta",
                    format!("{b}: expected TRADES' weight β > 0"),
                ))
            }
            (AdvKind::Pgd | AdvKind::FgsmRs, Some(_)) => {
                return Err(Error::field(
                    "beta",
                    "is TRADES' weight: use it with --adversarial trades",
                ))
            }
            _ => {}
        }
        Ok(())
    }

    /// The training attack of (1-based) `epoch`: during the warm-up, eps (and an explicit step
    /// size) scaled by epoch/W. Evaluation always uses the full eps.
    pub fn at_epoch(&self, epoch: usize) -> Adversarial {
        if epoch >= self.warmup_epochs {
            return *self;
        }
        let f = epoch.max(1) as f64 / self.warmup_epochs as f64;
        Adversarial {
            eps: self.eps * f,
            step_size: self.step_size.map(|a| a * f),
            ..*self
        }
    }

    /// Whether the loss is TRADES' (the batch then holds each example and its twin).
    pub fn is_trades(&self) -> bool {
        self.kind == AdvKind::Trades
    }

    /// TRADES' per-example loss from the logits of the examples and of their twins (train
    /// mode): CE(z, y) + β·KL(softmax z ‖ softmax z′).
    pub fn trades_loss(&self, z: &Tensor, z_adv: &Tensor, y: &Tensor) -> Tensor {
        let ce = z.cross_entropy_loss::<Tensor>(y, None, tch::Reduction::None, -100, 0.0);
        ce + kl_rows(&z.log_softmax(-1, Kind::Float), z_adv) * self.beta.unwrap_or(TRADES_BETA)
    }

    /// TRADES' adversarial twins of the pixel batch `x`: PGD on −KL(f(x) ‖ f(x′)) from
    /// x + 0.001·N(0, 1), the last iterate on the 8-bit grid.
    fn trades_twins(&self, victim: &NetVictim, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let budget = Budget::linf(self.eps);
        let clean = tch::no_grad(|| victim.logits(x))?.log_softmax(-1, Kind::Float);
        let start = budget.clip(x, &(x + x.randn_like() * 0.001));
        let alpha = self.step_size.unwrap_or(2.5 * self.eps / self.steps as f64);
        let last = std::cell::RefCell::new(start.shallow_clone());
        let mut step = |_: &Tensor, x0: &Tensor, xi: &Tensor, grad: &Tensor| {
            let next = budget.clip(x0, &(xi - grad.sign() * alpha));
            *last.borrow_mut() = next.shallow_clone();
            next
        };
        let loss = |z: &Tensor| -kl_rows(&clean, z);
        crate::attacks::iterate(
            victim,
            x,
            start,
            &Goal::Untargeted(y.shallow_clone()),
            Some(&loss),
            budget,
            self.steps,
            false,
            &mut |_| {},
            &mut step,
        )?;
        let twin = last.into_inner();
        Ok(crate::attacks::project_quantized(x, &twin, budget).detach())
    }

    /// The attack that makes the training examples.
    pub fn attack(&self) -> Pgd {
        let alpha = match self.kind {
            AdvKind::Pgd | AdvKind::Trades => self.step_size,
            AdvKind::FgsmRs => Some(self.step_size.unwrap_or(1.25 * self.eps)),
        };
        Pgd {
            steps: self.steps,
            alpha,
            random_start: true,
            early_stop: false,
        }
    }

    /// Adversarial versions of the pixel batch `x` (labels `y`) against `net`.
    pub fn perturb(&self, net: &Net, ds: &TensorDataset, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        if x.size()[0] == 0 {
            return Ok(x.shallow_clone());
        }
        let victim = NetVictim { net, ds };
        if self.is_trades() {
            return self.trades_twins(&victim, x, y);
        }
        let goal = Goal::Untargeted(y.shallow_clone());
        let out = self
            .attack()
            .run(&victim, x, &goal, Budget::linf(self.eps), &mut |_| {})?;
        Ok(out.adv.detach())
    }
}

/// KL(p ‖ softmax z′) per row, from p's log-probabilities (N,C) and the logits z′.
fn kl_rows(log_p: &Tensor, z_adv: &Tensor) -> Tensor {
    let log_q = z_adv.log_softmax(-1, Kind::Float);
    (log_p.exp() * (log_p - log_q)).sum_dim_intlist(1, false, Kind::Float)
}

/// Accuracy of `net` under PGD-20 at `eps` on the first `n` images of `ds` (chunks of 250):
/// an image counts as robust when the attack's best 8-bit image is still classified correctly.
pub fn robust_accuracy(
    net: &Net,
    ds: &TensorDataset,
    n: usize,
    eps: f64,
    device: Device,
) -> Result<f64> {
    let n = n.min(ds.len());
    if n == 0 {
        return Ok(0.0);
    }
    let pgd = Pgd {
        steps: EVAL_STEPS,
        ..Pgd::default()
    };
    let victim = NetVictim { net, ds };
    let mut robust = 0usize;
    for lo in (0..n).step_by(250) {
        let len = 250.min(n - lo) as i64;
        let idx = Tensor::arange_start(lo as i64, lo as i64 + len, (Kind::Int64, Device::Cpu));
        let x = ds.pixels(&idx, device);
        let y = ds.labels_at(&idx, device);
        let out = pgd.run(
            &victim,
            &x,
            &Goal::Untargeted(y.shallow_clone()),
            Budget::linf(eps),
            &mut |_| {},
        )?;
        robust += out.success.iter().filter(|s| !**s).count();
    }
    Ok(robust as f64 / n as f64)
}
