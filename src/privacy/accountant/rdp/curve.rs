//! The RDP curve of a composition: what every mechanism released so far spends, order by order.
use super::{compute_rdp, default_orders, eps_from_rdp, gaussian_rdp};
use crate::privacy::accountant::{check_delta, check_noise, check_sample_rate};
use crate::{Error, Result};

/// Rényi DP as a function of the order α, at a fixed set of orders. RDP composes by addition
/// at each order, so mechanisms add their per-order values: DP-SGD steps
/// ([`add_sampled_gaussian`](Self::add_sampled_gaussian)), a Gaussian release
/// ([`add_gaussian`](Self::add_gaussian)), or any per-order RDP such as a PATE query's
/// data-dependent bound ([`add`](Self::add), [`add_with`](Self::add_with),
/// [`compose`](Self::compose)). [`epsilon`](Self::epsilon) converts to (ε, δ)-DP at the best
/// order.
///
/// ```
/// use fool::privacy::accountant::rdp::RdpCurve;
/// let mut curve = RdpCurve::default(); // Opacus's orders
/// curve.add_sampled_gaussian(256.0 / 60000.0, 1.1, 14062)?;
/// let (eps, order) = curve.epsilon(1e-5)?;
/// assert!((eps - 2.5966).abs() < 1e-3 && order == Some(8.1));
/// # Ok::<(), fool::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RdpCurve {
    orders: Vec<f64>,
    values: Vec<f64>,
    /// Whether any mechanism was added: releasing nothing spends ε = 0.
    released: bool,
}

/// Opacus's default orders ([`default_orders`]), RDP 0 everywhere.
impl Default for RdpCurve {
    fn default() -> Self {
        let orders = default_orders();
        RdpCurve {
            values: vec![0.0; orders.len()],
            orders,
            released: false,
        }
    }
}

impl RdpCurve {
    /// A curve at the given orders (each > 1; +∞ is allowed), RDP 0 everywhere.
    pub fn with_orders(orders: Vec<f64>) -> Result<Self> {
        if orders.is_empty() || orders.iter().any(|a| a.is_nan() || *a <= 1.0) {
            return Err(Error::field(
                "orders",
                format!("RDP orders must be numbers above 1, got {orders:?}"),
            ));
        }
        Ok(RdpCurve {
            values: vec![0.0; orders.len()],
            orders,
            released: false,
        })
    }

    pub fn orders(&self) -> &[f64] {
        &self.orders
    }

    /// RDP at each order (NaN where a mechanism's bound failed numerically, +∞ where it is
    /// unbounded).
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Whether nothing was released yet.
    pub fn is_empty(&self) -> bool {
        !self.released
    }

    /// Compose with a mechanism whose RDP at `orders()[i]` is `values[i]`.
    pub fn add(&mut self, values: &[f64]) -> Result<&mut Self> {
        if values.len() != self.orders.len() {
            return Err(Error::field(
                "rdp",
                format!(
                    "{} RDP values for a curve at {} orders",
                    values.len(),
                    self.orders.len()
                ),
            ));
        }
        for (v, x) in self.values.iter_mut().zip(values) {
            *v += x;
        }
        self.released = true;
        Ok(self)
    }

    /// Compose with a mechanism whose RDP at order α is `rdp(α)`.
    pub fn add_with(&mut self, rdp: impl Fn(f64) -> f64) -> &mut Self {
        for (v, &a) in self.values.iter_mut().zip(&self.orders) {
            *v += rdp(a);
        }
        self.released = true;
        self
    }

    /// Compose with everything `other` released; both curves must be at the same orders.
    pub fn compose(&mut self, other: &RdpCurve) -> Result<&mut Self> {
        if other.orders != self.orders {
            return Err(Error::field(
                "orders",
                "cannot compose RDP curves at different orders",
            ));
        }
        for (v, x) in self.values.iter_mut().zip(&other.values) {
            *v += x;
        }
        self.released |= other.released;
        Ok(self)
    }

