//! `--api digits`: a procedural digit renderer, the simulator API of Sim-PE (Lin et al. 2025,
//! "…APIs 3: Using Simulators Instead of Foundation Models"), whose MNIST simulator draws the
//! class's digit with a font. A sample is its parameters — font, font size, stroke width,
//! rotation, position — and the image is rendered from them: RANDOM_API draws each parameter
//! uniformly from its range; VARIATION_API perturbs the parent's parameters (never its pixels):
//! a new random font with probability `font` of the iteration's degree, and every integer
//! parameter moved by a uniform integer in [−d, d] and clipped to its range.
//!
//! Defaults (the reference implementation's MNIST settings, plus a position it leaves out):
//! size 10–29 px (em), stroke 0–2 px, rotation −30…30°, shift −2…2 px in x and y; the degree
//! schedule per iteration 1, 2, 3, 4 (the last repeats): font change 0.8, 0.4, 0.2, 0;
//! size ±5, 4, 3, 2; rotation ±9, 7, 5, 3; stroke ±1, 1, 0, 0; shift ±1, 1, 1, 0. All of it can
//! be set in a JSON file (`--api digits:FILE.json`, fields as [`DigitsConfig`]; missing
//! fields keep their defaults).
//!
//! Fonts: the 21 DejaVu faces built into fool (the `dejavu` crate), and with `"fonts":
//! "system"` also every TrueType/OpenType file under /usr/share/fonts and
//! /usr/local/share/fonts (sorted by path, so a font index names the same face on a given
//! machine; the run records the list and a resumed run must see the same one).
//!
//! Rendering: the glyph is drawn with `ab_glyph` at twice the output resolution, dilated by
//! the stroke width, centred by its bounding box (cached per font, size, stroke and digit), then
//! rotated and shifted by one batched bilinear `grid_sample` and averaged down 2×2: white on
//! black, 28×28 grey like MNIST.
use super::api::{Api, Population};
use super::fonts::{bundled, dilate, system_font_files};
use crate::rng::SplitMix64;
use crate::{Error, Result};
use ab_glyph::{Font, FontArc, PxScale};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// Output side (MNIST's 28).
pub const SIDE: i64 = 28;
/// Supersampling of the cached glyphs.
const SS: i64 = 2;
const BIG: i64 = SIDE * SS;

/// How much VARIATION_API changes at one iteration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Degree {
    /// Probability of drawing a new random font.
    pub font: f64,
    /// Largest change of the font size (px).
    pub size: i32,
    /// Largest change of the rotation (degrees).
    pub rotation: i32,
    /// Largest change of the stroke width (px).
    pub stroke: i32,
    /// Largest change of each of the x and y shifts (px).
    pub shift: i32,
}

/// The simulator's parameter ranges (inclusive) and its variation schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DigitsConfig {
    /// "bundled" (DejaVu, 21 faces) or "system" (those plus the system's fonts).
    pub fonts: String,
    pub size: [i32; 2],
    pub stroke: [i32; 2],
    pub rotation: [i32; 2],
    pub shift: [i32; 2],
    /// Degree of iteration 1, 2, …; iterations past the end use the last.
    pub schedule: Vec<Degree>,
}

impl Default for DigitsConfig {
    fn default() -> Self {
        let d = |font, size, rotation, stroke, shift| Degree {
            font,
            size,
            rotation,
            stroke,
            shift,
        };
        DigitsConfig {
            fonts: "bundled".into(),
            size: [10, 29],
            stroke: [0, 2],
            rotation: [-30, 30],
            shift: [-2, 2],
            schedule: vec![
                d(0.8, 5, 9, 1, 1),
                d(0.4, 4, 7, 1, 1),
                d(0.2, 3, 5, 0, 1),
                d(0.0, 2, 3, 0, 0),
            ],
        }
    }
}

impl DigitsConfig {
    /// Read a JSON file of settings (missing fields keep their defaults) and check it.
    pub fn from_file(path: &Path) -> Result<DigitsConfig> {
        let text = crate::files::read_regular_to_string(path, "a simulator settings file")?;
        let c: DigitsConfig = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("simulator settings: {e}")))?;
        c.check().map_err(|m| Error::bad_file(path, m))?;
        Ok(c)
    }

    fn check(&self) -> std::result::Result<(), String> {
        for (name, r, lo, hi) in [
            ("size", self.size, 4, 40),
            ("stroke", self.stroke, 0, 6),
            ("rotation", self.rotation, -180, 180),
            ("shift", self.shift, -10, 10),
        ] {
            if r[0] > r[1] || r[0] < lo || r[1] > hi {
                return Err(format!(
                    "{name}: [{}, {}] must be an ordered range within [{lo}, {hi}]",
                    r[0], r[1]
                ));
            }
        }
        if !matches!(self.fonts.as_str(), "bundled" | "system") {
            return Err(format!("fonts: '{}' (bundled or system)", self.fonts));
        }
        if self.schedule.is_empty() {
            return Err("schedule: give at least one degree".into());
        }
        for (i, d) in self.schedule.iter().enumerate() {
            if !(0.0..=1.0).contains(&d.font)
                || d.size < 0
                || d.rotation < 0
                || d.stroke < 0
                || d.shift < 0
            {
                return Err(format!(
                    "schedule[{i}]: font must be a probability, the other degrees ≥ 0"
                ));
            }
        }
        Ok(())
    }

    /// The degree of 1-based `iteration`.
    pub fn degree(&self, iteration: usize) -> Degree {
        let i = iteration.max(1) - 1;
        self.schedule[i.min(self.schedule.len() - 1)]
    }
}

