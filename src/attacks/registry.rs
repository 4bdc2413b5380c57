//! Attacks by name: the one place names map to attacks (`fool bench --attack`).
use crate::attacks::autoattack::Version;
use crate::attacks::{Apgd, ApgdLoss, Attack, AutoAttack, CarliniWagner, Fab, Fgsm, MiFgsm};
use crate::attacks::{Pgd, SgdAttack, Square};
use crate::{Error, Result};

/// The attack names, with what the `steps` setting means for each.
pub const ATTACKS: &[(&str, &str)] = &[
    ("fgsm", "FGSM: one signed-gradient step of size eps (steps ignored)"),
    ("pgd", "PGD (Madry et al.): random start, step 2.5·eps/steps, 20 steps"),
    ("bim", "BIM: PGD without random start, 20 steps"),
    ("sgd", "the tutorial's SGD with momentum, lr 0.01, 100 steps"),
    ("mifgsm", "MI-FGSM (Dong et al.): decay 1.0, step eps/steps, 10 steps"),
    ("cw", "Carlini-Wagner L2: 5 binary-search steps x 100 Adam steps (steps per search), clipped to the L∞ budget"),
    ("apgd", "APGD-CE (Croce & Hein): 100 iterations, 1 restart"),
    ("apgd-dlr", "APGD with the DLR loss: 100 iterations, 1 restart"),
    ("apgd-t", "APGD-T: targeted DLR toward each of the 9 next-ranked classes, 100 iterations each (untargeted)"),
    ("fab-t", "FAB-T (Croce & Hein): minimal-norm boundary attack toward each of the 9 next-ranked classes, 100 iterations each (untargeted)"),
    ("square", "Square Attack L∞ (black box): 1000 queries (steps sets the query budget)"),
    ("autoattack", "AutoAttack standard: APGD-CE, APGD-T, FAB-T, Square 5000 queries, each on the images still standing (steps sets the APGD/FAB iterations; untargeted)"),
    ("autoattack-rand", "AutoAttack rand (randomized defenses): APGD-CE and APGD-DLR with EOT (--eot 20), 100 iterations (untargeted)"),
];

/// What the `steps` setting means for an attack, and its default: (label, default count).
pub fn steps_label(name: &str) -> Option<(&'static str, usize)> {
    Some(match name {
        "fgsm" => ("step", 1),
        "pgd" | "bim" => ("steps", Pgd::default().steps),
        "sgd" => ("steps", SgdAttack::default().steps),
        "mifgsm" => ("steps", MiFgsm::default().steps),
        "cw" => ("Adam steps per search", CarliniWagner::default().steps),
        "apgd" | "apgd-dlr" | "apgd-t" => ("iterations", Apgd::default().steps),
        "fab-t" => ("iterations", Fab::default().steps),
        "autoattack" | "autoattack-rand" => ("APGD/FAB iterations", AutoAttack::default().steps),
        "square" => ("queries", Square::default().max_queries),
        _ => return None,
    })
}

/// The stages of a cascade attack by name (see [`Attack::stages`]); empty for single attacks
/// and unknown names.
pub fn stages(name: &str) -> Vec<String> {
    build(name, None, true)
        .map(|a| a.stages())
        .unwrap_or_default()
}

/// Build an attack by name; `steps` overrides its default iteration count; `early_stop`
/// false makes iterative attacks run all their steps (throughput benchmarks).
pub fn build(name: &str, steps: Option<usize>, early_stop: bool) -> Result<Box<dyn Attack>> {
    if steps == Some(0) {
        return Err(Error::field("steps", "must be at least 1"));
    }
    Ok(match name {
        "fgsm" => Box::new(Fgsm::default()),
        "pgd" => {
            let d = Pgd::default();
            Box::new(Pgd {
                steps: steps.unwrap_or(d.steps),
                early_stop,
                ..d
            })
        }
        "bim" => {
            let d = Pgd::default();
            Box::new(Pgd {
                early_stop,
                ..Pgd::bim(steps.unwrap_or(d.steps), None)
            })
        }
        "sgd" => {
            let d = SgdAttack::default();
            Box::new(SgdAttack {
                steps: steps.unwrap_or(d.steps),
                early_stop,
                ..d
            })
        }
        "mifgsm" => {
            let d = MiFgsm::default();
            Box::new(MiFgsm {
                steps: steps.unwrap_or(d.steps),
                early_stop,
                ..d
            })
        }
        "cw" => {
            let d = CarliniWagner::default();
            Box::new(CarliniWagner {
                steps: steps.unwrap_or(d.steps),
                ..d
            })
        }
        "apgd" | "apgd-dlr" | "apgd-t" => {
            let d = Apgd::default();
            Box::new(Apgd {
                loss: match name {
                    "apgd" => ApgdLoss::Ce,
                    "apgd-dlr" => ApgdLoss::Dlr,
                    _ => ApgdLoss::DlrTargeted,
                },
                steps: steps.unwrap_or(d.steps),
                early_stop,
                ..d
            })
        }
        "fab-t" => {
            let d = Fab::default();
            Box::new(Fab {
                steps: steps.unwrap_or(d.steps),
                early_stop,
                ..d
            })
        }
        "autoattack" | "autoattack-rand" => {
            let d = AutoAttack::default();
            Box::new(AutoAttack {
                version: if name == "autoattack" {
                    Version::Standard
                } else {
                    Version::Rand
                },
                steps: steps.unwrap_or(d.steps),
                early_stop,
                ..d
            })
        }
        "square" => {
            let d = Square::default();
            Box::new(Square {
                max_queries: steps.unwrap_or(d.max_queries),
                ..d
            })
        }
        other => {
            let names: Vec<&str> = ATTACKS.iter().map(|(n, _)| *n).collect();
            return Err(Error::field(
                "attack",
                format!(
                    "unknown attack '{other}'; expected one of {}",
                    names.join(", ")
                ),
            ));
        }
    })
}
