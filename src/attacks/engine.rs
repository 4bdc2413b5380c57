//! The machinery the attacks share: what they attack ([`Victim`]), gradients averaged over a
//! random victim's draws ([`grad_eval`]), the straight-through 8-bit forward pass, the best image
//! kept per image (`BestSoFar`), and the loop of the iterative gradient attacks (`iterate`).
use super::{project_quantized, AttackOutput, Budget, Goal, StepInfo};
use crate::model::Classifier;
use crate::Result;
use tch::{Kind, Tensor};

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
    /// An extra per-image term the attack minimises with its goal loss, for the same input
    /// `x` as [`Victim::logits`] (whose result for `x` is `logits`, for a penalty that can reuse
    /// it): (the penalty (N,), differentiable w.r.t. `x`; whether each image is acceptable (N,)
    /// bool, detached). An image meets the goal only where it is acceptable. `None` (the
    /// default): no penalty. A detector that the attack must evade is one (see
    /// `detect::Evading`).
    fn penalty(&self, x: &Tensor, logits: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
        let _ = (x, logits);
        Ok(None)
    }
}

impl Victim for Classifier {
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Classifier::logits(self, x)
    }
}

/// A victim's penalty and which images it accepts (see [`Victim::penalty`]).
type Penalty = Option<(Tensor, Tensor)>;

/// One gradient evaluation, averaged over the victim's EOT draws.
pub struct GradEval {
    /// Logits of the last draw, detached (N,C).
    pub logits: Tensor,
    /// Per-image loss averaged over draws (the victim's penalty included), detached (N,).
    pub loss: Tensor,
    /// The victim's penalty of the last draw, detached, and which images it accepts
    /// (see [`Victim::penalty`]).
    pub penalty: Option<(Tensor, Tensor)>,
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
    // The goal loss plus the victim's penalty, with the detached penalty and its verdict.
    let total = |v: &Tensor| -> Result<(Tensor, Tensor, Penalty)> {
        let x = input(v);
        let logits = victim.logits(&x)?;
        let l = loss(&logits);
        Ok(match victim.penalty(&x, &logits)? {
            None => (logits, l, None),
            Some((p, ok)) => (logits, l + &p, Some((p.detach(), ok))),
        })
    };
    if draws == 1 {
        let v = var.detach().set_requires_grad(true);
        let (logits, l, penalty) = total(&v)?;
        return Ok(GradEval {
            logits: logits.detach(),
            loss: l.detach(),
            penalty,
            grad: std::cell::OnceCell::new(),
            pending: std::cell::RefCell::new(Some((l.sum(Kind::Float), v))),
        });
    }
    let mut grad_sum: Option<Tensor> = None;
    let mut loss_sum: Option<Tensor> = None;
    let mut last_logits = None;
    let mut last_penalty = None;
    for _ in 0..draws {
        let v = var.detach().set_requires_grad(true);
        let (logits, l, penalty) = total(&v)?;
        last_penalty = penalty;
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
        penalty: last_penalty,
        grad,
        pending: std::cell::RefCell::new(None),
    })
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

    /// [`BestSoFar::update`] for the images at `rows` (int64 indices) only; `cand`, `success`
    /// and `score` hold those images, in that order.
    pub fn update_rows(&mut self, rows: &Tensor, cand: &Tensor, success: &Tensor, score: &Tensor) {
        let mut sub = BestSoFar {
            adv: self.adv.index_select(0, rows),
            success: self.success.index_select(0, rows),
            score: self.score.index_select(0, rows),
        };
        sub.update(cand, success, score);
        self.adv = self.adv.index_copy(0, rows, &sub.adv);
        self.success = self.success.index_copy(0, rows, &sub.success);
        self.score = self.score.index_copy(0, rows, &sub.score);
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
            broken_by: None,
        }
    }
}

