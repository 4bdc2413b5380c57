//! The one small deterministic generator of the library: SplitMix64 (Steele, Lea and Flood
//! 2014), for everything seeded that must not depend on libtorch's global generator — member
//! halves, example subsamples, folds, image order — plus FNV-1a for seeds derived from names.
//!
//! Two ways of drawing an index below n exist on purpose. [`SplitMix64::below`] is unbiased
//! (rejection sampling) and is what new code uses. [`SplitMix64::below_mod`] is the plain
//! `next % n` the first versions of `fool train --half` and `fool bench --shuffle` used: it is
//! kept, with [`SplitMix64::shuffle_mod`], so that the member sets and image orders of runs made
//! with those versions are drawn again identically (a seeded output must not change).

/// 2^64 / φ, SplitMix64's increment (also mixed into legacy seeds, see [`SplitMix64::legacy`]).
pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The stream the member halves and bench shuffles were first drawn from: state
    /// `seed ^ GOLDEN`.
    pub fn legacy(seed: u64) -> SplitMix64 {
        SplitMix64(seed ^ GOLDEN)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0), without modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// `next % n` (n > 0): slightly biased for huge n; kept for old seeded streams only.
    pub fn below_mod(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in [0, 1): the top 53 bits of the next draw.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal draw (Box–Muller, one value of the pair: two uniforms per draw, so
    /// a stream of draws never depends on how many were taken before in pairs).
    pub fn normal(&mut self) -> f64 {
        // 1 − u is in (0, 1]: its logarithm is finite.
        let r = (-2.0 * (1.0 - self.uniform()).ln()).sqrt();
        r * (2.0 * std::f64::consts::PI * self.uniform()).cos()
    }

    /// A Laplace draw with scale `b` (density e^{−|x|/b}/(2b)), by inversion.
    pub fn laplace(&mut self, b: f64) -> f64 {
        let u = self.uniform() - 0.5;
        -b * u.signum() * (1.0 - 2.0 * u.abs()).ln()
    }

    /// A uniformly random permutation of 0..n (Fisher–Yates with [`SplitMix64::below`]).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
        v
    }

    /// Fisher–Yates with [`SplitMix64::below_mod`]: the legacy shuffle (see the module docs).
    pub fn shuffle_mod<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below_mod(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// `max` of the indices 0..n chosen uniformly without replacement with `seed`, in
/// increasing order; all of them when n ≤ max.
pub fn subsample(n: usize, max: usize, seed: u64) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    let mut v = SplitMix64::new(seed).permutation(n);
    v.truncate(max);
    v.sort_unstable();
    v
}

/// 64-bit FNV-1a of a byte stream.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// FNV-1a of several strings, each followed by a 0xff byte (so ["ab","c"] ≠ ["a","bc"]).
pub fn fnv1a_parts(parts: &[&str]) -> u64 {
    fnv1a(
        parts
            .iter()
            .flat_map(|p| p.bytes().chain(std::iter::once(0xff))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_stream() {
        // Reference values of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let p = SplitMix64::new(7).permutation(10);
        let mut s = p.clone();
        s.sort_unstable();
        assert_eq!(s, (0..10).collect::<Vec<_>>());
        assert_eq!(subsample(5, 10, 1), vec![0, 1, 2, 3, 4]);
        assert_eq!(subsample(100, 10, 1).len(), 10);
    }

    #[test]
    fn continuous_draws_have_their_moments() {
        let mut r = SplitMix64::new(3);
        let n = 200_000;
        let (mut s1, mut s2, mut lap) = (0.0, 0.0, 0.0);
        for _ in 0..n {
            let u = r.uniform();
            assert!((0.0..1.0).contains(&u));
            let z = r.normal();
            s1 += z;
            s2 += z * z;
            lap += r.laplace(2.0).abs();
        }
        let n = n as f64;
        assert!((s1 / n).abs() < 0.01, "mean {}", s1 / n);
        assert!((s2 / n - 1.0).abs() < 0.01, "variance {}", s2 / n);
        // E|X| = b for a Laplace of scale b.
        assert!((lap / n - 2.0).abs() < 0.02, "E|X| {}", lap / n);
        // Seeded: the same stream again.
        let (mut a, mut b) = (SplitMix64::new(9), SplitMix64::new(9));
        assert_eq!(a.normal().to_bits(), b.normal().to_bits());
    }

    #[test]
    fn fnv_is_fnv1a() {
        // FNV-1a 64 of "a" (the published test vector).
        assert_eq!(fnv1a("a".bytes()), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(fnv1a_parts(&["ab", "c"]), fnv1a_parts(&["a", "bc"]));
    }
}
