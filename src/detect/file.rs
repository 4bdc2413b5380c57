//! The detector file (`detector.json`, format `fool-detector/1`): what calibration found and
//! the model it was found for. Read back with [`load`], which checks every field.
use super::FeatureSqueezing;
use crate::model::{sha256_file, Classifier};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The `format` of the files this version writes and reads.
pub const FORMAT: &str = "fool-detector/1";

/// A calibrated detector, as written to its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// `feature-squeezing`.
    pub detector: String,
    /// The squeezers' defense specs, in order.
    pub squeezers: Vec<String>,
    /// Scores above it are flagged.
    pub threshold: f64,
    /// The false-positive rate asked for, in [0, 1).
    pub fpr: f64,
    /// The fraction of the calibration images flagged at `threshold` (≤ `fpr`).
    pub achieved_fpr: f64,
    /// Calibration images scored.
    pub n: usize,
    /// Quantiles of their scores.
    pub quantiles: Quantiles,
    /// Each squeezer's mean L1 distance over them.
    pub per_squeezer: Vec<SqueezerMean>,
    /// The model it was calibrated for.
    pub model: ModelId,
    /// The calibration folder.
    pub images: String,
    /// Its images that could not be read (left out).
    pub skipped: Vec<String>,
    /// Stateful detection calibrated on the same images (`--stateful-k`), if asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful: Option<StatefulSettings>,
}

/// Stateful detection's calibration (see [`super::stateful`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatefulSettings {
    /// Neighbours averaged.
    pub k: usize,
    /// A query whose k-NN mean distance is below this is flagged.
    pub threshold: f64,
    /// The embedding (`pixels-32`: RMS pixel distance of images area-averaged to ≤ 32×32).
    pub embedding: String,
    /// The fraction of calibration images (against the others) below the threshold.
    pub achieved_fpr: f64,
}

/// Score quantiles (linear interpolation, see [`super::quantile`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantiles {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// One squeezer's mean distance on the calibration images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqueezerMean {
    pub squeezer: String,
    pub mean: f64,
}

/// What identifies a model: the file (its path as given, its size and SHA-256), its number of
/// classes and how images are preprocessed for it. Two models are the same when all but the
/// path agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelId {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    pub num_classes: usize,
    pub size: u32,
    pub resize: u32,
    pub resize_always: bool,
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

impl ModelId {
    /// The identity of a loaded model (reads its file once more for the hash).
    pub fn of(model: &Classifier) -> Result<ModelId> {
        let meta = std::fs::metadata(&model.path).map_err(|e| Error::io(&model.path, e))?;
        let pre = &model.pre;
        Ok(ModelId {
            path: model.path.display().to_string(),
            bytes: meta.len(),
            sha256: sha256_file(&model.path)?,
            num_classes: model.num_classes,
            size: pre.size,
            resize: pre.resize,
            resize_always: pre.resize_always,
            mean: pre.mean,
            std: pre.std,
        })
    }

    /// What differs from `other`, path aside (empty when they are the same model).
    fn differences(&self, other: &ModelId) -> Vec<String> {
        let mut d = Vec::new();
        if self.bytes != other.bytes || self.sha256 != other.sha256 {
            d.push(format!(
                "model file {} ({} bytes, sha256 {}…), not {} ({} bytes, sha256 {}…)",
                self.path,
                self.bytes,
                &self.sha256[..self.sha256.len().min(12)],
                other.path,
                other.bytes,
                &other.sha256[..other.sha256.len().min(12)]
            ));
        }
        if self.num_classes != other.num_classes {
            d.push(format!(
                "{} classes, not {}",
                self.num_classes, other.num_classes
            ));
        }
        let pre = |m: &ModelId| {
            format!(
                "size {} resize {}{} mean {:?} std {:?}",
                m.size,
                m.resize,
                if m.resize_always { " always" } else { "" },
                m.mean,
                m.std
            )
        };
        if pre(self) != pre(other) {
            d.push(format!("preprocessing {}, not {}", pre(self), pre(other)));
        }
        d
    }
}

impl DetectorFile {
    /// The detector it describes, with its threshold.
    pub fn detector(&self) -> Result<FeatureSqueezing> {
        let mut fs = FeatureSqueezing::new(&self.squeezers)?;
        fs.threshold = self.threshold;
        Ok(fs)
    }

    /// Refuse a model other than the one this file (read from `path`) was calibrated for.
    pub fn check_model(&self, path: &Path, model: &Classifier) -> Result<()> {
        let d = self.model.differences(&ModelId::of(model)?);
        if d.is_empty() {
            return Ok(());
        }
        Err(Error::bad_file(
            path,
            format!(
                "calibrated for another model: {}; calibrate a detector for this model \
                 (fool detect calibrate)",
                d.join("; ")
            ),
        ))
    }

