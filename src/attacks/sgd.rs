//! The tutorial's attack, done right: optimize a perturbation by SGD with momentum on the
//! cross-entropy toward the target (or away from the true class), projected after every
//! step onto the L∞ ball of radius `eps` *in pixel space* and the valid range [0,1].
//!
//! The forward pass sees the 8-bit image that would be saved (a straight-through estimator
//! passes the gradient through the rounding), so the optimization continues through
//! quantization, and the attack stops per image as soon as its saved form meets the goal.
use super::{quantized_grad_step, Attack, AttackOutput, BestSoFar, Budget, Goal, StepInfo, Victim};
use crate::Result;
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
pub struct SgdAttack {
    pub steps: usize,
    pub lr: f64,
    pub momentum: f64,
    /// Start from a uniform random point of the budget ball instead of the original image.
    pub random_start: bool,
    /// Stop an image's optimization once its 8-bit form meets the goal. Off: run all steps
    /// (the best image is still the one returned; used by benchmarks).
    pub early_stop: bool,
}

impl Default for SgdAttack {
    fn default() -> Self {
        SgdAttack {
            steps: 100,
            lr: 0.01,
            momentum: 0.9,
            random_start: false,
            early_stop: true,
        }
    }
}

impl Attack for SgdAttack {
    fn name(&self) -> String {
        "sgd".into()
    }

    fn run(
        &self,
        model: &dyn Victim,
        x0: &Tensor,
        goal: &Goal,
        budget: Budget,
        on_step: &mut dyn FnMut(StepInfo),
    ) -> Result<AttackOutput> {
        let x0 = x0.detach();
        let eps = budget.eps;
        let mut r = if self.random_start {
            (x0.rand_like() * 2.0 - 1.0) * eps
        } else {
            x0.zeros_like()
        };
        r = (&x0 + &r).clamp(0.0, 1.0) - &x0;
        let mut velocity = x0.zeros_like();
        let mut best = BestSoFar::new(&x0);
        let mut queries = 0;
        let mut steps_taken = 0;
        let n = x0.size()[0] as usize;
        for step in 0..=self.steps {
            // x0 + r is kept in [0,1], so the gradient w.r.t. x is the gradient w.r.t. r.
            let (eval, n_reached) = quantized_grad_step(
                model,
                &x0,
                &(&x0 + &r),
                goal,
                budget,
                &mut best,
                (step, self.steps),
                on_step,
            )?;
            queries += model.eot_samples();
            if step == self.steps || (self.early_stop && n_reached == n) {
                break;
            }
            let grad = eval.grad();
            velocity = &velocity * self.momentum + grad;
            let step_size = if self.early_stop {
                // Images already successful stop moving (their best image is kept).
                let active = best.success.logical_not().to_kind(Kind::Float);
                (active * self.lr).view([-1, 1, 1, 1])
            } else {
                Tensor::from(self.lr).to_device(r.device())
            };
            r = &r - &velocity * &step_size;
            r = r.clamp(-eps, eps);
            r = (&x0 + &r).clamp(0.0, 1.0) - &x0;
            steps_taken = step + 1;
        }
        Ok(best.into_output(goal, steps_taken, queries))
    }
}
