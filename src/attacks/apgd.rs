//! APGD-CE, Auto-PGD on the cross-entropy in L∞ or L2 (Croce & Hein 2020), following the logic
//! of the reference implementation (fra31/auto-attack, `autopgd_base.py`):
//!
//! - start from a random point of the ball, step size 2·eps per image;
//! - each step: a steepest-ascent step z = P(x + η·sign ∇L) (L2: η·∇L/‖∇L‖₂), then momentum
//!   x ← P(x + α·(z − x) + (1 − α)·(x − x_prev)) with α = 0.75 (1 on the first step);
//! - checkpoints after k₀ = ⌈0.22·N⌉ steps, then every k steps with k shrinking by 0.03·N per
//!   checkpoint down to 0.06·N (p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06));
//! - at a checkpoint, an image's step size is halved and it restarts from its best point
//!   (highest loss) when the loss increased in at most a fraction ρ = 0.75 of the steps since
//!   the last checkpoint, or when its step size was not reduced at the last checkpoint and its
//!   best loss has not improved since;
//! - `n_restarts` runs from fresh random starts, keeping the best image per image.
//!
//! The loss L ([`ApgdLoss`]): `Ce` — the cross-entropy of the true class (untargeted,
//! maximized) or minus that of the target (targeted): L = −`goal.loss`; `Dlr` — the
//! difference-of-logits ratio, invariant to shifts and scalings of the logits (AutoAttack's
//! APGD-DLR): −(z_y − max_{i≠y} z_i)/(z_π1 − z_π3), with z_π the sorted logits (targeted:
//! −(max_{i≠t} z_i − z_t)/(z_π1 − ½(z_π3 + z_π4))); `DlrTargeted` — APGD-T: an untargeted
//! attack that runs once per target class t among the `target_classes` classes ranked 2, 3, …
//! on the clean image, each time on the images still standing, maximizing the targeted DLR
//! −(z_y − z_t)/(z_π1 − ½(z_π3 + z_π4)).
//!
//! Differences from the reference: the forward pass sees the 8-bit image (straight-through
//! estimator), success is judged on it, and the best successful image is kept per image; the
//! first checkpoint counts the increase from the starting point's loss (the reference compares
//! with an uninitialized zero row there). Without `early_stop`, all images are attacked in every
//! restart; with it, an image leaves the batch as soon as its 8-bit image meets the goal and is
//! not restarted (as AutoAttack restarts only the robust points): the others' trajectories are
//! unchanged, so with one restart the successes are those of the full-batch run (later restarts
//! draw their random starts for the open images only). Queries are then counted per image.
use super::{quantized_grad_step, Attack, AttackOutput, BestSoFar, Budget, Goal};
use super::{Norm, StepInfo, Victim};
use crate::{Error, Result};
use tch::{Kind, Tensor};

/// The loss APGD ascends (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApgdLoss {
    Ce,
    Dlr,
    DlrTargeted,
}

#[derive(Debug, Clone)]
pub struct Apgd {
    pub loss: ApgdLoss,
    /// With [`ApgdLoss::DlrTargeted`], the target classes tried, by rank on the clean image
    /// from the second (9 in AutoAttack: every other class of a 10-class model).
    pub target_classes: usize,
    /// Iterations per restart (100 in AutoAttack).
    pub steps: usize,
    /// Runs from independent random starts (1 in AutoAttack's standard APGD-CE).
    pub n_restarts: usize,
    /// Fraction of loss increases below which the step size is halved (0.75).
    pub rho: f64,
    /// Weight α of the new step against the previous move (0.75).
    pub momentum: f64,
    /// Stop once every image's 8-bit form meets the goal (the best images are kept either
    /// way). Off: run all iterations of all restarts.
    pub early_stop: bool,
}

impl Default for Apgd {
    fn default() -> Self {
        Apgd {
            loss: ApgdLoss::Ce,
            target_classes: 9,
            steps: 100,
            n_restarts: 1,
            rho: 0.75,
            momentum: 0.75,
            early_stop: true,
        }
    }
}

