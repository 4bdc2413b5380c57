//! Attacks on image files: the single-image attack of `fool IMAGE --target CLASS` (SGD attack,
//! then the adversarial PNG, the perturbation `.npy`, the JSON record and the side-by-side
//! picture, each written atomically; success is judged on the PNG as saved), and `fool apply`
//! (a saved perturbation added to an image, saved and classified as saved).
use super::record::{
    short_caption, side_by_side, ApplyRecord, AttackRecord, Prediction, PreprocessInfo, TargetInfo,
};
use super::{distances, verify_file, Attack, Budget, Goal, SgdAttack, StepInfo, TargetMode};
use crate::files::{json_into, refuse_overwrite, Batch};
use crate::imageio::{load_rgb, quantize, save_png, tensor_to_rgb, write_png};
use crate::labels::Labels;
use crate::model::{sha256_file, Classifier};
use crate::Result;
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Tensor;

/// A single-image attack: what to attack, toward what, and where the results go.
pub struct ImageAttack<'a> {
    /// The image file (names the outputs, and is recorded).
    pub image: &'a Path,
    /// Its pixels, as loaded from `image`.
    pub pixels: &'a RgbImage,
    /// Target class (index, label or a unique word of one, see [`Labels::resolve`]); `None`:
    /// untargeted, away from the clean prediction.
    pub target: Option<&'a str>,
    /// L∞ budget in pixel space.
    pub eps: f64,
    pub attack: SgdAttack,
    /// Seeds libtorch's generator (the random start).
    pub seed: u64,
    /// Output directory.
    pub out: &'a Path,
    /// When the run started, for `elapsed_s` (the caller may start it before loading the model).
    pub started: Instant,
}

/// The model an image is attacked or classified with.
#[derive(Clone, Copy)]
pub struct ModelRef<'a> {
    pub model: &'a Classifier,
    pub labels: &'a Labels,
    /// The model file (recorded with its SHA-256, never written over).
    pub path: &'a Path,
    /// The labels file, when labels came from one (never written over).
    pub labels_path: Option<&'a Path>,
}

impl ModelRef<'_> {
    /// The input files behind the model: outputs must never replace them.
    fn inputs(&self) -> Vec<&Path> {
        std::iter::once(self.path).chain(self.labels_path).collect()
    }
}

/// File-name-safe short label: `goldfish`, `great_white_shark`.
fn slug(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let s = s
        .split('_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    if s.is_empty() {
        "target".into()
    } else {
        s
    }
}

/// The output files of one attack: `OUT/<stem>_<tag>.{png,npy,json}` and the side-by-side.
struct Outputs {
    png: PathBuf,
    npy: PathBuf,
    json: PathBuf,
    side_by_side: PathBuf,
}

impl Outputs {
    fn new(out: &Path, image: &Path, tag: &str) -> Outputs {
        let stem = slug(
            image
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("image"),
        );
        let base = out.join(format!("{stem}_{tag}"));
        Outputs {
            png: base.with_extension("png"),
            npy: base.with_extension("npy"),
            json: base.with_extension("json"),
            side_by_side: out.join(format!("{stem}_{tag}_side_by_side.png")),
        }
    }
}

