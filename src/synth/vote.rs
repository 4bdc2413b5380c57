//! The private vote of Private Evolution: every private sample votes for its nearest
//! synthetic samples (L2 in the embedding), the histogram gets Gaussian noise on every bin and
//! a threshold, and the next parents are drawn in proportion.
//!
//! With `k` neighbours each vote weighs 1/√k, so one private sample changes the histogram by
//! a vector of L2 norm exactly 1 (sensitivity 1 under adding or removing a sample); the noisy
//! histogram is then the Gaussian mechanism with noise σ, and the per-class histograms of one
//! iteration together are one such mechanism (a sample sits in one class).
use crate::rng::SplitMix64;
use tch::{Device, Kind, Tensor};

/// Private rows compared at once (a chunk × synthetic distance matrix in memory).
const CHUNK: i64 = 1024;

/// For each private row (`private`: (P, d) float), the indices of its `k` nearest rows of
/// `synthetic` ((S, d)), by squared L2 distance, as (P, k) int64 on the CPU. Computed in
/// chunks as ‖s‖² − 2 p·s (‖p‖² does not change the order), one matrix product per chunk.
pub fn nearest(private: &Tensor, synthetic: &Tensor, k: usize, device: Device) -> Tensor {
    let k = k as i64;
    let p_all = private.to_kind(Kind::Float);
    let s = synthetic.to_device(device).to_kind(Kind::Float);
    let s_norm = s.square().sum_dim_intlist(1, false, Kind::Float); // (S,)
    let st = s.transpose(0, 1);
    let n = p_all.size()[0];
    let mut out = Vec::new();
    let mut start = 0;
    tch::no_grad(|| {
        while start < n {
            let len = CHUNK.min(n - start);
            let p = p_all.narrow(0, start, len).to_device(device);
            // ‖s‖² − 2 p·s as one GEMM with the norms as its bias (no extra passes over the
            // (len, S) matrix).
            let d = s_norm.unsqueeze(0).addmm(&(p * -2.0), &st); // (len, S)
            let idx = if k == 1 {
                d.argmin(1, true)
            } else {
                d.topk(k, 1, false, false).1
            };
            out.push(idx.to_device(Device::Cpu));
            start += len;
        }
    });
    if out.is_empty() {
        return Tensor::zeros([0, k], (Kind::Int64, Device::Cpu));
    }
    Tensor::cat(&out, 0)
}

/// The vote histogram over `bins` synthetic samples: each row of `nearest` ((P, k)) adds
/// 1/√k to each of its k bins.
pub fn histogram(nearest: &Tensor, bins: usize) -> Vec<f64> {
    let k = nearest.size().get(1).copied().unwrap_or(1).max(1);
    let w = 1.0 / (k as f64).sqrt();
    let idx = Vec::<i64>::try_from(nearest.reshape([-1])).unwrap_or_default();
    let mut h = vec![0.0; bins];
    for i in idx {
        h[i as usize] += w;
    }
    h
}

/// Gaussian noise N(0, σ²) added to every bin.
pub fn add_noise(h: &mut [f64], sigma: f64, rng: &mut SplitMix64) {
    for v in h.iter_mut() {
        *v += sigma * rng.normal();
    }
}

/// The threshold: max(h − H, 0) on every bin.
pub fn threshold(h: &mut [f64], t: f64) {
    for v in h.iter_mut() {
        *v = (*v - t).max(0.0);
    }
}

/// Draw `n` bins with replacement in proportion to `weights` (all ≥ 0). When every weight is
/// 0 (the noise drowned every vote) the draw is uniform; the second value says so.
pub fn draw(weights: &[f64], n: usize, rng: &mut SplitMix64) -> (Vec<usize>, bool) {
    let total: f64 = weights.iter().sum();
    if weights.is_empty() {
        return (vec![], false);
    }
    if !(total > 0.0 && total.is_finite()) {
        let m = weights.len() as u64;
        return ((0..n).map(|_| rng.below(m) as usize).collect(), true);
    }
    let mut cdf = Vec::with_capacity(weights.len());
    let mut acc = 0.0;
    for w in weights {
        acc += w / total;
        cdf.push(acc);
    }
    let last = weights.len() - 1;
    let picks = (0..n)
        .map(|_| {
            let u = rng.uniform();
            cdf.partition_point(|&c| c <= u).min(last)
        })
        .collect();
    (picks, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_matches_brute_force() {
        tch::manual_seed(3);
        let p = Tensor::randn([300, 7], (Kind::Float, Device::Cpu));
        let s = Tensor::randn([50, 7], (Kind::Float, Device::Cpu));
        let nn = nearest(&p, &s, 3, Device::Cpu);
        let d = p.unsqueeze(1) - s.unsqueeze(0);
        let d = d.square().sum_dim_intlist(2, false, Kind::Float);
        let want = d.topk(3, 1, false, true).1;
        let got = nn.sort(1, false).0;
        assert!(got.equal(&want.sort(1, false).0));
        let h = histogram(&nn, 50);
        let total: f64 = h.iter().sum();
        assert!((total - 300.0 * 3.0 / 3f64.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn draw_follows_weights_and_falls_back_to_uniform() {
        let mut rng = SplitMix64::new(1);
        let (picks, uniform) = draw(&[0.0, 3.0, 1.0], 40_000, &mut rng);
        assert!(!uniform);
        let ones = picks.iter().filter(|&&p| p == 1).count() as f64 / 40_000.0;
        assert!((ones - 0.75).abs() < 0.01, "{ones}");
        assert!(!picks.contains(&0));
        let (picks, uniform) = draw(&[0.0, 0.0], 10, &mut rng);
        assert!(uniform && picks.len() == 10);
        let mut h = vec![0.5, 2.0];
        threshold(&mut h, 1.0);
        assert_eq!(h, vec![0.0, 1.0]);
    }
}
