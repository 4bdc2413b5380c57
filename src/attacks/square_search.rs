//! The bookkeeping both Square Attacks share (L∞ in [`super::square`], L2 in
//! [`super::square_l2`]): per image the best logits found, their margin loss, whether the goal
//! is met, the queries spent; which images are still searched; progress reports; the output.
use super::{margin, AttackOutput, Goal, StepInfo};
use crate::Result;
use tch::{Kind, Tensor};

pub(crate) struct Search {
    pub logits: Tensor,
    pub margin: Tensor,
    pub reached: Tensor,
    pub queries: Tensor,
    /// Iterations run, of `iters`.
    pub steps: usize,
    pub iters: usize,
}

impl Search {
    /// The state after the starting point's query (`logits` of every image).
    pub fn start(goal: &Goal, logits: Tensor, iters: usize) -> Search {
        let n = logits.size()[0];
        Search {
            margin: margin(goal, &logits),
            reached: goal.reached(&logits),
            queries: Tensor::ones([n], (Kind::Int64, logits.device())),
            logits,
            steps: 0,
            iters,
        }
    }

    /// The images still searched (indices), or None when every image meets the goal.
    pub fn pending(&self) -> Option<Tensor> {
        let idx = self.reached.logical_not().nonzero().squeeze_dim(1);
        (idx.size()[0] > 0).then_some(idx)
    }

    /// Count one query for each image of `idx`, whose candidates gave `logits`: keep those
    /// that lower the margin loss. Returns the improved mask (one per image of `idx`).
    pub fn update(&mut self, goal: &Goal, idx: &Tensor, logits: &Tensor) -> Tensor {
        let m = idx.size()[0];
        let marg = margin(&goal.select(idx), logits);
        let old = self.margin.index_select(0, idx);
        let improved = marg.lt_tensor(&old);
        let kept = logits.where_self(&improved.view([m, 1]), &self.logits.index_select(0, idx));
        self.logits = self.logits.index_copy(0, idx, &kept);
        self.margin = self
            .margin
            .index_copy(0, idx, &marg.where_self(&improved, &old));
        let one = Tensor::ones([m], (Kind::Int64, self.queries.device()));
        self.queries = self.queries.index_add(0, idx, &one);
        self.reached = goal.reached(&self.logits);
        self.steps += 1;
        improved
    }

    fn info(&self, goal: &Goal) -> StepInfo {
        StepInfo {
            step: self.steps,
            steps: self.iters,
            loss: self.margin.mean(Kind::Float).double_value(&[]),
            class_prob: goal
                .class_prob(&self.logits)
                .mean(Kind::Float)
                .double_value(&[]),
            reached: self.reached.sum(Kind::Int64).int64_value(&[]) as usize,
        }
    }

    /// Report progress at the start, every 10th iteration and the last one (a report costs
    /// three reductions over the batch, more than a tiny model's forward pass); `last`: the
    /// loop ended, so report its final state if it was not just reported.
    pub fn report(&self, goal: &Goal, on_step: &mut dyn FnMut(StepInfo), last: bool) {
        let due = self.steps.is_multiple_of(10) || self.steps == self.iters;
        if due != last {
            on_step(self.info(goal));
        }
    }

    /// The attack's output: `adv` (8-bit, within budget) and the state.
    pub fn output(self, adv: Tensor, goal: &Goal) -> Result<AttackOutput> {
        let cpu = tch::Device::Cpu;
        let success = Vec::<bool>::try_from(self.reached.to_device(cpu)).unwrap_or_default();
        let class_prob = Vec::<f64>::try_from(
            goal.class_prob(&self.logits)
                .to_kind(Kind::Double)
                .to_device(cpu),
        )
        .unwrap_or_default();
        Ok(AttackOutput {
            adv,
            success,
            class_prob,
            steps: self.steps,
            queries: self.queries.max().int64_value(&[]) as usize,
            image_queries: Vec::<i64>::try_from(self.queries.to_device(cpu))
                .ok()
                .map(|v| v.into_iter().map(|q| q as usize).collect()),
            broken_by: None,
        })
    }
}
