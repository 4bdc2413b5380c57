//! The PRV accountant (Gopi, Lee & Wutschitz 2021, "Numerical Composition of Differential
//! Privacy"), as in Opacus's `PRVAccountant` (after microsoft/prv_accountant).
//!
//! The privacy loss of one step of the Poisson-subsampled Gaussian mechanism is a random
//! variable `Y` (its "PRV"); the loss of `n` steps is the sum of `n` independent copies, and
//! `δ(ε) = E[(1 − e^{ε−Y})⁺]`. The accountant
//! 1. truncates `Y` to `[−L, L]`, `L` from RDP tail bounds (Remark 5.6 of the paper),
//! 2. discretizes it on a grid of mesh `eps_error / sqrt(n ln(12/delta_error)/2)`, each point
//!    carrying the probability of its cell, and shifts the grid so the discrete mean equals
//!    the continuous one,
//! 3. composes by raising the FFT of the pmf to the `n`-th power (circular convolution),
//! 4. inverts `δ(ε)` on the composed pmf at `δ ∓ delta_error` and widens by `∓ eps_error`
//!    to get bounds that hold for the true ε.
use super::rdp;
use crate::{Error, Result};
use realfft::num_complex::Complex;

/// Largest discretization accepted (points); beyond it the FFT would need gigabytes.
pub const MAX_DOMAIN_SIZE: usize = 1 << 23;

/// Lower bound, estimate and upper bound of ε.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpsilonBounds {
    pub lower: f64,
    pub estimate: f64,
    pub upper: f64,
}

/// Opacus's defaults: `eps_error = 0.01`, `delta_error = delta / 1000`, and the upper bound.
pub fn epsilon(noise: f64, q: f64, steps: u64, delta: f64) -> Result<f64> {
    Ok(epsilon_bounds(noise, q, steps, delta, 0.01, delta / 1000.0)?.upper)
}

/// Bounds on ε after `steps` steps, within `eps_error` in ε and `delta_error` in δ.
/// Arguments are expected valid (see [`super::epsilon`]); q = 0 or no steps gives 0.
pub fn epsilon_bounds(
    noise: f64,
    q: f64,
    steps: u64,
    delta: f64,
    eps_error: f64,
    delta_error: f64,
) -> Result<EpsilonBounds> {
    if q == 0.0 || steps == 0 {
        return Ok(EpsilonBounds {
            lower: 0.0,
            estimate: 0.0,
            upper: 0.0,
        });
    }
    let prv = SubsampledGaussian::new(q, noise);
    let n = steps as f64;
    let l = safe_domain_size(noise, q, steps, eps_error, delta_error)?;
    let mesh = eps_error / (n * (12.0 / delta_error).ln() / 2.0).sqrt();
    let domain = Domain::aligned(-l, l, mesh)?;
    let truncated = Truncated::new(prv, domain.t_min, domain.t_max());
    let (pmf, shift) = discretize(&truncated, &domain)?;
    let (composed, pad) = compose(&pmf, steps)?;
    if f64::EPSILON * composed.len() as f64 > delta - delta_error {
        return Err(Error::field(
            "delta",
            "too small for the PRV accountant: rounding errors would dominate",
        ));
    }
    // Every copy carries the mean shift: the composed grid starts at t_min + n·shift (less
    // the padding).
    let t0 = domain.t_min - pad as f64 * domain.dt + n * shift;
    let curve = DeltaCurve::new(&composed, t0, domain.dt);
    Ok(EpsilonBounds {
        lower: curve.epsilon(delta + delta_error)? - eps_error,
        estimate: curve.epsilon(delta)?,
        upper: curve.epsilon(delta - delta_error)? + eps_error,
    })
}

/// Half-width L of the truncation domain: ε bounds (from RDP) at tiny δ of the composition
/// and of a single step, plus a margin, so that the mass left out is below `delta_error`.
fn safe_domain_size(
    noise: f64,
    q: f64,
    steps: u64,
    eps_error: f64,
    delta_error: f64,
) -> Result<f64> {
    let (all, _) = rdp::epsilon_and_order(noise, q, steps, delta_error / 4.0);
    let (one, _) = rdp::epsilon_and_order(noise, q, 1, delta_error / (8.0 * steps as f64));
    let l = all.max(one).max(eps_error) + 3.0;
    if !l.is_finite() {
        return Err(Error::failed(
            "PRV accountant",
            format!("no finite domain for σ = {noise}, q = {q}, {steps} steps"),
        ));
    }
    Ok(l)
}

/// The privacy loss of one step of the Poisson-subsampled Gaussian mechanism
/// (Propositions B.1 and B.4 of Gopi et al.), `Y = ln(1 − q + q e^{Z})` for the Gaussian
/// mechanism's loss `Z`; supported on `(ln(1 − q), ∞)`.
#[derive(Debug, Clone, Copy)]
struct SubsampledGaussian {
    q: f64,
    sigma: f64,
    /// ln(1 − q): the lower end of the support (−∞ for q = 1).
    t_low: f64,
}

