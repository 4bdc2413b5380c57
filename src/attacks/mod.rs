//! Adversarial attacks behind one trait, over a shared base: the goal (targeted or not), the
//! L∞ or L2 budget in pixel space and the 8-bit quantization every attack result goes through.
//!
//! Conventions for every attack:
//! - inputs and outputs are pixel-space batches (N,3,H,W) in [0,1] on the model's device;
//! - the result is an image on the 8-bit grid (what a saved PNG holds), inside the valid
//!   range and within `eps` of the original in the budget's norm — guaranteed by [`project_quantized`];
//! - success is judged on that quantized image.
//!
//! Layout: [`goal`] (what an attack wants, target selection), [`budget`] (norms, budgets, the
//! 8-bit projection, distances), [`engine`] (victims, gradients, the iterate loop), one module
//! per attack, [`registry`] (attacks by name), [`verify`] (judging the saved file), [`image`]
//! (the single-image attack and `apply` on files) and [`record`] (what a run reports).
use crate::Result;
use tch::Tensor;

pub mod budget;
pub mod engine;
pub mod goal;
pub mod image;
pub mod record;
pub mod registry;
pub mod verify;

pub mod apgd;
pub mod autoattack;
pub mod cw;
pub mod fab;
pub mod fgsm;
pub mod mifgsm;
pub mod pgd;
pub mod sgd;
pub mod square;
pub mod square_l2;
mod square_search;

pub use apgd::{Apgd, ApgdLoss};
pub use autoattack::AutoAttack;
pub use budget::{
    distances, parse_eps, parse_eps_list, parse_l2_eps, project_quantized, Budget, Norm,
};
pub use cw::CarliniWagner;
pub use engine::{grad_eval, straight_through, GradEval, Victim};
pub(crate) use engine::{iterate, prob_and_score, quantized_grad_step, BestSoFar};
pub use fab::Fab;
pub use fgsm::Fgsm;
pub use goal::{margin, Goal, TargetMode};
pub use mifgsm::MiFgsm;
pub use pgd::Pgd;
pub use sgd::SgdAttack;
pub use square::Square;
pub use verify::{verify_file, Verified};

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
    /// For a cascade (AutoAttack): per image, the stage (index into [`Attack::stages`]) whose
    /// image is returned because it broke it; `None` where no stage did.
    pub broken_by: Option<Vec<Option<usize>>>,
}

/// One trait for all attacks.
pub trait Attack {
    /// Short name, e.g. `sgd`.
    fn name(&self) -> String;
    /// Whether the attack can work under a budget in `norm` (all but Square do both).
    fn supports(&self, norm: Norm) -> bool {
        let _ = norm;
        true
    }
    /// Whether the attack only works untargeted (it picks its own target classes: APGD-T,
    /// FAB-T, AutoAttack).
    fn untargeted_only(&self) -> bool {
        false
    }
    /// The stages of a cascade, in order (AutoAttack); empty for a single attack.
    fn stages(&self) -> Vec<String> {
        Vec::new()
    }
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
