//! Drift of what the model predicts: the predicted-class distribution and the mean confidence
//! over a sliding window of the last `window` predictions, compared with a reference — the first
//! `window` predictions after start, or a reference file (`fool-drift/1`, which
//! `GET /v2/models/{name}/drift` writes from the current window).
//!
//! Distributions are smoothed before comparing (each class count + ½, so no class has
//! probability 0): PSI = Σ (w_i − r_i) ln(w_i / r_i) (population stability index; the usual
//! reading: < 0.1 stable, 0.1–0.25 moderate, > 0.25 large shift — for few predictions per class
//! the smoothing and sampling noise alone add to it), KL = Σ w_i ln(w_i / r_i).
use std::collections::VecDeque;

pub const FORMAT: &str = "fool-drift/1";

/// A distribution summary: counts per class and mean confidence over `count` predictions.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub format: String,
    pub count: u64,
    pub class_counts: Vec<u64>,
    pub mean_confidence: f64,
}

impl Summary {
    fn of(class_counts: Vec<u64>, count: usize, confidence_sum: f64) -> Summary {
        Summary {
            format: FORMAT.into(),
            count: count as u64,
            class_counts,
            mean_confidence: if count == 0 {
                0.0
            } else {
                confidence_sum / count as f64
            },
        }
    }

    /// Parse and check a reference file's text for a model with `classes` classes.
    pub fn parse(text: &str, classes: usize) -> Result<Summary, String> {
        let s: Summary =
            serde_json::from_str(text).map_err(|e| format!("not a {FORMAT} file: {e}"))?;
        if s.format != FORMAT {
            return Err(format!("format is '{}', expected '{FORMAT}'", s.format));
        }
        if s.class_counts.len() != classes {
            return Err(format!(
                "class_counts has {} entries but the model has {classes} classes",
                s.class_counts.len()
            ));
        }
        if s.count == 0 || s.class_counts.iter().sum::<u64>() != s.count {
            return Err("class_counts must sum to count, which must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&s.mean_confidence) {
            return Err("mean_confidence must be in [0, 1]".into());
        }
        Ok(s)
    }
}

/// The current comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gauges {
    pub psi: f64,
    pub kl: f64,
    pub confidence_shift: f64,
}

pub struct Drift {
    window: usize,
    classes: usize,
    reference: Option<Summary>,
    /// The first predictions, while they become the reference.
    building: Vec<u64>,
    building_conf: f64,
    building_n: usize,
    recent: VecDeque<(usize, f32)>,
    counts: Vec<u64>,
    conf_sum: f64,
}

impl Drift {
    /// `reference`: a file's summary, or None to take the first `window` predictions.
    pub fn new(classes: usize, window: usize, reference: Option<Summary>) -> Drift {
        Drift {
            window: window.max(1),
            classes,
            reference,
            building: vec![0; classes],
            building_conf: 0.0,
            building_n: 0,
            recent: VecDeque::new(),
            counts: vec![0; classes],
            conf_sum: 0.0,
        }
    }

    pub fn observe(&mut self, class: usize, confidence: f32) {
        if class >= self.classes {
            return;
        }
        if self.reference.is_none() {
            self.building[class] += 1;
            self.building_conf += confidence as f64;
            self.building_n += 1;
            if self.building_n == self.window {
                let counts = std::mem::take(&mut self.building);
                self.reference = Some(Summary::of(counts, self.building_n, self.building_conf));
            }
            return;
        }
        self.recent.push_back((class, confidence));
        self.counts[class] += 1;
        self.conf_sum += confidence as f64;
        if self.recent.len() > self.window {
            if let Some((c, p)) = self.recent.pop_front() {
                self.counts[c] -= 1;
                self.conf_sum -= p as f64;
            }
        }
    }

    /// Predictions in the window.
    pub fn len(&self) -> usize {
        self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }

    /// Mean confidence over the window (None when empty).
    pub fn mean_confidence(&self) -> Option<f64> {
        (!self.recent.is_empty()).then(|| self.conf_sum / self.recent.len() as f64)
    }

    /// The window as a reference file's content.
    pub fn summary(&self) -> Summary {
        Summary::of(self.counts.clone(), self.recent.len(), self.conf_sum)
    }

