//! The check every reported success goes through: the image *file* as saved, loaded again and
//! preprocessed as the model does, must meet the goal within the budget.
use super::{distances, Budget, Goal};
use crate::model::Classifier;
use crate::Result;
use tch::{Kind, Tensor};

/// What [`verify_file`] found.
#[derive(Debug)]
pub struct Verified {
    /// Goal met and within the budget (one 8-bit step of slack).
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
    let logits = model.finite_logits(&x)?;
    let goal_reached = goal.reached(&logits).int64_value(&[0]) != 0;
    let class_prob = goal.class_prob(&logits).double_value(&[0]);
    let (linf, l2) = distances(&x, x0);
    let (linf, l2) = (linf[0], l2[0]);
    let within = budget.admits(linf, l2, 1.0);
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
