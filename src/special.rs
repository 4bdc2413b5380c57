//! Special functions in log space, accurate far into the tails where the plain functions
//! under- or overflow: ln(e^a ± e^b), ln erfc, the normal log-CDF / log-survival function, and
//! the inverse of erfc (also from the logarithm of its argument, for arguments below the
//! smallest double). The accountants (DP-SGD's sampled Gaussian, PATE's GNMax and smooth
//! sensitivity) and LiRA's offline score compute with them.
use std::f64::consts::{PI, SQRT_2};

/// ln(e^a + e^b).
pub fn log_add(a: f64, b: f64) -> f64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// ln(e^a − e^b) for a ≥ b; NaN when a < b (the series went numerically wrong).
pub fn log_sub(a: f64, b: f64) -> f64 {
    if a < b {
        return f64::NAN;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    if a == b {
        return f64::NEG_INFINITY;
    }
    let d = (a - b).exp_m1();
    if d.is_infinite() {
        a
    } else {
        d.ln() + b
    }
}

/// ln(erfc(x)), accurate far into the upper tail where erfc underflows.
pub fn log_erfc(x: f64) -> f64 {
    if x < 26.0 {
        return libm::erfc(x).ln();
    }
    // erfc(x) = e^{−x²}/(x√π) · Σ_k (−1)^k (2k−1)!!/(2x²)^k, asymptotic; at x ≥ 26 the
    // terms fall below 1e-20 well before they start to grow.
    let u = 1.0 / (2.0 * x * x);
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..12 {
        term *= -f64::from(2 * k - 1) * u;
        sum += term;
    }
    -x * x - x.ln() - 0.5 * PI.ln() + sum.ln()
}

/// log Φ(z), the log of the standard normal CDF, accurate over the whole real line
/// (as scipy's `log_ndtr`): log1p(−Φ(−z)) for z ≥ 0, log(erfc(−z/√2)/2) down to −20,
/// and the asymptotic series of Φ's tail below.
pub fn norm_logcdf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    if z >= 0.0 {
        return (-0.5 * libm::erfc(z / SQRT_2)).ln_1p();
    }
    if z > -20.0 {
        return (0.5 * libm::erfc(-z / SQRT_2)).ln();
    }
    if z == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    // Φ(z) = φ(z)/(−z) · (1 − 1/z² + 3/z⁴ − 15/z⁶ + …); the terms shrink fast for z ≤ −20.
    let z2 = z * z;
    let (mut term, mut sum) = (1.0f64, 1.0f64);
    for k in 1..=20 {
        term *= -((2 * k - 1) as f64) / z2;
        sum += term;
        if term.abs() < 1e-17 {
            break;
        }
    }
    -0.5 * z2 - (-z).ln() - 0.5 * (2.0 * PI).ln() + sum.ln()
}

/// ln P(Z > z) for a standard normal Z: scipy's `norm.logsf` (`log_ndtr(−z)`).
pub fn norm_logsf(z: f64) -> f64 {
    norm_logcdf(-z)
}

/// ln(1 − e^x) for x ≤ 0 (−∞ at 0; NaN above), without cancellation.
pub fn log1mexp(x: f64) -> f64 {
    if x > 0.0 || x.is_nan() {
        f64::NAN
    } else if x < -std::f64::consts::LN_2 {
        (-x.exp()).ln_1p()
    } else {
        (-x.exp_m1()).ln()
    }
}

/// The inverse of erfc: the x with erfc(x) = y, for 0 ≤ y ≤ 2 (±∞ at the ends, NaN outside).
pub fn erfcinv(y: f64) -> f64 {
    if !(0.0..=2.0).contains(&y) {
        return f64::NAN;
    }
    if y == 0.0 {
        return f64::INFINITY;
    }
    if y == 2.0 {
        return f64::NEG_INFINITY;
    }
    if y > 1.0 {
        return -erfcinv_ln((2.0 - y).ln());
    }
    erfcinv_ln(y.ln())
}

