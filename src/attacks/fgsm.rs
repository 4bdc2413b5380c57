//! FGSM, the fast gradient sign method (Goodfellow et al. 2015): one step of size `eps` along
//! the sign of the gradient of the goal loss, `x0 − eps·sign(∇ loss)` (the loss being the one
//! to minimize), then the 8-bit projection. Under an L2 budget it is the fast gradient method
//! (FGM): the step is `eps·∇/‖∇‖₂` per image. With `random_start` and a step of 1.25·eps it is
//! the "FGSM-RS" of Wong et al. 2020.
use super::{
    prob_and_score, project_quantized, quantized_grad_step, Attack, AttackOutput, BestSoFar,
    Budget, Goal, StepInfo, Victim,
};
use crate::Result;
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
pub struct Fgsm {
    /// Step size as a multiple of `eps` (1.0: the classic FGSM; anything larger is clipped
    /// back to the budget).
    pub step_scale: f64,
    /// Take the step from a uniform random point of the budget ball instead of the original.
    pub random_start: bool,
}

impl Default for Fgsm {
    fn default() -> Self {
        Fgsm {
            step_scale: 1.0,
            random_start: false,
        }
    }
}

impl Attack for Fgsm {
    fn name(&self) -> String {
        "fgsm".into()
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
        let x = budget.start(&x0, self.random_start);
        let mut best = BestSoFar::new(&x0);
        let (eval, _) = quantized_grad_step(
            model,
            &x0,
            &x,
            goal,
            None,
            budget,
            &mut best,
            None,
            (0, 1),
            on_step,
        )?;
        let x = budget.clip(
            &x0,
            &(&x - budget.direction(eval.grad()) * (self.step_scale * eps)),
        );
        let xq = project_quantized(&x0, &x, budget);
        let logits = tch::no_grad(|| model.logits(&xq))?;
        let reached = goal.reached(&logits);
        let (prob, score) = prob_and_score(goal, &logits);
        best.update(&xq, &reached, &score);
        on_step(StepInfo {
            step: 1,
            steps: 1,
            loss: goal.loss(&logits).mean(Kind::Float).double_value(&[]),
            class_prob: prob.mean(Kind::Float).double_value(&[]),
            reached: best.success.sum(Kind::Int64).int64_value(&[]) as usize,
        });
        let queries = model.eot_samples() + 1;
        Ok(best.into_output(goal, 1, queries))
    }
}
