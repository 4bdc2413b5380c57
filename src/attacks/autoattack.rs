//! AutoAttack (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
//! ensemble of diverse parameter-free attacks"), the evaluation RobustBench reports: a cascade
//! of attacks, each run only on the images the ones before it left standing, an image counting
//! as broken by the first attack that finds an adversarial image for it.
//!
//! - `standard`: APGD-CE (100 iterations, 1 restart), APGD-T (targeted DLR, 9 target classes,
//!   100 iterations each), FAB-T (9 target classes, 100 iterations each), Square (5,000
//!   queries, p_init 0.8, the schedule of the first 5,000 of 10,000 queries), L∞ and L2;
//! - `rand`, for randomized defenses: APGD-CE and APGD-DLR, with the gradients averaged over
//!   the victim's EOT draws (`fool bench --eot 20` as the reference).
//!
//! Images the model already misclassifies are broken at stage 0 ("clean") and attacked by no
//! stage, as AutoAttack counts them. Every stage's image is an 8-bit image within budget (the
//! convention of every fool attack); the run checks, as AutoAttack's own sanity checks do, that
//! the returned images are finite, in [0,1] and within eps, and fails otherwise.
use super::{distances, Victim};
use super::{Apgd, ApgdLoss, Attack, AttackOutput, Budget, Fab, Goal, Norm, Square, StepInfo};
use crate::{Error, Result};
use tch::{Kind, Tensor};

/// Which AutoAttack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Standard,
    Rand,
}

#[derive(Debug, Clone)]
pub struct AutoAttack {
    pub version: Version,
    /// Iterations of the APGD and FAB stages (100).
    pub steps: usize,
    /// Square's query budget (5,000).
    pub square_queries: usize,
    /// Let each stage stop an image at its first success (the cascade needs nothing more).
    pub early_stop: bool,
}

impl Default for AutoAttack {
    fn default() -> Self {
        AutoAttack {
            version: Version::Standard,
            steps: 100,
            square_queries: 5000,
            early_stop: true,
        }
    }
}

impl AutoAttack {
    /// The attacks of the cascade under `norm`, in order (the same under L∞ and L2: each
    /// attack takes the norm from the budget).
    pub fn cascade(&self, norm: Norm) -> Vec<Box<dyn Attack>> {
        debug_assert!(matches!(norm, Norm::Linf | Norm::L2));
        let apgd = |loss| Apgd {
            loss,
            steps: self.steps,
            early_stop: self.early_stop,
            ..Apgd::default()
        };
        let mut out: Vec<Box<dyn Attack>> = vec![Box::new(apgd(ApgdLoss::Ce))];
        match self.version {
            Version::Rand => out.push(Box::new(apgd(ApgdLoss::Dlr))),
            Version::Standard => {
                out.push(Box::new(apgd(ApgdLoss::DlrTargeted)));
                out.push(Box::new(Fab {
                    steps: self.steps,
                    early_stop: self.early_stop,
                    ..Fab::default()
                }));
                // AutoAttack's Square: p_init 0.8, the schedule not rescaled.
                out.push(Box::new(Square {
                    max_queries: self.square_queries,
                    p_init: 0.8,
                    rescale_schedule: false,
                }));
            }
        }
        out
    }
}

impl Attack for AutoAttack {
    fn name(&self) -> String {
        match self.version {
            Version::Standard => "autoattack",
            Version::Rand => "autoattack-rand",
        }
        .into()
    }

    fn untargeted_only(&self) -> bool {
        true
    }

    fn stages(&self) -> Vec<String> {
        // The stage names do not depend on the norm.
        let mut names = vec!["clean".to_string()];
        names.extend(
            self.cascade(Norm::Linf)
                .iter()
                .map(|a| match a.name().as_str() {
                    "apgd" => "apgd-ce".to_string(),
                    other => other.to_string(),
                }),
        );
        names
    }

