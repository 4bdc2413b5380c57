//! Per-class precision, recall, F1 and support, the accuracy and the macro / weighted
//! averages, as scikit-learn's `classification_report(y_true, y_pred, output_dict=True)`
//! computes them (checked against it on a fixture, `scripts/fixtures/classification_sklearn.py`):
//! the classes are those present in `y_true` or `y_pred`, sorted; a ratio whose denominator
//! is 0 is 0 (sklearn's `zero_division="warn"`); F1 = 2·TP / (2·TP + FP + FN). Also the
//! confusion matrix (rows: true class, columns: predicted).
use serde::{Deserialize, Serialize};

/// One class's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassRow {
    pub class: usize,
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// An average row (macro: unweighted over the classes; weighted: by support).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Average {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub classes: Vec<ClassRow>,
    pub accuracy: f64,
    pub macro_avg: Average,
    pub weighted_avg: Average,
    /// `confusion[t][p]`: examples of true class t predicted p, over all `n_classes` classes.
    pub confusion: Vec<Vec<usize>>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The report of predictions `y_pred` of labels `y_true` (equal lengths, values < `n_classes`),
/// with class names from `label`.
pub fn report(
    y_true: &[usize],
    y_pred: &[usize],
    n_classes: usize,
    label: impl Fn(usize) -> String,
) -> Classification {
    assert_eq!(y_true.len(), y_pred.len(), "one prediction per label");
    let mut confusion = vec![vec![0usize; n_classes]; n_classes];
    for (&t, &p) in y_true.iter().zip(y_pred) {
        confusion[t][p] += 1;
    }
    let present: Vec<usize> = (0..n_classes)
        .filter(|&c| confusion[c].iter().sum::<usize>() > 0 || confusion.iter().any(|r| r[c] > 0))
        .collect();
    let classes: Vec<ClassRow> = present
        .iter()
        .map(|&c| {
            let tp = confusion[c][c];
            let support: usize = confusion[c].iter().sum();
            let predicted: usize = confusion.iter().map(|r| r[c]).sum();
            let (fp, fn_) = (predicted - tp, support - tp);
            ClassRow {
                class: c,
                label: label(c),
                precision: ratio(tp, predicted),
                recall: ratio(tp, support),
                f1: ratio(2 * tp, 2 * tp + fp + fn_),
                support,
            }
        })
        .collect();
    let total: usize = y_true.len();
    let k = classes.len().max(1) as f64;
    let mean = |f: fn(&ClassRow) -> f64| classes.iter().map(f).sum::<f64>() / k;
    let weighted = |f: fn(&ClassRow) -> f64| {
        if total == 0 {
            0.0
        } else {
            classes.iter().map(|r| f(r) * r.support as f64).sum::<f64>() / total as f64
        }
    };
    let correct: usize = (0..n_classes).map(|c| confusion[c][c]).sum();
    Classification {
        accuracy: ratio(correct, total),
        macro_avg: Average {
            precision: mean(|r| r.precision),
            recall: mean(|r| r.recall),
            f1: mean(|r| r.f1),
            support: total,
        },
        weighted_avg: Average {
            precision: weighted(|r| r.precision),
            recall: weighted(|r| r.recall),
            f1: weighted(|r| r.f1),
            support: total,
        },
        classes,
        confusion,
    }
}

/// The text table, as scikit-learn prints `classification_report` (2 digits).
pub fn text(c: &Classification) -> String {
    let w = c
        .classes
        .iter()
        .map(|r| r.label.len())
        .max()
        .unwrap_or(0)
        .max(12);
    let mut s = format!(
        "{:>w$} {:>9} {:>9} {:>9} {:>9}\n\n",
        "", "precision", "recall", "f1-score", "support"
    );
    for r in &c.classes {
        s += &format!(
            "{:>w$} {:>9.2} {:>9.2} {:>9.2} {:>9}\n",
            r.label, r.precision, r.recall, r.f1, r.support
        );
    }
    let n = c.macro_avg.support;
    s += &format!(
        "\n{:>w$} {:>9} {:>9} {:>9.2} {:>9}\n",
        "accuracy", "", "", c.accuracy, n
    );
    for (name, a) in [
        ("macro avg", &c.macro_avg),
        ("weighted avg", &c.weighted_avg),
    ] {
        s += &format!(
            "{:>w$} {:>9.2} {:>9.2} {:>9.2} {:>9}\n",
            name, a.precision, a.recall, a.f1, a.support
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_hand() {
        // true 0 0 1 1 2, pred 0 1 1 1 0: class 0 P 1/2 R 1/2; class 1 P 2/3 R 1; class 2 P 0 R 0.
        let c = report(&[0, 0, 1, 1, 2], &[0, 1, 1, 1, 0], 4, |k| k.to_string());
        assert_eq!(c.classes.len(), 3, "class 3 is in neither");
        assert_eq!(c.classes[1].precision, 2.0 / 3.0);
        assert_eq!(c.classes[1].recall, 1.0);
        assert_eq!(c.classes[1].f1, 0.8);
        assert_eq!(c.classes[2].f1, 0.0);
        assert_eq!(c.accuracy, 0.6);
        assert_eq!(c.confusion[0], vec![1, 1, 0, 0]);
        assert!((c.macro_avg.recall - 0.5).abs() < 1e-12);
    }
}
