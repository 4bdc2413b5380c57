//! MI-FGSM, the momentum iterative fast gradient sign method (Dong et al. 2018): BIM whose
//! direction is the sign of an accumulated gradient, g ← μ·g + ∇/‖∇‖₁ (the gradient of each
//! image normalized by its own L1 norm), with `steps` steps of size eps/steps from the
//! original image.
//!
//! As in PGD, the forward pass sees the 8-bit image (straight-through estimator) and the best
//! image per image is kept.
use super::{clip_ball, quantized_grad_step, Attack, AttackOutput, BestSoFar, Budget, Goal};
use super::{StepInfo, Victim};
use crate::Result;
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
pub struct MiFgsm {
    /// Iterations (10 in the paper).
    pub steps: usize,
    /// Momentum decay μ (1.0 in the paper).
    pub decay: f64,
    /// Step size in pixel space; `None`: eps/steps, as in the paper (the steps add up to eps).
    pub alpha: Option<f64>,
    /// Stop once every image's 8-bit form meets the goal (the best images are kept either
    /// way). Off: run all steps.
    pub early_stop: bool,
}

impl Default for MiFgsm {
    fn default() -> Self {
        MiFgsm {
            steps: 10,
            decay: 1.0,
            alpha: None,
            early_stop: true,
        }
    }
}

impl Attack for MiFgsm {
    fn name(&self) -> String {
        "mifgsm".into()
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
        let alpha = self.alpha.unwrap_or(eps / self.steps.max(1) as f64);
        let mut x = x0.shallow_clone();
        let mut g = x0.zeros_like();
        let mut best = BestSoFar::new(&x0);
        let mut queries = 0;
        let mut steps_taken = 0;
        let n = x0.size()[0] as usize;
        for step in 0..=self.steps {
            let (eval, reached) = quantized_grad_step(
                model,
                &x0,
                &x,
                goal,
                budget,
                &mut best,
                (step, self.steps),
                on_step,
            )?;
            queries += model.eot_samples();
            if step == self.steps || (self.early_stop && reached == n) {
                break;
            }
            let l1 = eval
                .grad()
                .abs()
                .sum_dim_intlist([1i64, 2, 3].as_slice(), true, Kind::Float);
            g = &g * self.decay + eval.grad() / (l1 + 1e-12);
            x = clip_ball(&x0, &(&x - g.sign() * alpha), eps);
            steps_taken = step + 1;
        }
        Ok(best.into_output(goal, steps_taken, queries))
    }
}
