//! `fool report privacy RUN...`: privacy, utility and robustness of training runs side by side
//! (non-private, DP-SGD and PATE students).
//!
//! For each run folder (from `fool train`) it reads `metadata.json` (ε, accuracy, and the
//! per-epoch membership audits of `--audit-every`), and when present `audit/audit.json` (from
//! `fool audit --out RUN/audit`, e.g. with LiRA) and `bench/summary.json` (from
//! `fool bench … --out RUN/bench`; else the evaluations of `fool report robustness` in
//! `robustness/*/summary.json`). It writes `privacy_by_epoch.png/svg`,
//! `privacy_vs_utility.png/svg`, `privacy_report.csv` and `privacy_report.json`.
use crate::audit::AuditResult;
use crate::bench::SummaryRow;
use crate::files::{ensure_writable_dir, read_json};
use crate::plot::{draw_legend, legend_line, line_chart, write_png_svg, COLORS};
use crate::train::Metadata;
use crate::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// One run as read from its folder.
pub struct Run {
    pub name: String,
    pub dir: PathBuf,
    pub meta: Metadata,
    /// Rows of `audit/audit.json`, if any.
    pub final_audit: Vec<AuditResult>,
    /// Rows of `bench/summary.json`, if any.
    pub bench: Vec<SummaryRow>,
}

/// A row of the comparison table.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReportRow {
    pub run: String,
    pub dataset: String,
    pub arch: String,
    pub private: bool,
    /// ε (null: not private, ε = ∞).
    pub epsilon: Option<f64>,
    pub delta: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub epochs: usize,
    /// Highest membership AUC over the attacks of the last audit (and audit/audit.json).
    pub best_auc: Option<f64>,
    pub best_auc_attack: Option<String>,
    pub best_advantage: Option<f64>,
    /// Highest TPR at FPR 0.1% over those attacks.
    #[serde(rename = "tpr_at_fpr_0.001")]
    pub tpr_at_fpr_0_001: Option<f64>,
    /// From bench/summary.json: accuracy under the attack at the smallest non-zero eps (no
    /// defense, non-adaptive), over all benchmarked images — at large eps every undefended
    /// model is at 0%, so the smallest budget is the one that tells models apart.
    pub robust_accuracy: Option<f64>,
    pub robust_eps: Option<f64>,
    pub robust_attack: Option<String>,
    /// How the run was trained: `non-private`, `DP-SGD`, or a PATE student (`PATE (confident,
    /// 640 q)`, whose `epsilon` is the released data-dependent ε).
    pub kind: String,
    /// A PATE student's data-dependent and data-independent ε.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon_data_dependent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon_data_independent: Option<f64>,
}

/// Load every run folder, then write the report into `out` (created if needed, and only once
/// every run has loaded); return the rows.
pub fn generate(dirs: &[impl AsRef<Path>], out: &Path) -> Result<Vec<ReportRow>> {
    let runs = dirs
        .iter()
        .map(|d| load_run(d.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    ensure_writable_dir(out, "out")?;
    write(&runs, out)
}

/// Read a run folder.
pub fn load_run(dir: &Path) -> Result<Run> {
    let meta = crate::train::RunDir::new(dir).read_metadata()?;
    let ap = dir.join("audit").join("audit.json");
    let final_audit = if ap.is_file() {
        read_json(&ap)?
    } else {
        vec![]
    };
    // The robustness bench: RUN/bench (a user's `fool bench … --out RUN/bench`), else the
    // evaluations `fool report robustness` keeps in RUN/robustness/*/.
    let mut benches = vec![dir.join("bench").join("summary.json")];
    if let Ok(entries) = std::fs::read_dir(dir.join("robustness")) {
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path().join("summary.json"))
            .collect();
        found.sort();
        benches.extend(found);
    }
    let bench = match benches.iter().find(|p| p.is_file()) {
        Some(bp) => read_json(bp)?,
        None => vec![],
    };
    let name = dir
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| dir.display().to_string());
    Ok(Run {
        name,
        dir: dir.to_path_buf(),
        meta,
        final_audit,
        bench,
    })
}