    /// The latest predictions as a reference file's content: the window, or while the reference
    /// window is still filling, what it holds so far.
    pub fn current(&self) -> Summary {
        if self.reference.is_none() && self.building_n > 0 {
            return Summary::of(self.building.clone(), self.building_n, self.building_conf);
        }
        self.summary()
    }

    pub fn reference(&self) -> Option<&Summary> {
        self.reference.as_ref()
    }

    /// The comparison, once there is a reference and a full window.
    pub fn gauges(&self) -> Option<Gauges> {
        let r = self.reference.as_ref()?;
        if self.recent.len() < self.window {
            return None;
        }
        let (psi, kl) = psi_kl(&self.counts, &r.class_counts);
        Some(Gauges {
            psi,
            kl,
            confidence_shift: self.mean_confidence().unwrap_or(0.0) - r.mean_confidence,
        })
    }
}

/// PSI and KL(w ‖ r) between two count vectors, each smoothed by + ½ per class.
pub fn psi_kl(window: &[u64], reference: &[u64]) -> (f64, f64) {
    let k = window.len() as f64;
    let nw = window.iter().sum::<u64>() as f64 + 0.5 * k;
    let nr = reference.iter().sum::<u64>() as f64 + 0.5 * k;
    let (mut psi, mut kl) = (0.0, 0.0);
    for (&a, &b) in window.iter().zip(reference) {
        let w = (a as f64 + 0.5) / nw;
        let r = (b as f64 + 0.5) / nr;
        let l = (w / r).ln();
        psi += (w - r) * l;
        kl += w * l;
    }
    (psi, kl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_and_kl_by_hand() {
        // Two classes, smoothed: window (3.5/5, 1.5/5), reference (1.5/5, 3.5/5).
        let (psi, kl) = psi_kl(&[3, 1], &[1, 3]);
        let (w, r): ([f64; 2], [f64; 2]) = ([0.7, 0.3], [0.3, 0.7]);
        let want_psi: f64 = (0..2).map(|i| (w[i] - r[i]) * (w[i] / r[i]).ln()).sum();
        let want_kl: f64 = (0..2).map(|i| w[i] * (w[i] / r[i]).ln()).sum();
        assert!((psi - want_psi).abs() < 1e-12 && (kl - want_kl).abs() < 1e-12);
        assert!((psi - 0.8 * (7.0f64 / 3.0).ln()).abs() < 1e-12);
        assert_eq!(psi_kl(&[5, 5], &[5, 5]), (0.0, 0.0));
    }

    #[test]
    fn reference_window_then_sliding_window() {
        let mut d = Drift::new(3, 4, None);
        for _ in 0..4 {
            d.observe(0, 0.9);
        }
        assert_eq!(d.reference().unwrap().class_counts, vec![4, 0, 0]);
        assert!(d.gauges().is_none(), "window not full yet");
        for _ in 0..4 {
            d.observe(0, 0.9);
        }
        let g = d.gauges().unwrap();
        assert!(g.psi.abs() < 1e-12 && g.confidence_shift.abs() < 1e-9);
        // The window slides: four predictions of class 2 replace the class-0 ones.
        for _ in 0..4 {
            d.observe(2, 0.5);
        }
        assert_eq!(d.summary().class_counts, vec![0, 0, 4]);
        let g = d.gauges().unwrap();
        assert!((g.confidence_shift - (-0.4)).abs() < 1e-6);
        assert_eq!(g.psi, psi_kl(&[0, 0, 4], &[4, 0, 0]).0);
        assert!(g.psi > 1.0);
    }

    #[test]
    fn reference_files_are_checked() {
        let ok =
            r#"{"format":"fool-drift/1","count":3,"class_counts":[1,2],"mean_confidence":0.5}"#;
        assert_eq!(Summary::parse(ok, 2).unwrap().count, 3);
        assert!(Summary::parse(ok, 3).unwrap_err().contains("2 entries"));
        let bad = ok.replace("\"count\":3", "\"count\":4");
        assert!(Summary::parse(&bad, 2)
            .unwrap_err()
            .contains("sum to count"));
        assert!(Summary::parse("{}", 2)
            .unwrap_err()
            .contains("fool-drift/1"));
    }
}