/// The x ≥ 0 with ln erfc(x) = `ln_y`, for ln_y ≤ 0 (erfc(x) = e^ln_y ≤ 1): [`erfcinv`] of a
/// number given by its logarithm, so that arguments far below the smallest double (vote
/// gaps of hundreds of standard deviations) keep their meaning. +∞ at −∞, NaN above 0.
pub fn erfcinv_ln(ln_y: f64) -> f64 {
    if ln_y.is_nan() || ln_y > 0.0 {
        return f64::NAN;
    }
    if ln_y == f64::NEG_INFINITY {
        return f64::INFINITY;
    }
    if ln_y == 0.0 {
        return 0.0;
    }
    // A start from the tail asymptote erfc(x) ≈ e^{−x²}/(x√π), then Newton's method on
    // g(x) = ln erfc(x) − ln_y, which is concave and decreasing for x ≥ 0; its slope is
    // g'(x) = −(2/√π)·e^{−x² − ln erfc(x)}. From a start at or left of the root, Newton's steps
    // on a concave decreasing function increase monotonically to it.
    let mut x = if ln_y < -1.0 {
        let x0 = (-ln_y).sqrt();
        let t = -ln_y - (x0 * PI.sqrt()).ln();
        if t > 0.0 {
            t.sqrt() * 0.999
        } else {
            0.0
        }
    } else {
        0.0
    };
    // Stay left of the root: the tail start can overshoot by a little.
    while x > 0.0 && log_erfc(x) < ln_y {
        x *= 0.9;
    }
    // ln erfc(x) = ln(1 − erf(x)) is precise near x = 0 where erfc(x) ≈ 1 is not.
    let ln_erfc = |x: f64| {
        if x.abs() < 0.5 {
            (-libm::erf(x)).ln_1p()
        } else {
            log_erfc(x)
        }
    };
    for _ in 0..100 {
        let le = ln_erfc(x);
        let slope = -2.0 / PI.sqrt() * (-x * x - le).exp();
        let step = (le - ln_y) / slope;
        x -= step;
        // Quadratic convergence: once a step is this small the next would change nothing.
        if step.abs() <= 1e-12 * x.abs().max(1e-3) {
            break;
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_erfc_matches_direct_and_asymptotic() {
        for x in [-3.0, 0.0, 1.0, 5.0, 20.0, 25.9] {
            let d = libm::erfc(x).ln();
            assert!((log_erfc(x) - d).abs() <= 1e-13 * d.abs().max(1.0), "{x}");
        }
        // Continuity across the switch to the asymptotic series.
        let (a, b) = (libm::erfc(25.999_999).ln(), log_erfc(26.0));
        assert!((a - b).abs() < 1e-4 && b < a, "{a} {b}");
    }

    #[test]
    fn erfcinv_inverts_erfc_and_its_logarithm() {
        for y in [
            1e-300, 1e-200, 1e-30, 1e-8, 0.01, 0.3, 0.999, 1.0, 1.2, 1.9, 1.999999,
        ] {
            let x = erfcinv(y);
            let back = libm::erfc(x);
            assert!(
                (back - y).abs() <= 1e-12 * y,
                "{y}: x = {x}, erfc(x) = {back}"
            );
        }
        // Far below the smallest double: ln erfc(erfcinv_ln(l)) = l.
        for l in [-1e5, -5000.0, -800.0, -745.0, -20.0, -1e-3, -1e-12] {
            let x = erfcinv_ln(l);
            assert!(
                (log_erfc(x) - l).abs() <= 1e-14 * l.abs().max(1.0),
                "{l}: {x}"
            );
        }
        // Near 0, erfc(x) ≈ 1 − 2x/√π: x ≈ (1 − e^l)·√π/2.
        for l in [-1e-6f64, -1e-12] {
            let want = -l.exp_m1() * PI.sqrt() / 2.0;
            assert!((erfcinv_ln(l) - want).abs() <= 1e-5 * want, "{l}");
        }
        assert_eq!(erfcinv(0.0), f64::INFINITY);
        assert_eq!(erfcinv(2.0), f64::NEG_INFINITY);
        assert!(erfcinv(-0.1).is_nan() && erfcinv_ln(0.1).is_nan());
        assert_eq!(erfcinv_ln(f64::NEG_INFINITY), f64::INFINITY);
    }

    #[test]
    fn log1mexp_is_stable_at_both_ends() {
        assert!((log1mexp(-1e-20) - (1e-20f64).ln()).abs() < 1e-12);
        assert!((log1mexp(-50.0) + (-50.0f64).exp()).abs() < 1e-30);
        assert_eq!(log1mexp(0.0), f64::NEG_INFINITY);
        assert!(log1mexp(1.0).is_nan());
    }
}
