//! What an attack wants: [`Goal`] (per image, a target class or a class to move away from), how
//! targets are chosen ([`TargetMode`]: none, fixed, random, least likely), and the goal's losses.
use crate::labels::Labels;
use crate::Result;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, Tensor};

/// What the attacker wants, per image of the batch.
pub enum Goal {
    /// Make the model output these classes (int64, shape (N,)).
    Targeted(Tensor),
    /// Make the model output anything but these classes (int64, shape (N,)).
    Untargeted(Tensor),
}

/// Class indices as an int64 tensor (N,) on `device`.
fn class_tensor(classes: &[usize], device: Device) -> Tensor {
    let v: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
    Tensor::from_slice(&v).to_device(device)
}

impl Goal {
    /// Toward `targets` when there are some, else away from `classes` (the true labels, or the
    /// clean prediction).
    pub fn new(targets: Option<&[usize]>, classes: &[usize], device: Device) -> Goal {
        match targets {
            Some(t) => Goal::Targeted(class_tensor(t, device)),
            None => Goal::Untargeted(class_tensor(classes, device)),
        }
    }

    pub fn classes(&self) -> &Tensor {
        match self {
            Goal::Targeted(t) | Goal::Untargeted(t) => t,
        }
    }

    pub fn is_targeted(&self) -> bool {
        matches!(self, Goal::Targeted(_))
    }

    /// The classes to move away from, for an attack that only works untargeted because it
    /// picks its own target classes (APGD-T, FAB-T, AutoAttack); `attack`'s error otherwise.
    pub fn untargeted_only(&self, attack: &str) -> Result<&Tensor> {
        match self {
            Goal::Untargeted(y) => Ok(y),
            Goal::Targeted(_) => Err(crate::Error::field(
                "targets",
                format!("{attack} is untargeted (it picks its own target classes); use it without targets"),
            )),
        }
    }

    /// Per-image loss to *minimize* (N,): cross-entropy toward the target, or minus the
    /// cross-entropy of the true class.
    pub fn loss(&self, logits: &Tensor) -> Tensor {
        let ce =
            logits.cross_entropy_loss::<Tensor>(self.classes(), None, Reduction::None, -100, 0.0);
        match self {
            Goal::Targeted(_) => ce,
            Goal::Untargeted(_) => -ce,
        }
    }

    /// The goal of the images at `rows` (int64 indices) of the batch.
    pub fn select(&self, rows: &Tensor) -> Goal {
        match self {
            Goal::Targeted(t) => Goal::Targeted(t.index_select(0, rows)),
            Goal::Untargeted(t) => Goal::Untargeted(t.index_select(0, rows)),
        }
    }

    /// Whether each image meets the goal (bool, (N,)).
    pub fn reached(&self, logits: &Tensor) -> Tensor {
        let pred = logits.argmax(-1, false);
        match self {
            Goal::Targeted(t) => pred.eq_tensor(t),
            Goal::Untargeted(t) => pred.ne_tensor(t),
        }
    }

    /// Probability of the goal class (target, or the true class for untargeted), (N,).
    pub fn class_prob(&self, logits: &Tensor) -> Tensor {
        logits
            .softmax(-1, Kind::Float)
            .gather(1, &self.classes().unsqueeze(1), false)
            .squeeze_dim(1)
    }
}

/// The goal's logit margin per image (N,), positive while the goal is not reached:
/// untargeted z_true − max_{j≠true} z_j, targeted max_{j≠target} z_j − z_target
/// (Carlini–Wagner's f before the −κ clamp; Square Attack's margin loss). Differentiable.
pub fn margin(goal: &Goal, logits: &Tensor) -> Tensor {
    let cls = goal.classes().unsqueeze(1);
    let z_cls = logits.gather(1, &cls, false).squeeze_dim(1);
    let z_other = logits
        .scatter_value(1, &cls, f64::NEG_INFINITY)
        .amax([1], false);
    match goal {
        Goal::Targeted(_) => z_other - z_cls,
        Goal::Untargeted(_) => z_cls - z_other,
    }
}

