//! `fool predict`: the top classes of an image file, through a defense and without it.
use super::{Chain, Defense};
use crate::attacks::image::ModelRef;
use crate::model::{ClassProb, Classifier};
use crate::Result;
use serde::Serialize;
use std::path::Path;

/// What `fool predict` reports.
#[derive(Debug, Clone, Serialize)]
pub struct PredictRecord {
    pub image: String,
    pub model: String,
    pub device: String,
    pub defense: String,
    /// Top-k through the defense (the plain prediction when `defense` is `none`).
    pub top: Vec<ClassProb>,
    /// Top-k without the defense, when a defense is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undefended_top: Option<Vec<ClassProb>>,
}

/// Classify the image file `image` with the model `m`: its top `k` classes through `defense`,
/// and without it when the defense is not `none`.
pub fn predict_image(
    m: ModelRef,
    image: &Path,
    defense: &Chain,
    k: usize,
) -> Result<PredictRecord> {
    let (model, labels) = (m.model, m.labels);
    let img = crate::imageio::load_rgb(image)?;
    let x = model.pre.pixels(&img, model.device).unsqueeze(0);
    let plain = Classifier::top_k(&model.probs(&x)?, k, labels);
    let has_defense = !defense.0.is_empty();
    let top = if has_defense {
        Classifier::top_k(&model.probs(&defense.apply(&x)?)?, k, labels)
    } else {
        plain.clone()
    };
    Ok(PredictRecord {
        image: image.display().to_string(),
        model: m.path.display().to_string(),
        device: crate::device::device_name(model.device),
        defense: defense.name(),
        top,
        undefended_top: has_defense.then_some(plain),
    })
}
