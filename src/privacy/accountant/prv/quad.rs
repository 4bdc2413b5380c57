//! Numerics: compensated summation and adaptive Gauss–Kronrod quadrature.

/// Compensated (Neumaier) sum.
pub(super) fn neumaier(it: impl Iterator<Item = f64>) -> f64 {
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for x in it {
        let t = s + x;
        c += if s.abs() >= x.abs() {
            (s - t) + x
        } else {
            (x - t) + s
        };
        s = t;
    }
    s + c
}

// Gauss–Kronrod 7/15 nodes and weights (QUADPACK).
const XGK: [f64; 8] = [
    0.991_455_371_120_812_6,
    0.949_107_912_342_758_5,
    0.864_864_423_359_769_1,
    0.741_531_185_599_394_4,
    0.586_087_235_467_691_1,
    0.405_845_151_377_397_2,
    0.207_784_955_007_898_5,
    0.0,
];
const WGK: [f64; 8] = [
    0.022_935_322_010_529_22,
    0.063_092_092_629_978_55,
    0.104_790_010_322_250_2,
    0.140_653_259_715_525_9,
    0.169_004_726_639_267_9,
    0.190_350_578_064_785_4,
    0.204_432_940_075_298_9,
    0.209_482_141_084_727_8,
];
const WG: [f64; 4] = [
    0.129_484_966_168_869_7,
    0.279_705_391_489_276_7,
    0.381_830_050_505_118_9,
    0.417_959_183_673_469_4,
];

/// (integral, error estimate) of f on [a, b] by the 15-point Kronrod rule.
fn gk15(f: &impl Fn(f64) -> f64, a: f64, b: f64) -> (f64, f64) {
    let c = 0.5 * (a + b);
    let h = 0.5 * (b - a);
    let fc = f(c);
    let mut k = WGK[7] * fc;
    let mut g = WG[3] * fc;
    for j in 0..7 {
        let x = h * XGK[j];
        let s = f(c - x) + f(c + x);
        k += WGK[j] * s;
        if j % 2 == 1 {
            g += WG[j / 2] * s;
        }
    }
    (k * h, ((k - g) * h).abs())
}

/// Globally adaptive Gauss–Kronrod quadrature over consecutive pieces of `points`:
/// split the piece with the largest error until the total error is below `tol`.
pub(super) fn integrate(f: impl Fn(f64) -> f64, points: &[f64], tol: f64) -> f64 {
    let mut pieces: Vec<(f64, f64, f64, f64)> = points
        .windows(2)
        .filter(|w| w[1] > w[0])
        .map(|w| {
            let (v, e) = gk15(&f, w[0], w[1]);
            (w[0], w[1], v, e)
        })
        .collect();
    for _ in 0..20_000 {
        let err: f64 = pieces.iter().map(|p| p.3).sum();
        if err <= tol || pieces.is_empty() {
            break;
        }
        let (worst, _) = pieces
            .iter()
            .enumerate()
            .max_by(|a, b| a.1 .3.total_cmp(&b.1 .3))
            .expect("non-empty");
        let (a, b, _, _) = pieces.swap_remove(worst);
        let m = 0.5 * (a + b);
        if !(m > a && m < b) {
            break; // cannot split further
        }
        let (v1, e1) = gk15(&f, a, m);
        let (v2, e2) = gk15(&f, m, b);
        pieces.push((a, m, v1, e1));
        pieces.push((m, b, v2, e2));
    }
    neumaier(pieces.iter().map(|p| p.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadrature_is_accurate() {
        let v = integrate(|x: f64| x.exp(), &[0.0, 0.5, 1.0], 1e-15);
        assert!((v - (1f64.exp() - 1.0)).abs() < 1e-14);
        let v = integrate(
            |x: f64| 0.5 * libm::erfc(x / 1e-6),
            &[-1.0, 0.0, 1.0],
            1e-15,
        );
        assert!((v - 1.0).abs() < 1e-13, "{v}");
    }
}