/// One sample's parameters (its state in a population).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DigitParams {
    pub font: usize,
    pub size: i32,
    pub stroke: i32,
    pub rotation: i32,
    pub dx: i32,
    pub dy: i32,
}

/// A font the simulator draws with.
struct Face {
    name: String,
    font: FontArc,
}

/// The digit renderer.
pub struct Digits {
    config: DigitsConfig,
    faces: Vec<Face>,
    /// Class index → the character drawn.
    chars: Vec<char>,
    cache: HashMap<(usize, i32, i32, char), Vec<f32>>,
}

impl Digits {
    /// A renderer for the ten digit classes (class k draws the digit k).
    pub fn new(config: DigitsConfig) -> Result<Digits> {
        config
            .check()
            .map_err(|m| Error::field("api", format!("digits: {m}")))?;
        let mut faces: Vec<Face> = bundled()
            .into_iter()
            .map(|(name, bytes)| Face {
                name,
                font: FontArc::try_from_slice(bytes).expect("the bundled DejaVu fonts parse"),
            })
            .collect();
        if config.fonts == "system" {
            for p in system_font_files() {
                let Ok(bytes) = std::fs::read(&p) else {
                    continue;
                };
                let Ok(font) = FontArc::try_from_vec(bytes) else {
                    continue;
                };
                // Only faces that draw all ten digits.
                if ('0'..='9').all(|c| font.glyph_id(c).0 != 0) {
                    faces.push(Face {
                        name: p.display().to_string(),
                        font,
                    });
                }
            }
        }
        Ok(Digits {
            config,
            faces,
            chars: ('0'..='9').collect(),
            cache: HashMap::new(),
        })
    }

    pub fn config(&self) -> &DigitsConfig {
        &self.config
    }

    /// The font names, in index order.
    pub fn fonts(&self) -> Vec<String> {
        self.faces.iter().map(|f| f.name.clone()).collect()
    }

    fn char_of(&self, class: usize) -> Result<char> {
        self.chars.get(class).copied().ok_or_else(|| {
            Error::field(
                "api",
                format!("digits draws the classes 0–9, not class {class}"),
            )
        })
    }

    /// The glyph of `p` with `c`, centred on a BIG×BIG canvas, coverage in [0, 1].
    fn glyph(&mut self, p: &DigitParams, c: char) -> &[f32] {
        let key = (p.font, p.size, p.stroke, c);
        let face = &self.faces[p.font];
        self.cache.entry(key).or_insert_with(|| {
            let font = &face.font;
            let em = font.units_per_em().unwrap_or(1000.0);
            let px = p.size as f32 * SS as f32 * font.height_unscaled() / em;
            let glyph = font
                .glyph_id(c)
                .with_scale_and_position(PxScale::from(px), ab_glyph::point(0.0, 0.0));
            let mut canvas = vec![0f32; (BIG * BIG) as usize];
            let Some(out) = font.outline_glyph(glyph) else {
                return canvas;
            };
            let b = out.px_bounds();
            let (w, h) = (b.width().ceil() as i64, b.height().ceil() as i64);
            let r = (p.stroke as i64) * SS;
            let (gw, gh) = (w + 2 * r, h + 2 * r);
            let mut g = vec![0f32; (gw * gh) as usize];
            out.draw(|x, y, cov| {
                let (x, y) = (x as i64 + r, y as i64 + r);
                if x < gw && y < gh {
                    g[(y * gw + x) as usize] = cov.clamp(0.0, 1.0);
                }
            });
            if r > 0 {
                g = dilate(&g, gw, gh, r);
            }
            // Centre the (stroked) bounding box.
            let (ox, oy) = ((BIG - gw) / 2, (BIG - gh) / 2);
            for y in 0..gh {
                for x in 0..gw {
                    let (cx, cy) = (x + ox, y + oy);
                    if (0..BIG).contains(&cx) && (0..BIG).contains(&cy) {
                        canvas[(cy * BIG + cx) as usize] = g[(y * gw + x) as usize];
                    }
                }
            }
            canvas
        })
    }

