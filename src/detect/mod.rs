//! Detecting adversarial inputs: a [`Detector`] scores a pixel-space batch (higher = more
//! suspicious) and flags the scores above its threshold, which [`calibrate()`] sets at a chosen
//! false-positive rate on clean images and records in a detector file ([`DetectorFile`]).
//!
//! The one detector so far is [`FeatureSqueezing`] (Xu, Evans & Qi 2018, "Feature Squeezing:
//! Detecting Adversarial Examples in Deep Neural Networks"): the squeezers are fool's defenses
//! (`bits:5`, `median:3`, `jpeg:75`, chains `a+b`), and an input's score is the largest L1
//! distance between the model's softmax on the input and on a squeezed copy of it.
use crate::defenses::{self, Chain, Defense as _};
use crate::model::Classifier;
use crate::{Error, Result};
use tch::{Kind, Tensor};

mod calibrate;
mod evading;
mod file;
pub mod stateful;
pub use calibrate::{
    calibrate, check_fpr, flagged_fraction, quantile, threshold_at_fpr, Observer,
    Settings as CalibrationSettings,
};
pub use evading::Evading;
pub use file::{load, DetectorFile, ModelId, Quantiles, SqueezerMean, StatefulSettings, FORMAT};

/// Something that scores inputs and flags the suspicious ones.
pub trait Detector {
    /// What it is, e.g. `feature-squeezing[bits:5,median:3]`.
    fn name(&self) -> String;
    /// One score per image of `x`, a pixel-space batch (N,3,H,W) in [0,1] as defenses take
    /// it, judged with `model`; higher is more suspicious.
    fn score(&self, model: &Classifier, x: &Tensor) -> Result<Vec<f64>>;
    /// Scores above this are flagged.
    fn threshold(&self) -> f64;
    /// Whether `score` is flagged: `score > threshold` (a score equal to it is not).
    fn flag(&self, score: f64) -> bool {
        score > self.threshold()
    }
}

/// Feature squeezing: squeezers (deterministic defenses) and the threshold on the score.
pub struct FeatureSqueezing {
    /// Each squeezer's spec (as given, trimmed) and the parsed chain.
    pub squeezers: Vec<(String, Chain)>,
    /// `f64::INFINITY` until calibrated: an uncalibrated detector flags nothing.
    pub threshold: f64,
}

impl FeatureSqueezing {
    /// Parse the squeezer specs (each a defense spec, see [`defenses::parse`]). Refused, with
    /// errors naming the field `squeezers`: none given, an empty or `none` spec, a spec the
    /// defense parser refuses, a random defense (the score must be deterministic), a
    /// squeezer given twice.
    pub fn new(specs: &[String]) -> Result<FeatureSqueezing> {
        if specs.is_empty() {
            return Err(Error::field(
                "squeezers",
                "no squeezer given; expected e.g. bits:5,median:3,jpeg:75",
            ));
        }
        let mut squeezers: Vec<(String, Chain)> = Vec::new();
        for spec in specs {
            let spec = spec.trim();
            let chain = defenses::parse(spec)
                .map_err(|e| Error::field("squeezers", without_field(&e.to_string())))?;
            if chain.0.is_empty() {
                return Err(Error::field(
                    "squeezers",
                    format!("'{spec}' squeezes nothing; give a defense such as bits:5"),
                ));
            }
            if chain.random() {
                return Err(Error::field(
                    "squeezers",
                    format!(
                        "'{spec}' is random; a squeezer must be deterministic (bits, median, \
                         jpeg, blur) so that an image's score is reproducible"
                    ),
                ));
            }
            let name = chain.name();
            if squeezers.iter().any(|(n, _)| *n == name) {
                return Err(Error::field(
                    "squeezers",
                    format!("'{spec}' is given twice"),
                ));
            }
            squeezers.push((name, chain));
        }
        Ok(FeatureSqueezing {
            squeezers,
            threshold: f64::INFINITY,
        })
    }

