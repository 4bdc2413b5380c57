//! The training runs' sections: the comparison table of several runs (accuracy, ε, membership
//! AUC, TPR@0.1%FPR, robust accuracy), the curves by epoch, membership leakage by epoch,
//! privacy vs utility, and the ROC curves of the audits on log-log axes.
use super::collect::{AuditRun, TrainRun};
use super::page::{esc, pct, Cell, Page};
use super::specs;
use crate::audit::render::RocCurve;
use crate::report::privacy::{load_run, row, ReportRow};
use serde_json::{json, Value};

/// The comparison rows of the finished runs (`fool report privacy`'s), with notes for those
/// that do not read.
pub fn comparison_rows(runs: &[TrainRun], notes: &mut Vec<String>) -> Vec<ReportRow> {
    runs.iter()
        .filter(|r| r.meta.is_some())
        .filter_map(|r| match load_run(&r.dir) {
            Ok(run) => Some(ReportRow {
                run: r.name.clone(),
                ..row(&run)
            }),
            Err(e) => {
                notes.push(format!("{e}: left out of the comparison"));
                None
            }
        })
        .collect()
}

/// The comparison table and the privacy-vs-utility chart.
pub fn comparison(page: &mut Page, rows: &[ReportRow]) {
    page.section("comparison", "Runs side by side", "comparison");
    page.body += "<p class=\"desc\">Test accuracy, privacy budget ε (∞: not private), the strongest membership-inference attack of the last audit (AUC, advantage, TPR at 0.1% FPR) and accuracy under attack (from RUN/bench or RUN/robustness).</p>\n";
    let table = rows
        .iter()
        .map(|r| {
            vec![
                Cell::Text(r.run.clone()),
                Cell::Text(r.kind.clone()),
                Cell::Text(format!("{} / {}", r.dataset, r.arch)),
                Cell::num(r.test_accuracy, |v| pct(v, 2)),
                Cell::Num(
                    r.epsilon,
                    r.epsilon.map_or("∞".into(), |e| format!("{e:.2}")),
                ),
                Cell::num(r.best_auc, |v| format!("{v:.3}")),
                Cell::num(r.best_advantage, |v| format!("{v:.3}")),
                Cell::num(r.tpr_at_fpr_0_001, |v| format!("{v:.4}")),
                Cell::num(r.robust_accuracy, |v| format!("{:.1}%", 100.0 * v)),
                Cell::Text(match (&r.robust_attack, r.robust_eps) {
                    (Some(a), Some(e)) => format!("{a} at {e:.4}"),
                    _ => "–".into(),
                }),
            ]
        })
        .collect();
    page.table(
        "comparison",
        &[
            "run",
            "kind",
            "data / arch",
            "test acc",
            "ε",
            "best AUC",
            "advantage",
            "TPR@0.1%FPR",
            "robust acc",
            "attack",
        ],
        table,
    );
    let points: Vec<Value> = rows
        .iter()
        .filter(|r| r.best_auc.is_some() && r.test_accuracy.is_some())
        .map(|r| {
            json!({"run": r.run, "kind": r.kind, "auc": r.best_auc, "accuracy": r.test_accuracy,
                   "epsilon": r.epsilon.map_or("∞".to_string(), |e| format!("{e:.2}"))})
        })
        .collect();
    if !points.is_empty() {
        page.body += "<h3>Privacy vs utility</h3>";
        let div = page.chart(specs::privacy_vs_utility(points));
        page.body += &div;
    }
    page.end_section();
}