impl Attack for Apgd {
    fn name(&self) -> String {
        match self.loss {
            ApgdLoss::Ce => "apgd",
            ApgdLoss::Dlr => "apgd-dlr",
            ApgdLoss::DlrTargeted => "apgd-t",
        }
        .into()
    }

    fn untargeted_only(&self) -> bool {
        self.loss == ApgdLoss::DlrTargeted
    }

    fn run(
        &self,
        model: &dyn Victim,
        x0: &Tensor,
        goal: &Goal,
        budget: Budget,
        on_step: &mut dyn FnMut(StepInfo),
    ) -> Result<AttackOutput> {
        let x0_all = x0.detach();
        let eps = budget.eps;
        let n = x0_all.size()[0];
        let dev = x0_all.device();
        let draws = model.eot_samples() as i64;
        let iters = self.steps;
        let k_first = ((0.22 * iters as f64) as usize).max(1);
        let k_min = ((0.06 * iters as f64) as usize).max(1);
        let k_decr = ((0.03 * iters as f64) as usize).max(1);
        let restarts = self.n_restarts.max(1);
        // APGD-T: the clean logits' classes by rank, for the targets of each run.
        let (runs, ranked) = match self.loss {
            ApgdLoss::DlrTargeted => {
                let logits = tch::no_grad(|| model.logits(&x0_all))?;
                let classes = self.check_classes(&logits, goal)?;
                let ranked = logits.argsort(1, true);
                let runs = self.target_classes.clamp(1, classes - 1) * restarts;
                (runs, Some(ranked))
            }
            ApgdLoss::Dlr => {
                let one = x0_all.narrow(0, 0, n.min(1));
                self.check_classes(&tch::no_grad(|| model.logits(&one))?, goal)?;
                (restarts, None)
            }
            ApgdLoss::Ce => (restarts, None),
        };
        let total = runs * (iters + 1) - 1;
        let mut best = BestSoFar::new(&x0_all);
        // The batch indices of the images still attacked, and each image's queries.
        let mut rows = Tensor::arange(n, (Kind::Int64, dev));
        let mut per_image = Tensor::zeros([n], (Kind::Int64, dev));
        let mut evals = 0;
        let mut steps_taken = 0;
        let view4 = |t: &Tensor| t.view([-1, 1, 1, 1]);
        // The images at `rows` still open (not yet fooled), as positions in `rows`.
        let open = |best: &BestSoFar, rows: &Tensor| {
            best.success
                .index_select(0, rows)
                .logical_not()
                .nonzero()
                .squeeze_dim(1)
        };

        for run in 0..runs {
            if self.early_stop {
                rows = rows.index_select(0, &open(&best, &rows));
            }
            let m = rows.size()[0];
            if m == 0 {
                break;
            }
            let mut x0 = x0_all.index_select(0, &rows);
            let mut goal_a = goal.select(&rows);
            // This run's target per image (APGD-T): the class ranked 2 + run / restarts.
            let mut target = ranked.as_ref().map(|r| {
                r.index_select(0, &rows)
                    .narrow(1, 1 + (run / restarts) as i64, 1)
                    .squeeze_dim(1)
            });
            // Random start on the sphere of radius eps: a uniform draw scaled so its largest
            // coordinate is eps (L∞), a Gaussian draw scaled to L2 norm eps (L2).
            let t = match budget.norm {
                Norm::Linf => {
                    let t = x0.rand_like() * 2.0 - 1.0;
                    let tmax = t.abs().amax([1i64, 2, 3].as_slice(), true).clamp_min(1e-12);
                    t / tmax
                }
                Norm::L2 => budget.direction(&x0.randn_like()),
            };
            let mut x = budget.clip(&x0, &(&x0 + t * eps));
            let lf = |z: &Tensor| self.goal_loss(&goal_a, target.as_ref(), z);
            let (eval, _) = quantized_grad_step(
                model,
                &x0,
                &x,
                &goal_a,
                Some(&lf),
                budget,
                &mut best,
                (m < n).then_some(&rows),
                (evals, total),
                on_step,
            )?;
            evals += 1;
            per_image = per_image.index_add(0, &rows, &rows.ones_like().multiply_scalar(draws));
            // L = −goal.loss is maximized: its gradient is −grad.
            let mut grad = -eval.grad();
            let mut loss_best = -eval.loss;
            let mut x_best = x.shallow_clone();
            let mut grad_best = grad.shallow_clone();
            let mut step_size = Tensor::full([m, 1, 1, 1], 2.0 * eps, (Kind::Float, dev));
            let mut x_old = x.shallow_clone();
            let mut history = vec![loss_best.shallow_clone()];
            let mut loss_best_last = loss_best.shallow_clone();
            let mut reduced_last = Tensor::ones([m], (Kind::Bool, dev));
            let mut k = k_first;
            let mut since_check = 0;
            for i in 0..iters {
                if self.early_stop {
                    // Fooled images leave the batch; the others' trajectories are unchanged
                    // (every quantity below is per image).
                    let keep = open(&best, &rows);
                    let left = keep.size()[0];
                    if left == 0 {
                        break;
                    }
                    if left < rows.size()[0] {
                        let sel = |t: &Tensor| t.index_select(0, &keep);
                        rows = sel(&rows);
                        x0 = sel(&x0);
                        goal_a = goal_a.select(&keep);
                        target = target.as_ref().map(sel);
                        x = sel(&x);
                        x_old = sel(&x_old);
                        grad = sel(&grad);
                        x_best = sel(&x_best);
                        grad_best = sel(&grad_best);
                        loss_best = sel(&loss_best);
                        step_size = sel(&step_size);
                        history = history.iter().map(sel).collect();
                        loss_best_last = sel(&loss_best_last);
                        reduced_last = sel(&reduced_last);
                    }
                }
                let moved = &x - &x_old;
                x_old = x.shallow_clone();
                let a = if i > 0 { self.momentum } else { 1.0 };
                let z = budget.clip(&x0, &(&x + &step_size * budget.direction(&grad)));
                x = budget.clip(&x0, &(&x + (z - &x) * a + moved * (1.0 - a)));
                steps_taken += 1;

                let active = rows.size()[0];
                let lf = |z: &Tensor| self.goal_loss(&goal_a, target.as_ref(), z);
                let (eval, _) = quantized_grad_step(
                    model,
                    &x0,
                    &x,
                    &goal_a,
                    Some(&lf),
                    budget,
                    &mut best,
                    (active < n).then_some(&rows),
                    (evals, total),
                    on_step,
                )?;
                evals += 1;
                per_image = per_image.index_add(0, &rows, &rows.ones_like().multiply_scalar(draws));
                if i + 1 == iters {
                    // The last step's image is recorded; its gradient would go unused.
                    break;
                }
                grad = -eval.grad();
                let loss = -eval.loss;
                let improved = loss.gt_tensor(&loss_best);
                let improved4 = view4(&improved);
                x_best = x.where_self(&improved4, &x_best);
                grad_best = grad.where_self(&improved4, &grad_best);
                loss_best = loss.where_self(&improved, &loss_best);
                history.push(loss);

                since_check += 1;
                if since_check == k {
                    // Fraction of the last k steps that increased the loss.
                    let h = Tensor::stack(&history[history.len() - 1 - k..], 0);
                    let increases = h
                        .narrow(0, 1, k as i64)
                        .gt_tensor(&h.narrow(0, 0, k as i64))
                        .sum_dim_intlist(0, false, Kind::Float);
                    let oscillating = increases.le(k as f64 * self.rho);
                    let stalled = reduced_last
                        .logical_not()
                        .logical_and(&loss_best_last.ge_tensor(&loss_best));
                    let reduce = oscillating.logical_or(&stalled);
                    let reduce4 = view4(&reduce);
                    step_size = (&step_size / 2.0).where_self(&reduce4, &step_size);
                    x = x_best.where_self(&reduce4, &x);
                    grad = grad_best.where_self(&reduce4, &grad);
                    reduced_last = reduce;
                    loss_best_last = loss_best.shallow_clone();
                    k = k.saturating_sub(k_decr).max(k_min);
                    since_check = 0;
                    // The next checkpoint looks at this loss and the k after it.
                    history.drain(..history.len() - 1);
                }
            }
        }
        let mut out = best.into_output(goal, steps_taken, evals * draws as usize);
        if self.early_stop {
            let q = Vec::<i64>::try_from(per_image.to_device(tch::Device::Cpu)).unwrap_or_default();
            out.queries = q.iter().copied().max().unwrap_or(0) as usize;
            out.image_queries = Some(q.into_iter().map(|v| v as usize).collect());
        }
        Ok(out)
    }
}