    /// Write it to `path` atomically (checked as [`load`] checks it first).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.validate(path)?;
        crate::files::write_json(path, self)
    }

    /// Check every field; errors name the file `path` and the field.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |field: &str, msg: String| Error::bad_file(path, format!("field {field}: {msg}"));
        if self.format != FORMAT {
            return Err(bad(
                "format",
                format!(
                    "'{}' is not {FORMAT} (a file of another fool version?)",
                    self.format
                ),
            ));
        }
        if self.detector != "feature-squeezing" {
            return Err(bad(
                "detector",
                format!(
                    "unknown detector '{}'; expected feature-squeezing",
                    self.detector
                ),
            ));
        }
        FeatureSqueezing::new(&self.squeezers).map_err(|e| {
            let msg = e.to_string();
            bad(
                "squeezers",
                msg.strip_prefix("squeezers: ").unwrap_or(&msg).into(),
            )
        })?;
        let finite_nonneg = |field: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(bad(field, format!("{v} is not a finite number ≥ 0")))
            }
        };
        finite_nonneg("threshold", self.threshold)?;
        super::calibrate::check_fpr(self.fpr).map_err(|_| {
            bad(
                "fpr",
                format!("{} is not a false-positive rate in [0, 1)", self.fpr),
            )
        })?;
        if !(self.achieved_fpr.is_finite() && (0.0..=self.fpr + 1e-12).contains(&self.achieved_fpr))
        {
            return Err(bad(
                "achieved_fpr",
                format!("{} is not in [0, fpr = {}]", self.achieved_fpr, self.fpr),
            ));
        }
        if self.n == 0 {
            return Err(bad("n", "no calibration images".into()));
        }
        if let Some(st) = &self.stateful {
            if st.k == 0 {
                return Err(bad("stateful.k", "must be at least 1".into()));
            }
            finite_nonneg("stateful.threshold", st.threshold)?;
            if st.embedding != super::stateful::EMBEDDING {
                return Err(bad(
                    "stateful.embedding",
                    format!("'{}' is not '{}'", st.embedding, super::stateful::EMBEDDING),
                ));
            }
        }
        let q = &self.quantiles;
        for (f, v) in [
            ("quantiles.p50", q.p50),
            ("quantiles.p90", q.p90),
            ("quantiles.p95", q.p95),
            ("quantiles.p99", q.p99),
            ("quantiles.max", q.max),
        ] {
            finite_nonneg(f, v)?;
        }
        let names: Vec<&str> = self
            .per_squeezer
            .iter()
            .map(|s| s.squeezer.as_str())
            .collect();
        if names != self.squeezers.iter().map(|s| s.trim()).collect::<Vec<_>>() {
            return Err(bad(
                "per_squeezer",
                "does not list the squeezers, in their order".into(),
            ));
        }
        for s in &self.per_squeezer {
            finite_nonneg("per_squeezer.mean", s.mean)?;
        }
        let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(&self.model.sha256) {
            return Err(bad("model.sha256", "not a SHA-256 (64 hex digits)".into()));
        }
        if self.model.num_classes < 2 || self.model.size == 0 || self.model.resize == 0 {
            return Err(bad(
                "model",
                "num_classes must be ≥ 2, size and resize ≥ 1".into(),
            ));
        }
        let ok3 = |v: [f64; 3], pos: bool| v.iter().all(|x| x.is_finite() && (!pos || *x > 0.0));
        if !ok3(self.model.mean, false) || !ok3(self.model.std, true) {
            return Err(bad(
                "model",
                "mean must be finite and std finite and > 0".into(),
            ));
        }
        Ok(())
    }
}

/// Read and check a detector file. Errors name the file and the field: not JSON, a missing
/// or unknown field, another format version, a threshold that is not a finite number (NaN is
/// stored as `null`), an unknown or random squeezer, fpr outside [0, 1), …
pub fn load(path: &Path) -> Result<DetectorFile> {
    let text = crate::files::read_regular_to_string(path, "a fool detector file (JSON)")?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(path, format!("not valid JSON: {e}")))?;
    let bad = |field: &str, msg: &str| Error::bad_file(path, format!("field {field}: {msg}"));
    let Some(obj) = value.as_object() else {
        return Err(Error::bad_file(
            path,
            "not a fool detector file (expected a JSON object)",
        ));
    };
    // The version first: a file of another version is refused as such, not field by field.
    match obj.get("format") {
        None => return Err(bad("format", "missing; not a fool detector file")),
        Some(serde_json::Value::String(f)) if f == FORMAT => {}
        Some(other) => {
            return Err(bad(
                "format",
                &format!("{other} is not \"{FORMAT}\" (a file of another fool version?)"),
            ))
        }
    }
    for field in ["threshold", "fpr", "achieved_fpr"] {
        if let Some(v) = obj.get(field) {
            if !v.is_number() {
                return Err(bad(
                    field,
                    &format!("{v} is not a number (NaN and infinities are written as null)"),
                ));
            }
        }
    }
    let file: DetectorFile = serde_json::from_value(value)
        .map_err(|e| Error::bad_file(path, format!("not a valid detector file: {e}")))?;
    file.validate(path)?;
    Ok(file)
}
