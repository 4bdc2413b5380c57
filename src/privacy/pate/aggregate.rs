//! The noisy aggregators that turn the teachers' votes on a query into a label (or no
//! answer): GNMax and Confident-GNMax (Papernot et al. 2018) and the Laplace noisy max of the
//! first PATE paper (LNMax, Papernot et al. 2017). Seeded: the same votes, aggregator and seed
//! give the same labels, and the labels of the first k queries do not depend on how many
//! queries follow.
use super::votes::{argmax, Votes};
use crate::rng::SplitMix64;
use crate::{Error, Result};

/// A noisy-max aggregator and its noise.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Aggregator {
    /// GNMax: argmax_j (n_j + N(0, σ²)).
    Gnmax { sigma: f64 },
    /// Confident-GNMax: answer only when max_j n_j + N(0, σ1²) ≥ T, then GNMax with σ.
    Confident {
        threshold: f64,
        sigma1: f64,
        sigma: f64,
    },
    /// LNMax: argmax_j (n_j + Lap(λ)), λ the scale (the 2017 paper's 1/γ); (2/λ)-DP a query.
    Laplace { scale: f64 },
}

impl Aggregator {
    /// Check the noise and threshold; errors name the field (`sigma`, `sigma1`, `threshold`,
    /// `scale`).
    pub fn check(&self) -> Result<()> {
        let positive = |field: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::field(
                    field,
                    format!("must be a positive number, got {v}"),
                ))
            }
        };
        match *self {
            Aggregator::Gnmax { sigma } => positive("sigma", sigma),
            Aggregator::Confident {
                threshold,
                sigma1,
                sigma,
            } => {
                positive("sigma1", sigma1)?;
                positive("sigma", sigma)?;
                if !threshold.is_finite() {
                    return Err(Error::field(
                        "threshold",
                        format!("must be a number, got {threshold}"),
                    ));
                }
                Ok(())
            }
            Aggregator::Laplace { scale } => positive("scale", scale),
        }
    }

    /// `gnmax`, `confident` or `laplace`.
    pub fn name(&self) -> &'static str {
        match self {
            Aggregator::Gnmax { .. } => "gnmax",
            Aggregator::Confident { .. } => "confident",
            Aggregator::Laplace { .. } => "laplace",
        }
    }

    /// One query: the label, or None when Confident-GNMax does not answer.
    fn answer(&self, row: &[u32], rng: &mut SplitMix64) -> Option<usize> {
        let noisy_max = |noise: &mut dyn FnMut() -> f64| {
            let noisy: Vec<f64> = row.iter().map(|&c| f64::from(c) + noise()).collect();
            argmax(&noisy)
        };
        match *self {
            Aggregator::Gnmax { sigma } => Some(noisy_max(&mut || sigma * rng.normal())),
            Aggregator::Confident {
                threshold,
                sigma1,
                sigma,
            } => {
                let max = f64::from(row.iter().copied().max().unwrap_or(0));
                if max + sigma1 * rng.normal() >= threshold {
                    Some(noisy_max(&mut || sigma * rng.normal()))
                } else {
                    None
                }
            }
            Aggregator::Laplace { scale } => Some(noisy_max(&mut || rng.laplace(scale))),
        }
    }
}

/// The aggregator the flags name: `gnmax` (σ), `confident` (T, σ1, σ) or `laplace` (scale).
/// A threshold without σ1 or σ1 without a threshold is an error naming the missing one.
pub fn from_flags(
    name: &str,
    threshold: Option<f64>,
    sigma1: Option<f64>,
    sigma: Option<f64>,
    scale: Option<f64>,
) -> Result<Aggregator> {
    match (threshold, sigma1) {
        (Some(_), None) => {
            return Err(Error::field("sigma1", "the threshold T needs its noise σ1"));
        }
        (None, Some(_)) => {
            return Err(Error::field(
                "threshold",
                "σ1 is the noise of a threshold T: give T",
            ));
        }
        _ => {}
    }
    let need = |field: &str, v: Option<f64>| {
        v.ok_or_else(|| Error::field(field, format!("needed by the {name} aggregator")))
    };
    let agg = match name {
        "gnmax" | "confident" if scale.is_some() => {
            return Err(Error::field("scale", "only for the laplace aggregator"));
        }
        "gnmax" if threshold.is_some() => {
            return Err(Error::field(
                "threshold",
                "a threshold (with σ1) is Confident-GNMax: use --aggregator confident",
            ));
        }
        "gnmax" => Aggregator::Gnmax {
            sigma: need("sigma", sigma)?,
        },
        "confident" => Aggregator::Confident {
            threshold: need("threshold", threshold)?,
            sigma1: need("sigma1", sigma1)?,
            sigma: need("sigma", sigma)?,
        },
        "laplace" if threshold.is_some() || sigma.is_some() => {
            return Err(Error::field(
                "aggregator",
                "laplace takes only its scale (no threshold, σ1 or σ)",
            ));
        }
        "laplace" => Aggregator::Laplace {
            scale: need("scale", scale)?,
        },
        o => {
            return Err(Error::field(
                "aggregator",
                format!("unknown aggregator '{o}' (gnmax, confident or laplace)"),
            ))
        }
    };
    agg.check()?;
    Ok(agg)
}

/// The aggregator's answer to every query of `votes`, in order (None: not answered).
pub fn aggregate(votes: &Votes, agg: &Aggregator, seed: u64) -> Result<Vec<Option<usize>>> {
    agg.check()?;
    let mut rng = SplitMix64::new(seed);
    Ok(votes.rows().map(|row| agg.answer(row, &mut rng)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_decides_only_close_votes() {
        // 100 unanimous-ish queries: σ = 1 never flips a 90–10 vote; a huge threshold never
        // answers; a 50–50 vote goes both ways.
        let mut counts = vec![];
        for q in 0..100u32 {
            let c = (q % 3) as usize;
            let mut row = [5u32; 3];
            row[c] = 90;
            counts.extend_from_slice(&row);
        }
        let v = Votes::new(counts, 3).unwrap();
        let labels = aggregate(&v, &Aggregator::Gnmax { sigma: 1.0 }, 7).unwrap();
        for (q, l) in labels.iter().enumerate() {
            assert_eq!(*l, Some(q % 3));
        }
        let none = Aggregator::Confident {
            threshold: 1e6,
            sigma1: 1.0,
            sigma: 1.0,
        };
        assert!(aggregate(&v, &none, 7).unwrap().iter().all(Option::is_none));
        let all = Aggregator::Confident {
            threshold: 0.0,
            sigma1: 1.0,
            sigma: 1.0,
        };
        assert!(aggregate(&v, &all, 7).unwrap().iter().all(Option::is_some));
        let split = Votes::new([50u32, 50].repeat(400), 2).unwrap();
        let l = aggregate(&split, &Aggregator::Laplace { scale: 1.0 }, 1).unwrap();
        let ones = l.iter().filter(|x| **x == Some(1)).count();
        assert!((150..250).contains(&ones), "{ones}");
        // Seeded, and a prefix does not depend on what follows.
        let g = Aggregator::Gnmax { sigma: 40.0 };
        let a = aggregate(&split, &g, 3).unwrap();
        assert_eq!(a, aggregate(&split, &g, 3).unwrap());
        assert_eq!(
            a[..10],
            aggregate(&split.head(10).unwrap(), &g, 3).unwrap()[..]
        );
        assert_ne!(a, aggregate(&split, &g, 4).unwrap());
        assert!(aggregate(&v, &Aggregator::Gnmax { sigma: 0.0 }, 1).is_err());
    }
}