/// `xq`, the 8-bit image of `x` (from [`project_quantized`], computed once by the caller), in
/// the forward pass, with the gradient passed straight through the rounding and clamping to
/// `x` (a straight-through estimator): gradient attacks optimize a continuous iterate while the
/// model sees the image as saved.
pub fn straight_through(x: &Tensor, xq: &Tensor) -> Tensor {
    x + (xq - x).detach()
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
/// goal loss and its gradient w.r.t. `x` at the 8-bit image of `x` (through [`straight_through`],
/// EOT-averaged by [`grad_eval`]). The quantized image is recorded in `best` and the step is
/// reported to `on_step`. Returns the evaluation and the number of images whose best image
/// meets the goal so far.
/// On a subset of the batch, `x0`, `x` and `goal` hold the images at `rows` of the batch `best`
/// tracks (`rows` is `None` for the whole batch). `loss` maps logits to the per-image loss to
/// minimise (the goal's cross-entropy, [`Goal::loss`], when `None`); success is the goal's
/// either way.
#[allow(clippy::too_many_arguments)]
pub(crate) fn quantized_grad_step(
    victim: &dyn Victim,
    x0: &Tensor,
    x: &Tensor,
    goal: &Goal,
    loss: Option<&dyn Fn(&Tensor) -> Tensor>,
    budget: Budget,
    best: &mut BestSoFar,
    rows: Option<&Tensor>,
    (step, steps): (usize, usize),
    on_step: &mut dyn FnMut(StepInfo),
) -> Result<(GradEval, usize)> {
    let xq = project_quantized(x0, x, budget);
    let to_input = |x: &Tensor| straight_through(x, &xq);
    let goal_loss = |logits: &Tensor| goal.loss(logits);
    let eval = grad_eval(victim, x, &to_input, loss.unwrap_or(&goal_loss))?;
    let (prob, mut score) = prob_and_score(goal, &eval.logits);
    let mut reached = goal.reached(&eval.logits);
    if let Some((penalty, ok)) = &eval.penalty {
        // Only an acceptable image meets the goal; among equals, the lower penalty is better.
        reached = reached.logical_and(ok);
        score -= penalty.to_kind(Kind::Float);
    }
    match rows {
        None => best.update(&xq, &reached, &score),
        Some(r) => best.update_rows(r, &xq, &reached, &score),
    }
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

/// The loop of the iterative gradient attacks (PGD/BIM, MI-FGSM, the SGD attack): evaluate
/// the goal loss and its gradient at the 8-bit image of the iterate, keep the best image per
/// image, then let `update` move the iterate — `steps` times, `steps + 1` evaluations.
///
/// With `early_stop`, an image leaves the batch as soon as its 8-bit image meets the goal:
/// later evaluations run on the images still being attacked only (per-image early stopping;
/// an image's trajectory does not depend on the others', so the set of successes is the one a
/// full-batch run finds, at a fraction of the cost when most images fall early). Queries are
/// then counted per image (`AttackOutput::image_queries`).
///
/// `update(rows, x0, x, grad)` gets the batch indices of the active images, their originals,
/// iterates and loss gradients, and returns their next iterates (per-image state such as
/// momentum is indexed with `rows`). `loss` replaces the goal's cross-entropy as the loss to
/// minimise (see [`quantized_grad_step`]; without early stopping, as it sees whole batches).
#[allow(clippy::too_many_arguments)]
pub(crate) fn iterate(
    victim: &dyn Victim,
    x0: &Tensor,
    start: Tensor,
    goal: &Goal,
    loss: Option<&dyn Fn(&Tensor) -> Tensor>,
    budget: Budget,
    steps: usize,
    early_stop: bool,
    on_step: &mut dyn FnMut(StepInfo),
    update: &mut dyn FnMut(&Tensor, &Tensor, &Tensor, &Tensor) -> Tensor,
) -> Result<AttackOutput> {
    let n = x0.size()[0];
    let dev = x0.device();
    let draws = victim.eot_samples() as i64;
    let mut best = BestSoFar::new(x0);
    let mut x = start;
    let mut rows = Tensor::arange(n, (Kind::Int64, dev));
    let mut per_image = Tensor::zeros([n], (Kind::Int64, dev));
    let mut evals = 0;
    let mut steps_taken = 0;
    for step in 0..=steps {
        let all = rows.size()[0] == n;
        let (x0a, xa, goal_a) = if all {
            (x0.shallow_clone(), x.shallow_clone(), goal.select(&rows))
        } else {
            (
                x0.index_select(0, &rows),
                x.index_select(0, &rows),
                goal.select(&rows),
            )
        };
        let (eval, reached) = quantized_grad_step(
            victim,
            &x0a,
            &xa,
            &goal_a,
            loss,
            budget,
            &mut best,
            (!all).then_some(&rows),
            (step, steps),
            on_step,
        )?;
        evals += 1;
        per_image = per_image.index_add(0, &rows, &rows.ones_like().multiply_scalar(draws));
        if step == steps || (early_stop && reached == n as usize) {
            break;
        }
        let next = update(&rows, &x0a, &xa, eval.grad());
        x = if all {
            next
        } else {
            x.index_copy(0, &rows, &next)
        };
        steps_taken = step + 1;
        if early_stop {
            let open = best.success.index_select(0, &rows).logical_not();
            rows = rows.masked_select(&open);
        }
    }
    let mut out = best.into_output(goal, steps_taken, evals * draws as usize);
    if early_stop {
        let q = Vec::<i64>::try_from(per_image.to_device(tch::Device::Cpu)).unwrap_or_default();
        out.queries = q.iter().copied().max().unwrap_or(0) as usize;
        out.image_queries = Some(q.into_iter().map(|v| v as usize).collect());
    }
    Ok(out)
}