impl SubsampledGaussian {
    fn new(q: f64, sigma: f64) -> Self {
        SubsampledGaussian {
            q,
            sigma,
            t_low: (-q).ln_1p(),
        }
    }

    /// The two erfc arguments at t, or None below the support.
    fn args(&self, t: f64) -> Option<(f64, f64)> {
        if t <= self.t_low {
            return None;
        }
        let x = t.exp_m1() / self.q; // (e^t + q − 1)/q − 1
        if x <= -1.0 {
            return None;
        }
        let z = x.ln_1p();
        let s = self.sigma;
        let c = 1.0 / (2.0 * s);
        let r = std::f64::consts::FRAC_1_SQRT_2;
        Some(((z * s - c) * r, (z * s + c) * r))
    }

    /// P(Y ≤ t), computed without cancellation in the lower tail.
    fn cdf(&self, t: f64) -> f64 {
        match self.args(t) {
            None => 0.0,
            Some((a, b)) => 0.5 * (self.q * libm::erfc(-a) + (1.0 - self.q) * libm::erfc(-b)),
        }
    }

    /// P(Y > t), computed without cancellation in the upper tail.
    fn sf(&self, t: f64) -> f64 {
        match self.args(t) {
            None => 1.0,
            Some((a, b)) => 0.5 * (self.q * libm::erfc(a) + (1.0 - self.q) * libm::erfc(b)),
        }
    }
}

/// Y conditioned on `[t_min, t_max)`, with Opacus's convention that the cdf is 1 from
/// `t_max` on.
struct Truncated {
    prv: SubsampledGaussian,
    t_min: f64,
    t_max: f64,
    cdf_min: f64,
    sf_max: f64,
    mass: f64,
}

impl Truncated {
    fn new(prv: SubsampledGaussian, t_min: f64, t_max: f64) -> Self {
        let cdf_min = prv.cdf(t_min);
        let sf_max = prv.sf(t_max);
        Truncated {
            prv,
            t_min,
            t_max,
            cdf_min,
            sf_max,
            mass: 1.0 - (cdf_min + sf_max),
        }
    }

    fn cdf(&self, t: f64) -> f64 {
        if t < self.t_min {
            0.0
        } else if t < self.t_max {
            (self.prv.cdf(t) - self.cdf_min) / self.mass
        } else {
            1.0
        }
    }

    fn sf(&self, t: f64) -> f64 {
        if t < self.t_min {
            1.0
        } else if t < self.t_max {
            (self.prv.sf(t) - self.sf_max) / self.mass
        } else {
            0.0
        }
    }

    /// E[Y | truncation] = −∫_{t_min}^0 F + ∫_0^{t_max} (1 − F), integrated adaptively.
    fn mean(&self) -> f64 {
        let mut below = vec![self.t_min];
        let mut above = vec![0.0];
        for k in -9..=2 {
            let p = 10f64.powi(k);
            if -p > self.t_min {
                below.push(-p);
            }
            if p < self.t_max {
                above.push(p);
            }
        }
        if self.prv.t_low > self.t_min {
            below.push(self.prv.t_low);
        }
        below.push(0.0);
        above.push(self.t_max);
        below.sort_by(f64::total_cmp);
        above.sort_by(f64::total_cmp);
        let neg = integrate(|t| self.cdf(t), &below, 1e-15);
        let pos = integrate(|t| self.sf(t), &above, 1e-15);
        pos - neg
    }
}

/// The aligned grid `t_min + i·dt`, `i < size`, `size` even, containing 0.
#[derive(Debug, Clone, Copy)]
struct Domain {
    t_min: f64,
    dt: f64,
    size: usize,
}

impl Domain {
    fn aligned(t_min: f64, t_max: f64, dt: f64) -> Result<Self> {
        let lo = (t_min / dt).floor();
        let hi = (t_max / dt).ceil();
        let mut size = (hi - lo).round() + 1.0;
        if size % 2.0 == 1.0 {
            size += 1.0;
        }
        if size.is_nan() || size > MAX_DOMAIN_SIZE as f64 {
            return Err(Error::field(
                "accountant",
                format!(
                    "the PRV accountant would need {size:.3e} grid points (more than {MAX_DOMAIN_SIZE}) \
                     for this setting; use the RDP accountant"
                ),
            ));
        }
        Ok(Domain {
            t_min: lo * dt,
            dt,
            size: size as usize,
        })
    }

    fn t_max(&self) -> f64 {
        self.t_min + (self.size - 1) as f64 * self.dt
    }