/// Run a single-image attack (see the module docs); `on_step` follows the optimization. The
/// record says whether the saved PNG, loaded again, meets the goal within the budget.
pub fn attack_image(
    job: &ImageAttack,
    m: ModelRef,
    on_step: &mut dyn FnMut(StepInfo),
) -> Result<AttackRecord> {
    job.attack.validate()?;
    let (model, labels) = (m.model, m.labels);
    tch::manual_seed(job.seed as i64);
    let x0 = model.pre.pixels(job.pixels, model.device).unsqueeze(0);
    let original_top = Classifier::top_k(&model.probs(&x0)?, 5, labels);
    let mode = match job.target {
        Some(t) => TargetMode::Fixed(labels.resolve(t)?),
        None => TargetMode::Untargeted,
    };
    // Untargeted: away from the clean prediction.
    let clean = [original_top[0].index];
    let targets = mode.targets(&clean, &[""], job.seed, model.num_classes, || {
        tch::no_grad(|| model.logits(&x0))
    })?;
    let goal = Goal::new(targets.as_deref(), &clean, model.device);
    let (target, tag) = match targets.as_ref().map(|t| t[0]) {
        Some(idx) => (
            Some(TargetInfo {
                index: idx,
                label: labels.name(idx).into(),
            }),
            slug(labels.short(idx)),
        ),
        None => (None, "untargeted".into()),
    };
    let files = Outputs::new(job.out, job.image, &tag);
    let mut inputs = m.inputs();
    inputs.push(job.image);
    for p in [&files.png, &files.npy, &files.json, &files.side_by_side] {
        refuse_overwrite(p, &inputs, "out")?;
    }

    let budget = Budget::linf(job.eps);
    let out = job.attack.run(model, &x0, &goal, budget, on_step)?;

    // Save, then judge the file as saved. The four outputs are staged and renamed into place
    // together at the end: a failure on the way leaves none of them.
    let mut batch = Batch::default();
    let adv_img = tensor_to_rgb(&out.adv);
    let png = batch.stage(&files.png, |f| write_png(&adv_img, &files.png, f))?;
    let v = verify_file(model, &png, &x0, &goal, budget)?;
    let r = model.pre.delta_to_normalized(&(&v.pixels - &x0));
    batch.stage(&files.npy, |f| {
        crate::perturbation::write(&r, &files.npy, f)
    })?;
    let adversarial_top = Classifier::top_k(&v.probs, 5, labels);
    let sbs = side_by_side(
        &tensor_to_rgb(&x0),
        &adv_img,
        job.eps,
        [
            ("original", short_caption(&original_top[0])),
            (
                "perturbation",
                format!("x{:.0} (eps {:.0}/255)", 0.5 / job.eps, job.eps * 255.0),
            ),
            ("adversarial", short_caption(&adversarial_top[0])),
        ],
    );
    batch.stage(&files.side_by_side, |f| {
        write_png(&sbs, &files.side_by_side, f)
    })?;

    let record = AttackRecord {
        fool_version: env!("CARGO_PKG_VERSION").into(),
        model: m.path.display().to_string(),
        model_sha256: sha256_file(m.path)?,
        image: job.image.display().to_string(),
        preprocess: PreprocessInfo::from(&model.pre),
        attack: job.attack.name(),
        target,
        untargeted: !goal.is_targeted(),
        eps: job.eps,
        eps_levels: budget.levels() as u32,
        steps: job.attack.steps,
        steps_run: out.steps,
        lr: job.attack.lr,
        momentum: job.attack.momentum,
        seed: job.seed,
        device: crate::device::device_name(model.device),
        success: v.success,
        goal_class_prob: v.class_prob,
        original: Prediction { top: original_top },
        adversarial: Prediction {
            top: adversarial_top,
        },
        linf: v.linf,
        l2: v.l2,
        linf_levels: (v.linf * 255.0).round() as u32,
        adversarial_image: files.png.display().to_string(),
        perturbation: files.npy.display().to_string(),
        side_by_side: files.side_by_side.display().to_string(),
        record: files.json.display().to_string(),
        elapsed_s: job.started.elapsed().as_secs_f64(),
    };
    batch.stage(&files.json, |f| json_into(&record, false, &files.json, f))?;
    batch.commit()?;
    Ok(record)
}

/// `fool apply`: a perturbation added to an image.
pub struct ApplyPerturbation<'a> {
    pub image: &'a Path,
    /// Its pixels, as loaded from `image`.
    pub pixels: &'a RgbImage,
    /// The perturbation file (recorded).
    pub perturbation: &'a Path,
    /// The perturbation, (1,3,SIZE,SIZE) in the model's normalized input space.
    pub r: &'a Tensor,
    /// Where the perturbed PNG goes.
    pub output: &'a Path,
    /// The setting that chose `output` (named in errors).
    pub output_field: &'a str,
}

/// Add the perturbation to the preprocessed image, save the 8-bit result as PNG, and classify
/// the file as saved.
pub fn apply_perturbation(job: &ApplyPerturbation, m: ModelRef) -> Result<ApplyRecord> {
    let model = m.model;
    let x0 = model.pre.pixels(job.pixels, model.device).unsqueeze(0);
    let mut inputs = m.inputs();
    inputs.extend([job.image, job.perturbation]);
    refuse_overwrite(job.output, &inputs, job.output_field)?;
    let x = quantize(&(&x0 + model.pre.delta_to_pixels(&job.r.to_device(model.device))));
    save_png(&tensor_to_rgb(&x), job.output)?;
    let saved = model
        .pre
        .pixels(&load_rgb(job.output)?, model.device)
        .unsqueeze(0);
    let (linf, l2) = distances(&saved, &x0);
    Ok(ApplyRecord {
        image: job.image.display().to_string(),
        perturbation: job.perturbation.display().to_string(),
        output: job.output.display().to_string(),
        original: Classifier::top_k(&model.probs(&x0)?, 5, m.labels),
        perturbed: Classifier::top_k(&model.probs(&saved)?, 5, m.labels),
        linf: linf[0],
        l2: l2[0],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_file_name_safe() {
        assert_eq!(
            slug("great white shark, white shark"),
            "great_white_shark_white_shark"
        );
        assert_eq!(slug("Goldfish"), "goldfish");
        assert_eq!(slug("--"), "target");
    }
}
