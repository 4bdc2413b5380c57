//! Square Attack in L2 (Andriushchenko et al. 2020, the L2 version of `square_attack_l2`, as
//! AutoAttack's `square.py` runs it): score-based, no gradients.
//!
//! - start: a grid of (H/5)² windows, each a "pseudo-Gaussian" pattern (two stacked rectangles
//!   of opposite sign whose values fall off as 1/(k+1)² from their centres, normalized, transposed
//!   at random) times a random sign per image and channel, rescaled to the whole budget;
//! - each iteration, per image still not meeting the goal: two random windows of side s
//!   (√(p·H·W) rounded, at least 3, odd, at most the image): the second window's perturbation
//!   is removed and its mass, with the budget left over, is put into the first one as a fresh
//!   pattern plus the first window's old (normalized) content; the whole perturbation is then
//!   rescaled to the budget; keep the candidate when it lowers the margin loss;
//! - p follows the same schedule as the L∞ version ([`super::square::p_selection`]).
//!
//! As in the reference, one window position serves the whole batch in an iteration (each
//! image draws its own signs). The search runs in continuous pixel space; every candidate is
//! queried as its exact 8-bit projection into the L2 ball ([`super::project_quantized`]), and the
//! best projected image is what is returned, so the images queried are the images returned.
use super::square::{p_selection, signs, Square};
use super::square_search::Search;
use super::{project_quantized, AttackOutput, Budget, Goal, StepInfo, Victim};
use crate::Result;
use tch::{Kind, Tensor};

/// The reference's `eta_rectangles(x, y)`: nested rectangles around the centre weighted
/// 1/(k+1)², normalized to unit L2 norm. Row-major (x rows, y columns).
fn rectangles(x: usize, y: usize) -> Vec<f64> {
    let mut d = vec![0.0; x * y];
    let (xc, yc) = (x / 2 + 1, y / 2 + 1);
    let (mut r0, mut c0) = (xc as i64 - 1, yc as i64 - 1);
    for k in 0..xc.max(yc) {
        let (r1, c1) = (
            (r0 + 2 * k as i64 + 1).min(x as i64),
            (c0 + 2 * k as i64 + 1).min(y as i64),
        );
        for r in r0.max(0)..r1 {
            for c in c0.max(0)..c1 {
                d[r as usize * y + c as usize] += 1.0 / ((k + 1) * (k + 1)) as f64;
            }
        }
        r0 -= 1;
        c0 -= 1;
    }
    let norm = d.iter().map(|v| v * v).sum::<f64>().sqrt();
    d.iter().map(|v| v / norm.max(1e-300)).collect()
}

/// The reference's `eta(s)`: an s×s pattern, the upper s/2 rows one rectangle set, the rest
/// its negative, unit L2 norm, transposed with probability ½ (libtorch's RNG).
pub fn eta(s: usize, device: tch::Device) -> Tensor {
    let top = rectangles(s / 2, s);
    let bottom = rectangles(s - s / 2, s);
    let v: Vec<f64> = top
        .iter()
        .copied()
        .chain(bottom.iter().map(|b| -b))
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let t = Tensor::from_slice(&v.iter().map(|x| (x / norm) as f32).collect::<Vec<f32>>())
        .view([s as i64, s as i64])
        .to_device(device);
    if Tensor::rand([1], (Kind::Float, device)).double_value(&[0]) > 0.5 {
        t.transpose(0, 1).contiguous()
    } else {
        t
    }
}

/// Per-image L2 norm over all but the first dimension, shaped (N,1,1,1).
fn l2(x: &Tensor) -> Tensor {
    x.square()
        .sum_dim_intlist(&[1i64, 2, 3][..], true, Kind::Float)
        .sqrt()
}

/// L2 norm over the spatial dimensions, per image and channel: (N,C,1,1).
fn l2_hw(x: &Tensor) -> Tensor {
    x.square()
        .sum_dim_intlist(&[-2i64, -1][..], true, Kind::Float)
        .sqrt()
}

fn randint(hi: i64) -> i64 {
    if hi <= 0 {
        0
    } else {
        Tensor::randint(hi, [1], (Kind::Int64, tch::Device::Cpu)).int64_value(&[0])
    }
}

