//! Square Attack (Andriushchenko et al. 2020) in L∞ here and in L2 in [`super::square_l2`], a
//! score-based black-box attack: it only
//! reads logits (no gradients, everything runs under `tch::no_grad`). Following the reference
//! implementation (max-andr/square-attack, `attack.py`, `square_attack_linf`):
//!
//! - start from vertical stripes: every column of every channel moved by ±eps at random;
//! - each iteration, per image still not meeting the goal: pick a random square window of side
//!   s = round(√(p·H·W)) (clamped to [1, min(H,W) − 1]) and set its perturbation to ±eps per
//!   channel (redrawing the signs when that would leave the window unchanged); keep the
//!   candidate when it lowers the margin loss (see [`super::margin`]);
//! - p follows the paper's piecewise-constant schedule, p_init halved at 0.1%, 0.5%, 2%, 5%,
//!   10%, 20%, 40%, 60% and 80% of the query budget.
//!
//! A query is one forward pass of one image: the starting point costs one, every iteration one
//! per image still being attacked (images that meet the goal are no longer queried), so no
//! image uses more than `max_queries`. `AttackOutput::queries` reports the largest count over
//! the batch. The steps are ±(levels/255) with levels the 8-bit levels the budget allows, so
//! every candidate is already an 8-bit image within budget: the images queried are exactly the
//! images returned. A random victim (a defense) is queried once per query, without EOT
//! averaging. Targeted attacks use the targeted margin (the reference uses cross-entropy).
use super::square_search::Search;
use super::Victim;
use super::{project_quantized, Attack, AttackOutput, Budget, Goal, Norm, StepInfo};
use crate::Result;
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
pub struct Square {
    /// Forward passes allowed per image (the paper's ImageNet runs use 10,000; 5,000 is a
    /// common benchmark setting).
    pub max_queries: usize,
    /// Initial fraction of the pixels in the square (0.05 for L∞ in the paper; 0.8 in
    /// AutoAttack).
    pub p_init: f64,
    /// Stretch the schedule of p over the query budget as if it were 10,000 queries (the
    /// reference's default); AutoAttack turns this off, running the first `max_queries`
    /// iterations of the 10,000-query schedule.
    pub rescale_schedule: bool,
}

impl Default for Square {
    fn default() -> Self {
        Square {
            max_queries: 1000,
            p_init: 0.05,
            rescale_schedule: true,
        }
    }
}

/// The reference's schedule for the fraction p of pixels in the square at iteration `it`,
/// rescaled from `Some(n_iters)` iterations to 10,000 (as is without rescaling).
pub fn p_selection(p_init: f64, it: usize, rescale: Option<usize>) -> f64 {
    let it = match rescale {
        Some(n_iters) => (it as f64 / n_iters.max(1) as f64 * 10000.0) as usize,
        None => it,
    };
    let div = match it {
        0..=10 => 1.0,
        11..=50 => 2.0,
        51..=200 => 4.0,
        201..=500 => 8.0,
        501..=1000 => 16.0,
        1001..=2000 => 32.0,
        2001..=4000 => 64.0,
        4001..=6000 => 128.0,
        6001..=8000 => 256.0,
        _ => 512.0,
    };
    p_init / div
}

/// Random signs ±1 (float) of the given shape, from libtorch's RNG.
pub(crate) fn signs(shape: &[i64], device: tch::Device) -> Tensor {
    Tensor::randint_low(0, 2, shape, (Kind::Int64, device)).to_kind(Kind::Float) * 2.0 - 1.0
}

impl Attack for Square {
    fn name(&self) -> String {
        "square".into()
    }

    fn supports(&self, norm: Norm) -> bool {
        matches!(norm, Norm::Linf | Norm::L2)
    }

    fn run(
        &self,
        model: &dyn Victim,
        x0: &Tensor,
        goal: &Goal,
        budget: Budget,
        on_step: &mut dyn FnMut(StepInfo),
    ) -> Result<AttackOutput> {
        tch::no_grad(|| match budget.norm {
            Norm::L2 => super::square_l2::attack(self, model, x0, goal, budget, on_step),
            Norm::Linf => self.attack(model, x0, goal, budget, on_step),
        })
    }
}

impl Square {
    fn attack(
        &self,
        model: &dyn Victim,
        x0: &Tensor,
        goal: &Goal,
        budget: Budget,
        on_step: &mut dyn FnMut(StepInfo),
    ) -> Result<AttackOutput> {
        let x0 = x0.detach();
        let dev = x0.device();
        let (n, c, h, w) = x0.size4()?;
        let eps = budget.levels() / 255.0;
        let iters = self.max_queries.max(1) - 1;

        // Vertical stripes.
        let mut x_best = (&x0 + signs(&[n, c, 1, w], dev) * eps).clamp(0.0, 1.0);
        let mut search = Search::start(goal, model.logits(&x_best)?, iters);
        search.report(goal, on_step, false);

        let rows = Tensor::arange(h, (Kind::Int64, dev)).view([1, 1, h, 1]);
        let cols = Tensor::arange(w, (Kind::Int64, dev)).view([1, 1, 1, w]);
        for it in 0..iters {
            let Some(idx) = search.pending() else { break };
            let m = idx.size()[0];
            let x0a = x0.index_select(0, &idx);
            let xba = x_best.index_select(0, &idx);
            let p = p_selection(
                self.p_init,
                it,
                self.rescale_schedule.then_some(self.max_queries),
            );
            let s = ((p * (h * w) as f64).sqrt().round() as i64).clamp(1, (h.min(w) - 1).max(1));
            let top =
                Tensor::randint_low(0, (h - s).max(1), [m], (Kind::Int64, dev)).view([m, 1, 1, 1]);
            let left =
                Tensor::randint_low(0, (w - s).max(1), [m], (Kind::Int64, dev)).view([m, 1, 1, 1]);
            let window = rows
                .ge_tensor(&top)
                .logical_and(&rows.lt_tensor(&(&top + s)))
                .logical_and(&cols.ge_tensor(&left))
                .logical_and(&cols.lt_tensor(&(&left + s)));
            // New values of the window, ±eps per channel; redraw the signs of images whose
            // window would not change (bounded: the reference loops until it changes).
            let mut delta = signs(&[m, c, 1, 1], dev) * eps;
            for _ in 0..16 {
                let cand = (&x0a + &delta).clamp(0.0, 1.0);
                let same = (cand - &xba)
                    .abs()
                    .lt(1e-7)
                    .logical_or(&window.logical_not())
                    .flatten(1, -1)
                    .all_dim(1, false);
                if same.any().int64_value(&[]) == 0 {
                    break;
                }
                let redraw = signs(&[m, c, 1, 1], dev) * eps;
                delta = redraw.where_self(&same.view([m, 1, 1, 1]), &delta);
            }
            let x_new =
                (&x0a + (&xba - &x0a).where_self(&window.logical_not(), &delta)).clamp(0.0, 1.0);
            let improved = search.update(goal, &idx, &model.logits(&x_new)?);
            x_best = x_best.index_copy(
                0,
                &idx,
                &x_new.where_self(&improved.view([m, 1, 1, 1]), &xba),
            );
            search.report(goal, on_step, false);
        }
        search.report(goal, on_step, true);
        search.output(project_quantized(&x0, &x_best, budget), goal)
    }
}
