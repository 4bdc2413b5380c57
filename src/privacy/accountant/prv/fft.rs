//! Composition of `n` identical PRVs: the n-th convolution power of a pmf, by real FFT.
use crate::{Error, Result};
use realfft::num_complex::Complex;

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
pub(super) fn compose(pmf: &[f64], n: u64) -> Result<(Vec<f64>, usize)> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
