//! DP-SGD (Abadi et al. 2016) as the accountants assume it: each step samples a batch by
//! Poisson sampling (every example independently with probability q, so the batch size
//! varies), clips every per-example gradient to L2 norm C, adds Gaussian noise N(0, σ²C²) to
//! the sum, and divides by the *expected* batch size q·n (as Opacus does), so an empty batch is
//! still a valid, pure-noise step.
//!
//! A logical batch is processed in physical chunks of at most `max_physical_batch` examples,
//! so memory stays bounded whatever q·n is; the noise is added once per logical step.
use super::grad_sample::clipped_sum_grouped;
use crate::nets::Net;
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

/// The DP-SGD parameters of a run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DpSgd {
    /// Per-example clipping norm C.
    pub clip: f64,
    /// Noise multiplier σ (noise std is σ·C).
    pub noise: f64,
    /// Poisson sampling rate q.
    pub sample_rate: f64,
    /// Number of training examples n.
    pub dataset_len: usize,
    /// Largest chunk pushed through the network at once (in rows: examples × multiplicity).
    pub max_physical_batch: usize,
    /// Augmentation multiplicity K (De et al. 2022): each sampled example enters as K augmented
    /// copies whose gradients are averaged before clipping (1: plain DP-SGD).
    #[serde(default = "one")]
    pub multiplicity: usize,
}

fn one() -> usize {
    1
}

/// What one step saw (before the update).
#[derive(Debug, Clone, Copy, Default)]
pub struct StepStats {
    pub examples: i64,
    pub loss_sum: f64,
    pub correct: i64,
    /// Examples whose gradient norm exceeded C.
    pub clipped: i64,
    pub norm_sum: f64,
}

impl StepStats {
    /// Loss and accuracy of `examples` examples seen as `k` consecutive copies each (per-copy
    /// `losses` (N·k,), `logits` (N·k, classes), `labels` (N·k,)): per example, the mean loss
    /// of its copies and the prediction of their mean logits.
    pub fn of_copies(
        examples: i64,
        k: i64,
        losses: &Tensor,
        logits: &Tensor,
        labels: &Tensor,
    ) -> StepStats {
        let mean_logits = logits.detach().view([examples, k, -1]).mean_dim(
            [1i64].as_slice(),
            false,
            None::<Kind>,
        );
        StepStats {
            examples,
            loss_sum: losses.sum(Kind::Double).double_value(&[]) / k as f64,
            correct: mean_logits
                .argmax(1, false)
                .eq_tensor(&labels.view([examples, k]).select(1, 0))
                .sum(Kind::Int64)
                .int64_value(&[]),
            ..Default::default()
        }
    }

    pub fn add(&mut self, o: &StepStats) {
        self.examples += o.examples;
        self.loss_sum += o.loss_sum;
        self.correct += o.correct;
        self.clipped += o.clipped;
        self.norm_sum += o.norm_sum;
    }
}

impl DpSgd {
    pub fn validate(&self) -> Result<()> {
        if !(self.clip > 0.0 && self.clip.is_finite()) {
            return Err(Error::field(
                "clip",
                format!("{} must be a positive number", self.clip),
            ));
        }
        if !(self.noise >= 0.0 && self.noise.is_finite()) {
            return Err(Error::field(
                "noise",
                format!("{} must be a non-negative number", self.noise),
            ));
        }
        if !(self.sample_rate > 0.0 && self.sample_rate <= 1.0) {
            return Err(Error::field(
                "batch",
                format!("sampling rate {} must be in (0, 1]", self.sample_rate),
            ));
        }
        if self.max_physical_batch == 0 {
            return Err(Error::field("max_physical_batch", "must be at least 1"));
        }
        if self.multiplicity == 0 {
            return Err(Error::field("multiplicity", "must be at least 1"));
        }
        Ok(())
    }

    /// Expected batch size q·n, the divisor of the noisy sum.
    pub fn expected_batch(&self) -> f64 {
        self.sample_rate * self.dataset_len as f64
    }

    /// Steps per epoch: ⌊1/q⌋, as Opacus's Poisson data loader.
    pub fn steps_per_epoch(&self) -> u64 {
        ((1.0 / self.sample_rate).floor() as u64).max(1)
    }

    /// Indices of one Poisson-sampled batch (torch's global generator, so `manual_seed` fixes it).
    pub fn poisson_batch(&self) -> Tensor {
        let n = self.dataset_len as i64;
        Tensor::rand([n], (Kind::Float, Device::Cpu))
            .lt(self.sample_rate)
            .nonzero()
            .squeeze_dim(1)
    }

    /// The noisy, clipped, averaged gradient for the batch `idx`; `load` turns row indices into
    /// (normalized inputs, labels) on the model's device — with multiplicity K, K consecutive
    /// (augmented) rows per index. Losses and accuracy in the stats are per example: the mean
    /// loss of its copies, the prediction of their mean logits.
    pub fn noisy_grad(
        &self,
        net: &Net,
        idx: &Tensor,
        load: &mut dyn FnMut(&Tensor) -> Result<(Tensor, Tensor)>,
    ) -> Result<(Vec<Tensor>, StepStats)> {
        let mut sum: Option<Vec<Tensor>> = None;
        let mut stats = StepStats::default();
        let total = idx.size()[0];
        let k = self.multiplicity.max(1) as i64;
        let chunk = (self.max_physical_batch as i64 / k).max(1);
        let mut lo = 0;
        while lo < total {
            let len = chunk.min(total - lo);
            let (x, y) = load(&idx.narrow(0, lo, len))?;
            if x.size()[0] != len * k || y.size()[0] != len * k {
                return Err(Error::field(
                    "multiplicity",
                    format!(
                        "the loader gave {} rows for {len} examples × {k} copies",
                        x.size()[0]
                    ),
                ));
            }
            let cs = clipped_sum_grouped(net, &x, &y, self.clip, k as usize)?;
            stats.add(&StepStats {
                clipped: cs.norms.gt(self.clip).sum(Kind::Int64).int64_value(&[]),
                norm_sum: cs.norms.sum(Kind::Double).double_value(&[]),
                ..StepStats::of_copies(len, k, &cs.losses, &cs.logits, &y)
            });
            sum = Some(match sum {
                None => cs.grads,
                Some(acc) => acc.iter().zip(&cs.grads).map(|(a, g)| a + g).collect(),
            });
            lo += len;
        }
        let sum = sum.unwrap_or_else(|| net.params().iter().map(|p| p.zeros_like()).collect());
        let std = self.noise * self.clip;
        let denom = self.expected_batch();
        let grads = tch::no_grad(|| {
            sum.iter()
                .map(|s| (s + s.randn_like() * std) / denom)
                .collect()
        });
        Ok((grads, stats))
    }
}