    fn run(
        &self,
        model: &dyn Victim,
        x0: &Tensor,
        goal: &Goal,
        budget: Budget,
        on_step: &mut dyn FnMut(StepInfo),
    ) -> Result<AttackOutput> {
        let y = goal.untargeted_only(&self.name())?;
        let x0 = x0.detach();
        let n = x0.size()[0] as usize;
        let clean = tch::no_grad(|| model.logits(&x0))?;
        let wrong = Vec::<bool>::try_from(
            clean
                .argmax(-1, false)
                .ne_tensor(y)
                .to_device(tch::Device::Cpu),
        )
        .unwrap_or_default();
        let mut adv = x0.copy();
        let mut success = wrong.clone();
        let mut broken_by: Vec<Option<usize>> = wrong.iter().map(|&w| w.then_some(0)).collect();
        let mut class_prob = Vec::<f64>::try_from(
            goal.class_prob(&clean)
                .to_kind(Kind::Double)
                .to_device(tch::Device::Cpu),
        )
        .unwrap_or_default();
        let mut queries = vec![1usize; n];
        let mut steps = 0;
        let mut first = true;
        for (stage, attack) in self.cascade(budget.norm).iter().enumerate() {
            let open: Vec<i64> = (0..n).filter(|&i| !success[i]).map(|i| i as i64).collect();
            if open.is_empty() {
                break;
            }
            let idx = Tensor::from_slice(&open).to_device(x0.device());
            let already = n - open.len();
            let out = attack.run(
                model,
                &x0.index_select(0, &idx),
                &goal.select(&idx),
                budget,
                &mut |info| {
                    on_step(StepInfo {
                        reached: info.reached + already,
                        ..info
                    })
                },
            )?;
            steps += out.steps;
            let q = out
                .image_queries
                .clone()
                .unwrap_or_else(|| vec![out.queries; open.len()]);
            // A stage's image replaces the one kept when it breaks the image, or, for an image
            // no stage breaks, the first stage's (APGD-CE's best) is kept.
            let take: Vec<i64> = (0..open.len())
                .filter(|&j| out.success[j] || first)
                .map(|j| j as i64)
                .collect();
            if !take.is_empty() {
                let t = Tensor::from_slice(&take).to_device(x0.device());
                adv = adv.index_copy(0, &idx.index_select(0, &t), &out.adv.index_select(0, &t));
            }
            for (j, &i) in open.iter().enumerate() {
                let i = i as usize;
                queries[i] += q[j];
                if out.success[j] || first {
                    class_prob[i] = out.class_prob[j];
                }
                if out.success[j] {
                    success[i] = true;
                    broken_by[i] = Some(stage + 1);
                }
            }
            first = false;
        }
        check(&x0, &adv, budget)?;
        Ok(AttackOutput {
            adv,
            success,
            class_prob,
            steps,
            queries: queries.iter().copied().max().unwrap_or(0),
            image_queries: Some(queries),
            broken_by: Some(broken_by),
        })
    }
}

/// AutoAttack's sanity checks on the returned images: finite, in [0,1], within the budget.
fn check(x0: &Tensor, adv: &Tensor, budget: Budget) -> Result<()> {
    let bad = |m: String| Error::internal("autoattack", m);
    if adv.isfinite().logical_not().any().int64_value(&[]) != 0 {
        return Err(bad("an attacked image has NaN or infinite values".into()));
    }
    let (lo, hi) = (adv.min().double_value(&[]), adv.max().double_value(&[]));
    if lo < 0.0 || hi > 1.0 {
        return Err(bad(format!("attacked values outside [0,1]: {lo}..{hi}")));
    }
    let (linf, l2) = distances(adv, x0);
    let d = match budget.norm {
        Norm::Linf => linf,
        Norm::L2 => l2,
    };
    let worst = d.iter().copied().fold(0.0, f64::max);
    if worst > budget.eps + 1e-6 {
        return Err(bad(format!(
            "a perturbation of {worst} exceeds eps {} in {}",
            budget.eps,
            budget.norm.symbol()
        )));
    }
    Ok(())
}
