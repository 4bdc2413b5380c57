//! Adversarial attacks behind one trait, over a shared base: the goal (targeted or not), the
//! L∞ or L2 budget in pixel space and the 8-bit quantization every attack result goes through.
//!
//! Conventions for every attack:
//! - inputs and outputs are pixel-space batches (N,3,H,W) in [0,1] on the model's device;
//! - the result is an image on the 8-bit grid (what a saved PNG holds), inside the valid
//!   range and within `eps` of the original in the budget's norm — guaranteed by [`project_quantized`];
//! - success is judged on that quantized image.
use crate::model::Classifier;
use crate::Result;
use tch::{Kind, Reduction, Tensor};

pub mod apgd;
pub mod cw;
pub mod fgsm;
pub mod mifgsm;
pub mod pgd;
pub mod record;
pub mod registry;
pub mod sgd;
pub mod square;
pub use apgd::Apgd;
pub use cw::CarliniWagner;
pub use fgsm::Fgsm;
pub use mifgsm::MiFgsm;
pub use pgd::Pgd;
pub use sgd::SgdAttack;
pub use square::Square;

/// What the attacker wants, per image of the batch.
pub enum Goal {
    /// Make the model output these classes (int64, shape (N,)).
    Targeted(Tensor),
    /// Make the model output anything but these classes (int64, shape (N,)).
    Untargeted(Tensor),
}

impl Goal {
    pub fn classes(&self) -> &Tensor {
        match self {
            Goal::Targeted(t) | Goal::Untargeted(t) => t,
        }
    }

    pub fn is_targeted(&self) -> bool {
        matches!(self, Goal::Targeted(_))
    }

    /// Per-image loss to *minimize* (N,): cross-entropy toward the target, or minus the
    /// cross-entropy of the true class.
    pub fn loss(&self, logits: &Tensor) -> Tensor {
        let ce =
            logits.cross_entropy_loss::<Tensor>(self.classes(), None, Reduction::None, -100, 0.0);
        match self {
            Goal::Targeted(_) => ce,
            Goal::Untargeted(_) => -ce,
        }
    }

    /// The goal of the images at `rows` (int64 indices) of the batch.
    pub fn select(&self, rows: &Tensor) -> Goal {
        match self {
            Goal::Targeted(t) => Goal::Targeted(t.index_select(0, rows)),
            Goal::Untargeted(t) => Goal::Untargeted(t.index_select(0, rows)),
        }
    }

    /// Whether each image meets the goal (bool, (N,)).
    pub fn reached(&self, logits: &Tensor) -> Tensor {
        let pred = logits.argmax(-1, false);
        match self {
            Goal::Targeted(t) => pred.eq_tensor(t),
            Goal::Untargeted(t) => pred.ne_tensor(t),
        }
    }

    /// Probability of the goal class (target, or the true class for untargeted), (N,).
    pub fn class_prob(&self, logits: &Tensor) -> Tensor {
        logits
            .softmax(-1, Kind::Float)
            .gather(1, &self.classes().unsqueeze(1), false)
            .squeeze_dim(1)
    }
}

/// The norm a budget bounds the perturbation in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// Largest change of any pixel channel (the default).
    #[default]
    Linf,
    /// Euclidean length of an image's whole change (all 3·H·W values), pixel space 0..1.
    L2,
}

impl Norm {
    /// `linf` (also `inf`) or `l2`.
    pub fn parse(s: &str) -> Result<Norm> {
        match s.trim().to_ascii_lowercase().as_str() {
            "linf" | "inf" | "l-inf" => Ok(Norm::Linf),
            "l2" => Ok(Norm::L2),
            _ => Err(crate::Error::field(
                "norm",
                format!("'{s}': expected linf or l2"),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Norm::Linf => "linf",
            Norm::L2 => "l2",
        }
    }

    /// `L∞` or `L2`, for people.
    pub fn symbol(self) -> &'static str {
        match self {
            Norm::Linf => "L∞",
            Norm::L2 => "L2",
        }
    }
}

/// A budget in pixel space ([0,1] scale): the perturbation's L∞ or L2 norm is at most `eps`.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub eps: f64,
    pub norm: Norm,
}

