//! The sections of a PATE ensemble (its teachers' accuracy) and of a `fool report robustness`
//! folder (robustness × privacy).
use super::collect::{PateRun, RobustnessRun};
use super::page::{esc, pct, Cell, Page};
use super::specs;
use serde_json::json;

/// A PATE ensemble: how many teachers finished, their accuracy.
pub fn pate(page: &mut Page, run: &PateRun, k: usize) {
    let m = &run.manifest;
    page.section(
        &format!("pate-{k}"),
        &format!("PATE ensemble: {}", run.name),
        "pate",
    );
    let accs: Vec<f64> = run
        .teachers
        .iter()
        .flatten()
        .filter_map(|t| t.test_accuracy)
        .collect();
    let mean = (!accs.is_empty()).then(|| accs.iter().sum::<f64>() / accs.len() as f64);
    page.body += &format!(
        "<p class=\"desc\">{} teachers on disjoint parts (partition seed {}) of {} · {} finished · arch {} · folder {}</p>\n",
        m.teachers,
        m.partition_seed,
        m.dataset,
        accs.len(),
        esc(&m.template.arch.to_string()),
        esc(&run.dir.display().to_string())
    );
    let min = accs.iter().copied().reduce(f64::min);
    let max = accs.iter().copied().reduce(f64::max);
    page.table(
        "pate",
        &["teachers", "finished", "mean test acc", "min", "max"],
        vec![vec![
            Cell::num(Some(m.teachers as f64), |v| format!("{v}")),
            Cell::num(Some(accs.len() as f64), |v| format!("{v}")),
            Cell::num(mean, |v| pct(v, 2)),
            Cell::num(min, |v| pct(v, 2)),
            Cell::num(max, |v| pct(v, 2)),
        ]],
    );
    let bars: Vec<serde_json::Value> = run
        .teachers
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let t = t.as_ref()?;
            Some(json!({"teacher": format!("teacher-{i:04}"), "accuracy": t.test_accuracy?, "examples": t.train_examples}))
        })
        .collect();
    if !bars.is_empty() {
        let div = page.chart(specs::teachers(bars));
        page.body += &div;
    }
    page.end_section();
}

/// A robustness report: the table and robust accuracy vs membership TPR.
pub fn robustness(page: &mut Page, run: &RobustnessRun, k: usize) {
    page.section(
        &format!("robustness-{k}"),
        &format!("robustness × privacy: {}", run.name),
        "robustness",
    );
    let rows = run
        .rows
        .iter()
        .map(|r| {
            vec![
                Cell::Text(r.run.clone()),
                Cell::Text(r.kind.clone()),
                Cell::Num(
                    r.epsilon,
                    r.epsilon.map_or("∞".into(), |e| format!("{e:.2}")),
                ),
                Cell::Text(r.adversarial.clone().unwrap_or_else(|| "–".into())),
                Cell::num(Some(r.clean_accuracy), |v| pct(v, 2)),
                Cell::num(Some(r.robust_accuracy), |v| pct(v, 2)),
                Cell::Text(format!(
                    "[{}, {}]",
                    pct(r.robust_ci_low, 2),
                    pct(r.robust_ci_high, 2)
                )),
                Cell::Text(format!("{} at {:.4} on {}", r.attack, r.eps, r.n)),
                Cell::num(r.membership_auc, |v| format!("{v:.3}")),
                Cell::num(r.tpr_at_fpr_0_001, |v| format!("{v:.4}")),
                Cell::num(Some(r.train_seconds), |v| format!("{v:.0} s")),
            ]
        })
        .collect();
    page.table(
        "robustness",
        &[
            "run",
            "kind",
            "ε",
            "adversarial",
            "clean",
            "robust",
            "95% CI",
            "attack",
            "MIA AUC",
            "TPR@0.1%FPR",
            "train time",
        ],
        rows,
    );
    let pts: Vec<serde_json::Value> = run
        .rows
        .iter()
        .filter_map(|r| {
            Some(json!({"run": r.run, "kind": r.kind, "robust": r.robust_accuracy, "ci_low": r.robust_ci_low,
                        "ci_high": r.robust_ci_high, "tpr": r.tpr_at_fpr_0_001?}))
        })
        .collect();
    if !pts.is_empty() {
        let div = page.chart(specs::robust_vs_privacy(pts));
        page.body += &div;
    }
    page.end_section();
}
