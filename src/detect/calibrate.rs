//! Calibration: the threshold at a chosen false-positive rate on clean images.
use super::file::{DetectorFile, ModelId, Quantiles, SqueezerMean, FORMAT};
use super::{max_distance, FeatureSqueezing};
use crate::datasets::{load_batch, Item};
use crate::model::Classifier;
use crate::{Error, Result};
use std::path::Path;

/// Follows a calibration: images scored so far, images that could not be read.
pub trait Observer {
    fn progress(&mut self, _done: usize, _total: usize) {}
    fn skipped(&mut self, _file: &str, _err: &Error) {}
}

impl Observer for () {}

/// Check a requested false-positive rate: in [0, 1).
pub fn check_fpr(fpr: f64) -> Result<()> {
    if fpr.is_finite() && (0.0..1.0).contains(&fpr) {
        Ok(())
    } else {
        Err(Error::field(
            "fpr",
            format!("{fpr} is not a false-positive rate in [0, 1) (e.g. 0.05)"),
        ))
    }
}

/// The threshold that flags at most a fraction `fpr` of the clean `scores`.
///
/// The rule, exactly: with n scores and k = ⌊fpr·n⌋ (computed as ⌊fpr·n + 10⁻⁹⌋, so that
/// 0.29·100 counts as 29 despite floating point), the threshold is s₍ₙ₋ₖ₎, the (n−k)-th
/// smallest score. It is the smallest value t such that the number of scores strictly above
/// t is at most k, i.e. such that the fraction of clean scores flagged (`score > t`) is at
/// most fpr. Ties: scores equal to the threshold are not flagged, so with ties the achieved
/// rate can be below fpr. fpr = 0 gives the largest score (no clean image flagged).
/// Refused: no scores, a non-finite score, fpr outside [0, 1).
pub fn threshold_at_fpr(scores: &[f64], fpr: f64) -> Result<f64> {
    check_fpr(fpr)?;
    if scores.is_empty() {
        return Err(Error::failed("calibration", "no scores to calibrate on"));
    }
    if scores.iter().any(|s| !s.is_finite()) {
        return Err(Error::failed("calibration", "a score is not finite"));
    }
    let mut s = scores.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let k = ((fpr * n as f64 + 1e-9).floor() as usize).min(n - 1);
    Ok(s[n - k - 1])
}

/// The fraction of `scores` strictly above `threshold` (flagged).
pub fn flagged_fraction(scores: &[f64], threshold: f64) -> f64 {
    if scores.is_empty() {
        return 0.0;
    }
    scores.iter().filter(|&&s| s > threshold).count() as f64 / scores.len() as f64
}

/// The q-quantile (q in [0, 1]) of `scores` with linear interpolation between order
/// statistics (NumPy's default, `method="linear"`): position h = (n−1)·q in the sorted list.
/// NaN for no scores.
pub fn quantile(scores: &[f64], q: f64) -> f64 {
    if scores.is_empty() {
        return f64::NAN;
    }
    let mut s = scores.to_vec();
    s.sort_by(f64::total_cmp);
    let h = (s.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(s.len() - 1);
    s[lo] + (h - lo as f64) * (s[hi] - s[lo])
}

/// What to calibrate: the squeezers, the false-positive rate, the batch size and, optionally,
/// stateful detection's k.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    pub squeezers: &'a [String],
    pub fpr: f64,
    pub batch: usize,
    pub stateful_k: Option<usize>,
}

