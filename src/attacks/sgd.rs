//! The tutorial's attack, done right: optimize a perturbation by SGD with momentum on the
//! cross-entropy toward the target (or away from the true class), projected after every
//! step onto the budget's ball (L∞ or L2) of radius `eps` *in pixel space* and the valid range
//! [0,1].
//!
//! The forward pass sees the 8-bit image that would be saved (a straight-through estimator
//! passes the gradient through the rounding), so the optimization continues through
//! quantization, and the attack stops per image as soon as its saved form meets the goal
//! (see [`super::iterate`]).
use super::{iterate, Attack, AttackOutput, Budget, Goal, StepInfo, Victim};
use crate::Result;
use tch::Tensor;

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

impl SgdAttack {
    /// Check the settings: at least one step, a positive finite learning rate, momentum in
    /// [0, 1). Errors name the field.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(crate::Error::field("steps", "must be at least 1"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(crate::Error::field(
                "lr",
                format!("{} must be a positive number", self.lr),
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(crate::Error::field(
                "momentum",
                format!("{} must be in [0, 1)", self.momentum),
            ));
        }
        Ok(())
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
        let start = budget.start(&x0, self.random_start);
        // The iterate stays in [0,1], so the gradient w.r.t. x is the gradient w.r.t. the
        // perturbation r = x − x0 the tutorial optimizes.
        let mut velocity = x0.zeros_like();
        let mut step = |rows: &Tensor, x0: &Tensor, x: &Tensor, grad: &Tensor| {
            let v = velocity.index_select(0, rows) * self.momentum + grad;
            let next = budget.clip(x0, &(x - &v * self.lr));
            velocity = velocity.index_copy(0, rows, &v);
            next
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
