//! Adversarial attacks behind one trait, over a shared base: the goal (targeted or not), the
//! L∞ budget in pixel space and the 8-bit quantization every attack result goes through.
//!
//! Conventions for every attack:
//! - inputs and outputs are pixel-space batches (N,3,H,W) in [0,1] on the model's device;
//! - the result is an image on the 8-bit grid (what a saved PNG holds), inside the valid
//!   range and within `eps` of the original in L∞ — guaranteed by [`project_quantized`];
//! - success is judged on that quantized image.
use crate::model::Classifier;
use crate::Result;
use tch::{Kind, Reduction, Tensor};

pub mod apgd;
pub mod cw;
pub mod fgsm;
pub mod mifgsm;
pub mod pgd;
pub mod sgd;
pub mod square;
pub use apgd::Apgd;
pub use cw::CarliniWagner;
pub use fgsm::Fgsm;
pub use mifgsm::MiFgsm;
pub use pgd::Pgd;
pub use sgd::SgdAttack;
pub use square::Square;

/// What the attacker wants, per image of the batch.
pub enum Goal {
    /// Make the model output these classes (int64, shape (N,)).
    Targeted(Tensor),
    /// Make the model output anything but these classes (int64, shape (N,)).
    Untargeted(Tensor),
}

impl Goal {
    pub fn classes(&self) -> &Tensor {
        match self {
            Goal::Targeted(t) | Goal::Untargeted(t) => t,
        }
    }

    pub fn is_targeted(&self) -> bool {
        matches!(self, Goal::Targeted(_))
    }

    /// Per-image loss to *minimize* (N,): cross-entropy toward the target, or minus the
    /// cross-entropy of the true class.
    pub fn loss(&self, logits: &Tensor) -> Tensor {
        let ce =
            logits.cross_entropy_loss::<Tensor>(self.classes(), None, Reduction::None, -100, 0.0);
        match self {
            Goal::Targeted(_) => ce,
            Goal::Untargeted(_) => -ce,
        }
    }

    /// Whether each image meets the goal (bool, (N,)).
    pub fn reached(&self, logits: &Tensor) -> Tensor {
        let pred = logits.argmax(-1, false);
        match self {
            Goal::Targeted(t) => pred.eq_tensor(t),
            Goal::Untargeted(t) => pred.ne_tensor(t),
        }
    }

    /// Probability of the goal class (target, or the true class for untargeted), (N,).
    pub fn class_prob(&self, logits: &Tensor) -> Tensor {
        logits
            .softmax(-1, Kind::Float)
            .gather(1, &self.classes().unsqueeze(1), false)
            .squeeze_dim(1)
    }
}

/// An L∞ budget in pixel space ([0,1] scale).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub eps: f64,
}

impl Budget {
    /// The largest change, in 8-bit levels, that stays within `eps`.
    pub fn levels(&self) -> f64 {
        (self.eps * 255.0 + 1e-6).floor()
    }
}

/// The 8-bit image closest to `x` that is within `budget` of `x0` (itself on the 8-bit grid)
/// and inside [0,1]: round to the grid, then clamp to the levels the budget allows.
pub fn project_quantized(x0: &Tensor, x: &Tensor, budget: Budget) -> Tensor {
    let m = budget.levels();
    let k0 = (x0 * 255.0).round();
    let lo = (&k0 - m).clamp_min(0.0);
    let hi = (&k0 + m).clamp_max(255.0);
    let k = (x.clamp(0.0, 1.0) * 255.0).round();
    k.max_other(&lo).min_other(&hi) / 255.0
}

/// What one step of an attack reports to the progress display.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    pub step: usize,
    pub steps: usize,
    /// Mean goal loss over the batch.
    pub loss: f64,
    /// Mean probability of the goal class (target, or true class when untargeted).
    pub class_prob: f64,
    /// Images that meet the goal so far.
    pub reached: usize,
}

/// The result of an attack on a batch.
pub struct AttackOutput {
    /// Adversarial images (N,3,H,W) on the 8-bit grid, within budget.
    pub adv: Tensor,
    /// Whether each quantized image meets the goal.
    pub success: Vec<bool>,
    /// Goal-class probability of each returned image.
    pub class_prob: Vec<f64>,
    /// Optimization steps taken (the largest over the batch).
    pub steps: usize,
    /// Model evaluations (forward passes) per image: the largest over the batch.
    pub queries: usize,
    /// Per-image query counts, for attacks whose images stop at different times (Square).
    pub image_queries: Option<Vec<usize>>,
}