impl Apgd {
    /// The number of classes, checked against what the loss needs: the DLR losses divide by
    /// the gap between the first and third (targeted: third and fourth) largest logits.
    /// (The cross-entropy needs no check and costs no forward pass; DLR probes one image.)
    fn check_classes(&self, logits: &Tensor, goal: &Goal) -> Result<usize> {
        if self.loss == ApgdLoss::DlrTargeted {
            goal.untargeted_only(&self.name())?;
        }
        let classes = logits.size().last().copied().unwrap_or(0) as usize;
        let need = match (self.loss, goal.is_targeted()) {
            (ApgdLoss::Ce, _) => 2,
            (ApgdLoss::Dlr, false) => 3,
            _ => 4,
        };
        if classes < need {
            return Err(Error::field(
                "attack",
                format!(
                    "{}: the DLR loss needs a model with at least {need} classes, this one has {classes}",
                    self.name()
                ),
            ));
        }
        Ok(classes)
    }

    /// The per-image loss to minimise, −L (see [`ApgdLoss`]); `target` holds APGD-T's targets.
    fn goal_loss(&self, goal: &Goal, target: Option<&Tensor>, z: &Tensor) -> Tensor {
        match (self.loss, target) {
            (ApgdLoss::Ce, _) => goal.loss(z),
            (ApgdLoss::Dlr, _) => dlr_ratio(goal, None, z),
            (ApgdLoss::DlrTargeted, t) => dlr_ratio(goal, t, z),
        }
    }
}

