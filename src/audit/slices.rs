//! Slices of the audited examples, as TF Privacy's `SlicingSpec`: the whole set, one slice
//! per true class, and the correctly / incorrectly classified examples. Each attack runs on
//! each slice separately (members and non-members of the slice only).
use crate::{Error, Result};
use std::fmt;

/// One slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slice {
    /// Every example.
    All,
    /// Examples whose true label is K.
    Class(usize),
    /// Examples the model classifies correctly (argmax = label).
    Correct,
    /// Examples the model misclassifies.
    Incorrect,
}

impl fmt::Display for Slice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Slice::All => f.write_str("all"),
            Slice::Class(k) => write!(f, "class={k}"),
            Slice::Correct => f.write_str("correct"),
            Slice::Incorrect => f.write_str("incorrect"),
        }
    }
}

impl Slice {
    /// Whether an example with true label `label` and prediction `predicted` is in the slice.
    pub fn contains(&self, label: usize, predicted: usize) -> bool {
        match self {
            Slice::All => true,
            Slice::Class(k) => label == *k,
            Slice::Correct => label == predicted,
            Slice::Incorrect => label != predicted,
        }
    }
}

/// Which slicings to run besides `all` (which always runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SliceSpec {
    /// One slice per class.
    pub by_class: bool,
    /// `correct` and `incorrect`.
    pub by_correctness: bool,
}

/// The names accepted by `--slices`.
pub const SLICE_CHOICES: &str = "all, class, correctness";

impl std::str::FromStr for SliceSpec {
    type Err = Error;
    /// A comma-separated list of `all`, `class`, `correctness` (`all` is always included).
    fn from_str(s: &str) -> Result<Self> {
        let mut spec = SliceSpec::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.to_ascii_lowercase().as_str() {
                "all" | "entire" => {}
                "class" | "classes" | "by-class" => spec.by_class = true,
                "correctness" | "correct" | "incorrect" => spec.by_correctness = true,
                _ => {
                    return Err(Error::field(
                        "slices",
                        format!("unknown slicing '{part}'; choose from: {SLICE_CHOICES}"),
                    ))
                }
            }
        }
        Ok(spec)
    }
}

impl SliceSpec {
    /// Every slicing.
    pub fn everything() -> SliceSpec {
        SliceSpec {
            by_class: true,
            by_correctness: true,
        }
    }

    /// The slices to audit for a `num_classes`-class model, `all` first.
    pub fn slices(&self, num_classes: usize) -> Vec<Slice> {
        let mut v = vec![Slice::All];
        if self.by_class {
            v.extend((0..num_classes).map(Slice::Class));
        }
        if self.by_correctness {
            v.extend([Slice::Correct, Slice::Incorrect]);
        }
        v
    }
}