    fn t(&self, i: usize) -> f64 {
        self.t_min + i as f64 * self.dt
    }
}

/// The pmf of `y` on the grid (each point gets the mass of the cell around it) and the shift
/// that moves the grid so its mean matches the continuous one.
fn discretize(y: &Truncated, d: &Domain) -> Result<(Vec<f64>, f64)> {
    let n = d.size;
    let half = d.dt / 2.0;
    // Cell edges; F is used left of 0 and 1 − F right of it, each where it is small.
    let edge = |k: usize| d.t(k) - half;
    let f_at = |t: f64| if t <= 0.0 { y.cdf(t) } else { f64::NAN };
    let s_at = |t: f64| if t >= 0.0 { y.sf(t) } else { f64::NAN };
    let mut pmf = vec![0.0; n];
    let mut lower = edge(0);
    let (mut f_lower, mut s_lower) = (f_at(lower), s_at(lower));
    for (i, p) in pmf.iter_mut().enumerate() {
        let upper = edge(i + 1);
        let (f_upper, s_upper) = (f_at(upper), s_at(upper));
        *p = if upper <= 0.0 {
            f_upper - f_lower
        } else if lower >= 0.0 {
            s_lower - s_upper
        } else {
            (y.cdf(0.0) - f_lower) + (y.sf(0.0) - s_upper)
        };
        lower = upper;
        f_lower = f_upper;
        s_lower = s_upper;
    }
    let mean_d = neumaier(pmf.iter().enumerate().map(|(i, &p)| d.t(i) * p));
    let shift = y.mean() - mean_d;
    if shift.is_nan() || shift.abs() >= half {
        return Err(Error::failed(
            "PRV accountant",
            format!(
                "the discrete mean differs from the continuous one by {shift:e} \
             (mesh {:e})",
                d.dt
            ),
        ));
    }
    Ok((pmf, shift))
}

/// The smallest even size ≥ n whose only prime factors are 2, 3, 5 and 7 (fast FFTs).
fn fft_size(n: usize) -> usize {
    let mut best = usize::MAX;
    let mut p2 = 2usize;
    while p2 < 2 * n.max(1) {
        let mut p3 = p2;
        while p3 < 2 * n {
            let mut p5 = p3;
            while p5 < 2 * n {
                let mut p7 = p5;
                while p7 < n {
                    p7 *= 7;
                }
                best = best.min(p7);
                p5 *= 5;
            }
            p3 *= 3;
        }
        p2 *= 2;
    }
    best
}

/// The pmf of the sum of `n` copies: the convolution power by FFT, on the grid zero-padded
/// on both sides to a fast FFT size (a circle at least as long as Opacus's, so no more mass
/// wraps around than there). Returns the pmf and the number of padding points on the left:
/// index i stands for `t_min + (i − pad)·dt` (before the mean shifts).
fn compose(pmf: &[f64], n: u64) -> Result<(Vec<f64>, usize)> {
    if n == 1 {
        return Ok((pmf.to_vec(), 0));
    }
    let size = pmf.len();
    let m = fft_size(size);
    let pad = (m - size) / 2;
    let mut buf = vec![0.0; m];
    buf[pad..pad + size].copy_from_slice(pmf);
    let mut planner = realfft::RealFftPlanner::<f64>::new();
    let r2c = planner.plan_fft_forward(m);
    let c2r = planner.plan_fft_inverse(m);
    let mut spec = r2c.make_output_vec();
    let fft_err = |e: realfft::FftError| Error::failed("PRV accountant", format!("FFT: {e}"));
    r2c.process(&mut buf, &mut spec).map_err(fft_err)?;
    let nf = n as f64;
    let last = spec.len() - 1;
    for (k, c) in spec.iter_mut().enumerate() {
        let r = c.norm();
        *c = if r == 0.0 {
            Complex::new(0.0, 0.0)
        } else if k == 0 || k == last {
            // Real bins stay real: ±r^n.
            let sign = if c.re < 0.0 && n % 2 == 1 { -1.0 } else { 1.0 };
            Complex::new(sign * (nf * r.ln()).exp(), 0.0)
        } else {
            Complex::from_polar((nf * r.ln()).exp(), nf * c.arg())
        };
    }
    c2r.process(&mut spec, &mut buf).map_err(fft_err)?;
    // Index i of the padded grid stands for (i − z)·dt with z = pad + size/2 − 1; a sum of
    // n indices lands at Σi = j + n·z, which must go to j + z: roll by −(n − 1)·z mod m.
    let z = (pad + size / 2 - 1) as u128;
    let mm = m as u128;
    let back = ((n as u128 - 1) % mm) * z % mm;
    let roll = ((mm - back) % mm) as usize;
    let scale = 1.0 / m as f64;
    let mut out = vec![0.0; m];
    for (i, v) in buf.iter().enumerate() {
        out[(i + roll) % m] = v * scale;
    }
    Ok((out, pad))
}