/// What an attack attacks: anything that maps a pixel-space batch to logits, differentiably
/// (a bare [`Classifier`], or a model behind a defense with BPDA/EOT, see
/// `defenses::Defended`).
pub trait Victim {
    /// Logits (N,C) for pixel-space input (N,3,H,W) in [0,1]; differentiable w.r.t. `x`.
    fn logits(&self, x: &Tensor) -> Result<Tensor>;
    /// Random draws to average gradients over (expectation over transformation); 1 when
    /// the victim is deterministic.
    fn eot_samples(&self) -> usize {
        1
    }
}

impl Victim for Classifier {
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Classifier::logits(self, x)
    }
}

/// One gradient evaluation, averaged over the victim's EOT draws.
pub struct GradEval {
    /// Logits of the last draw, detached (N,C).
    pub logits: Tensor,
    /// Per-image loss averaged over draws, detached (N,).
    pub loss: Tensor,
    /// The gradient, once computed.
    grad: std::cell::OnceCell<Tensor>,
    /// With a single draw the backward pass is deferred until [`GradEval::grad`] asks for it,
    /// so an attack that stops after looking at the logits never pays for it:
    /// (summed loss with its graph, the variable).
    pending: std::cell::RefCell<Option<(Tensor, Tensor)>>,
}

impl GradEval {
    /// d(Σ loss)/d`var`, averaged over draws (computed on first use).
    pub fn grad(&self) -> &Tensor {
        self.grad.get_or_init(|| {
            let (loss, var) = self.pending.borrow_mut().take().expect("pending backward");
            Tensor::run_backward(&[loss], &[&var], false, false)
                .pop()
                .expect("one gradient")
        })
    }
}

/// Gradient of the summed per-image `loss(logits(input(var)))` with respect to `var`,
/// averaged over `victim.eot_samples()` draws. `var` must not require grad; a copy that
/// does is made here. With one draw the backward pass runs only when the gradient is used.
pub fn grad_eval(
    victim: &dyn Victim,
    var: &Tensor,
    input: &dyn Fn(&Tensor) -> Tensor,
    loss: &dyn Fn(&Tensor) -> Tensor,
) -> Result<GradEval> {
    let draws = victim.eot_samples().max(1);
    if draws == 1 {
        let v = var.detach().set_requires_grad(true);
        let logits = victim.logits(&input(&v))?;
        let l = loss(&logits);
        return Ok(GradEval {
            logits: logits.detach(),
            loss: l.detach(),
            grad: std::cell::OnceCell::new(),
            pending: std::cell::RefCell::new(Some((l.sum(Kind::Float), v))),
        });
    }
    let mut grad_sum: Option<Tensor> = None;
    let mut loss_sum: Option<Tensor> = None;
    let mut last_logits = None;
    for _ in 0..draws {
        let v = var.detach().set_requires_grad(true);
        let logits = victim.logits(&input(&v))?;
        let l = loss(&logits);
        let g = Tensor::run_backward(&[l.sum(Kind::Float)], &[&v], false, false)
            .pop()
            .expect("one gradient");
        grad_sum = Some(match grad_sum {
            None => g,
            Some(s) => s + g,
        });
        let l = l.detach();
        loss_sum = Some(match loss_sum {
            None => l,
            Some(s) => s + l,
        });
        last_logits = Some(logits.detach());
    }
    let grad = std::cell::OnceCell::new();
    let _ = grad.set(grad_sum.expect("at least one draw") / draws as f64);
    Ok(GradEval {
        logits: last_logits.expect("at least one draw"),
        loss: loss_sum.expect("at least one draw") / draws as f64,
        grad,
        pending: std::cell::RefCell::new(None),
    })
}

/// One trait for all attacks.
pub trait Attack {
    /// Short name, e.g. `sgd`.
    fn name(&self) -> String;
    /// Attack the pixel-space batch `x0` (on the 8-bit grid) within `budget`.
    fn run(
        &self,
        model: &dyn Victim,
        x0: &Tensor,
        goal: &Goal,
        budget: Budget,
        on_step: &mut dyn FnMut(StepInfo),
    ) -> Result<AttackOutput>;
}

/// Keeps, per image, the best quantized candidate seen: a successful one beats an
/// unsuccessful one; among equals, the higher goal score wins.
pub(crate) struct BestSoFar {
    pub adv: Tensor,
    pub success: Tensor,
    pub score: Tensor,
}

