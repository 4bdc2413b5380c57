//! Attacks by name, for `fool bench --attack`.
use crate::attacks::{Attack, SgdAttack};
use crate::{Error, Result};

/// Names `fool bench --attack` accepts.
pub const ATTACKS: &[&str] = &["sgd"];

/// Build an attack by name; `steps` overrides its default iteration count.
pub fn build(name: &str, steps: Option<usize>) -> Result<Box<dyn Attack>> {
    Ok(match name {
        "sgd" => {
            let d = SgdAttack::default();
            Box::new(SgdAttack { steps: steps.unwrap_or(d.steps), ..d })
        }
        other => {
            return Err(Error::bad_arg(
                "--attack",
                format!("unknown attack '{other}'; expected one of {}", ATTACKS.join(", ")),
            ))
        }
    })
}