impl Budget {
    pub fn linf(eps: f64) -> Budget {
        Budget {
            eps,
            norm: Norm::Linf,
        }
    }

    pub fn l2(eps: f64) -> Budget {
        Budget {
            eps,
            norm: Norm::L2,
        }
    }

    pub fn new(eps: f64, norm: Norm) -> Budget {
        Budget { eps, norm }
    }

    /// L∞: the largest change, in 8-bit levels, that stays within `eps`. L2: the radius in
    /// 8-bit levels (`eps`·255).
    pub fn levels(&self) -> f64 {
        match self.norm {
            Norm::Linf => (self.eps * 255.0 + 1e-6).floor(),
            Norm::L2 => self.eps * 255.0,
        }
    }

    /// No 8-bit image other than the original fits in the budget.
    pub fn is_empty(&self) -> bool {
        self.levels() < 1.0 - 1e-9
    }

    /// Whether exact 8-bit distances (see [`distances`]) are within the budget, with
    /// `slack_levels` 8-bit steps of tolerance.
    pub fn admits(&self, linf: f64, l2: f64, slack_levels: f64) -> bool {
        let d = match self.norm {
            Norm::Linf => linf,
            Norm::L2 => l2,
        };
        d <= self.eps + slack_levels / 255.0 + 1e-9
    }

    /// Where an iterative attack starts: `x0` itself, or (`random`) a uniform random point of
    /// the L∞ box or a random point of the L2 ball (Gaussian direction, radius uniform in
    /// [0, eps], as torchattacks' PGDL2), inside [0,1].
    pub fn start(&self, x0: &Tensor, random: bool) -> Tensor {
        if !random {
            return x0.shallow_clone();
        }
        let d = match self.norm {
            Norm::Linf => (x0.rand_like() * 2.0 - 1.0) * self.eps,
            Norm::L2 => {
                let n = x0.size()[0];
                let g = x0.randn_like();
                let r = Tensor::rand([n], (Kind::Float, x0.device())).view([-1, 1, 1, 1]);
                &g / per_image_l2(&g).clamp_min(1e-12) * r * self.eps
            }
        };
        self.clip(x0, &(x0 + d))
    }

    /// The steepest-ascent direction of unit norm for `g`: its sign (L∞) or `g/‖g‖₂` per image
    /// (L2). A step `x + α·dir` moves α in the budget's norm.
    pub fn direction(&self, g: &Tensor) -> Tensor {
        match self.norm {
            Norm::Linf => g.sign(),
            Norm::L2 => g / per_image_l2(g).clamp_min(1e-12),
        }
    }

    /// Projects a continuous iterate onto the ball of radius `eps` around `x0` and the valid
    /// range [0,1] (L2: scale the change into the ball, then clamp, which only shortens it).
    pub fn clip(&self, x0: &Tensor, x: &Tensor) -> Tensor {
        match self.norm {
            Norm::Linf => x
                .max_other(&(x0 - self.eps))
                .min_other(&(x0 + self.eps))
                .clamp(0.0, 1.0),
            Norm::L2 => {
                let d = x - x0;
                let scale = (self.eps / per_image_l2(&d).clamp_min(1e-12)).clamp_max(1.0);
                (x0 + d * scale).clamp(0.0, 1.0)
            }
        }
    }
}

/// Per-image L2 norm of a batch (N,…), shaped (N,1,1,1) for broadcasting.
fn per_image_l2(t: &Tensor) -> Tensor {
    t.flatten(1, -1)
        .square()
        .sum_dim_intlist(&[1i64][..], false, Kind::Float)
        .sqrt()
        .view([-1, 1, 1, 1])
}

