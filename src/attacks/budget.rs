//! The budget an attack works within: the norm ([`Norm`], L∞ or L2) and radius `eps` in pixel
//! space ([`Budget`]), the projection of an iterate onto the 8-bit images within it
//! ([`project_quantized`]), exact 8-bit distances ([`distances`]), and the parsing of budgets
//! (`8/255`, `0.5`).
use crate::{Error, Result};
use tch::{Kind, Tensor};

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
            _ => Err(Error::field("norm", format!("'{s}': expected linf or l2"))),
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

/// A number or a fraction (`8/255`, `0.0314`).
fn number_or_fraction(s: &str) -> Result<f64, String> {
    match s.split_once('/') {
        Some((a, b)) => {
            let (a, b): (f64, f64) = (
                a.trim()
                    .parse()
                    .map_err(|_| format!("'{s}': not a number"))?,
                b.trim()
                    .parse()
                    .map_err(|_| format!("'{s}': not a number"))?,
            );
            if b == 0.0 {
                return Err(format!("'{s}': division by zero"));
            }
            Ok(a / b)
        }
        None => s.trim().parse().map_err(|_| format!("'{s}': not a number")),
    }
}

/// An L∞ budget, `8/255` or `0.0314`: a number in (0, 1], at least one 8-bit step.
pub fn parse_eps(s: &str) -> Result<f64, String> {
    let v = number_or_fraction(s)?;
    if !(v > 0.0 && v <= 1.0) {
        return Err(format!(
            "'{s}' = {v}: must be in (0, 1] (pixel space, e.g. 8/255)"
        ));
    }
    if v * 255.0 + 1e-6 < 1.0 {
        return Err(format!(
            "'{s}' = {v:.5}: below one 8-bit step (1/255 ≈ 0.00392); a saved 8-bit image cannot change within it"
        ));
    }
    Ok(v)
}

/// An L2 radius in pixel space: a positive number (or fraction) of at least one 8-bit step.
pub fn parse_l2_eps(s: &str) -> Result<f64, String> {
    let v = number_or_fraction(s)?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("'{s}': an L2 radius must be a positive number"));
    }
    if v * 255.0 + 1e-6 < 1.0 {
        return Err(format!(
            "'{s}' = {v}: smaller than one 8-bit step (1/255), no 8-bit change fits; use 0 for the clean baseline"
        ));
    }
    Ok(v)
}

/// A list of budgets in `norm` (`0` is the clean baseline): duplicates dropped, ascending.
pub fn parse_eps_list(list: &[String], norm: Norm) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for s in list {
        let v = if s.trim() == "0" {
            0.0
        } else {
            match norm {
                Norm::Linf => parse_eps(s),
                Norm::L2 => parse_l2_eps(s),
            }
            .map_err(|e| Error::field("eps", e))?
        };
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
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
            .starts_with("norm: "));
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

    #[test]
    fn parses_budgets_and_lists() {
        assert_eq!(parse_eps("8/255").unwrap(), 8.0 / 255.0);
        assert_eq!(parse_eps("0.5").unwrap(), 0.5);
        for bad in ["0", "1.5", "1/0", "x", "0.001"] {
            assert!(parse_eps(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_l2_eps("2").unwrap(), 2.0);
        assert!(parse_l2_eps("0.001")
            .unwrap_err()
            .contains("smaller than one 8-bit step"));
        assert!(parse_l2_eps("-1").unwrap_err().contains("positive"));
        let list =
            |v: &[&str], n| parse_eps_list(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>(), n);
        assert_eq!(
            list(&["8/255", "0", "2/255", "8/255"], Norm::Linf).unwrap(),
            vec![0.0, 2.0 / 255.0, 8.0 / 255.0]
        );
        assert_eq!(list(&["2", "0.5"], Norm::L2).unwrap(), vec![0.5, 2.0]);
        assert!(list(&["0.001"], Norm::L2)
            .unwrap_err()
            .to_string()
            .starts_with("eps: "));
    }
}
