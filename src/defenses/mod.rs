//! Input-transformation defenses behind one trait, composable as `a+b` (applied left to
//! right). Each declares whether it is differentiable and whether it is random, which is
//! what an adaptive attacker needs to know (BPDA for the former, EOT for the latter).
use crate::{Error, Result};
use tch::Tensor;

pub mod jpeg;
pub use jpeg::Jpeg;

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

/// Parse a defense spec: `none`, `jpeg:Q`, or several joined with `+`.
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
                        Error::bad_arg(
                            "--defense",
                            format!("'{part}': expected jpeg:Q with Q in 1..=100"),
                        )
                    })?;
                out.push(Box::new(Jpeg { quality: q }));
            }
            _ => {
                return Err(Error::bad_arg(
                    "--defense",
                    format!("unknown defense '{part}'; expected none or jpeg:Q (combine with +)"),
                ))
            }
        }
    }
    Ok(Chain(out))
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
        for bad in ["jpeg", "jpeg:0", "jpeg:101", "jpeg:x", "blur:3"] {
            let e = parse(bad).err().expect("error").to_string();
            assert!(e.starts_with("--defense:"), "{e}");
        }
    }
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