/// Calibrate feature squeezing with `squeezers` on the clean images `items` (listed from the
/// folder `dir`, which is recorded): every readable image is scored with `model` in batches of
/// `batch`; unreadable ones are reported to `observer`, left out and listed in the file. The
/// threshold follows [`threshold_at_fpr`]; the file records it with the achieved clean
/// false-positive rate, the score quantiles, each squeezer's mean distance and the model's
/// identity ([`ModelId`]). The squeezers and fpr are checked before any image is read. With
/// `stateful_k`, stateful detection is calibrated on the same images in the same pass
/// ([`super::stateful::calibrate`]).
pub fn calibrate(
    model: &Classifier,
    dir: &Path,
    items: &[Item],
    settings: &Settings,
    observer: &mut dyn Observer,
) -> Result<DetectorFile> {
    let Settings {
        squeezers,
        fpr,
        batch,
        stateful_k,
    } = *settings;
    check_fpr(fpr)?;
    let fs = FeatureSqueezing::new(squeezers)?;
    if batch == 0 {
        return Err(Error::field("batch", "must be at least 1"));
    }
    let model_id = ModelId::of(model)?;
    let mut rows: Vec<Vec<f64>> = Vec::with_capacity(items.len());
    let mut skipped = Vec::new();
    let mut embeddings = Vec::new();
    observer.progress(0, items.len());
    for (i, chunk) in items.chunks(batch).enumerate() {
        let lb = load_batch(model, chunk);
        for (it, e) in &lb.failed {
            observer.skipped(&it.file, e);
            skipped.push(it.file.clone());
        }
        rows.extend(fs.distances(model, &lb.x)?);
        if stateful_k.is_some() {
            embeddings.extend(super::stateful::embed_batch(&lb.x)?);
        }
        observer.progress((i * batch + chunk.len()).min(items.len()), items.len());
    }
    if rows.is_empty() {
        return Err(Error::bad_file(
            dir,
            format!(
                "none of its {} images could be read; nothing to calibrate on",
                items.len()
            ),
        ));
    }
    let scores: Vec<f64> = rows.iter().map(|r| max_distance(r)).collect();
    let threshold = threshold_at_fpr(&scores, fpr)?;
    let n = scores.len();
    let per_squeezer = fs
        .specs()
        .into_iter()
        .enumerate()
        .map(|(j, squeezer)| SqueezerMean {
            squeezer,
            mean: rows.iter().map(|r| r[j]).sum::<f64>() / n as f64,
        })
        .collect();
    Ok(DetectorFile {
        format: FORMAT.into(),
        detector: "feature-squeezing".into(),
        squeezers: fs.specs(),
        threshold,
        fpr,
        achieved_fpr: flagged_fraction(&scores, threshold),
        n,
        quantiles: Quantiles {
            p50: quantile(&scores, 0.5),
            p90: quantile(&scores, 0.9),
            p95: quantile(&scores, 0.95),
            p99: quantile(&scores, 0.99),
            max: quantile(&scores, 1.0),
        },
        per_squeezer,
        model: model_id,
        images: dir.display().to_string(),
        skipped,
        stateful: stateful_k
            .map(|k| super::stateful::calibrate(&embeddings, k, fpr))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_rule_on_hand_made_scores() {
        let s = [0.5, 0.1, 0.4, 0.2, 0.3, 0.9, 0.8, 0.7, 0.6, 1.0];
        // n = 10: fpr 0.1 → k = 1 → the 9th smallest; one score (1.0) above it.
        assert_eq!(threshold_at_fpr(&s, 0.1).unwrap(), 0.9);
        assert_eq!(flagged_fraction(&s, 0.9), 0.1);
        // fpr 0.15 → k = 1 still (at most 1.5 of 10 flagged).
        assert_eq!(threshold_at_fpr(&s, 0.15).unwrap(), 0.9);
        assert_eq!(threshold_at_fpr(&s, 0.2).unwrap(), 0.8);
        // fpr 0: the maximum, nothing flagged.
        assert_eq!(threshold_at_fpr(&s, 0.0).unwrap(), 1.0);
        assert_eq!(flagged_fraction(&s, 1.0), 0.0);
        // fpr just below 1: k = 9, the smallest score; nine flagged.
        assert_eq!(threshold_at_fpr(&s, 0.99).unwrap(), 0.1);
        // 0.29·100 is 28.999…96 in floating point; the rule counts it as 29.
        let hundred: Vec<f64> = (0..100).map(f64::from).collect();
        assert_eq!(threshold_at_fpr(&hundred, 0.29).unwrap(), 70.0);
        assert_eq!(flagged_fraction(&hundred, 70.0), 0.29);
    }

    #[test]
    fn threshold_rule_with_ties() {
        // Ties at the threshold are not flagged: the achieved rate drops below fpr.
        let s = [0.2, 0.5, 0.5, 0.5, 0.1];
        // fpr 0.2 → k = 1 → the 4th smallest (0.5); nothing is above 0.5.
        assert_eq!(threshold_at_fpr(&s, 0.2).unwrap(), 0.5);
        assert_eq!(flagged_fraction(&s, 0.5), 0.0);
        // fpr 0.6 → k = 3 → the 2nd smallest (0.2); three above it.
        assert_eq!(threshold_at_fpr(&s, 0.6).unwrap(), 0.2);
        assert_eq!(flagged_fraction(&s, 0.2), 0.6);
        // All equal: the threshold is that value whatever fpr, nothing flagged.
        for fpr in [0.0, 0.3, 0.9] {
            assert_eq!(threshold_at_fpr(&[0.3; 4], fpr).unwrap(), 0.3);
        }
        // One score.
        assert_eq!(threshold_at_fpr(&[0.7], 0.5).unwrap(), 0.7);
    }

    #[test]
    fn threshold_rule_refusals() {
        assert!(threshold_at_fpr(&[], 0.1).is_err());
        assert!(threshold_at_fpr(&[0.1, f64::NAN], 0.1).is_err());
        for fpr in [1.0, 1.5, -0.1, f64::NAN] {
            let e = threshold_at_fpr(&[0.1], fpr).unwrap_err().to_string();
            assert!(e.starts_with("fpr: "), "{e}");
        }
    }

    #[test]
    fn quantiles_interpolate_linearly() {
        let s = [4.0, 1.0, 3.0, 2.0, 5.0];
        assert_eq!(quantile(&s, 0.5), 3.0);
        assert_eq!(quantile(&s, 1.0), 5.0);
        assert_eq!(quantile(&s, 0.0), 1.0);
        assert!((quantile(&s, 0.9) - 4.6).abs() < 1e-12);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
