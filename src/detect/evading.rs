//! The adaptive attack on a model guarded by a detector (He et al. 2017, "Adversarial Example
//! Defenses: Ensembles of Weak Defenses are not Strong"): the attack minimises its goal loss
//! plus c·(the detector's score), with BPDA through the squeezers that have no gradient of
//! their own (bits, median, jpeg: the identity in the backward pass), and an image meets the
//! goal only where the detector does not flag it.
use super::{Detector as _, FeatureSqueezing};
use crate::attacks::Victim;
use crate::defenses::Defended;
use crate::model::Classifier;
use crate::Result;
use tch::{Kind, Tensor};

impl FeatureSqueezing {
    /// The feature-squeezing score of each image of `x` (N,), differentiable w.r.t. `x`: the
    /// squeezers without a gradient pass it straight through (BPDA, as `Defended` does).
    /// `logits`: the model's logits for `x` when the caller has them (one forward less).
    pub fn score_differentiable(
        &self,
        model: &Classifier,
        x: &Tensor,
        logits: Option<&Tensor>,
    ) -> Result<Tensor> {
        let p = match logits {
            Some(l) => l.softmax(-1, Kind::Float),
            None => model.logits(x)?.softmax(-1, Kind::Float),
        };
        let mut cols = Vec::with_capacity(self.squeezers.len());
        for (_, chain) in &self.squeezers {
            let squeezed = Defended {
                model,
                defense: chain,
                eot: 1,
            }
            .transform(x)?;
            let q = model.logits(&squeezed)?.softmax(-1, Kind::Float);
            cols.push((&p - q).abs().sum_dim_intlist(1, false, Kind::Float));
        }
        Ok(Tensor::stack(&cols, 1).amax(1, false))
    }
}

/// A victim (`inner`: the model, bare or defended) guarded by `detector`, scored with `model`:
/// the penalty is `weight` × the detector's score, and an image is acceptable where its score
/// is not above the threshold.
pub struct Evading<'a> {
    pub inner: &'a dyn Victim,
    pub model: &'a Classifier,
    pub detector: &'a FeatureSqueezing,
    pub weight: f64,
    /// `inner`'s logits are `model`'s on the same input (no defense in between): the detector
    /// reuses them instead of running the clean forward pass again.
    pub same_logits: bool,
}

impl Victim for Evading<'_> {
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.inner.logits(x)
    }
    fn eot_samples(&self) -> usize {
        self.inner.eot_samples()
    }
    fn penalty(&self, x: &Tensor, logits: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
        let reuse = self.same_logits.then_some(logits);
        let score = self.detector.score_differentiable(self.model, x, reuse)?;
        let ok = score.detach().le(self.detector.threshold());
        Ok(Some((score * self.weight, ok)))
    }
}
