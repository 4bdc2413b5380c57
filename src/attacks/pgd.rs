//! PGD, projected gradient descent on the goal loss in the budget's ball (Madry et al. 2018):
//! start from a random point of the ball, then `steps` steepest-descent steps of size `alpha`
//! (L∞: the gradient's sign; L2: the gradient scaled to unit L2 norm per image, as
//! torchattacks' PGDL2), each projected back onto the ball and the valid range [0,1]. Without
//! the random start it is BIM, the basic iterative method (Kurakin et al. 2017): [`Pgd::bim`].
//!
//! The forward pass sees the 8-bit image that would be saved (a straight-through estimator
//! passes the gradient through the rounding), so success is judged on the saved image; the
//! best image per image is kept.
use super::{iterate, Attack, AttackOutput, Budget, Goal};
use super::{StepInfo, Victim};
use crate::Result;
use tch::Tensor;

#[derive(Debug, Clone)]
pub struct Pgd {
    pub steps: usize,
    /// Step size in pixel space ([0,1] scale). `None`: 2.5·eps/steps, the rule of Madry et
    /// al. (enough to cross the ball 2.5 times, so the iterate can still move after hitting
    /// the boundary); e.g. 1/255 for eps = 8/255 with the default 20 steps.
    pub alpha: Option<f64>,
    /// Start from a uniform random point of the ball (PGD); off: from the original (BIM).
    pub random_start: bool,
    /// Stop once every image's 8-bit form meets the goal (the best images are kept either
    /// way). Off: run all steps.
    pub early_stop: bool,
}

impl Default for Pgd {
    fn default() -> Self {
        Pgd {
            steps: 20,
            alpha: None,
            random_start: true,
            early_stop: true,
        }
    }
}

impl Pgd {
    /// BIM: PGD from the original image (no random start).
    pub fn bim(steps: usize, alpha: Option<f64>) -> Self {
        Pgd {
            steps,
            alpha,
            random_start: false,
            ..Pgd::default()
        }
    }

    /// The step size used for `eps`.
    pub fn step_size(&self, eps: f64) -> f64 {
        self.alpha.unwrap_or(2.5 * eps / self.steps.max(1) as f64)
    }
}

impl Attack for Pgd {
    fn name(&self) -> String {
        if self.random_start { "pgd" } else { "bim" }.into()
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
        let alpha = self.step_size(budget.eps);
        let start = budget.start(&x0, self.random_start);
        let mut step = |_: &Tensor, x0: &Tensor, x: &Tensor, grad: &Tensor| {
            budget.clip(x0, &(x - budget.direction(grad) * alpha))
        };
        iterate(
            model,
            &x0,
            start,
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
