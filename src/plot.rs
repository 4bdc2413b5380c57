//! Shared chart plumbing (plotters): the embedded font, the palette, and writing a chart as
//! PNG and SVG atomically.
use crate::{Error, Result};
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

/// Draw the same chart into `DIR/STEM.png` and `DIR/STEM.svg`, each via a temp file renamed
/// into place. `draw_png` and `draw_svg` are the same drawing code for the two backends.
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
    let tmp_png = dir.join(format!(".{stem}.tmp.png"));
    let tmp_svg = dir.join(format!(".{stem}.tmp.svg"));
    draw_png(BitMapBackend::new(&tmp_png, size).into_drawing_area())?;
    draw_svg(SVGBackend::new(&tmp_svg, size).into_drawing_area())?;
    std::fs::rename(&tmp_png, &png).map_err(|e| Error::io(&png, e))?;
    std::fs::rename(&tmp_svg, &svg).map_err(|e| Error::io(&svg, e))?;
    Ok(())
}
