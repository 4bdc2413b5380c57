//! The fonts of the digit simulator and the stroke it draws with: the DejaVu faces built into
//! fool, the system's TrueType/OpenType files, and grey-level dilation.
use std::path::{Path, PathBuf};

/// A built-in face: its name and its bytes.
type BundledFace = (&'static str, fn() -> &'static [u8]);

pub fn bundled() -> Vec<(String, &'static [u8])> {
    use dejavu::{sans, sans_condensed, sans_mono, serif, serif_condensed};
    let faces: [BundledFace; 21] = [
        ("DejaVuSans", sans::regular),
        ("DejaVuSans-Bold", sans::bold),
        ("DejaVuSans-BoldOblique", sans::bold_oblique),
        ("DejaVuSans-ExtraLight", sans::extra_light),
        ("DejaVuSans-Oblique", sans::oblique),
        ("DejaVuSansCondensed", sans_condensed::regular),
        ("DejaVuSansCondensed-Bold", sans_condensed::bold),
        (
            "DejaVuSansCondensed-BoldOblique",
            sans_condensed::bold_oblique,
        ),
        ("DejaVuSansCondensed-Oblique", sans_condensed::oblique),
        ("DejaVuSansMono", sans_mono::regular),
        ("DejaVuSansMono-Bold", sans_mono::bold),
        ("DejaVuSansMono-BoldOblique", sans_mono::bold_oblique),
        ("DejaVuSansMono-Oblique", sans_mono::oblique),
        ("DejaVuSerif", serif::regular),
        ("DejaVuSerif-Bold", serif::bold),
        ("DejaVuSerif-BoldItalic", serif::bold_italic),
        ("DejaVuSerif-Italic", serif::italic),
        ("DejaVuSerifCondensed", serif_condensed::regular),
        ("DejaVuSerifCondensed-Bold", serif_condensed::bold),
        (
            "DejaVuSerifCondensed-BoldItalic",
            serif_condensed::bold_italic,
        ),
        ("DejaVuSerifCondensed-Italic", serif_condensed::italic),
    ];
    faces.iter().map(|(n, f)| (n.to_string(), f())).collect()
}

pub fn system_font_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && depth < 6 {
                walk(&p, out, depth + 1);
            } else if p
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("ttf") || x.eq_ignore_ascii_case("otf"))
            {
                out.push(p);
            }
        }
    }
    let mut v = vec![];
    for root in ["/usr/share/fonts", "/usr/local/share/fonts"] {
        walk(Path::new(root), &mut v, 0);
    }
    v.sort();
    v
}

/// Grey-level dilation by a disk of radius `r` (the stroke around the glyph's outline).
pub fn dilate(g: &[f32], w: i64, h: i64, r: i64) -> Vec<f32> {
    let offsets: Vec<(i64, i64)> = (-r..=r)
        .flat_map(|dy| (-r..=r).map(move |dx| (dx, dy)))
        .filter(|(dx, dy)| dx * dx + dy * dy <= r * r)
        .collect();
    let mut out = vec![0f32; g.len()];
    for y in 0..h {
        for x in 0..w {
            let mut m = 0f32;
            for &(dx, dy) in &offsets {
                let (sx, sy) = (x + dx, y + dy);
                if (0..w).contains(&sx) && (0..h).contains(&sy) {
                    m = m.max(g[(sy * w + sx) as usize]);
                }
            }
            out[(y * w + x) as usize] = m;
        }
    }
    out
}
