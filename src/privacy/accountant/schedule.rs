//! A DP-SGD schedule as a user states it (dataset size and batch, or the sampling rate; epochs
//! or steps; δ; the accountant) and the privacy it spends: what `fool privacy` computes.
use super::{check_noise, check_sample_rate, noise_for_epsilon, rdp_epsilon, AccountantKind};
use crate::{Error, Result};

/// How each step samples its batch (Poisson sampling at rate q).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// An expected batch of `batch` out of `n` training examples: q = batch / n.
    Batches { n: u64, batch: u64 },
    /// The rate q itself.
    Rate(f64),
}

/// How long training runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Length {
    Steps(u64),
    /// Epochs of 1/q steps: steps = ⌊epochs / q⌋, the convention of Opacus's
    /// `get_noise_multiplier` and `make_private_with_epsilon`.
    Epochs(f64),
}

/// A DP-SGD schedule and the (ε, δ) guarantee asked of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub sampling: Sampling,
    pub length: Length,
    pub delta: f64,
    pub accountant: AccountantKind,
}

/// The privacy a schedule spends with a noise multiplier: the record `fool privacy` prints.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Spent {
    pub accountant: AccountantKind,
    pub epsilon: f64,
    pub delta: f64,
    pub noise: f64,
    pub sample_rate: f64,
    pub steps: u64,
    /// The budget σ was calibrated for, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_epsilon: Option<f64>,
    /// RDP only: the order that gave ε.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_order: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<u64>,
}

impl Sampling {
    /// The Poisson sampling rate q.
    pub fn rate(&self) -> Result<f64> {
        let q = match *self {
            Sampling::Rate(q) => q,
            Sampling::Batches { n, batch } => {
                if n == 0 {
                    return Err(Error::field("n", "must be at least 1"));
                }
                if batch == 0 || batch > n {
                    return Err(Error::field(
                        "batch",
                        format!("must be between 1 and n ({n}), got {batch}"),
                    ));
                }
                batch as f64 / n as f64
            }
        };
        check_sample_rate(q)?;
        Ok(q)
    }
}

impl Length {
    /// The number of steps at sampling rate `q`.
    pub fn steps(&self, q: f64) -> Result<u64> {
        match *self {
            Length::Steps(s) => Ok(s),
            Length::Epochs(e) => {
                if !(e.is_finite() && e > 0.0) {
                    return Err(Error::field(
                        "epochs",
                        format!("must be a positive number, got {e}"),
                    ));
                }
                if q == 0.0 {
                    return Err(Error::field(
                        "sample_rate",
                        "is 0: an epoch never ends; count the training length in steps",
                    ));
                }
                // Opacus: steps = int(epochs / sample_rate).
                let s = (e / q).floor();
                if s > 1e12 {
                    return Err(Error::field(
                        "epochs",
                        format!("{e} epochs at q = {q} is {s:e} steps: too many"),
                    ));
                }
                Ok(s as u64)
            }
        }
    }
}

impl Schedule {
    /// (sampling rate q, number of steps).
    pub fn rate_and_steps(&self) -> Result<(f64, u64)> {
        let q = self.sampling.rate()?;
        Ok((q, self.length.steps(q)?))
    }

    /// The ε spent with noise multiplier `noise`.
    pub fn epsilon(&self, noise: f64) -> Result<Spent> {
        let (q, steps) = self.rate_and_steps()?;
        check_noise(noise)?;
        self.spent(noise, q, steps, None)
    }

    /// The smallest noise multiplier whose ε stays within `target_epsilon`
    /// ([`noise_for_epsilon`]), and the ε it spends.
    pub fn calibrate(&self, target_epsilon: f64) -> Result<Spent> {
        let (q, steps) = self.rate_and_steps()?;
        let noise = noise_for_epsilon(self.accountant, target_epsilon, q, steps, self.delta)?;
        self.spent(noise, q, steps, Some(target_epsilon))
    }

    fn spent(&self, noise: f64, q: f64, steps: u64, target: Option<f64>) -> Result<Spent> {
        let (epsilon, best_order) = match self.accountant {
            AccountantKind::Rdp => rdp_epsilon(noise, q, steps, self.delta)?,
            AccountantKind::Prv => (
                super::epsilon(AccountantKind::Prv, noise, q, steps, self.delta)?,
                None,
            ),
        };
        let (n, batch) = match self.sampling {
            Sampling::Batches { n, batch } => (Some(n), Some(batch)),
            Sampling::Rate(_) => (None, None),
        };
        Ok(Spent {
            accountant: self.accountant,
            epsilon,
            delta: self.delta,
            noise,
            sample_rate: q,
            steps,
            target_epsilon: target,
            best_order,
            epochs: match self.length {
                Length::Epochs(e) => Some(e),
                Length::Steps(_) => None,
            },
            n,
            batch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mnist(length: Length) -> Schedule {
        Schedule {
            sampling: Sampling::Batches {
                n: 60000,
                batch: 256,
            },
            length,
            delta: 1e-5,
            accountant: AccountantKind::Rdp,
        }
    }

    fn field(e: Error) -> String {
        match e {
            Error::Invalid { field, .. } => field,
            e => panic!("{e}"),
        }
    }

    #[test]
    fn rate_from_batches_and_steps_from_epochs() {
        // Opacus's convention: steps = int(epochs / q) = int(60·60000/256).
        assert_eq!(
            mnist(Length::Epochs(60.0)).rate_and_steps().unwrap(),
            (256.0 / 60000.0, 14062)
        );
        let s = Schedule {
            sampling: Sampling::Rate(0.01),
            ..mnist(Length::Steps(10))
        };
        assert_eq!(s.rate_and_steps().unwrap(), (0.01, 10));
        let spent = mnist(Length::Epochs(60.0)).epsilon(1.1).unwrap();
        assert_eq!(
            (spent.n, spent.batch, spent.epochs, spent.best_order),
            (Some(60000), Some(256), Some(60.0), Some(8.1))
        );
        assert_eq!(
            spent.epsilon,
            rdp_epsilon(1.1, 256.0 / 60000.0, 14062, 1e-5).unwrap().0
        );
    }

    #[test]
    fn bad_schedules_name_the_field() {
        let with = |sampling, length| Schedule {
            sampling,
            ..mnist(length)
        };
        let e = |s: Schedule| field(s.epsilon(1.0).unwrap_err());
        let batches = |n, batch| Sampling::Batches { n, batch };
        assert_eq!(e(with(batches(0, 1), Length::Steps(1))), "n");
        assert_eq!(e(with(batches(10, 0), Length::Steps(1))), "batch");
        assert_eq!(e(with(batches(10, 11), Length::Steps(1))), "batch");
        assert_eq!(
            e(with(Sampling::Rate(1.5), Length::Steps(1))),
            "sample_rate"
        );
        assert_eq!(
            e(with(Sampling::Rate(0.0), Length::Epochs(1.0))),
            "sample_rate"
        );
        assert_eq!(e(with(Sampling::Rate(0.1), Length::Epochs(-1.0))), "epochs");
        assert_eq!(
            e(with(Sampling::Rate(1e-12), Length::Epochs(10.0))),
            "epochs"
        );
        assert_eq!(
            field(mnist(Length::Steps(10)).epsilon(0.0).unwrap_err()),
            "noise"
        );
        let far = mnist(Length::Steps(10)).calibrate(-1.0).unwrap_err();
        assert_eq!(field(far), "target_epsilon");
    }
}