/// The 8-bit image for `x` that is within `budget` of `x0` (itself on the 8-bit grid) and
/// inside [0,1]; the result is within the budget exactly, in integer levels.
///
/// L∞: round to the grid, then clamp to the levels the budget allows.
///
/// L2: project the change d onto the ball, then take the 8-bit change round(s·d) along its
/// direction with the largest s whose L2 length is at most max(‖d‖, ‖round(d)‖) and at most the
/// radius (bisection: the rounded length grows monotonically with s). Plain rounding would
/// zero an L2 change spread thinly over many values (an L2 radius of 0.5 over a 224×224 image
/// is a third of a level per value), or push one that is not outside the ball: scaling keeps
/// the change's direction and its length up to one 8-bit step.
pub fn project_quantized(x0: &Tensor, x: &Tensor, budget: Budget) -> Tensor {
    let k0 = (x0 * 255.0).round();
    match budget.norm {
        Norm::Linf => {
            let m = budget.levels();
            let lo = (&k0 - m).clamp_min(0.0);
            let hi = (&k0 + m).clamp_max(255.0);
            let k = (x.clamp(0.0, 1.0) * 255.0).round();
            k.max_other(&lo).min_other(&hi) / 255.0
        }
        Norm::L2 => {
            let r = budget.levels();
            let view4 = |t: &Tensor| t.view([-1, 1, 1, 1]);
            let d = budget.clip(&(&k0 / 255.0), x) * 255.0 - &k0;
            // Changes are whole levels (|v| ≤ 255), so their squares are exact in f32; the sums
            // of squares need more than f32's 24 bits and are accumulated in f64.
            let norm = |t: &Tensor| {
                t.square()
                    .flatten(1, -1)
                    .sum_dim_intlist(&[1i64][..], false, Kind::Double)
                    .sqrt()
            };
            // round(s·d), kept inside [0, 255] around k0.
            let (floor, ceil) = (-&k0, 255.0 - &k0);
            let change = |s: &Tensor| {
                (&d * view4(s))
                    .round_()
                    .clamp_tensor_(Some(&floor), Some(&ceil))
            };
            let n = d.size()[0];
            let opts = (Kind::Float, d.device());
            let len = norm(&d);
            let one = Tensor::ones([n], opts);
            let plain = norm(&change(&one));
            let bound = len.max_other(&plain).clamp_max(r) + 1e-6;
            // ‖round(s·d)‖ ≥ s‖d‖ − ½√values: beyond `hi` the length exceeds any bound ≤ r.
            let values = d.numel() as f64 / n.max(1) as f64;
            let mut hi =
                ((r + 0.5 * values.sqrt()) / len.clamp_min(1e-6) + 1.0).to_kind(Kind::Float);
            // The length only grows with s: when the plain rounding fits, s ≥ 1.
            let mut lo = one.where_self(&plain.le_tensor(&bound), &one.zeros_like());
            hi = hi.max_other(&lo);
            // 16 halvings of [lo, hi] (at most a few units wide): s within 1e-4 of the largest
            // that fits, a change shorter than that by less than 0.05 level at radius 127.
            for _ in 0..16 {
                let mid = (&lo + &hi) / 2.0;
                let fits = norm(&change(&mid)).le_tensor(&bound);
                lo = mid.where_self(&fits, &lo);
                hi = hi.where_self(&fits, &mid);
            }
            (&k0 + change(&lo)) / 255.0
        }
    }
}

/// What one step of an attack reports to the progress display.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    pub step: usize,
    pub steps: usize,
    /// Mean goal loss over the batch.
    pub loss: f64,
    /// Mean probability of the goal class (target, or true class when untargeted).
    pub class_prob: f64,
    /// Images that meet the goal so far.
    pub reached: usize,
}

/// The result of an attack on a batch.
pub struct AttackOutput {
    /// Adversarial images (N,3,H,W) on the 8-bit grid, within budget.
    pub adv: Tensor,
    /// Whether each quantized image meets the goal.
    pub success: Vec<bool>,
    /// Goal-class probability of each returned image.
    pub class_prob: Vec<f64>,
    /// Optimization steps taken (the largest over the batch).
    pub steps: usize,
    /// Model evaluations (forward passes) per image: the largest over the batch.
    pub queries: usize,
    /// Per-image query counts, for attacks whose images stop at different times (Square).
    pub image_queries: Option<Vec<usize>>,
}