/// δ(ε) of a pmf on a grid, through the tail sums d1[i] = Σ_{j≥i} p_j and
/// d2[i] = Σ_{j≥i} p_j e^{−t_j}: δ(t_i) = d1[i] − e^{t_i} d2[i], decreasing in i.
struct DeltaCurve {
    d1: Vec<f64>,
    d2: Vec<f64>,
    t0: f64,
    dt: f64,
}

impl DeltaCurve {
    fn new(pmf: &[f64], t0: f64, dt: f64) -> Self {
        let n = pmf.len();
        let mut d1 = vec![0.0; n];
        let mut d2 = vec![0.0; n];
        let (mut a1, mut a2) = (0.0, 0.0);
        for i in (0..n).rev() {
            a1 += pmf[i];
            a2 += pmf[i] * (-(t0 + i as f64 * dt)).exp();
            d1[i] = a1;
            d2[i] = a2;
        }
        DeltaCurve { d1, d2, t0, dt }
    }

    /// The ε with δ(ε) = target: find the first grid point where δ ≤ target (binary
    /// search, as numpy's searchsorted), then solve exactly in the cell before it.
    fn epsilon(&self, target: f64) -> Result<f64> {
        let n = self.d1.len();
        let ndelta = |i: usize| (self.t0 + i as f64 * self.dt).exp() * self.d2[i] - self.d1[i];
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if ndelta(mid) < -target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 || lo >= n {
            return Err(Error::failed(
                "PRV accountant",
                "cannot compute epsilon (δ out of the discretized range)",
            ));
        }
        Ok(((self.d1[lo] - target) / self.d2[lo]).ln())
    }
}

/// Compensated (Neumaier) sum.
fn neumaier(it: impl Iterator<Item = f64>) -> f64 {
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
fn integrate(f: impl Fn(f64) -> f64, points: &[f64], tol: f64) -> f64 {
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

    #[test]
    fn cdf_and_sf_are_complementary() {
        for &(q, s) in &[(1.0, 1.0), (0.01, 1.1), (1e-4, 0.7)] {
            let y = SubsampledGaussian::new(q, s);
            for t in [-1.0, -1e-3, 0.0, 1e-4, 0.5, 3.0] {
                let (f, g) = (y.cdf(t), y.sf(t));
                assert!((f + g - 1.0).abs() < 1e-14, "{q} {s} {t}: {f} {g}");
            }
        }
    }

    #[test]
    fn gaussian_prv_mean_is_its_kl_divergence() {
        // q = 1: Y ~ N(μ, 2μ) with μ = 1/(2σ²).
        let s = 1.3;
        let y = Truncated::new(SubsampledGaussian::new(1.0, s), -20.0, 20.0);
        let mu = 1.0 / (2.0 * s * s);
        assert!((y.mean() - mu).abs() < 1e-12, "{} {mu}", y.mean());
    }

    #[test]
    fn composition_keeps_a_point_mass_at_zero() {
        // A point mass at grid value 0 composed n times stays at 0.
        for size in [10, 22, 1000] {
            let mut pmf = vec![0.0; size];
            pmf[size / 2 - 1] = 1.0;
            for n in [1, 2, 3, 7, 10, 1001] {
                let (c, pad) = compose(&pmf, n).unwrap();
                let (argmax, _) = c
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap();
                assert_eq!(argmax, pad + size / 2 - 1, "size {size}, n = {n}");
                assert!((c.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn composition_of_a_two_point_law_is_binomial() {
        // Mass 1/2 at 0 and at +dt: n copies give Binomial(n, 1/2) on 0..=n.
        let size = 16;
        let mut pmf = vec![0.0; size];
        pmf[size / 2 - 1] = 0.5;
        pmf[size / 2] = 0.5;
        let (c, pad) = compose(&pmf, 4).unwrap();
        let zero = pad + size / 2 - 1;
        for (k, want) in [1.0, 4.0, 6.0, 4.0, 1.0].iter().enumerate() {
            assert!(
                (c[zero + k] - want / 16.0).abs() < 1e-15,
                "{k}: {}",
                c[zero + k]
            );
        }
    }

    #[test]
    fn fft_sizes_are_smooth_and_tight() {
        assert_eq!(fft_size(10), 10);
        assert_eq!(fft_size(22), 24);
        assert_eq!(fft_size(505_756), 506_250); // 2·3⁴·5⁵
        for n in [2, 4, 1000, 123_456, 1_279_838] {
            let m = fft_size(n);
            assert!(
                m >= n && m.is_multiple_of(2) && m < n + n / 10 + 8,
                "{n} → {m}"
            );
        }
    }
}