/// Training curves of every run, and membership leakage by epoch where audited.
pub fn training(page: &mut Page, runs: &[TrainRun]) {
    page.section("training", "Training", "train");
    let mut t = Vec::new();
    for r in runs {
        let m = r.meta.as_ref();
        let status = if m.is_some() {
            "finished".to_string()
        } else {
            format!(
                "unfinished ({}/{} epochs)",
                r.history.len(),
                r.epochs_planned
            )
        };
        let secs: f64 = r.history.iter().map(|h| h.seconds).sum();
        t.push(vec![
            Cell::Text(r.name.clone()),
            Cell::Text(status),
            Cell::Text(m.map_or("–".into(), |m| format!("{} / {}", m.dataset, m.arch))),
            Cell::num(Some(r.history.len() as f64), |v| format!("{v}")),
            Cell::num(r.history.last().map(|h| h.test_accuracy), |v| pct(v, 2)),
            Cell::Num(
                r.history.last().and_then(|h| h.epsilon),
                r.history
                    .last()
                    .and_then(|h| h.epsilon)
                    .map_or("∞".into(), |e| format!("{e:.3}")),
            ),
            Cell::num(m.and_then(|m| m.noise), |v| format!("{v:.3}")),
            Cell::num(m.and_then(|m| m.clip), |v| format!("{v}")),
            Cell::num(Some(secs), |v| format!("{v:.0} s")),
        ]);
    }
    page.table(
        "runs",
        &[
            "run",
            "status",
            "data / arch",
            "epochs",
            "test acc",
            "ε",
            "noise σ",
            "clip",
            "time",
        ],
        t,
    );
    let mut curves = Vec::new();
    let mut leak = Vec::new();
    for r in runs {
        for h in &r.history {
            for (split, loss, acc) in [
                ("train", h.train_loss, h.train_accuracy),
                ("test", h.test_loss, h.test_accuracy),
            ] {
                curves.push(
                    json!({"run": r.name, "epoch": h.epoch, "split": split, "loss": finite(loss),
                                   "accuracy": finite(acc), "epsilon": h.epsilon.and_then(finite)}),
                );
            }
            let best = h.audit.iter().flatten().filter(|a| a.slice == "all");
            let auc = best.clone().map(|a| a.auc).fold(None, max);
            let adv = best.map(|a| a.advantage).fold(None, max);
            if auc.is_some() {
                leak.push(json!({"run": r.name, "epoch": h.epoch, "auc": auc, "advantage": adv}));
            }
        }
    }
    if !curves.is_empty() {
        let div = page.chart(specs::training(curves));
        page.body += &div;
    }
    if !leak.is_empty() {
        page.body += "<h3>Membership leakage by epoch</h3><p class=\"desc\">The strongest attack of each audited epoch (--audit-every): threshold and logistic-regression attacks, members = training examples.</p>";
        let div = page.chart(specs::privacy_by_epoch(leak));
        page.body += &div;
    }
    page.end_section();
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn max(m: Option<f64>, v: f64) -> Option<f64> {
    Some(m.map_or(v, |m| m.max(v)))
}

/// Membership audits: each audit folder's table, and every ROC curve (audit folders and
/// RUN/audit of the runs) on log-log axes.
pub fn audits(page: &mut Page, runs: &[TrainRun], audits: &[AuditRun]) {
    // A run's RUN/audit given on its own too is drawn once, as the audit folder.
    let canon = |p: &std::path::Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let given: Vec<_> = audits.iter().map(|a| canon(&a.dir)).collect();
    let curves: Vec<(&str, &RocCurve)> = runs
        .iter()
        .filter(|r| !given.contains(&canon(&r.dir.join("audit"))))
        .flat_map(|r| r.roc.iter().map(move |c| (r.name.as_str(), c)))
        .chain(
            audits
                .iter()
                .flat_map(|a| a.roc.iter().map(move |c| (a.name.as_str(), c))),
        )
        .collect();
    if curves.is_empty() && audits.is_empty() {
        return;
    }
    page.section("audits", "Membership inference", "audit");
    for a in audits {
        page.body += &format!("<h3>{}</h3>", esc(&a.name));
        let rows = a
            .results
            .iter()
            .map(|r| {
                vec![
                    Cell::Text(r.attack.to_string()),
                    Cell::Text(r.slice.clone()),
                    Cell::num(Some(r.auc), |v| format!("{v:.4}")),
                    Cell::num(Some(r.advantage), |v| format!("{v:.4}")),
                    Cell::num(Some(r.tpr_at_fpr_0_001), |v| format!("{v:.4}")),
                    Cell::num(Some(r.tpr_at_fpr_0_01), |v| format!("{v:.4}")),
                    Cell::num(Some(r.n_members as f64), |v| format!("{v}")),
                    Cell::num(Some(r.n_nonmembers as f64), |v| format!("{v}")),
                ]
            })
            .collect();
        page.table(
            "audit",
            &[
                "attack",
                "slice",
                "AUC",
                "advantage",
                "TPR@0.1%FPR",
                "TPR@1%FPR",
                "members",
                "non-members",
            ],
            rows,
        );
    }
    let pts: Vec<Value> = curves
        .iter()
        .flat_map(|(name, c)| {
            let curve = format!("{name} · {} (AUC {:.3})", c.attack, c.auc);
            c.points
                .iter()
                .map(move |&(f, t)| json!({"curve": curve, "fpr": f.max(1e-5), "tpr": t.max(1e-5)}))
        })
        .collect();
    if !pts.is_empty() {
        page.body += "<h3>ROC curves (log-log)</h3><p class=\"desc\">Rates below 1e-5 are drawn at 1e-5; the dashed line is chance.</p>";
        let div = page.chart(specs::roc(pts));
        page.body += &div;
    }
    page.end_section();
}