/// What an attack attacks: anything that maps a pixel-space batch to logits, differentiably
/// (a bare [`Classifier`], or a model behind a defense with BPDA/EOT, see
/// `defenses::Defended`).
pub trait Victim {
    /// Logits (N,C) for pixel-space input (N,3,H,W) in [0,1]; differentiable w.r.t. `x`.
    fn logits(&self, x: &Tensor) -> Result<Tensor>;
    /// Random draws to average gradients over (expectation over transformation); 1 when
    /// the victim is deterministic.
    fn eot_samples(&self) -> usize {
        1
    }
}

impl Victim for Classifier {
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Classifier::logits(self, x)
    }
}

/// One gradient evaluation, averaged over the victim's EOT draws.
pub struct GradEval {
    /// Logits of the last draw, detached (N,C).
    pub logits: Tensor,
    /// Per-image loss averaged over draws, detached (N,).
    pub loss: Tensor,
    /// The gradient, once computed.
    grad: std::cell::OnceCell<Tensor>,
    /// With a single draw the backward pass is deferred until [`GradEval::grad`] asks for it,
    /// so an attack that stops after looking at the logits never pays for it:
    /// (summed loss with its graph, the variable).
    pending: std::cell::RefCell<Option<(Tensor, Tensor)>>,
}

impl GradEval {
    /// d(Σ loss)/d`var`, averaged over draws (computed on first use).
    pub fn grad(&self) -> &Tensor {
        self.grad.get_or_init(|| {
            let (loss, var) = self.pending.borrow_mut().take().expect("pending backward");
            Tensor::run_backward(&[loss], &[&var], false, false)
                .pop()
                .expect("one gradient")
        })
    }
}

/// Gradient of the summed per-image `loss(logits(input(var)))` with respect to `var`,
/// averaged over `victim.eot_samples()` draws. `var` must not require grad; a copy that
/// does is made here. With one draw the backward pass runs only when the gradient is used.
pub fn grad_eval(
    victim: &dyn Victim,
    var: &Tensor,
    input: &dyn Fn(&Tensor) -> Tensor,
    loss: &dyn Fn(&Tensor) -> Tensor,
) -> Result<GradEval> {
    let draws = victim.eot_samples().max(1);
    if draws == 1 {
        let v = var.detach().set_requires_grad(true);
        let logits = victim.logits(&input(&v))?;
        let l = loss(&logits);
        return Ok(GradEval {
            logits: logits.detach(),
            loss: l.detach(),
            grad: std::cell::OnceCell::new(),
            pending: std::cell::RefCell::new(Some((l.sum(Kind::Float), v))),
        });
    }
    let mut grad_sum: Option<Tensor> = None;
    let mut loss_sum: Option<Tensor> = None;
    let mut last_logits = None;
    for _ in 0..draws {
        let v = var.detach().set_requires_grad(true);
        let logits = victim.logits(&input(&v))?;
        let l = loss(&logits);
        let g = Tensor::run_backward(&[l.sum(Kind::Float)], &[&v], false, false)
            .pop()
            .expect("one gradient");
        grad_sum = Some(match grad_sum {
            None => g,
            Some(s) => s + g,
        });
        let l = l.detach();
        loss_sum = Some(match loss_sum {
            None => l,
            Some(s) => s + l,
        });
        last_logits = Some(logits.detach());
    }
    let grad = std::cell::OnceCell::new();
    let _ = grad.set(grad_sum.expect("at least one draw") / draws as f64);
    Ok(GradEval {
        logits: last_logits.expect("at least one draw"),
        loss: loss_sum.expect("at least one draw") / draws as f64,
        grad,
        pending: std::cell::RefCell::new(None),
    })
}

