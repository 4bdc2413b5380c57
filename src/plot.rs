//! Shared chart plumbing (plotters): the embedded font, the palette, and writing a chart as
//! PNG and SVG atomically.
use crate::{Error, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static FONT: Once = Once::new();

/// Register the embedded DejaVu Sans as plotters' sans-serif (no system fonts needed).
pub fn register_font() {
    FONT.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// The matplotlib "tab10" palette.
pub const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Draw the same chart into `DIR/STEM.png` and `DIR/STEM.svg`, both or neither (temp files
/// renamed into place together, removed on error). `draw_png` and `draw_svg` are the same drawing code for the two backends.
pub fn write_png_svg(
    dir: &Path,
    stem: &str,
    size: (u32, u32),
    draw_png: impl FnOnce(DrawingArea<BitMapBackend, Shift>) -> Result<()>,
    draw_svg: impl FnOnce(DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<()> {
    register_font();
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let mut batch = crate::files::Batch::default();
    let tmp_png = batch.stage(&png, |_| Ok(()))?;
    let tmp_svg = batch.stage(&svg, |_| Ok(()))?;
    draw_png(BitMapBackend::new(&tmp_png, size).into_drawing_area())
        .map_err(|e| chart_file_err(&png, e))?;
    draw_svg(SVGBackend::new(&tmp_svg, size).into_drawing_area())
        .map_err(|e| chart_file_err(&svg, e))?;
    batch.commit()
}

/// A chart that could not be written, as an error naming the file.
fn chart_file_err(path: &Path, e: Error) -> Error {
    match e {
        Error::Failed { what, msg } if what == "chart" => {
            Error::bad_file(path, format!("cannot write the chart: {msg}"))
        }
        other => other,
    }
}

/// A drawing error as the library's error. The backends' errors print as debug structures
/// (`ImageError(IoError(Os { …, message: "No space left on device" }))`): the innermost quoted
/// message is the cause a person can read.
pub fn chart_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> Error {
    let text = e.to_string();
    let quoted = text
        .rsplit('"')
        .nth(1)
        .filter(|m| !m.trim().is_empty() && text.matches('"').count() >= 2);
    let msg = quoted.map_or(text.clone(), str::to_string);
    Error::failed(
        "chart",
        msg.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>(),
    )
}

/// Linear axes in the project's style: caption, margins, label areas, axis descriptions,
/// 14-pt tick labels, no minor grid lines.
pub fn line_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: impl AsRef<str>,
    caption_size: u32,
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    (x_desc, y_desc): (&str, &str),
) -> Result<ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>>
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .caption(caption.as_ref(), ("sans-serif", caption_size))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x, y)
        .map_err(chart_err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 14))
        .light_line_style(WHITE)
        .draw()
        .map_err(chart_err)?;
    Ok(chart)
}

/// The legend box in the project's style.
pub fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    font_size: u32,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", font_size))
        .draw()
        .map_err(chart_err)
}

/// A legend sample: a 20-pixel line, dashed when `gap` > 0.
pub fn legend_line(
    color: RGBColor,
    width: u32,
    dash: u32,
    gap: u32,
) -> impl Fn((i32, i32)) -> plotters::element::DashedPathElement<std::vec::IntoIter<(i32, i32)>, u32>
{
    move |(x, y)| {
        plotters::element::DashedPathElement::new(
            vec![(x, y), (x + 20, y)],
            dash.max(1),
            gap,
            color.stroke_width(width),
        )
    }
}
