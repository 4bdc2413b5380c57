//! Stateful detection of query-based black-box attacks (Chen, Carlini & Wagner 2019, "Stateful
//! Detection of Black-Box Adversarial Attacks"): a query-based attack (Square, boundary, NES…)
//! sends many nearly identical images, benign users do not. The detector keeps the embeddings of
//! the last `capacity` queries and flags a query whose mean distance to its `k` nearest stored
//! neighbours is below a threshold; after a detection the memory is cleared (as in the paper, so
//! one attack is counted once per k queries, not on every query).
//!
//! The embedding here is the image itself, area-averaged to at most 32×32 per channel, and the
//! distance the root-mean-square pixel difference (0..1). The paper trains a similarity encoder
//! to resist attackers that add noise to every query; the pixel embedding is the paper's baseline
//! — enough against an attack that does not try to evade the memory, which is what fool's Square
//! is (say so when quoting results).
use super::calibrate::threshold_at_fpr;
use super::file::StatefulSettings;
use crate::{Error, Result};
use std::collections::VecDeque;
use tch::{Kind, Tensor};

/// The embedding's side: images are area-averaged to at most this many pixels per side.
pub const EMBED_SIDE: usize = 32;
/// The embedding's name in detector files.
pub const EMBEDDING: &str = "pixels-32";

/// The embedding of one image given as (3, S, S) pixels in [0, 1], channel-first.
pub fn embed(pixels: &[f32], size: usize) -> Vec<f32> {
    let e = size.clamp(1, EMBED_SIDE);
    let mut out = Vec::with_capacity(3 * e * e);
    let plane = size * size;
    for c in 0..3 {
        let p = &pixels[c * plane..(c + 1) * plane];
        for i in 0..e {
            let (r0, r1) = (i * size / e, ((i + 1) * size / e).max(i * size / e + 1));
            for j in 0..e {
                let (c0, c1) = (j * size / e, ((j + 1) * size / e).max(j * size / e + 1));
                let mut s = 0.0f64;
                for r in r0..r1 {
                    for q in c0..c1 {
                        s += p[r * size + q] as f64;
                    }
                }
                out.push((s / ((r1 - r0) * (c1 - c0)) as f64) as f32);
            }
        }
    }
    out
}

/// Root-mean-square difference of two embeddings.
pub fn distance(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (*x - *y) as f64;
            d * d
        })
        .sum();
    (s / a.len().max(1) as f64).sqrt()
}

/// The mean of the `k` smallest distances from `e` to `others` (None when fewer than `k`).
pub fn knn_mean<'a>(
    e: &[f32],
    others: impl Iterator<Item = &'a Vec<f32>>,
    k: usize,
) -> Option<f64> {
    let mut d: Vec<f64> = others.map(|o| distance(e, o)).collect();
    if d.len() < k || k == 0 {
        return None;
    }
    d.select_nth_unstable_by(k - 1, f64::total_cmp);
    Some(d[..k].iter().sum::<f64>() / k as f64)
}

/// Each embedding's k-NN mean distance to the others (0 where there are fewer than k others).
fn leave_one_out(embeddings: &[Vec<f32>], k: usize) -> Vec<f64> {
    embeddings
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let others = embeddings
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, o)| o);
            knn_mean(e, others, k).unwrap_or(0.0)
        })
        .collect()
}

/// The memory of recent queries.
pub struct QueryMemory {
    pub k: usize,
    pub capacity: usize,
    /// Queries whose k-NN mean distance is below this are flagged.
    pub threshold: f64,
    memory: VecDeque<Vec<f32>>,
}

/// What the memory says of one query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Mean distance to the k nearest stored queries (None until k are stored).
    pub distance: Option<f64>,
    pub flagged: bool,
}

impl QueryMemory {
    /// Refused: k = 0, capacity < k, a threshold that is not finite and ≥ 0.
    pub fn new(k: usize, capacity: usize, threshold: f64) -> Result<QueryMemory> {
        if k == 0 {
            return Err(Error::field("stateful_k", "must be at least 1"));
        }
        if capacity < k {
            return Err(Error::field(
                "stateful_memory",
                format!("must hold at least k = {k} queries, got {capacity}"),
            ));
        }
        if !(threshold.is_finite() && threshold >= 0.0) {
            return Err(Error::field(
                "stateful_threshold",
                format!("must be a distance ≥ 0, got {threshold}"),
            ));
        }
        Ok(QueryMemory {
            k,
            capacity,
            threshold,
            memory: VecDeque::with_capacity(capacity),
        })
    }

    /// Queries stored.
    pub fn len(&self) -> usize {
        self.memory.len()
    }

    pub fn is_empty(&self) -> bool {
        self.memory.is_empty()
    }

    /// Judge a query by its embedding, then remember it (after clearing the memory when the
    /// query is flagged).
    pub fn observe(&mut self, e: Vec<f32>) -> Observation {
        let distance = knn_mean(&e, self.memory.iter(), self.k);
        let flagged = distance.is_some_and(|d| d < self.threshold);
        if flagged {
            self.memory.clear();
        }
        if self.memory.len() == self.capacity {
            self.memory.pop_front();
        }
        self.memory.push_back(e);
        Observation { distance, flagged }
    }
}