/// The DLR loss of Croce & Hein 2020, negated (to minimise), per image (N,). Untargeted
/// without `target`: (z_y − max_{i≠y} z_i)/(z_π1 − z_π3 + 1e−12); with a targeted `goal`:
/// (max_{i≠t} z_i − z_t)/(z_π1 − ½(z_π3 + z_π4) + 1e−12); untargeted with `target` t
/// (APGD-T): (z_y − z_t)/(z_π1 − ½(z_π3 + z_π4) + 1e−12).
pub fn dlr_ratio(goal: &Goal, target: Option<&Tensor>, z: &Tensor) -> Tensor {
    let sorted = z.sort(1, true).0;
    let col = |i: i64| sorted.select(1, i);
    let targeted_denominator = || col(0) - (col(2) + col(3)) * 0.5 + 1e-12;
    match (goal, target) {
        (Goal::Untargeted(y), Some(t)) => {
            let pick = |c: &Tensor| z.gather(1, &c.unsqueeze(1), false).squeeze_dim(1);
            (pick(y) - pick(t)) / targeted_denominator()
        }
        (Goal::Untargeted(_), None) => super::margin(goal, z) / (col(0) - col(2) + 1e-12),
        (Goal::Targeted(_), _) => super::margin(goal, z) / targeted_denominator(),
    }
}
