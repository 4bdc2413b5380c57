//! `success_vs_eps.png` / `.svg`: attack success rate versus eps, one panel per attack, one
//! line per defense (adaptive dashed), with 95% Wilson intervals as error bars.
use super::{BenchConfig, SummaryRow};
use crate::plot::{register_font, COLORS};
use crate::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    cfg: &BenchConfig,
    rows: &[SummaryRow],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = crate::plot::chart_err::<DB::ErrorType>;
    root.fill(&WHITE).map_err(err)?;
    let panels = root.split_evenly((1, cfg.attacks.len().max(1)));
    // L∞ budgets are drawn in 8-bit steps, L2 radii as they are (pixel space 0..1).
    let (sx, x_desc) = match cfg.norm {
        crate::attacks::Norm::Linf => (255.0, "eps (L∞, in 1/255 pixel steps)"),
        crate::attacks::Norm::L2 => (1.0, "eps (L2 radius, pixel space 0..1)"),
    };
    let max_eps = cfg.eps.iter().cloned().fold(0.0, f64::max).max(1e-6) * sx;
    let model = Path::new(&cfg.model)
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    for (panel, attack) in panels.iter().zip(&cfg.attacks) {
        let steps = match crate::attacks::registry::steps_label(attack) {
            Some(("step", _)) => ", 1 step".to_string(),
            Some((label, default)) => format!(", {} {label}", cfg.steps.unwrap_or(default)),
            None => String::new(),
        };
        let target = match &cfg.targets {
            crate::attacks::TargetMode::Untargeted => "untargeted".to_string(),
            t => format!(
                "targeted ({})",
                serde_json::to_value(t)
                    .map(|v| v.to_string())
                    .unwrap_or_default()
                    .trim_matches('"')
            ),
        };
        let title = format!("{attack} {} on {model}{steps}, {target}", cfg.norm.symbol());
        let mut chart = crate::plot::line_chart(
            panel,
            title,
            20,
            (0f64..max_eps * 1.05, 0f64..1.02f64),
            (x_desc, "attack success rate (correctly classified images)"),
        )?;
        for (di, def) in cfg.defenses.iter().enumerate() {
            let color = COLORS[di % COLORS.len()];
            for mode in ["non-adaptive", "adaptive"] {
                let mut pts: Vec<&SummaryRow> = rows
                    .iter()
                    .filter(|r| &r.attack == attack && &r.defense == def && r.mode == mode)
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                pts.sort_by(|a, b| a.eps.total_cmp(&b.eps));
                let xy: Vec<(f64, f64)> =
                    pts.iter().map(|r| (r.eps * sx, r.success_rate)).collect();
                let label = if mode == "adaptive" {
                    format!("{def} (adaptive)")
                } else {
                    def.clone()
                };
                // Solid lines are wider, so one under a dashed line (an undefended model and an
                // adaptive attack both at 100%) still shows around it.
                let width = if mode == "adaptive" { 2 } else { 3 };
                let style = color.stroke_width(width);
                let series = if mode == "adaptive" {
                    chart.draw_series(DashedLineSeries::new(xy.clone(), 8, 5, style))
                } else {
                    chart.draw_series(LineSeries::new(xy.clone(), style))
                }
                .map_err(err)?;
                // Adaptive lines get a dashed legend sample (spacing 0 draws it solid).
                let gap = if mode == "adaptive" { 4 } else { 0 };
                series
                    .label(label)
                    .legend(crate::plot::legend_line(color, width, 6, gap));
                chart
                    .draw_series(pts.iter().map(|r| {
                        let x = r.eps * sx;
                        ErrorBar::new_vertical(
                            x,
                            r.ci_low,
                            r.success_rate,
                            r.ci_high,
                            color.filled(),
                            6,
                        )
                    }))
                    .map_err(err)?;
                chart
                    .draw_series(
                        xy.iter()
                            .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
                    )
                    .map_err(err)?;
            }
        }
        crate::plot::draw_legend(&mut chart, SeriesLabelPosition::LowerRight, 14)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Write `success_vs_eps.png` and `.svg` into `out` (atomically).
pub fn success_vs_eps(out: &Path, cfg: &BenchConfig, rows: &[SummaryRow]) -> Result<()> {
    register_font();
    let size = (640 * cfg.attacks.len().max(1) as u32, 480);
    crate::plot::write_png_svg(
        out,
        "success_vs_eps",
        size,
        |a| draw(a, cfg, rows),
        |a| draw(a, cfg, rows),
    )
}