/// The threshold that flags at most a fraction `fpr` of clean images: each image's k-NN mean
/// distance to the other images, and the threshold below which at most ⌊fpr·n⌋ of them fall
/// (the rule of [`threshold_at_fpr`], on the lower tail). Needs more than k images.
pub fn knn_threshold(embeddings: &[Vec<f32>], k: usize, fpr: f64) -> Result<f64> {
    if k == 0 {
        return Err(Error::field("stateful_k", "must be at least 1"));
    }
    if embeddings.len() <= k {
        return Err(Error::field(
            "stateful_k",
            format!(
                "needs more than k = {k} calibration images, got {}",
                embeddings.len()
            ),
        ));
    }
    let d: Vec<f64> = leave_one_out(embeddings, k).iter().map(|d| -d).collect();
    // Flag d < t ⇔ −d > −t: the upper-tail rule on the negated distances.
    Ok(-threshold_at_fpr(&d, fpr)?)
}

/// The embeddings of a pixel-space batch (N, 3, S, S) in [0, 1].
pub fn embed_batch(x: &Tensor) -> Result<Vec<Vec<f32>>> {
    let n = x.size().first().copied().unwrap_or(0) as usize;
    if n == 0 {
        return Ok(Vec::new());
    }
    let size = x.size()[2] as usize;
    let flat: Vec<f32> = Vec::try_from(
        x.to_kind(Kind::Float)
            .to_device(tch::Device::Cpu)
            .contiguous()
            .view([-1]),
    )?;
    let per = flat.len() / n;
    Ok(flat.chunks(per).map(|p| embed(p, size)).collect())
}

/// Stateful detection calibrated on the embeddings of clean images: the k-NN threshold at `fpr`
/// and the fraction of the images (each against the others) below it.
pub fn calibrate(embeddings: &[Vec<f32>], k: usize, fpr: f64) -> Result<StatefulSettings> {
    let threshold = knn_threshold(embeddings, k, fpr)?;
    let below = leave_one_out(embeddings, k)
        .iter()
        .filter(|&&d| d < threshold)
        .count();
    Ok(StatefulSettings {
        k,
        threshold,
        embedding: EMBEDDING.into(),
        achieved_fpr: below as f64 / embeddings.len() as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_averages_blocks() {
        // 2×2 image, one channel value per pixel: side ≤ 32, so the image itself.
        let px: Vec<f32> = (0..12).map(|i| i as f32 / 12.0).collect();
        assert_eq!(embed(&px, 2), px);
        // 64×64 → 32×32: each output is the mean of a 2×2 block.
        let s = 64;
        let px: Vec<f32> = (0..3 * s * s).map(|i| ((i % s) % 2) as f32).collect();
        let e = embed(&px, s);
        assert_eq!(e.len(), 3 * 32 * 32);
        assert!(e.iter().all(|&v| (v - 0.5).abs() < 1e-6));
    }

    #[test]
    fn memory_flags_near_duplicates_and_clears() {
        let mut m = QueryMemory::new(2, 10, 0.05).unwrap();
        let base = vec![0.5f32; 12];
        let far = vec![0.0f32; 12];
        assert_eq!(m.observe(far.clone()).distance, None);
        assert_eq!(m.observe(base.clone()).distance, None);
        // Mean of the 2 nearest: (0.01 + 0.51)/2 > 0.05 — not flagged.
        let near: Vec<f32> = base.iter().map(|v| v + 0.01).collect();
        let o = m.observe(near.clone());
        assert!((o.distance.unwrap() - (0.01 + 0.51) / 2.0).abs() < 1e-6 && !o.flagged);
        // Now two near neighbours: (0.0 + 0.01)/2 < 0.05 → flagged, memory cleared.
        let o = m.observe(near.clone());
        assert!(o.flagged && (o.distance.unwrap() - 0.005).abs() < 1e-6);
        assert_eq!(m.len(), 1);
        assert!(QueryMemory::new(0, 1, 0.1).is_err());
        assert!(QueryMemory::new(3, 2, 0.1).is_err());
        assert!(QueryMemory::new(1, 2, f64::NAN).is_err());
    }

    #[test]
    fn threshold_flags_at_most_the_fpr() {
        // Points on a line at 0, 1, 2, 3, 10 (one pixel each): 1-NN distances 1, 1, 1, 1, 7.
        let e: Vec<Vec<f32>> = [0.0, 1.0, 2.0, 3.0, 10.0]
            .iter()
            .map(|&v| vec![v])
            .collect();
        // fpr 0: nothing below the threshold → the smallest distance.
        assert_eq!(knn_threshold(&e, 1, 0.0).unwrap(), 1.0);
        assert!(knn_threshold(&e, 5, 0.1).is_err());
    }
}
