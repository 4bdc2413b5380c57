//! What a run reports: the JSON records of an attack and of `apply`, human-readable lines, and
//! the side-by-side picture (original | amplified perturbation | adversarial, with captions).
use crate::model::ClassProb;
use crate::preprocess::Preprocess;
use image::{Rgb, RgbImage};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub top: Vec<ClassProb>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    pub index: usize,
    pub label: String,
}

/// The preprocessing a run used, as records and bench configs store it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct PreprocessInfo {
    pub size: u32,
    pub resize: u32,
    pub resize_always: bool,
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

impl From<&Preprocess> for PreprocessInfo {
    fn from(pre: &Preprocess) -> Self {
        PreprocessInfo {
            size: pre.size,
            resize: pre.resize,
            resize_always: pre.resize_always,
            mean: pre.mean,
            std: pre.std,
        }
    }
}

/// The record of one attack run (`<stem>_<target>.json`, or stdout with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct AttackRecord {
    pub fool_version: String,
    pub model: String,
    pub model_sha256: String,
    pub image: String,
    pub preprocess: PreprocessInfo,
    pub attack: String,
    /// `null` for an untargeted attack.
    pub target: Option<TargetInfo>,
    pub untargeted: bool,
    /// L∞ budget in pixel space, 0..1.
    pub eps: f64,
    /// The same budget in 8-bit levels (floor(eps·255)).
    pub eps_levels: u32,
    pub steps: usize,
    pub steps_run: usize,
    pub lr: f64,
    pub momentum: f64,
    pub seed: u64,
    pub device: String,
    /// True only if the saved PNG, loaded again, meets the goal and is within the budget.
    pub success: bool,
    /// Probability of the target (targeted) or of the original class (untargeted) on the saved PNG.
    pub goal_class_prob: f64,
    pub original: Prediction,
    pub adversarial: Prediction,
    /// L∞ and L2 distance between the saved PNG and the preprocessed original, pixel space 0..1.
    pub linf: f64,
    pub l2: f64,
    pub linf_levels: u32,
    pub adversarial_image: String,
    pub perturbation: String,
    pub side_by_side: String,
    pub record: String,
    pub elapsed_s: f64,
}

/// The record of `fool apply`: a saved perturbation added to an image, the result saved and
/// classified as saved.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyRecord {
    pub image: String,
    pub perturbation: String,
    pub output: String,
    pub original: Vec<ClassProb>,
    pub perturbed: Vec<ClassProb>,
    /// Distance between the saved image and the preprocessed original, pixel space 0..1.
    pub linf: f64,
    pub l2: f64,
}

/// `Pembroke (83.1%)` for a top-1 entry.
pub fn short_caption(c: &ClassProb) -> String {
    let label = c.label.split(',').next().unwrap_or("").trim();
    format!("{label} ({:.1}%)", c.prob * 100.0)
}

/// Human-readable top-k lines.
pub fn format_top(top: &[ClassProb]) -> String {
    top.iter()
        .map(|c| format!("  {:>4}  {:6.2}%  {}", c.index, c.prob * 100.0, c.label))
        .collect::<Vec<_>>()
        .join("\n")
}

fn draw_text(img: &mut RgbImage, text: &str, x0: u32, y0: u32, scale: u32, color: Rgb<u8>) {
    use font8x8::UnicodeFonts;
    let mut x = x0;
    for ch in text.chars() {
        let glyph = font8x8::BASIC_FONTS
            .get(ch)
            .or_else(|| font8x8::BASIC_FONTS.get('?'));
        if let Some(rows) = glyph {
            for (ry, bits) in rows.iter().enumerate() {
                for rx in 0..8u32 {
                    if bits >> rx & 1 == 1 {
                        for dy in 0..scale {
                            for dx in 0..scale {
                                let (px, py) = (x + rx * scale + dx, y0 + ry as u32 * scale + dy);
                                if px < img.width() && py < img.height() {
                                    img.put_pixel(px, py, color);
                                }
                            }
                        }
                    }
                }
            }
        }
        x += 8 * scale;
    }
}

/// Fit `text` into `max_chars`, cutting with an ellipsis-like `..`.
fn fit(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max_chars.saturating_sub(2)).collect();
        s.push_str("..");
        s
    }
}

/// Original | perturbation (amplified to the full range: grey is 0, ±eps is black/white) |
/// adversarial, each with a two-line caption.
pub fn side_by_side(
    original: &RgbImage,
    adversarial: &RgbImage,
    eps: f64,
    captions: [(&str, String); 3],
) -> RgbImage {
    let (w, h) = original.dimensions();
    let zoom = (448 / w.max(h)).max(1);
    let (pw, ph) = (w * zoom, h * zoom);
    let gap = 12;
    let scale = if pw >= 300 { 2 } else { 1 };
    let line_h = 10 * scale;
    let caption_h = 2 * line_h + 12;
    let mut canvas = RgbImage::from_pixel(
        3 * pw + 4 * gap,
        ph + 2 * gap + caption_h,
        Rgb([255, 255, 255]),
    );
    let perturbation = RgbImage::from_fn(w, h, |x, y| {
        let (a, b) = (original.get_pixel(x, y), adversarial.get_pixel(x, y));
        Rgb(std::array::from_fn(|c| {
            let d = (b[c] as f64 - a[c] as f64) / 255.0;
            (127.5 + 127.5 * (d / eps).clamp(-1.0, 1.0)).round() as u8
        }))
    });
    let max_chars = (pw / (8 * scale)) as usize;
    for (i, (panel, (title, detail))) in [original, &perturbation, adversarial]
        .into_iter()
        .zip(captions)
        .enumerate()
    {
        let ox = gap + i as u32 * (pw + gap);
        for y in 0..ph {
            for x in 0..pw {
                canvas.put_pixel(ox + x, gap + y, *panel.get_pixel(x / zoom, y / zoom));
            }
        }
        let ty = gap + ph + 8;
        draw_text(
            &mut canvas,
            &fit(title, max_chars),
            ox,
            ty,
            scale,
            Rgb([0, 0, 0]),
        );
        draw_text(
            &mut canvas,
            &fit(&detail, max_chars),
            ox,
            ty + line_h,
            scale,
            Rgb([60, 60, 60]),
        );
    }
    canvas
}