    /// Render samples of `class` (uint8 (N, 1, 28, 28)).
    pub fn render(&mut self, class: usize, params: &[DigitParams]) -> Result<Tensor> {
        let c = self.char_of(class)?;
        let n = params.len() as i64;
        if n == 0 {
            return Ok(Tensor::zeros(
                [0, 1, SIDE, SIDE],
                (Kind::Uint8, tch::Device::Cpu),
            ));
        }
        let mut pix = Vec::with_capacity((n * BIG * BIG) as usize);
        let mut theta = Vec::with_capacity(params.len() * 6);
        for p in params {
            pix.extend_from_slice(self.glyph(p, c));
            // grid_sample maps output coordinates to input ones: the inverse of rotating by
            // the angle (counter-clockwise on screen) and shifting by (dx, dy) px.
            let a = (p.rotation as f64).to_radians();
            let (s, co) = a.sin_cos();
            let (tx, ty) = (
                2.0 * p.dx as f64 / SIDE as f64,
                2.0 * p.dy as f64 / SIDE as f64,
            );
            // inverse: R(-a) · (x - t)
            let (r00, r01, r10, r11) = (co, -s, s, co);
            theta.extend_from_slice(&[
                r00 as f32,
                r01 as f32,
                (-(r00 * tx + r01 * ty)) as f32,
                r10 as f32,
                r11 as f32,
                (-(r10 * tx + r11 * ty)) as f32,
            ]);
        }
        let x = Tensor::from_slice(&pix).view([n, 1, BIG, BIG]);
        let theta = Tensor::from_slice(&theta).view([n, 2, 3]);
        let grid = Tensor::affine_grid_generator(&theta, [n, 1, BIG, BIG], false);
        let y = x.grid_sampler(&grid, 0, 0, false).avg_pool2d(
            [SS, SS],
            [SS, SS],
            [0, 0],
            false,
            true,
            None::<i64>,
        );
        Ok((y * 255.0).round().clamp(0.0, 255.0).to_kind(Kind::Uint8))
    }

    fn uniform(rng: &mut SplitMix64, r: [i32; 2]) -> i32 {
        r[0] + rng.below((r[1] - r[0] + 1) as u64) as i32
    }

    fn random_params(&self, rng: &mut SplitMix64) -> DigitParams {
        let c = &self.config;
        DigitParams {
            font: rng.below(self.faces.len() as u64) as usize,
            size: Self::uniform(rng, c.size),
            stroke: Self::uniform(rng, c.stroke),
            rotation: Self::uniform(rng, c.rotation),
            dx: Self::uniform(rng, c.shift),
            dy: Self::uniform(rng, c.shift),
        }
    }

    /// The parameters of a variation of `p` at degree `d`.
    pub fn vary(&self, p: &DigitParams, d: &Degree, rng: &mut SplitMix64) -> DigitParams {
        let c = &self.config;
        let step = |rng: &mut SplitMix64, v: i32, k: i32, r: [i32; 2]| {
            (v + Self::uniform(rng, [-k, k])).clamp(r[0], r[1])
        };
        let font = if rng.uniform() < d.font {
            rng.below(self.faces.len() as u64) as usize
        } else {
            p.font
        };
        DigitParams {
            font,
            size: step(rng, p.size, d.size, c.size),
            stroke: step(rng, p.stroke, d.stroke, c.stroke),
            rotation: step(rng, p.rotation, d.rotation, c.rotation),
            dx: step(rng, p.dx, d.shift, c.shift),
            dy: step(rng, p.dy, d.shift, c.shift),
        }
    }

    fn population(&mut self, class: usize, params: Vec<DigitParams>) -> Result<Population> {
        let images = self.render(class, &params)?;
        Ok(Population {
            images,
            states: params.iter().map(|p| json!(p)).collect(),
        })
    }
}

impl Api for Digits {
    fn describe(&self) -> serde_json::Value {
        json!({"api": "digits", "config": self.config, "fonts": self.fonts()})
    }

    fn random(&mut self, class: usize, count: usize, seed: u64) -> Result<Population> {
        self.char_of(class)?;
        let mut rng = SplitMix64::new(seed);
        let params = (0..count).map(|_| self.random_params(&mut rng)).collect();
        self.population(class, params)
    }

    fn variation(
        &mut self,
        class: usize,
        parents: &Population,
        iteration: usize,
        seed: u64,
    ) -> Result<Population> {
        let d = self.config.degree(iteration);
        let mut rng = SplitMix64::new(seed);
        let mut params = Vec::with_capacity(parents.len());
        for (i, s) in parents.states.iter().enumerate() {
            let p: DigitParams = serde_json::from_value(s.clone()).map_err(|e| {
                Error::failed(
                    "digits",
                    format!(
                        "parent {i} has no digit parameters ({e}): a population from another API?"
                    ),
                )
            })?;
            if p.font >= self.faces.len() {
                return Err(Error::failed(
                    "digits",
                    format!(
                        "parent {i} uses font {} but {} fonts are available (resumed on a machine with other fonts?)",
                        p.font,
                        self.faces.len()
                    ),
                ));
            }
            params.push(self.vary(&p, &d, &mut rng));
        }
        self.population(class, params)
    }
}