    /// Compose with `steps` steps of DP-SGD: the Poisson-subsampled Gaussian mechanism with
    /// sampling rate `sample_rate` and noise multiplier `noise` ([`compute_rdp`]). No steps or
    /// q = 0 releases nothing.
    pub fn add_sampled_gaussian(
        &mut self,
        sample_rate: f64,
        noise: f64,
        steps: u64,
    ) -> Result<&mut Self> {
        check_noise(noise)?;
        check_sample_rate(sample_rate)?;
        if steps == 0 || sample_rate == 0.0 {
            return Ok(self);
        }
        let rdp = compute_rdp(sample_rate, noise, steps, &self.orders);
        self.add(&rdp)
    }

    /// Compose with one release of the Gaussian mechanism: a query of L2 sensitivity
    /// `sensitivity` plus noise of standard deviation `sigma`, RDP `α·Δ²/(2σ²)`.
    pub fn add_gaussian(&mut self, sigma: f64, sensitivity: f64) -> Result<&mut Self> {
        for (field, v) in [("sigma", sigma), ("sensitivity", sensitivity)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::field(
                    field,
                    format!("must be a positive number, got {v}"),
                ));
            }
        }
        let z = sigma / sensitivity;
        Ok(self.add_with(|a| gaussian_rdp(z, a)))
    }

    /// The (ε, δ)-DP guarantee for `delta`: ε and the order that gives it ([`eps_from_rdp`]);
    /// (0, None) when nothing was released. An error when no order gives a number.
    pub fn epsilon(&self, delta: f64) -> Result<(f64, Option<f64>)> {
        check_delta(delta)?;
        if !self.released {
            return Ok((0.0, None));
        }
        let (eps, order) = eps_from_rdp(&self.orders, &self.values, delta);
        if eps.is_nan() || order.is_nan() {
            return Err(Error::failed("RDP accountant", "no order gives a finite ε"));
        }
        Ok((eps, Some(order)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: f64 = 256.0 / 60000.0;

    #[test]
    fn composition_is_additive() {
        // k single steps, one curve of k steps, and a curve composed with itself agree.
        let k = 50;
        let mut steps = RdpCurve::default();
        for _ in 0..k {
            steps.add_sampled_gaussian(Q, 1.1, 1).unwrap();
        }
        let mut once = RdpCurve::default();
        once.add_sampled_gaussian(Q, 1.1, k).unwrap();
        let mut one = RdpCurve::default();
        one.add_sampled_gaussian(Q, 1.1, 1).unwrap();
        for i in 0..one.orders().len() {
            let want = k as f64 * one.values()[i];
            assert!((once.values()[i] - want).abs() <= 1e-12 * want, "{i}");
            assert!((steps.values()[i] - want).abs() <= 1e-12 * want, "{i}");
        }
        let mut doubled = one.clone();
        doubled.compose(&one).unwrap();
        for (d, o) in doubled.values().iter().zip(one.values()) {
            assert_eq!(*d, 2.0 * o);
        }
        // Mechanisms of different kinds add up too.
        let mut mixed = one.clone();
        mixed.add_gaussian(3.0, 1.0).unwrap();
        for (i, &a) in one.orders().iter().enumerate() {
            assert_eq!(mixed.values()[i], one.values()[i] + a / 18.0);
        }
    }

    #[test]
    fn gaussian_release_is_alpha_over_two_sigma_squared() {
        let mut c = RdpCurve::with_orders(vec![1.5, 2.0, 8.0, 32.0]).unwrap();
        c.add_gaussian(2.0, 1.0).unwrap();
        for (a, v) in c.orders().iter().zip(c.values()) {
            assert!((v - a / 8.0).abs() < 1e-15, "{a}: {v}");
        }
        // Sensitivity Δ scales like 1/σ: α·Δ²/(2σ²).
        let mut s = RdpCurve::with_orders(vec![1.5, 2.0, 8.0, 32.0]).unwrap();
        s.add_gaussian(4.0, 2.0).unwrap();
        assert_eq!(s.values(), c.values());
        // The same as one full-batch (q = 1) DP-SGD step.
        let mut full = RdpCurve::with_orders(vec![1.5, 2.0, 8.0, 32.0]).unwrap();
        full.add_sampled_gaussian(1.0, 2.0, 1).unwrap();
        assert_eq!(full.values(), c.values());
    }

    #[test]
    fn conversion_matches_the_rdp_functions_and_opacus() {
        for (sigma, q, steps, delta) in [
            (1.1, Q, 14062, 1e-5),
            (0.7, 0.01, 1000, 1e-6),
            (4.0, 0.1, 10, 1e-3),
        ] {
            let mut c = RdpCurve::default();
            c.add_sampled_gaussian(q, sigma, steps).unwrap();
            let orders = default_orders();
            let rdp = compute_rdp(q, sigma, steps, &orders);
            assert_eq!(c.values(), rdp.as_slice());
            let (e, a) = eps_from_rdp(&orders, &rdp, delta);
            assert_eq!(c.epsilon(delta).unwrap(), (e, Some(a)));
        }
        // Opacus 1.6 (tests/fixtures/accountant_opacus.json, mnist_60ep).
        let mut c = RdpCurve::default();
        let (eps, order) = c
            .add_sampled_gaussian(Q, 1.1, 14062)
            .unwrap()
            .epsilon(1e-5)
            .unwrap();
        assert!((eps - 2.596_555_868_960_748_6).abs() < 1e-6 * eps, "{eps}");
        assert_eq!(order, Some(8.1));
    }

    #[test]
    fn nothing_released_spends_nothing() {
        let mut c = RdpCurve::default();
        assert!(c.is_empty());
        assert_eq!(c.epsilon(1e-5).unwrap(), (0.0, None));
        c.add_sampled_gaussian(0.0, 1.0, 100).unwrap();
        c.add_sampled_gaussian(0.5, 1.0, 0).unwrap();
        assert!(c.is_empty() && c.values().iter().all(|&v| v == 0.0));
        c.add_gaussian(1.0, 1.0).unwrap();
        assert!(!c.is_empty() && c.epsilon(1e-5).unwrap().0 > 0.0);
    }

    #[test]
    fn bad_arguments_name_their_field() {
        let field = |e: Error| match e {
            Error::Invalid { field, .. } => field,
            e => panic!("{e}"),
        };
        let mut c = RdpCurve::default();
        assert_eq!(field(c.add_gaussian(0.0, 1.0).unwrap_err()), "sigma");
        assert_eq!(field(c.add_gaussian(1.0, -1.0).unwrap_err()), "sensitivity");
        assert_eq!(
            field(c.add_sampled_gaussian(2.0, 1.0, 1).unwrap_err()),
            "sample_rate"
        );
        assert_eq!(
            field(c.add_sampled_gaussian(0.1, 0.0, 1).unwrap_err()),
            "noise"
        );
        assert_eq!(field(c.add(&[1.0]).unwrap_err()), "rdp");
        assert_eq!(field(c.epsilon(0.0).unwrap_err()), "delta");
        assert_eq!(
            field(RdpCurve::with_orders(vec![1.0]).unwrap_err()),
            "orders"
        );
        let other = RdpCurve::with_orders(vec![2.0]).unwrap();
        assert_eq!(field(c.compose(&other).unwrap_err()), "orders");
        // Every order NaN: no ε.
        let mut nan = RdpCurve::with_orders(vec![2.0]).unwrap();
        nan.add(&[f64::NAN]).unwrap();
        assert!(matches!(nan.epsilon(1e-5), Err(Error::Failed { .. })));
    }
}
