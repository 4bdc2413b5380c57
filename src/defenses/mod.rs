//! Input-transformation defenses behind one trait, composable as `a+b` (applied left to
//! right). Each declares whether it is differentiable and whether it is random, which is
//! what an adaptive attacker needs to know (BPDA for the former, EOT for the latter).
use crate::{Error, Result};
use tch::Tensor;

pub mod bits;
pub mod blur;
pub mod jpeg;
pub mod median;
pub mod noise;
pub mod predict;
pub mod resize_pad;
pub use bits::Bits;
pub use blur::Blur;
pub use jpeg::Jpeg;
pub use median::Median;
pub use noise::Noise;
pub use predict::{predict_image, PredictRecord};
pub use resize_pad::ResizePad;

pub trait Defense {
    /// The spec string it was parsed from, e.g. `jpeg:75`.
    fn name(&self) -> String;
    /// Transform a pixel-space batch (N,3,H,W) in [0,1].
    fn apply(&self, x: &Tensor) -> Result<Tensor>;
    /// Whether gradients flow through `apply`.
    fn differentiable(&self) -> bool;
    /// Whether `apply` draws random numbers.
    fn random(&self) -> bool;
}

/// Several defenses in sequence.
pub struct Chain(pub Vec<Box<dyn Defense>>);

impl Defense for Chain {
    fn name(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.0
            .iter()
            .map(|d| d.name())
            .collect::<Vec<_>>()
            .join("+")
    }
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = x.shallow_clone();
        for d in &self.0 {
            y = d.apply(&y)?;
        }
        Ok(y)
    }
    fn differentiable(&self) -> bool {
        self.0.iter().all(|d| d.differentiable())
    }
    fn random(&self) -> bool {
        self.0.iter().any(|d| d.random())
    }
}

/// Parse a defense spec: `none`, or one or more of these joined with `+` (applied left to
/// right, e.g. `jpeg:75+median:3`):
/// - `jpeg:Q` — JPEG re-compression at quality Q in 1..=100;
/// - `bits:N` — bit-depth reduction to N bits per channel, N in 1..=8;
/// - `median:K` — K×K median filter, K odd in 3..=15 (reflect padding);
/// - `blur:SIGMA` — Gaussian blur, SIGMA in (0, 10] pixels (reflect padding);
/// - `noise:SIGMA` — additive Gaussian noise, SIGMA in (0, 1] (pixel units), clamped to [0,1];
/// - `resize-pad` or `resize-pad:R` — random shrink by up to a fraction R in (0, 1) (default
///   0.1), padded back to size at a random offset.
pub fn parse(spec: &str) -> Result<Chain> {
    let spec = spec.trim();
    if spec.is_empty() || spec.eq_ignore_ascii_case("none") {
        return Ok(Chain(Vec::new()));
    }
    let mut out: Vec<Box<dyn Defense>> = Vec::new();
    for part in spec.split('+') {
        let part = part.trim();
        let (name, arg) = part.split_once(':').unwrap_or((part, ""));
        match name.to_ascii_lowercase().as_str() {
            "jpeg" => {
                let q: u8 = arg
                    .parse()
                    .ok()
                    .filter(|q| (1..=100).contains(q))
                    .ok_or_else(|| {
                        Error::field(
                            "defense",
                            format!("'{part}': expected jpeg:Q with Q in 1..=100"),
                        )
                    })?;
                out.push(Box::new(Jpeg { quality: q }));
            }
            "bits" => {
                let n: u8 = arg
                    .parse()
                    .ok()
                    .filter(|n| (1..=8).contains(n))
                    .ok_or_else(|| {
                        Error::field(
                            "defense",
                            format!("'{part}': expected bits:N with N in 1..=8"),
                        )
                    })?;
                out.push(Box::new(Bits { bits: n }));
            }
            "median" => {
                let k: i64 = arg
                    .parse()
                    .ok()
                    .filter(|k| (3..=15).contains(k) && k % 2 == 1)
                    .ok_or_else(|| {
                        Error::field(
                            "defense",
                            format!("'{part}': expected median:K with K odd in 3..=15"),
                        )
                    })?;
                out.push(Box::new(Median { size: k }));
            }
            "blur" => {
                let sigma: f64 = arg
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 10.0)
                    .ok_or_else(|| {
                        Error::field(
                            "defense",
                            format!("'{part}': expected blur:SIGMA with SIGMA in (0, 10] pixels"),
                        )
                    })?;
                out.push(Box::new(Blur { sigma }));
            }
            "noise" => {
                let sigma: f64 = arg
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 1.0)
                    .ok_or_else(|| {
                        Error::field(
                            "defense",
                            format!(
                                "'{part}': expected noise:SIGMA with SIGMA in (0, 1] \
                                 (pixel units, e.g. 0.03)"
                            ),
                        )
                    })?;
                out.push(Box::new(Noise { sigma }));
            }
            "resize-pad" => {
                let ratio: f64 = if arg.is_empty() && !part.contains(':') {
                    ResizePad::default().ratio
                } else {
                    arg.parse()
                        .ok()
                        .filter(|r: &f64| r.is_finite() && *r > 0.0 && *r < 1.0)
                        .ok_or_else(|| {
                            Error::field(
                                "defense",
                                format!(
                                    "'{part}': expected resize-pad or resize-pad:R with R \
                                     in (0, 1) (largest shrink, default 0.1)"
                                ),
                            )
                        })?
                };
                out.push(Box::new(ResizePad {
                    ratio,
                    ..ResizePad::default()
                }));
            }
            _ => {
                return Err(Error::field(
                    "defense",
                    format!(
                        "unknown defense '{part}'; expected none, jpeg:Q, bits:N, median:K, \
                         blur:SIGMA, noise:SIGMA or resize-pad[:R] (combine with +)"
                    ),
                ))
            }
        }
    }
    Ok(Chain(out))
}