/// The comparison row of a run.
pub fn row(run: &Run) -> ReportRow {
    let last_audit: Vec<&AuditResult> = run
        .meta
        .history
        .iter()
        .rev()
        .find_map(|r| r.audit.as_ref())
        .into_iter()
        .flatten()
        .chain(run.final_audit.iter())
        .filter(|a| a.slice == "all")
        .collect();
    let best = last_audit
        .iter()
        .max_by(|a, b| a.auc.total_cmp(&b.auc))
        .copied();
    let max_of = |f: fn(&AuditResult) -> f64| {
        last_audit
            .iter()
            .map(|a| f(a))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    let robust = run
        .bench
        .iter()
        .filter(|r| r.defense == "none" && r.mode == "non-adaptive" && r.eps > 0.0)
        .min_by(|a, b| a.eps.total_cmp(&b.eps));
    ReportRow {
        run: run.name.clone(),
        dataset: run.meta.dataset.to_string(),
        arch: run.meta.arch.clone(),
        private: run.meta.epsilon.is_some(),
        epsilon: run.meta.epsilon,
        delta: run.meta.delta,
        test_accuracy: run.meta.test_accuracy,
        epochs: run.meta.epochs_done,
        best_auc: best.map(|a| a.auc),
        best_auc_attack: best.map(|a| a.attack.to_string()),
        best_advantage: max_of(|a| a.advantage),
        tpr_at_fpr_0_001: max_of(|a| a.tpr_at_fpr_0_001),
        robust_accuracy: robust.map(|r| r.robust_accuracy),
        robust_eps: robust.map(|r| r.eps),
        robust_attack: robust.map(|r| r.attack.clone()),
        kind: match (&run.meta.pate, &run.meta.config.dp, &run.meta.synthetic) {
            (Some(p), _, _) => p.kind(),
            (None, Some(_), _) => "DP-SGD".into(),
            (None, None, Some(_)) => "PE synthetic data".into(),
            (None, None, None) => "non-private".into(),
        },
        epsilon_data_dependent: run.meta.pate.as_ref().map(|p| p.epsilon_data_dependent),
        epsilon_data_independent: run.meta.pate.as_ref().map(|p| p.epsilon_data_independent),
    }
}

/// Per run: (epoch, test accuracy, audit rows on slice `all`) for every audited epoch.
fn audited_epochs(run: &Run) -> Vec<(usize, f64, Vec<&AuditResult>)> {
    run.meta
        .history
        .iter()
        .filter_map(|r| {
            r.audit.as_ref().map(|a| {
                (
                    r.epoch,
                    r.test_accuracy,
                    a.iter().filter(|x| x.slice == "all").collect(),
                )
            })
        })
        .collect()
}

fn draw_by_epoch<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, runs: &[Run]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = crate::plot::chart_err::<DB::ErrorType>;
    root.fill(&WHITE).map_err(err)?;
    let max_epoch = runs
        .iter()
        .map(|r| r.meta.epochs_done)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let panels = root.split_evenly((1, 2));
    for (panel, (what, get)) in panels.iter().zip([
        (
            "membership AUC",
            (|a: &AuditResult| a.auc) as fn(&AuditResult) -> f64,
        ),
        ("attacker advantage (max TPR − FPR)", |a: &AuditResult| {
            a.advantage
        }),
    ]) {
        let top = runs
            .iter()
            .flat_map(audited_epochs)
            .flat_map(|(_, _, rows)| rows.into_iter().map(get))
            .fold(0.0f64, f64::max);
        let (lo, hi) = if what.contains("AUC") {
            (0.45, ((top + 0.05) * 20.0).ceil().clamp(11.0, 20.0) / 20.0)
        } else {
            (0.0, ((top + 0.05) * 20.0).ceil().clamp(1.0, 20.0) / 20.0)
        };
        let mut chart = line_chart(
            panel,
            format!("{what} by epoch"),
            18,
            (0.5f64..max_epoch + 0.5, lo..hi),
            ("epoch", what),
        )?;
        for (ri, run) in runs.iter().enumerate() {
            let color = COLORS[ri % COLORS.len()];
            let epochs = audited_epochs(run);
            let attacks: Vec<String> = epochs
                .first()
                .map(|(_, _, a)| a.iter().map(|x| x.attack.to_string()).collect())
                .unwrap_or_default();
            for (ai, attack) in attacks.iter().enumerate() {
                let xy: Vec<(f64, f64)> = epochs
                    .iter()
                    .filter_map(|(e, _, rows)| {
                        rows.iter()
                            .find(|x| &x.attack.to_string() == attack)
                            .map(|x| (*e as f64, get(x)))
                    })
                    .collect();
                let style = color.stroke_width(2);
                let (dash, gap) = match ai {
                    0 => (1, 0),
                    1 => (8, 4),
                    2 => (3, 3),
                    _ => (12, 3),
                };
                let series = if gap == 0 {
                    chart.draw_series(LineSeries::new(xy.clone(), style))
                } else {
                    chart.draw_series(DashedLineSeries::new(xy.clone(), dash, gap, style))
                }
                .map_err(err)?;
                series
                    .label(format!("{} · {attack}", run.name))
                    .legend(legend_line(color, 2, dash.max(6), gap));
                chart
                    .draw_series(xy.iter().map(|&p| Circle::new(p, 2, color.filled())))
                    .map_err(err)?;
            }
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft, 11)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn draw_vs_utility<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, runs: &[Run]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = crate::plot::chart_err::<DB::ErrorType>;
    root.fill(&WHITE).map_err(err)?;
    let accs: Vec<f64> = runs
        .iter()
        .flat_map(|r| r.meta.history.iter().map(|h| h.test_accuracy))
        .collect();
    let lo = accs.iter().cloned().fold(1.0f64, f64::min);
    let lo = ((lo * 10.0).floor() / 10.0).clamp(0.0, 0.9);
    let top = runs
        .iter()
        .flat_map(audited_epochs)
        .flat_map(|(_, _, rows)| rows.into_iter().map(|a| a.auc))
        .fold(0.0f64, f64::max);
    let top_auc = ((top + 0.05) * 20.0).ceil().clamp(11.0, 20.0) / 20.0;
    let mut chart = line_chart(
        &root,
        "privacy vs utility: highest membership AUC vs test accuracy (each audited epoch)",
        18,
        (lo..1.0f64, 0.45f64..top_auc),
        (
            "test accuracy",
            "highest membership AUC (attacks on slice 'all')",
        ),
    )?;
    for (ri, run) in runs.iter().enumerate() {
        let color = COLORS[ri % COLORS.len()];
        let xy: Vec<(f64, f64)> = audited_epochs(run)
            .iter()
            .map(|(_, acc, rows)| (*acc, rows.iter().map(|a| a.auc).fold(0.0f64, f64::max)))
            .collect();
        let eps = run
            .meta
            .epsilon
            .map(|e| format!("ε = {e:.2}"))
            .unwrap_or_else(|| "ε = ∞".into());
        chart
            .draw_series(LineSeries::new(xy.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(format!("{} ({eps})", run.name))
            .legend(legend_line(color, 2, 1, 0));
        chart
            .draw_series(xy.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft, 13)?;
    root.present().map_err(err)?;
    Ok(())
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v}")).unwrap_or_default()
}

/// Write the charts and tables into `out`; return the rows.
pub fn write(runs: &[Run], out: &Path) -> Result<Vec<ReportRow>> {
    let rows: Vec<ReportRow> = runs.iter().map(row).collect();
    write_png_svg(
        out,
        "privacy_by_epoch",
        (1400, 560),
        |a| draw_by_epoch(a, runs),
        |a| draw_by_epoch(a, runs),
    )?;
    write_png_svg(
        out,
        "privacy_vs_utility",
        (900, 600),
        |a| draw_vs_utility(a, runs),
        |a| draw_vs_utility(a, runs),
    )?;
    crate::files::write_json_bare(&out.join("privacy_report.json"), &rows)?;
    let mut csv = String::from(
        "run,dataset,arch,private,epsilon,delta,test_accuracy,epochs,best_auc,best_auc_attack,best_advantage,tpr_at_fpr_0.001,robust_accuracy,robust_eps,robust_attack,kind\n",
    );
    for r in &rows {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.run,
            r.dataset,
            r.arch.replace(',', ";"),
            r.private,
            r.epsilon
                .map(|e| e.to_string())
                .unwrap_or_else(|| "inf".into()),
            opt(r.delta),
            opt(r.test_accuracy),
            r.epochs,
            opt(r.best_auc),
            r.best_auc_attack.clone().unwrap_or_default(),
            opt(r.best_advantage),
            opt(r.tpr_at_fpr_0_001),
            opt(r.robust_accuracy),
            opt(r.robust_eps),
            r.robust_attack.clone().unwrap_or_default(),
            r.kind.replace(',', ";"),
        ));
    }
    let cp = out.join("privacy_report.csv");
    crate::files::write_text(&cp, &csv)?;
    Ok(rows)
}
