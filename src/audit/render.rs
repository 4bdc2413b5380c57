//! How an audit is shown and saved: the text table ([`format_report`]), the CSV
//! ([`to_csv`]), the ROC chart and the files of `write_outputs`.
use super::{AuditReport, AuditResult};
use crate::files::write_json;
use crate::plot::{write_png_svg, COLORS};
use crate::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// The human-readable table: one line per attack × slice, then the most vulnerable slice
/// and the skipped ones.
pub fn format_report(report: &AuditReport) -> String {
    let mut s = format!(
        "{:<21} {:<10} {:>6} {:>9} {:>8} {:>8} {:>9} {:>12}\n",
        "attack", "slice", "AUC", "advantage", "TPR@0.1%", "TPR@1%", "members", "non-members"
    );
    for r in &report.results {
        s += &format!(
            "{:<21} {:<10} {:>6.4} {:>9.4} {:>8.4} {:>8.4} {:>9} {:>12}\n",
            r.attack.to_string(),
            r.slice,
            r.auc,
            r.advantage,
            r.tpr_at_fpr_0_001,
            r.tpr_at_fpr_0_01,
            r.n_members,
            r.n_nonmembers
        );
    }
    if let Some(best) = report.most_vulnerable() {
        s += &format!(
            "most vulnerable slice (highest AUC over all attacks): {} — AUC {:.4}, advantage {:.4} with {} ({} members, {} non-members)\n",
            best.slice, best.auc, best.advantage, best.attack, best.n_members, best.n_nonmembers
        );
    }
    for k in &report.skipped {
        match k.attack {
            None => s += &format!("skipped slice {}: {}\n", k.slice, k.reason),
            Some(a) => s += &format!("skipped {a} on slice {}: {}\n", k.slice, k.reason),
        }
    }
    s
}

/// The CSV of the rows (header + one line per row).
pub fn to_csv(results: &[AuditResult]) -> String {
    let mut s = String::from(
        "attack,slice,auc,advantage,tpr_at_fpr_0.001,tpr_at_fpr_0.01,balanced_accuracy,n_members,n_nonmembers\n",
    );
    for r in results {
        s += &format!(
            "{},{},{},{},{},{},{},{},{}\n",
            r.attack,
            r.slice,
            r.auc,
            r.advantage,
            r.tpr_at_fpr_0_001,
            r.tpr_at_fpr_0_01,
            r.balanced_accuracy,
            r.n_members,
            r.n_nonmembers
        );
    }
    s
}

/// The ROC chart: the `all` slice of every attack on log-log axes, with the diagonal.
fn draw_roc<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, results: &[AuditResult]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = crate::plot::chart_err::<DB::ErrorType>;
    root.fill(&WHITE).map_err(err)?;
    let rows: Vec<&AuditResult> = results.iter().filter(|r| r.slice == "all").collect();
    let n = rows
        .iter()
        .map(|r| r.n_members.max(r.n_nonmembers))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let lo = 10f64.powf((1.0 / n).log10().floor()).min(1e-4);
    let title = match rows.first() {
        Some(r) => format!(
            "membership inference ROC ({} members, {} non-members)",
            r.n_members, r.n_nonmembers
        ),
        None => "membership inference ROC".to_string(),
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((lo..1.0f64).log_scale(), (lo..1.0f64).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("false positive rate (non-members called members)")
        .y_desc("true positive rate (members found)")
        .x_label_formatter(&|v| format!("{v:.0e}"))
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .label_style(("sans-serif", 14))
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    let grey = RGBColor(150, 150, 150);
    chart
        .draw_series(DashedLineSeries::new(
            vec![(lo, lo), (1.0, 1.0)],
            6,
            4,
            grey.stroke_width(1),
        ))
        .map_err(err)?
        .label("chance")
        .legend(crate::plot::legend_line(grey, 1, 1, 0));
    for (i, r) in rows.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = r
            .roc
            .iter()
            .map(|&(x, y)| (x.clamp(lo, 1.0), y.clamp(lo, 1.0)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(err)?
            .label(format!("{} (AUC {:.3})", r.attack, r.auc))
            .legend(crate::plot::legend_line(color, 2, 1, 0));
    }
    crate::plot::draw_legend(&mut chart, SeriesLabelPosition::LowerRight, 14)?;
    root.present().map_err(err)?;
    Ok(())
}

/// One ROC curve of `roc.json`: the thinned points of an attack on a slice.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RocCurve {
    pub attack: String,
    pub slice: String,
    pub auc: f64,
    /// (FPR, TPR) pairs, thinned for log-log axes ([`crate::audit::Roc::plot_points`]).
    pub points: Vec<(f64, f64)>,
}

/// Write `audit.json` (the rows), `audit.csv`, `roc.json` (the curves of slice `all`, for
/// `fool report html`), `roc.png` and `roc.svg` into `dir` (which must exist), each atomically.
pub fn write_outputs(dir: &Path, results: &[AuditResult]) -> Result<()> {
    write_json(&dir.join("audit.json"), results)?;
    let curves: Vec<RocCurve> = results
        .iter()
        .filter(|r| r.slice == "all" && !r.roc.is_empty())
        .map(|r| RocCurve {
            attack: r.attack.to_string(),
            slice: r.slice.clone(),
            auc: r.auc,
            points: r.roc.clone(),
        })
        .collect();
    write_json(&dir.join("roc.json"), &curves)?;
    let csv = to_csv(results);
    let path = dir.join("audit.csv");
    crate::files::write_text(&path, &csv)?;
    write_png_svg(
        dir,
        "roc",
        (800, 640),
        |a| draw_roc(a, results),
        |a| draw_roc(a, results),
    )
}
