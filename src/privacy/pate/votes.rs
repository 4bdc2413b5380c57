//! The teachers' votes: a `(Q, C)` matrix of counts, row q holding how many of the N teachers
//! predicted each of the C classes for query q — the `.npy` file TF Privacy's PATE analysis
//! reads (`--counts_file`). Every row sums to N.
use crate::{Error, Result};
use std::path::Path;

/// A checked vote matrix: non-negative integer counts, C ≥ 2 classes, every row summing to the
/// same number of teachers N ≥ 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Votes {
    counts: Vec<u32>,
    classes: usize,
    teachers: u32,
}

impl Votes {
    /// Votes from row-major counts (`counts.len()` = queries × classes); errors name the
    /// field `votes`.
    pub fn new(counts: Vec<u32>, classes: usize) -> Result<Votes> {
        Self::check(counts, classes).map_err(|m| Error::field("votes", m))
    }

    fn check(counts: Vec<u32>, classes: usize) -> std::result::Result<Votes, String> {
        if classes < 2 {
            return Err(format!(
                "expected at least 2 classes (columns), got {classes}"
            ));
        }
        if counts.is_empty() || !counts.len().is_multiple_of(classes) {
            return Err(format!(
                "{} counts do not make rows of {classes} classes (at least one query)",
                counts.len()
            ));
        }
        let mut teachers = None;
        for (q, row) in counts.chunks(classes).enumerate() {
            let total: u64 = row.iter().map(|&c| u64::from(c)).sum();
            match teachers {
                None => teachers = Some(total),
                Some(t) if t != total => {
                    return Err(format!(
                        "every row must sum to the number of teachers: row 0 sums to {t}, row {q} to {total}"
                    ))
                }
                Some(_) => {}
            }
        }
        let teachers = teachers.unwrap_or(0);
        if teachers == 0 {
            return Err("the rows sum to 0: no teacher voted".into());
        }
        let teachers = u32::try_from(teachers)
            .map_err(|_| format!("{teachers} teachers: too many (at most {})", u32::MAX))?;
        Ok(Votes {
            counts,
            classes,
            teachers,
        })
    }

    /// Read a 2-D `.npy` array of counts: any integer dtype, or floats that are whole numbers
    /// (as numpy saves counts summed in float). Errors name the file and what is wrong.
    pub fn read(path: &Path) -> Result<Votes> {
        let (values, shape) = match crate::npy::read_int(path, "of vote counts") {
            Ok(v) => (v.0.into_iter().map(|x| x as f64).collect::<Vec<f64>>(), v.1),
            Err(int_err) => match crate::npy::read_float(path) {
                Ok(v) => v,
                Err(_) => return Err(int_err),
            },
        };
        let bad = |m: String| Error::bad_file(path, m);
        if shape.len() != 2 {
            return Err(bad(format!(
                "expected a 2-D (queries, classes) array of vote counts, got shape {shape:?}"
            )));
        }
        let mut counts = Vec::with_capacity(values.len());
        for (i, &v) in values.iter().enumerate() {
            let (q, c) = (i / shape[1].max(1), i % shape[1].max(1));
            if v.is_nan() || v.is_infinite() {
                return Err(bad(format!("count [{q}, {c}] is {v}: expected a number")));
            }
            if v < 0.0 {
                return Err(bad(format!("count [{q}, {c}] is negative ({v})")));
            }
            if v.fract() != 0.0 {
                return Err(bad(format!("count [{q}, {c}] is not a whole number ({v})")));
            }
            if v > f64::from(u32::MAX) {
                return Err(bad(format!("count [{q}, {c}] is too large ({v})")));
            }
            counts.push(v as u32);
        }
        Self::check(counts, shape[1]).map_err(bad)
    }

    /// Write as an int64 `(Q, C)` `.npy` file, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        use ndarray_npy::WriteNpyExt;
        let data: Vec<i64> = self.counts.iter().map(|&c| i64::from(c)).collect();
        let arr = ndarray::Array2::from_shape_vec((self.queries(), self.classes), data)
            .map_err(|e| Error::internal("vote matrix", e))?;
        crate::files::write_atomic(path, |f| {
            arr.write_npy(std::io::BufWriter::new(f))
                .map_err(|e| Error::bad_file(path, format!("cannot write .npy: {e}")))
        })
    }

    pub fn queries(&self) -> usize {
        self.counts.len() / self.classes
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// N, the number of teachers (the total of every row).
    pub fn teachers(&self) -> u32 {
        self.teachers
    }

    /// The counts of query `q`.
    pub fn row(&self, q: usize) -> &[u32] {
        &self.counts[q * self.classes..(q + 1) * self.classes]
    }

    pub fn rows(&self) -> impl Iterator<Item = &[u32]> {
        self.counts.chunks(self.classes)
    }

    /// The first `n` queries (the student asked only these); an error (field `queries`) when
    /// there are fewer rows.
    pub fn head(&self, n: usize) -> Result<Votes> {
        if n == 0 || n > self.queries() {
            return Err(Error::field(
                "queries",
                format!(
                    "{n} queries asked, but the vote matrix has {} rows (at least 1)",
                    self.queries()
                ),
            ));
        }
        Ok(Votes {
            counts: self.counts[..n * self.classes].to_vec(),
            classes: self.classes,
            teachers: self.teachers,
        })
    }
}

/// The index of the largest count, the first one on ties (numpy's `argmax`).
pub fn argmax(row: &[impl PartialOrd + Copy]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_must_agree_and_be_votes() {
        let v = Votes::new(vec![3, 1, 0, 2, 2, 0], 3).unwrap();
        assert_eq!((v.queries(), v.classes(), v.teachers()), (2, 3, 4));
        assert_eq!(v.row(1), &[2, 2, 0]);
        assert_eq!(argmax(v.row(1)), 0);
        let msg = |r: Result<Votes>| r.unwrap_err().to_string();
        assert!(msg(Votes::new(vec![3, 1, 0, 2, 1, 0], 3)).contains("row 0 sums to 4, row 1 to 3"));
        assert!(msg(Votes::new(vec![0, 0], 2)).contains("no teacher"));
        assert!(msg(Votes::new(vec![1], 1)).contains("at least 2 classes"));
        assert!(msg(Votes::new(vec![1, 2, 3], 2)).contains("do not make rows"));
        assert!(msg(v.head(3)).contains("2 rows"));
        assert_eq!(v.head(1).unwrap().queries(), 1);
    }
}