/// A model behind a defense, as an adaptive attacker sees it: gradients pass through
/// non-differentiable defenses as if they were the identity (BPDA, straight-through), and
/// random defenses are averaged over `eot` draws (EOT) — Athalye, Carlini & Wagner 2018.
pub struct Defended<'a> {
    pub model: &'a crate::model::Classifier,
    pub defense: &'a dyn Defense,
    pub eot: usize,
}

impl Defended<'_> {
    /// The defense applied with a straight-through gradient when it has none of its own.
    pub fn transform(&self, x: &Tensor) -> Result<Tensor> {
        if self.defense.differentiable() {
            self.defense.apply(x)
        } else {
            let y = self.defense.apply(&x.detach())?;
            Ok(x + (y - x).detach())
        }
    }
}

impl crate::attacks::Victim for Defended<'_> {
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.model.logits(&self.transform(x)?)
    }
    fn eot_samples(&self) -> usize {
        if self.defense.random() {
            self.eot.max(1)
        } else {
            1
        }
    }
}

/// Logits (N,C) of `model` on `defense(x)`, without building a graph: how a defended model
/// judges a pixel-space batch (N,3,H,W) in [0,1]. Random defenses draw from libtorch's
/// generator, so seed it for reproducible verdicts.
pub fn classify_through(
    model: &crate::model::Classifier,
    defense: &dyn Defense,
    x: &Tensor,
) -> Result<Tensor> {
    tch::no_grad(|| model.logits(&defense.apply(x)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs_and_rejects_bad_ones() {
        assert_eq!(parse("none").unwrap().name(), "none");
        let c = parse("jpeg:75+jpeg:50").unwrap();
        assert_eq!(c.name(), "jpeg:75+jpeg:50");
        assert!(!c.differentiable());
        assert!(!c.random());
        for bad in ["jpeg", "jpeg:0", "jpeg:101", "jpeg:x", "sharpen:3"] {
            let e = parse(bad).err().expect("error").to_string();
            assert!(e.starts_with("defense: "), "{e}");
        }
    }
}