/// One trait for all attacks.
pub trait Attack {
    /// Short name, e.g. `sgd`.
    fn name(&self) -> String;
    /// Whether the attack can work under a budget in `norm` (all but Square do both).
    fn supports(&self, norm: Norm) -> bool {
        let _ = norm;
        true
    }
    /// Attack the pixel-space batch `x0` (on the 8-bit grid) within `budget`.
    fn run(
        &self,
        model: &dyn Victim,
        x0: &Tensor,
        goal: &Goal,
        budget: Budget,
        on_step: &mut dyn FnMut(StepInfo),
    ) -> Result<AttackOutput>;
}

/// Keeps, per image, the best quantized candidate seen: a successful one beats an
/// unsuccessful one; among equals, the higher goal score wins.
pub(crate) struct BestSoFar {
    pub adv: Tensor,
    pub success: Tensor,
    pub score: Tensor,
}

impl BestSoFar {
    pub fn new(x0: &Tensor) -> Self {
        let n = x0.size()[0];
        BestSoFar {
            adv: x0.detach().copy(),
            success: Tensor::zeros([n], (Kind::Bool, x0.device())),
            score: Tensor::full([n], f64::NEG_INFINITY, (Kind::Float, x0.device())),
        }
    }

    /// `score`: higher is better (target prob, or 1 − true-class prob).
    pub fn update(&mut self, cand: &Tensor, success: &Tensor, score: &Tensor) {
        let better = success.logical_and(&self.success.logical_not()).logical_or(
            &success
                .eq_tensor(&self.success)
                .logical_and(&score.gt_tensor(&self.score)),
        );
        let mask4 = better.view([-1, 1, 1, 1]);
        self.adv = cand.detach().where_self(&mask4, &self.adv);
        self.success = success.where_self(&better, &self.success);
        self.score = score.detach().where_self(&better, &self.score);
    }

    /// [`BestSoFar::update`] for the images at `rows` (int64 indices) only; `cand`, `success`
    /// and `score` hold those images, in that order.
    pub fn update_rows(&mut self, rows: &Tensor, cand: &Tensor, success: &Tensor, score: &Tensor) {
        let mut sub = BestSoFar {
            adv: self.adv.index_select(0, rows),
            success: self.success.index_select(0, rows),
            score: self.score.index_select(0, rows),
        };
        sub.update(cand, success, score);
        self.adv = self.adv.index_copy(0, rows, &sub.adv);
        self.success = self.success.index_copy(0, rows, &sub.success);
        self.score = self.score.index_copy(0, rows, &sub.score);
    }

