//! `training.png` / `.svg`: train and test accuracy versus epoch (left) and ε spent versus
//! epoch (right; test loss instead for a non-private run).
use super::{EpochRecord, Metadata};
use crate::plot::{chart_err, draw_legend, legend_line, line_chart, write_png_svg, COLORS};
use crate::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, meta: &Metadata) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = chart_err::<DB::ErrorType>;
    root.fill(&WHITE).map_err(err)?;
    let h: &[EpochRecord] = &meta.history;
    let max_epoch = h.len().max(1) as f64;
    let private = meta.epsilon.is_some();
    let title = format!(
        "{} on {}{}",
        meta.arch,
        meta.dataset,
        match (meta.noise, meta.clip) {
            (Some(s), Some(c)) => format!(", DP-SGD σ={s:.3} C={c}"),
            _ => ", not private".to_string(),
        }
    );
    let panels = root.split_evenly((1, 2));
    let lo = h
        .iter()
        .flat_map(|r| {
            [
                r.train_accuracy,
                r.test_accuracy,
                r.robust_accuracy.unwrap_or(1.0),
            ]
        })
        .fold(1.0f64, f64::min);
    let lo = ((lo * 10.0).floor() / 10.0).clamp(0.0, 0.9);
    let mut chart = line_chart(
        &panels[0],
        format!("accuracy — {title}"),
        16,
        (0.5f64..max_epoch + 0.5, lo..1.0f64),
        ("epoch", "accuracy"),
    )?;
    let robust = h.iter().any(|r| r.robust_accuracy.is_some());
    let mut lines = vec![
        (
            "train (running, before each update)",
            (|r: &EpochRecord| Some(r.train_accuracy)) as fn(&EpochRecord) -> Option<f64>,
        ),
        ("test", |r: &EpochRecord| Some(r.test_accuracy)),
    ];
    if robust {
        lines.push((
            "test under PGD-20 (adversarial training)",
            |r: &EpochRecord| r.robust_accuracy,
        ));
    }
    for (i, (name, get)) in lines.into_iter().enumerate() {
        let color = COLORS[i];
        let xy: Vec<(f64, f64)> = h
            .iter()
            .filter_map(|r| get(r).map(|v| (r.epoch as f64, v)))
            .collect();
        chart
            .draw_series(LineSeries::new(xy.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(legend_line(color, 2, 1, 0));
        chart
            .draw_series(xy.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight, 14)?;

    let (desc, ys): (String, Vec<f64>) = if private {
        (
            format!(
                "ε spent (δ = {:e}, {} accountant)",
                meta.delta.unwrap_or(0.0),
                meta.accountant.map(|a| a.to_string()).unwrap_or_default()
            ),
            h.iter().map(|r| r.epsilon.unwrap_or(0.0)).collect(),
        )
    } else {
        ("test loss".into(), h.iter().map(|r| r.test_loss).collect())
    };
    let top = ys.iter().cloned().fold(0.0f64, f64::max).max(1e-3) * 1.1;
    let mut chart = line_chart(
        &panels[1],
        if private {
            "privacy spent"
        } else {
            "test loss"
        },
        16,
        (0.5f64..max_epoch + 0.5, 0f64..top),
        ("epoch", &desc),
    )?;
    let color = COLORS[3];
    let xy: Vec<(f64, f64)> = h
        .iter()
        .zip(&ys)
        .map(|(r, &y)| (r.epoch as f64, y))
        .collect();
    chart
        .draw_series(LineSeries::new(xy.clone(), color.stroke_width(2)))
        .map_err(err)?;
    chart
        .draw_series(xy.iter().map(|&p| Circle::new(p, 3, color.filled())))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Write `training.png` and `training.svg` into `dir`.
pub fn training(dir: &Path, meta: &Metadata) -> Result<()> {
    write_png_svg(
        dir,
        "training",
        (1280, 480),
        |a| draw(a, meta),
        |a| draw(a, meta),
    )
}