    /// The squeezers' specs, in order.
    pub fn specs(&self) -> Vec<String> {
        self.squeezers.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The L1 distance between the softmax on `x` and on each squeezed copy: one row per
    /// image, one column per squeezer, each in [0, 2]. No graph is built.
    pub fn distances(&self, model: &Classifier, x: &Tensor) -> Result<Vec<Vec<f64>>> {
        self.distances_given(model, x, None)
    }

    /// [`FeatureSqueezing::distances`], with the model's softmax on `x` when the caller has it
    /// (one forward pass less).
    pub fn distances_given(
        &self,
        model: &Classifier,
        x: &Tensor,
        probs: Option<&Tensor>,
    ) -> Result<Vec<Vec<f64>>> {
        let n = x.size().first().copied().unwrap_or(0) as usize;
        if n == 0 {
            return Ok(Vec::new());
        }
        let p = match probs {
            Some(p) => p.to_kind(Kind::Double),
            None => model.probs(x)?.to_kind(Kind::Double),
        };
        let mut cols = Vec::with_capacity(self.squeezers.len());
        for (_, chain) in &self.squeezers {
            let q = tch::no_grad(|| -> Result<Tensor> { model.probs(&chain.apply(x)?) })?;
            let d = (&p - q.to_kind(Kind::Double))
                .abs()
                .sum_dim_intlist(1, false, Kind::Double)
                .to_device(tch::Device::Cpu);
            cols.push(Vec::<f64>::try_from(d)?);
        }
        Ok((0..n)
            .map(|i| cols.iter().map(|c| c[i]).collect())
            .collect())
    }
}

/// The largest of an image's squeezer distances: its feature-squeezing score.
pub fn max_distance(row: &[f64]) -> f64 {
    row.iter().copied().fold(0.0, f64::max)
}

impl Detector for FeatureSqueezing {
    fn name(&self) -> String {
        format!("feature-squeezing[{}]", self.specs().join(","))
    }
    fn score(&self, model: &Classifier, x: &Tensor) -> Result<Vec<f64>> {
        Ok(self
            .distances(model, x)?
            .iter()
            .map(|r| max_distance(r))
            .collect())
    }
    fn threshold(&self) -> f64 {
        self.threshold
    }
}

/// One image's verdict.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageScore {
    pub image: String,
    /// The largest of `distances`.
    pub score: f64,
    /// `score > threshold`.
    pub flagged: bool,
    /// Each squeezer's L1 distance, in the squeezers' order.
    pub distances: Vec<f64>,
}

/// Score the image files `paths` with `detector` and `model`, in batches of `batch` (≥ 1),
/// preprocessed as calibration preprocesses them. An unreadable image is an error naming it.
pub fn score_files(
    detector: &FeatureSqueezing,
    model: &Classifier,
    paths: &[std::path::PathBuf],
    batch: usize,
) -> Result<Vec<ImageScore>> {
    if batch == 0 {
        return Err(Error::field("batch", "must be at least 1"));
    }
    let items: Vec<crate::datasets::Item> = paths
        .iter()
        .map(|p| crate::datasets::Item {
            file: p.display().to_string(),
            path: p.clone(),
            label: 0,
            row: None,
        })
        .collect();
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(batch) {
        let lb = crate::datasets::load_batch(model, chunk);
        if let Some((_, e)) = lb.failed.into_iter().next() {
            return Err(e);
        }
        for (it, distances) in lb.items.iter().zip(detector.distances(model, &lb.x)?) {
            let score = max_distance(&distances);
            out.push(ImageScore {
                image: it.file.clone(),
                score,
                flagged: detector.flag(score),
                distances,
            });
        }
    }
    Ok(out)
}

/// A defense parser error without its `defense: ` prefix (the field here is `squeezers`).
fn without_field(msg: &str) -> String {
    msg.strip_prefix("defense: ").unwrap_or(msg).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn squeezers_are_parsed_and_random_ones_refused() {
        let fs =
            FeatureSqueezing::new(&specs(&["bits:5", " median:3 ", "jpeg:75+bits:4"])).unwrap();
        assert_eq!(fs.specs(), ["bits:5", "median:3", "jpeg:75+bits:4"]);
        assert!(!fs.flag(1e9));
        for bad in [
            vec!["noise:0.1"],
            vec!["bits:5+noise:0.1"],
            vec!["resize-pad"],
            vec!["sharpen:3"],
            vec!["none"],
            vec!["bits:5", "bits:5"],
            vec![],
        ] {
            let e = FeatureSqueezing::new(&specs(&bad)).err().expect("refused");
            let e = e.to_string();
            assert!(e.starts_with("squeezers: "), "{bad:?}: {e}");
        }
    }
}