/// Run the L2 Square Attack (see the module docs).
pub fn attack(
    sq: &Square,
    model: &dyn Victim,
    x0: &Tensor,
    goal: &Goal,
    budget: Budget,
    on_step: &mut dyn FnMut(StepInfo),
) -> Result<AttackOutput> {
    let x0 = x0.detach();
    let dev = x0.device();
    let (n, c, h, w) = x0.size4()?;
    let eps = budget.eps;
    let iters = sq.max_queries.max(1) - 1;
    let normalize = |d: &Tensor| d / (l2(d) + 1e-12);

    // The starting grid of patterns.
    let delta = Tensor::zeros([n, c, h, w], (Kind::Float, dev));
    let s0 = (h / 5).max(1);
    let start = (h - s0 * 5).max(0) / 2;
    let mut vh = start;
    for _ in 0..h / s0 {
        let mut vw = start;
        for _ in 0..w / s0 {
            if vh + s0 <= h && vw + s0 <= w {
                let patch = eta(s0 as usize, dev).view([1, 1, s0, s0]) * signs(&[n, c, 1, 1], dev);
                let mut win = delta.narrow(2, vh, s0).narrow(3, vw, s0);
                win += patch;
            }
            vw += s0;
        }
        vh += s0;
    }
    let mut x_best = (&x0 + normalize(&delta) * eps).clamp(0.0, 1.0);
    let mut q_best = project_quantized(&x0, &x_best, budget);
    let mut search = Search::start(goal, model.logits(&q_best)?, iters);
    search.report(goal, on_step, false);

    for it in 0..iters {
        let Some(idx) = search.pending() else { break };
        let m = idx.size()[0];
        let xc = x0.index_select(0, &idx);
        let xb = x_best.index_select(0, &idx);
        let d = &xb - &xc;
        let p = p_selection(sq.p_init, it, sq.rescale_schedule.then_some(sq.max_queries));
        let mut s = ((p * (h * w) as f64).sqrt().round() as i64).max(3);
        if s % 2 == 0 {
            s += 1;
        }
        let s = s.min(h.min(w));
        let (vh, vw, vh2, vw2) = (
            randint(h - s),
            randint(w - s),
            randint(h - s),
            randint(w - s),
        );
        let win1 = d.narrow(2, vh, s).narrow(3, vw, s);
        let norms_win1 = l2_hw(&win1);
        let norms_image = l2(&d);
        let mask = Tensor::zeros([1, 1, h, w], (Kind::Float, dev));
        let _ = mask.narrow(2, vh, s).narrow(3, vw, s).fill_(1.0);
        let _ = mask.narrow(2, vh2, s).narrow(3, vw2, s).fill_(1.0);
        let norms_windows = l2_hw(&(&d * &mask));
        let mut fresh = eta(s as usize, dev).view([1, 1, s, s]) * signs(&[m, c, 1, 1], dev);
        fresh += &win1 / (&norms_win1 + 1e-12);
        let room = ((-norms_image.square() + eps * eps).clamp_min(0.0) / c as f64
            + norms_windows.square())
        .sqrt();
        let fresh = &fresh / (l2_hw(&fresh) + 1e-12) * room;
        let _ = d.narrow(2, vh2, s).narrow(3, vw2, s).fill_(0.0);
        d.narrow(2, vh, s).narrow(3, vw, s).copy_(&fresh);
        let x_new = (&xc + normalize(&d) * eps).clamp(0.0, 1.0);
        let q_new = project_quantized(&xc, &x_new, budget);
        let improved = search.update(goal, &idx, &model.logits(&q_new)?);
        let keep = improved.view([m, 1, 1, 1]);
        x_best = x_best.index_copy(0, &idx, &x_new.where_self(&keep, &xb));
        let q_old = q_best.index_select(0, &idx);
        q_best = q_best.index_copy(0, &idx, &q_new.where_self(&keep, &q_old));
        search.report(goal, on_step, false);
    }
    search.report(goal, on_step, true);
    search.output(q_best, goal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_have_unit_norm_and_opposite_halves() {
        let r = rectangles(2, 5);
        assert!((r.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-12);
        // The centre cell carries every ring: the largest value.
        let centre = r[5 + 2];
        assert!(r.iter().all(|&v| v <= centre + 1e-15));
        let e = eta(5, tch::Device::Cpu);
        let v = Vec::<f32>::try_from(e.view([-1])).unwrap();
        assert!((v.iter().map(|x| (x * x) as f64).sum::<f64>() - 1.0).abs() < 1e-5);
        assert!(
            (v.iter().map(|&x| x as f64).sum::<f64>()).abs() < 0.5,
            "halves of opposite sign"
        );
    }
}