/// The predicted class of each row of `logits` (N,C).
pub fn predictions(logits: &Tensor) -> Vec<usize> {
    Vec::<i64>::try_from(logits.argmax(-1, false).to_device(Device::Cpu))
        .unwrap_or_default()
        .into_iter()
        .map(|v| v as usize)
        .collect()
}

/// How targets are chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetMode {
    Untargeted,
    /// The same class for every image.
    Fixed(usize),
    /// A class ≠ the true label, drawn per image from the run seed.
    Random,
    /// The class the bare model finds least likely on the clean image.
    LeastLikely,
}

impl TargetMode {
    /// `untargeted`, `random`, `least-likely`, or a class (index or name, see
    /// [`Labels::resolve`]).
    pub fn parse(spec: &str, labels: &Labels) -> Result<TargetMode> {
        Ok(match spec {
            "untargeted" => TargetMode::Untargeted,
            "random" => TargetMode::Random,
            "least-likely" => TargetMode::LeastLikely,
            t => TargetMode::Fixed(labels.resolve(t)?),
        })
    }

    /// Per-image targets (`None` when untargeted) for images of true class `labels`, named
    /// `keys` (random targets are drawn from `seed` and the name, so an image gets the same
    /// target whatever batch or shard it is in). `clean_logits` gives the bare model's logits
    /// on the clean images; it is called for least-likely targets only.
    pub fn targets(
        &self,
        labels: &[usize],
        keys: &[&str],
        seed: u64,
        classes: usize,
        clean_logits: impl FnOnce() -> Result<Tensor>,
    ) -> Result<Option<Vec<usize>>> {
        Ok(match self {
            TargetMode::Untargeted => None,
            TargetMode::Fixed(t) => Some(vec![*t; labels.len()]),
            TargetMode::Random => Some(
                labels
                    .iter()
                    .zip(keys)
                    .map(|(&label, key)| random_target(seed, key, label, classes))
                    .collect(),
            ),
            TargetMode::LeastLikely => Some(predictions(&(-clean_logits()?))),
        })
    }
}

/// A class other than `label`, uniform over the other `classes − 1`, drawn from `seed` and `key`.
pub fn random_target(seed: u64, key: &str, label: usize, classes: usize) -> usize {
    let r = (crate::rng::fnv1a_parts(&[&seed.to_string(), "target", key]) % (classes as u64 - 1))
        as usize;
    if r >= label {
        r + 1
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_the_mode() {
        let labels = [0, 3, 9, 3];
        let keys = ["a.png", "b.png", "c.png", "d.png"];
        let no_logits = || -> Result<Tensor> { panic!("logits asked for") };
        let t = |mode: TargetMode| mode.targets(&labels, &keys, 7, 10, no_logits).unwrap();
        assert_eq!(t(TargetMode::Untargeted), None);
        assert_eq!(t(TargetMode::Fixed(5)), Some(vec![5; 4]));
        let random = t(TargetMode::Random).unwrap();
        assert_eq!(random, t(TargetMode::Random).unwrap(), "seeded by name");
        for (r, l) in random.iter().zip(labels) {
            assert!(*r < 10 && *r != l);
        }
        let logits = Tensor::from_slice(&[0.0f32, -1.0, 2.0, 5.0, 1.0, -3.0]).view([2, 3]);
        let ll = TargetMode::LeastLikely.targets(&[0, 1], &keys[..2], 7, 3, || Ok(logits));
        assert_eq!(ll.unwrap(), Some(vec![1, 2]));
        let goal = Goal::new(Some(&[2, 2]), &[0, 1], Device::Cpu);
        assert!(goal.is_targeted());
        let picked = goal.select(&Tensor::from_slice(&[1i64]));
        assert_eq!(Vec::<i64>::try_from(picked.classes()).unwrap(), vec![2]);
    }
}