impl BestSoFar {
    pub fn new(x0: &Tensor) -> Self {
        let n = x0.size()[0];
        BestSoFar {
            adv: x0.detach().copy(),
            success: Tensor::zeros([n], (Kind::Bool, x0.device())),
            score: Tensor::full([n], f64::NEG_INFINITY, (Kind::Float, x0.device())),
        }
    }

    /// `score`: higher is better (target prob, or 1 − true-class prob).
    pub fn update(&mut self, cand: &Tensor, success: &Tensor, score: &Tensor) {
        let better = success.logical_and(&self.success.logical_not()).logical_or(
            &success
                .eq_tensor(&self.success)
                .logical_and(&score.gt_tensor(&self.score)),
        );
        let mask4 = better.view([-1, 1, 1, 1]);
        self.adv = cand.detach().where_self(&mask4, &self.adv);
        self.success = success.where_self(&better, &self.success);
        self.score = score.detach().where_self(&better, &self.score);
    }

    pub fn into_output(self, goal: &Goal, steps: usize, queries: usize) -> AttackOutput {
        let success =
            Vec::<bool>::try_from(self.success.to_device(tch::Device::Cpu)).unwrap_or_default();
        let score =
            Vec::<f64>::try_from(self.score.to_kind(Kind::Double).to_device(tch::Device::Cpu))
                .unwrap_or_default();
        let class_prob = match goal {
            Goal::Targeted(_) => score,
            Goal::Untargeted(_) => score.into_iter().map(|s| 1.0 - s).collect(),
        };
        AttackOutput {
            adv: self.adv,
            success,
            class_prob,
            steps,
            queries,
            image_queries: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_stays_on_grid_in_budget_and_range() {
        let x0 = Tensor::from_slice(&[0.0f32, 10.0 / 255.0, 128.0 / 255.0, 1.0]);
        let x = Tensor::from_slice(&[-0.5f32, 0.2, 0.4, 0.9]);
        let b = Budget { eps: 8.0 / 255.0 };
        let p = project_quantized(&x0, &x, b);
        let levels = Vec::<f32>::try_from(&p * 255.0).unwrap();
        assert_eq!(levels, vec![0.0, 18.0, 120.0, 247.0]);
        // eps between two levels rounds down: 8.5/255 allows 8 levels.
        assert_eq!(Budget { eps: 8.5 / 255.0 }.levels(), 8.0);
        assert_eq!(Budget { eps: 8.0 / 255.0 }.levels(), 8.0);
        assert_eq!(Budget { eps: 0.0314 }.levels(), 8.0);
    }
}

/// Per-image L∞ and L2 distances (pixel space, 0..1 scale) between two batches on the 8-bit
/// grid, computed in integer levels so they are exact and identical however the work was
/// split, resumed or reloaded.
pub fn distances(a: &Tensor, b: &Tensor) -> (Vec<f64>, Vec<f64>) {
    let levels = |t: &Tensor| (t * 255.0).round().to_kind(Kind::Int64);
    let d = (levels(a) - levels(b)).flatten(1, -1);
    let cpu = |t: Tensor| Vec::<i64>::try_from(t.to_device(tch::Device::Cpu)).unwrap_or_default();
    let linf = cpu(d.abs().amax([1], false))
        .into_iter()
        .map(|v| v as f64 / 255.0)
        .collect();
    let l2 = cpu(d.square().sum_dim_intlist(&[1i64][..], false, Kind::Int64))
        .into_iter()
        .map(|v| (v as f64).sqrt() / 255.0)
        .collect();
    (linf, l2)
}

/// The check every reported success goes through: the image *file* as saved, loaded again
/// and preprocessed, must meet the goal and be within the budget of the original.
#[derive(Debug)]
pub struct Verified {
    /// Goal met and L∞ ≤ eps + one 8-bit step.
    pub success: bool,
    pub goal_reached: bool,
    /// Goal-class probability of the reloaded image.
    pub class_prob: f64,
    /// Softmax of the reloaded image (1,C).
    pub probs: Tensor,
    /// The reloaded image in pixel space (1,3,H,W).
    pub pixels: Tensor,
    /// Distances to the original in pixel space (0..1 scale).
    pub linf: f64,
    pub l2: f64,
}

/// Load `path`, preprocess it as the model does, classify, and measure it against `x0`.
pub fn verify_file(
    model: &Classifier,
    path: &std::path::Path,
    x0: &Tensor,
    goal: &Goal,
    budget: Budget,
) -> Result<Verified> {
    let img = crate::imageio::load_rgb(path)?;
    let x = model.pre.pixels(&img, model.device).unsqueeze(0);
    if x.size() != x0.size() {
        return Err(crate::Error::bad_file(
            path,
            "reloaded image has another size than the original",
        ));
    }
    let logits = tch::no_grad(|| model.logits(&x))?;
    let goal_reached = goal.reached(&logits).int64_value(&[0]) != 0;
    let class_prob = goal.class_prob(&logits).double_value(&[0]);
    let (linf, l2) = distances(&x, x0);
    let (linf, l2) = (linf[0], l2[0]);
    let within = linf <= budget.eps + 1.0 / 255.0 + 1e-9;
    Ok(Verified {
        success: goal_reached && within,
        goal_reached,
        class_prob,
        probs: logits.softmax(-1, Kind::Float),
        pixels: x,
        linf,
        l2,
    })
}

/// The 8-bit image of `x` (see [`project_quantized`]) in the forward pass, with the gradient
/// passed straight through the rounding and clamping to `x` (a straight-through estimator):
/// gradient attacks optimize a continuous iterate while the model sees the image as saved.
pub fn ste_quantize(x0: &Tensor, x: &Tensor, budget: Budget) -> Tensor {
    let xq = project_quantized(x0, x, budget);
    x + (xq - x).detach()
}

/// The goal's logit margin per image (N,), positive while the goal is not reached:
/// untargeted z_true − max_{j≠true} z_j, targeted max_{j≠target} z_j − z_target
/// (Carlini–Wagner's f before the −κ clamp; Square Attack's margin loss). Differentiable.
pub fn margin(goal: &Goal, logits: &Tensor) -> Tensor {
    let cls = goal.classes().unsqueeze(1);
    let z_cls = logits.gather(1, &cls, false).squeeze_dim(1);
    let z_other = logits
        .scatter_value(1, &cls, f64::NEG_INFINITY)
        .amax([1], false);
    match goal {
        Goal::Targeted(_) => z_other - z_cls,
        Goal::Untargeted(_) => z_cls - z_other,
    }
}

/// The goal-class probability (N,) and the score [`BestSoFar`] ranks by (higher is better:
/// the target's probability, or one minus the true class's).
pub(crate) fn prob_and_score(goal: &Goal, logits: &Tensor) -> (Tensor, Tensor) {
    let prob = goal.class_prob(logits);
    let score = if goal.is_targeted() {
        prob.shallow_clone()
    } else {
        1.0 - &prob
    };
    (prob, score)
}

/// One evaluation of a gradient attack at its continuous iterate `x` (within budget): the
/// goal loss and its gradient w.r.t. `x` at the 8-bit image of `x` (through [`ste_quantize`],
/// EOT-averaged by [`grad_eval`]). The quantized image is recorded in `best` and the step is
/// reported to `on_step`. Returns the evaluation and the number of images whose best image
/// meets the goal so far.
#[allow(clippy::too_many_arguments)]
pub(crate) fn quantized_grad_step(
    victim: &dyn Victim,
    x0: &Tensor,
    x: &Tensor,
    goal: &Goal,
    budget: Budget,
    best: &mut BestSoFar,
    (step, steps): (usize, usize),
    on_step: &mut dyn FnMut(StepInfo),
) -> Result<(GradEval, usize)> {
    let to_input = |x: &Tensor| ste_quantize(x0, x, budget);
    let eval = grad_eval(victim, x, &to_input, &|logits| goal.loss(logits))?;
    let xq = project_quantized(x0, x, budget);
    let reached = goal.reached(&eval.logits);
    let (prob, score) = prob_and_score(goal, &eval.logits);
    best.update(&xq, &reached, &score);
    let n_reached = best.success.sum(Kind::Int64).int64_value(&[]) as usize;
    on_step(StepInfo {
        step,
        steps,
        loss: eval.loss.mean(Kind::Float).double_value(&[]),
        class_prob: prob.mean(Kind::Float).double_value(&[]),
        reached: n_reached,
    });
    Ok((eval, n_reached))
}

/// Projects a continuous iterate onto the L∞ ball of radius `eps` around `x0` and the valid
/// range [0,1].
pub(crate) fn clip_ball(x0: &Tensor, x: &Tensor, eps: f64) -> Tensor {
    x.max_other(&(x0 - eps))
        .min_other(&(x0 + eps))
        .clamp(0.0, 1.0)
}
