//! MI-FGSM, the momentum iterative fast gradient sign method (Dong et al. 2018): BIM whose
//! direction is the sign of an accumulated gradient, g ← μ·g + ∇/‖∇‖₁ (the gradient of each
//! image normalized by its own L1 norm), with `steps` steps of size eps/steps from the
//! original image. Under an L2 budget each step follows the accumulated gradient scaled to
//! unit L2 norm instead of its sign.
//!
//! As in PGD, the forward pass sees the 8-bit image (straight-through estimator) and the best
//! image per image is kept.
use super::{iterate, Attack, AttackOutput, Budget, Goal};
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
        let alpha = self.alpha.unwrap_or(budget.eps / self.steps.max(1) as f64);
        let mut g = x0.zeros_like();
        let mut step = |rows: &Tensor, x0: &Tensor, x: &Tensor, grad: &Tensor| {
            let l1 = grad
                .abs()
                .sum_dim_intlist([1i64, 2, 3].as_slice(), true, Kind::Float);
            let ga = g.index_select(0, rows) * self.decay + grad / (l1 + 1e-12);
            let next = budget.clip(x0, &(x - budget.direction(&ga) * alpha));
            g = g.index_copy(0, rows, &ga);
            next
        };
        iterate(
            model,
            &x0,
            x0.shallow_clone(),
            goal,
            None,
            budget,
            self.steps,
            self.early_stop,
            on_step,
            &mut step,
        )
    }
}
