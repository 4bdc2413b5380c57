//! Learning-rate schedules (`--schedule`, `--warmup`), per optimizer step, as PyTorch's
//! schedulers define them:
//!
//! * `constant`: the base rate;
//! * `step:E1,E2,…:γ`: `MultiStepLR` stepped once per epoch — the base rate times γ for every
//!   milestone epoch already finished (from epoch E1 + 1 on, ×γ; from E2 + 1, ×γ²; …);
//! * `cosine`: `CosineAnnealingLR` over the steps after the warm-up, down to 0 at the last step
//!   (η_t = η·½(1 + cos(π t / T)));
//! * `cyclic`: Wong et al. 2020's one cycle ("Fast is better than free"): linear from 0 up to
//!   the base rate at 2/5 of the steps after the warm-up, then linearly down to 0 at the end,
//!   evaluated after each step (their `np.interp(epoch + (i+1)/len, [0, 2E/5, E], [0, η, 0])`).
//!
//! A linear warm-up of W steps comes first (η·(t+1)/W for t < W), then the schedule.
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LrSchedule {
    #[default]
    Constant,
    Step {
        milestones: Vec<usize>,
        gamma: f64,
    },
    Cosine,
    Cyclic,
}

impl std::str::FromStr for LrSchedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |m: &str| {
            Error::field(
                "schedule",
                format!("'{s}': {m} (constant, cosine, cyclic or step:E1,E2:GAMMA, e.g. step:30,60:0.1)"),
            )
        };
        match s.trim() {
            "constant" => Ok(LrSchedule::Constant),
            "cosine" => Ok(LrSchedule::Cosine),
            "cyclic" => Ok(LrSchedule::Cyclic),
            t => {
                let rest = t
                    .strip_prefix("step:")
                    .ok_or_else(|| bad("unknown schedule"))?;
                let (ms, g) = rest.rsplit_once(':').ok_or_else(|| bad("no :GAMMA"))?;
                let milestones = ms
                    .split(',')
                    .map(|m| m.trim().parse::<usize>())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| bad("milestones are whole epoch numbers"))?;
                let gamma: f64 = g.trim().parse().map_err(|_| bad("GAMMA is a number"))?;
                if !(gamma > 0.0 && gamma.is_finite()) {
                    return Err(bad("GAMMA must be positive"));
                }
                if milestones.is_empty() || milestones.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(bad("milestones must increase"));
                }
                Ok(LrSchedule::Step { milestones, gamma })
            }
        }
    }
}

impl std::fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LrSchedule::Constant => f.write_str("constant"),
            LrSchedule::Cosine => f.write_str("cosine"),
            LrSchedule::Cyclic => f.write_str("cyclic"),
            LrSchedule::Step { milestones, gamma } => {
                let m: Vec<String> = milestones.iter().map(|m| m.to_string()).collect();
                write!(f, "step:{}:{gamma}", m.join(","))
            }
        }
    }
}

impl LrSchedule {
    /// The rate of step `t` (0-based, over the whole run) of `total` steps, `per_epoch` of them
    /// an epoch, after `warmup` warm-up steps, from the base rate `lr`.
    pub fn lr_at(&self, lr: f64, t: u64, per_epoch: u64, total: u64, warmup: u64) -> f64 {
        if t < warmup {
            return lr * (t + 1) as f64 / warmup as f64;
        }
        match self {
            LrSchedule::Constant => lr,
            LrSchedule::Step { milestones, gamma } => {
                let epochs_done = (t / per_epoch.max(1)) as usize;
                let k = milestones.iter().filter(|&&m| m <= epochs_done).count();
                lr * gamma.powi(k as i32)
            }
            LrSchedule::Cosine => {
                let span = total.saturating_sub(warmup).max(1) as f64;
                let x = (t - warmup) as f64 / span;
                lr * 0.5 * (1.0 + (std::f64::consts::PI * x).cos())
            }
            LrSchedule::Cyclic => {
                let span = total.saturating_sub(warmup).max(1) as f64;
                let x = ((t - warmup + 1) as f64 / span).min(1.0);
                if x <= 0.4 {
                    lr * x / 0.4
                } else {
                    lr * (1.0 - x) / 0.6
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_pytorch() {
        let s: LrSchedule = "step:2,4:0.1".parse().unwrap();
        // 10 steps per epoch: epochs 0-1 full rate, 2-3 ×0.1, 4+ ×0.01.
        let at = |t| s.lr_at(1.0, t, 10, 60, 0);
        assert_eq!((at(0), at(19)), (1.0, 1.0));
        assert!((at(20) - 0.1).abs() < 1e-15 && (at(39) - 0.1).abs() < 1e-15);
        assert!((at(40) - 0.01).abs() < 1e-15);
        let c = LrSchedule::Cosine;
        assert_eq!(c.lr_at(0.5, 0, 10, 100, 0), 0.5);
        assert!((c.lr_at(0.5, 50, 10, 100, 0) - 0.25).abs() < 1e-12);
        // Warm-up: linear to the base rate, then the schedule over the remaining steps.
        assert!((c.lr_at(0.5, 0, 10, 100, 10) - 0.05).abs() < 1e-12);
        assert!((c.lr_at(0.5, 9, 10, 100, 10) - 0.5).abs() < 1e-12);
        assert!((c.lr_at(0.5, 10, 10, 100, 10) - 0.5).abs() < 1e-12);
        assert!((c.lr_at(0.5, 55, 10, 100, 10) - 0.25).abs() < 1e-12);
        assert_eq!(LrSchedule::Constant.lr_at(0.3, 7, 10, 100, 0), 0.3);
        // Cyclic: up to the base rate at 2/5 of the run (after step 40 of 100), down to 0.
        let y: LrSchedule = "cyclic".parse().unwrap();
        assert!((y.lr_at(0.5, 0, 10, 100, 0) - 0.5 / 40.0).abs() < 1e-12);
        assert!((y.lr_at(0.5, 39, 10, 100, 0) - 0.5).abs() < 1e-12);
        assert!((y.lr_at(0.5, 69, 10, 100, 0) - 0.25).abs() < 1e-12);
        assert_eq!(y.lr_at(0.5, 99, 10, 100, 0), 0.0);
        assert_eq!(y.to_string(), "cyclic");
        for bad in ["step:3,2:0.1", "step:2:0", "linear", "step:2", "step:a:0.1"] {
            assert!(bad.parse::<LrSchedule>().is_err(), "{bad}");
        }
        assert_eq!(s.to_string(), "step:2,4:0.1");
    }
}