    pub fn into_output(self, goal: &Goal, steps: usize, queries: usize) -> AttackOutput {
        let success =
            Vec::<bool>::try_from(self.success.to_device(tch::Device::Cpu)).unwrap_or_default();
        let score =
            Vec::<f64>::try_from(self.score.to_kind(Kind::Double).to_device(tch::Device::Cpu))
                .unwrap_or_default();
        let class_prob = match goal {
            Goal::Targeted(_) => score,
            Goal::Untargeted(_) => score.into_iter().map(|s| 1.0 - s).collect(),
        };
        AttackOutput {
            adv: self.adv,
            success,
            class_prob,
            steps,
            queries,
            image_queries: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l2_projection_is_exact_in_levels_and_keeps_what_fits() {
        tch::manual_seed(3);
        let x0 =
            (Tensor::rand([3, 3, 8, 8], (Kind::Float, tch::Device::Cpu)) * 255.0).round() / 255.0;
        // Changes of many sizes: most values move by less than a level, some by many.
        let noise = Tensor::randn([3, 3, 8, 8], (Kind::Float, tch::Device::Cpu))
            * Tensor::from_slice(&[0.5f32, 2.0, 20.0]).view([3, 1, 1, 1])
            / 255.0;
        let x = &x0 + noise;
        for eps_levels in [1.0, 3.0, 10.5, 40.0] {
            let b = Budget::l2(eps_levels / 255.0);
            let p = project_quantized(&x0, &x, b);
            let on_grid = (&p * 255.0 - (&p * 255.0).round()).abs().max();
            assert!(on_grid.double_value(&[]) < 1e-4);
            assert!(p.min().double_value(&[]) >= 0.0 && p.max().double_value(&[]) <= 1.0);
            let (linf, l2) = distances(&p, &x0);
            for (i, d) in l2.iter().enumerate() {
                assert!(
                    *d * 255.0 <= eps_levels + 1e-9,
                    "image {i}: L2 {} levels > {eps_levels}",
                    d * 255.0
                );
                assert!(b.admits(linf[i], *d, 0.0));
            }
            // Image 2 (changes of ~20 levels) fills the ball up to rounding: at least
            // the radius less one level.
            assert!(
                l2[2] * 255.0 >= eps_levels - 1.0,
                "{} {eps_levels}",
                l2[2] * 255.0
            );
        }
        // A change that fits after rounding is the plain rounding of it.
        let small = &x0 + Tensor::full([3, 3, 8, 8], 0.7 / 255.0, (Kind::Float, tch::Device::Cpu));
        let p = project_quantized(&x0, &small, Budget::l2(1.0));
        let expect = ((&small.clamp(0.0, 1.0) * 255.0).round()) / 255.0;
        assert!((p - expect).abs().max().double_value(&[]) < 1e-6);
        // An L2 ball smaller than one level admits only the original.
        assert!(Budget::l2(0.5 / 255.0).is_empty() && !Budget::l2(1.0 / 255.0).is_empty());
        assert_eq!(Norm::parse("L2").unwrap(), Norm::L2);
        assert_eq!(Norm::parse("linf").unwrap(), Norm::Linf);
        assert!(Norm::parse("l1")
            .unwrap_err()
            .to_string()
            .starts_with("--norm"));
    }

    #[test]
    fn projection_stays_on_grid_in_budget_and_range() {
        let x0 = Tensor::from_slice(&[0.0f32, 10.0 / 255.0, 128.0 / 255.0, 1.0]);
        let x = Tensor::from_slice(&[-0.5f32, 0.2, 0.4, 0.9]);
        let b = Budget::linf(8.0 / 255.0);
        let p = project_quantized(&x0, &x, b);
        let levels = Vec::<f32>::try_from(&p * 255.0).unwrap();
        assert_eq!(levels, vec![0.0, 18.0, 120.0, 247.0]);
        // eps between two levels rounds down: 8.5/255 allows 8 levels.
        assert_eq!(Budget::linf(8.5 / 255.0).levels(), 8.0);
        assert_eq!(Budget::linf(8.0 / 255.0).levels(), 8.0);
        assert_eq!(Budget::linf(0.0314).levels(), 8.0);
    }
}

/// Per-image L∞ and L2 distances (pixel space, 0..1 scale) between two batches on the 8-bit
/// grid, computed in integer levels so they are exact and identical however the work was
/// split, resumed or reloaded.
pub fn distances(a: &Tensor, b: &Tensor) -> (Vec<f64>, Vec<f64>) {
    let levels = |t: &Tensor| (t * 255.0).round().to_kind(Kind::Int64);
    let d = (levels(a) - levels(b)).flatten(1, -1);
    let cpu = |t: Tensor| Vec::<i64>::try_from(t.to_device(tch::Device::Cpu)).unwrap_or_default();
    let linf = cpu(d.abs().amax([1], false))
        .into_iter()
        .map(|v| v as f64 / 255.0)
        .collect();
    let l2 = cpu(d.square().sum_dim_intlist(&[1i64][..], false, Kind::Int64))
        .into_iter()
        .map(|v| (v as f64).sqrt() / 255.0)
        .collect();
    (linf, l2)
}

/// The check every reported success goes through: the image *file* as saved, loaded again
/// and preprocessed, must meet the goal and be within the budget of the original.
#[derive(Debug)]
pub struct Verified {
    /// Goal met and within the budget (one 8-bit step of slack).
    pub success: bool,
    pub goal_reached: bool,
    /// Goal-class probability of the reloaded image.
    pub class_prob: f64,
    /// Softmax of the reloaded image (1,C).
    pub probs: Tensor,
    /// The reloaded image in pixel space (1,3,H,W).
    pub pixels: Tensor,
    /// Distances to the original in pixel space (0..1 scale).
    pub linf: f64,
    pub l2: f64,
}

/// Load `path`, preprocess it as the model does, classify, and measure it against `x0`.
pub fn verify_file(
    model: &Classifier,
    path: &std::path::Path,
    x0: &Tensor,
    goal: &Goal,
    budget: Budget,
) -> Result<Verified> {
    let img = crate::imageio::load_rgb(path)?;
    let x = model.pre.pixels(&img, model.device).unsqueeze(0);
    if x.size() != x0.size() {
        return Err(crate::Error::bad_file(
            path,
            "reloaded image has another size than the original",
        ));
    }
    let logits = tch::no_grad(|| model.logits(&x))?;
    let goal_reached = goal.reached(&logits).int64_value(&[0]) != 0;
    let class_prob = goal.class_prob(&logits).double_value(&[0]);
    let (linf, l2) = distances(&x, x0);
    let (linf, l2) = (linf[0], l2[0]);
    let within = budget.admits(linf, l2, 1.0);
    Ok(Verified {
        success: goal_reached && within,
        goal_reached,
        class_prob,
        probs: logits.softmax(-1, Kind::Float),
        pixels: x,
        linf,
        l2,
    })
}

/// `xq`, the 8-bit image of `x` (from [`project_quantized`], computed once by the caller), in
/// the forward pass, with the gradient passed straight through the rounding and clamping to
/// `x` (a straight-through estimator): gradient attacks optimize a continuous iterate while the
/// model sees the image as saved.
pub fn straight_through(x: &Tensor, xq: &Tensor) -> Tensor {
    x + (xq - x).detach()
}

/// The goal's logit margin per image (N,), positive while the goal is not reached:
/// untargeted z_true − max_{j≠true} z_j, targeted max_{j≠target} z_j − z_target
/// (Carlini–Wagner's f before the −κ clamp; Square Attack's margin loss). Differentiable.
pub fn margin(goal: &Goal, logits: &Tensor) -> Tensor {
    let cls = goal.classes().unsqueeze(1);
    let z_cls = logits.gather(1, &cls, false).squeeze_dim(1);
    let z_other = logits
        .scatter_value(1, &cls, f64::NEG_INFINITY)
        .amax([1], false);
    match goal {
        Goal::Targeted(_) => z_other - z_cls,
        Goal::Untargeted(_) => z_cls - z_other,
    }
}

/// The goal-class probability (N,) and the score [`BestSoFar`] ranks by (higher is better:
/// the target's probability, or one minus the true class's).
pub(crate) fn prob_and_score(goal: &Goal, logits: &Tensor) -> (Tensor, Tensor) {
    let prob = goal.class_prob(logits);
    let score = if goal.is_targeted() {
        prob.shallow_clone()
    } else {
        1.0 - &prob
    };
    (prob, score)
}

/// One evaluation of a gradient attack at its continuous iterate `x` (within budget): the
/// goal loss and its gradient w.r.t. `x` at the 8-bit image of `x` (through [`straight_through`],
/// EOT-averaged by [`grad_eval`]). The quantized image is recorded in `best` and the step is
/// reported to `on_step`. Returns the evaluation and the number of images whose best image
/// meets the goal so far.
/// On a subset of the batch, `x0`, `x` and `goal` hold the images at `rows` of the batch `best`
/// tracks (`rows` is `None` for the whole batch).
#[allow(clippy::too_many_arguments)]
pub(crate) fn quantized_grad_step(
    victim: &dyn Victim,
    x0: &Tensor,
    x: &Tensor,
    goal: &Goal,
    budget: Budget,
    best: &mut BestSoFar,
    rows: Option<&Tensor>,
    (step, steps): (usize, usize),
    on_step: &mut dyn FnMut(StepInfo),
) -> Result<(GradEval, usize)> {
    let xq = project_quantized(x0, x, budget);
    let to_input = |x: &Tensor| straight_through(x, &xq);
    let eval = grad_eval(victim, x, &to_input, &|logits| goal.loss(logits))?;
    let reached = goal.reached(&eval.logits);
    let (prob, score) = prob_and_score(goal, &eval.logits);
    match rows {
        None => best.update(&xq, &reached, &score),
        Some(r) => best.update_rows(r, &xq, &reached, &score),
    }
    let n_reached = best.success.sum(Kind::Int64).int64_value(&[]) as usize;
    on_step(StepInfo {
        step,
        steps,
        loss: eval.loss.mean(Kind::Float).double_value(&[]),
        class_prob: prob.mean(Kind::Float).double_value(&[]),
        reached: n_reached,
    });
    Ok((eval, n_reached))
}

/// The loop of the iterative gradient attacks (PGD/BIM, MI-FGSM, the SGD attack): evaluate
/// the goal loss and its gradient at the 8-bit image of the iterate, keep the best image per
/// image, then let `update` move the iterate — `steps` times, `steps + 1` evaluations.
///
/// With `early_stop`, an image leaves the batch as soon as its 8-bit image meets the goal:
/// later evaluations run on the images still being attacked only (per-image early stopping;
/// an image's trajectory does not depend on the others', so the set of successes is the one a
/// full-batch run finds, at a fraction of the cost when most images fall early). Queries are
/// then counted per image (`AttackOutput::image_queries`).
///
/// `update(rows, x0, x, grad)` gets the batch indices of the active images, their originals,
/// iterates and loss gradients, and returns their next iterates (per-image state such as
/// momentum is indexed with `rows`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn iterate(
    victim: &dyn Victim,
    x0: &Tensor,
    start: Tensor,
    goal: &Goal,
    budget: Budget,
    steps: usize,
    early_stop: bool,
    on_step: &mut dyn FnMut(StepInfo),
    update: &mut dyn FnMut(&Tensor, &Tensor, &Tensor, &Tensor) -> Tensor,
) -> Result<AttackOutput> {
    let n = x0.size()[0];
    let dev = x0.device();
    let draws = victim.eot_samples() as i64;
    let mut best = BestSoFar::new(x0);
    let mut x = start;
    let mut rows = Tensor::arange(n, (Kind::Int64, dev));
    let mut per_image = Tensor::zeros([n], (Kind::Int64, dev));
    let mut evals = 0;
    let mut steps_taken = 0;
    for step in 0..=steps {
        let all = rows.size()[0] == n;
        let (x0a, xa, goal_a) = if all {
            (x0.shallow_clone(), x.shallow_clone(), goal.select(&rows))
        } else {
            (
                x0.index_select(0, &rows),
                x.index_select(0, &rows),
                goal.select(&rows),
            )
        };
        let (eval, reached) = quantized_grad_step(
            victim,
            &x0a,
            &xa,
            &goal_a,
            budget,
            &mut best,
            (!all).then_some(&rows),
            (step, steps),
            on_step,
        )?;
        evals += 1;
        per_image = per_image.index_add(0, &rows, &rows.ones_like().multiply_scalar(draws));
        if step == steps || (early_stop && reached == n as usize) {
            break;
        }
        let next = update(&rows, &x0a, &xa, eval.grad());
        x = if all {
            next
        } else {
            x.index_copy(0, &rows, &next)
        };
        steps_taken = step + 1;
        if early_stop {
            let open = best.success.index_select(0, &rows).logical_not();
            rows = rows.masked_select(&open);
        }
    }
    let mut out = best.into_output(goal, steps_taken, evals * draws as usize);
    if early_stop {
        let q = Vec::<i64>::try_from(per_image.to_device(tch::Device::Cpu)).unwrap_or_default();
        out.queries = q.iter().copied().max().unwrap_or(0) as usize;
        out.image_queries = Some(q.into_iter().map(|v| v as usize).collect());
    }
    Ok(out)
}
