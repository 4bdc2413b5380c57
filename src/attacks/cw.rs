//! Carlini–Wagner L2 (Carlini & Wagner 2017): minimize ‖x − x0‖₂² + c·f(x) over a tanh-space
//! variable w, x = (tanh w + 1)/2 (which keeps x in [0,1]), with Adam; f is the margin loss
//! max(z_true − max_{j≠true} z_j, −κ) untargeted, max(max_{j≠target} z_j − z_target, −κ)
//! targeted (see [`super::margin`]). The constant c is found per image by a binary search:
//! ×10 while the attack fails, bisection once it has succeeded. The successful image with the
//! smallest L2 distance is kept.
//!
//! CW-L2 minimizes L2; results are clipped to the L∞ budget so they are comparable in the eps
//! sweep: the model sees, and success is judged on, the 8-bit image of x projected into the
//! budget ([`super::project_quantized`], with a straight-through estimator for the gradient),
//! and the L2 distance is measured on that image.
//!
//! Departures from the paper: no early abort inside a search step; the distance term's
//! gradient is computed analytically (the margin term's goes through `grad_eval`, so EOT
//! averaging applies to it).
use super::{
    grad_eval, margin, prob_and_score, project_quantized, straight_through, Attack, AttackOutput,
    Budget, Goal, StepInfo, Victim,
};
use crate::Result;
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
pub struct CarliniWagner {
    /// Binary search steps over the constant c.
    pub search_steps: usize,
    /// Adam steps per search step.
    pub steps: usize,
    /// Initial constant c.
    pub initial_const: f64,
    /// Confidence κ: the margin the goal must be met by.
    pub kappa: f64,
    /// Adam learning rate (on w, in tanh space).
    pub lr: f64,
}

impl Default for CarliniWagner {
    fn default() -> Self {
        CarliniWagner {
            search_steps: 5,
            steps: 100,
            initial_const: 0.1,
            kappa: 0.0,
            lr: 0.01,
        }
    }
}

/// Adam's state on the tanh-space variable `w` of one binary-search step.
struct Adam {
    lr: f64,
    m: Tensor,
    v: Tensor,
    t: i32,
}

impl Adam {
    fn new(like: &Tensor, lr: f64) -> Self {
        Adam {
            lr,
            m: like.zeros_like(),
            v: like.zeros_like(),
            t: 0,
        }
    }

    /// The parameter after one step against `grad` ([`crate::optim::adam_step`]).
    fn step(&mut self, param: &Tensor, grad: &Tensor) -> Tensor {
        self.t += 1;
        param - crate::optim::adam_step(&mut self.m, &mut self.v, grad, self.t, self.lr)
    }
}

impl Attack for CarliniWagner {
    fn name(&self) -> String {
        "cw".into()
    }

    fn run(
        &self,
        model: &dyn Victim,
        x0: &Tensor,
        goal: &Goal,
        budget: Budget,
        on_step: &mut dyn FnMut(StepInfo),
    ) -> Result<AttackOutput> {
        let x0 = x0.detach();
        let n = x0.size()[0];
        let dev = x0.device();
        let opts = (Kind::Float, dev);
        let view4 = |t: &Tensor| t.view([-1, 1, 1, 1]);
        let to_x = |w: &Tensor| (w.tanh() + 1.0) / 2.0;
        let w0 = (&x0 * 2.0 - 1.0).clamp(-1.0 + 1e-6, 1.0 - 1e-6).atanh();
        let mut c = Tensor::full([n], self.initial_const, opts);
        let mut lower = Tensor::zeros([n], opts);
        let mut upper = Tensor::full([n], 1e10, opts);
        // Best per image: successful beats unsuccessful; among successful the smallest L2,
        // among unsuccessful the highest goal score.
        let mut best_adv = x0.copy();
        let mut best_success = Tensor::zeros([n], (Kind::Bool, dev));
        let mut best_l2 = Tensor::full([n], f64::INFINITY, opts);
        let mut best_score = Tensor::full([n], f64::NEG_INFINITY, opts);
        let total = self.search_steps * self.steps;
        let mut queries = 0;
        let mut step = 0;
        for _ in 0..self.search_steps {
            let mut w = w0.shallow_clone();
            let mut adam = Adam::new(&w, self.lr);
            let mut succeeded = Tensor::zeros([n], (Kind::Bool, dev));
            let cv = c.shallow_clone();
            for _ in 0..self.steps {
                // The 8-bit image is projected once per step (L2 projection is a bisection).
                let x = to_x(&w);
                let xq = project_quantized(&x0, &x, budget);
                let to_input = |w: &Tensor| straight_through(&to_x(w), &xq);
                let f = |logits: &Tensor| margin(goal, logits).clamp_min(-self.kappa) * &cv;
                let eval = grad_eval(model, &w, &to_input, &f)?;
                queries += model.eot_samples();
                let l2 = (&xq - &x0)
                    .square()
                    .sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float)
                    .sqrt();
                let m = margin(goal, &eval.logits);
                let success = goal.reached(&eval.logits).logical_and(&m.le(-self.kappa));
                let (prob, score) = prob_and_score(goal, &eval.logits);
                let better = success.logical_and(&l2.lt_tensor(&best_l2)).logical_or(
                    &success
                        .logical_or(&best_success)
                        .logical_not()
                        .logical_and(&score.gt_tensor(&best_score)),
                );
                best_adv = xq.where_self(&view4(&better), &best_adv);
                best_l2 = l2.where_self(&success.logical_and(&better), &best_l2);
                best_score = score.where_self(&better, &best_score);
                best_success = best_success.logical_or(&success);
                succeeded = succeeded.logical_or(&success);
                // d‖x − x0‖²/dw = 2(x − x0)·(1 − tanh² w)/2.
                let grad_dist = (&x - &x0) * (1.0 - w.tanh().square());
                let loss = (&x - &x0).square().sum_dim_intlist(
                    [1i64, 2, 3].as_slice(),
                    false,
                    Kind::Float,
                ) + &eval.loss;
                on_step(StepInfo {
                    step,
                    steps: total,
                    loss: loss.mean(Kind::Float).double_value(&[]),
                    class_prob: prob.mean(Kind::Float).double_value(&[]),
                    reached: best_success.sum(Kind::Int64).int64_value(&[]) as usize,
                });
                step += 1;
                w = adam.step(&w, &(eval.grad() + grad_dist));
            }
            // Binary search on c: succeeded → smaller c (bisect); failed → larger c
            // (×10 until an upper bound is known, then bisect).
            upper = c.where_self(&succeeded, &upper).minimum(&upper);
            lower = lower.where_self(&succeeded, &c.maximum(&lower));
            let bisect = (&lower + &upper) / 2.0;
            c = bisect.where_self(&upper.lt(1e9), &(&c * 10.0));
        }
        // The returned images, judged once more as returned.
        let logits = tch::no_grad(|| model.logits(&best_adv))?;
        queries += 1;
        let success = goal.reached(&logits);
        let prob = goal.class_prob(&logits);
        Ok(AttackOutput {
            success: Vec::<bool>::try_from(success.to_device(tch::Device::Cpu)).unwrap_or_default(),
            class_prob: Vec::<f64>::try_from(
                prob.to_kind(Kind::Double).to_device(tch::Device::Cpu),
            )
            .unwrap_or_default(),
            adv: best_adv,
            steps: step,
            queries,
            image_queries: None,
            broken_by: None,
        })
    }
}
