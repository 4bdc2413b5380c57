//! The two calls Private Evolution makes of a generator (Lin et al. 2024): RANDOM_API (draw
//! samples of a class) and VARIATION_API (draw one sample similar to each given one, closer
//! for later iterations). An API is a simulator ([`super::digits`]) or a remote generator
//! ([`super::http`]).
use crate::{Error, Result};
use tch::{Kind, Tensor};

/// Samples of one class: their 8-bit images and, per sample, what the API needs to vary it
/// (a simulator's parameters; a remote generator's opaque state, or null).
#[derive(Debug)]
pub struct Population {
    /// (N, C, H, W) uint8 on the CPU.
    pub images: Tensor,
    pub states: Vec<serde_json::Value>,
}

impl Population {
    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// The samples at `rows`, in that order (rows may repeat).
    pub fn select(&self, rows: &[usize]) -> Population {
        let idx = Tensor::from_slice(&rows.iter().map(|&r| r as i64).collect::<Vec<_>>());
        Population {
            images: self.images.index_select(0, &idx),
            states: rows.iter().map(|&r| self.states[r].clone()).collect(),
        }
    }

    /// Populations one after another.
    pub fn concat(parts: &[Population]) -> Population {
        let images: Vec<&Tensor> = parts.iter().map(|p| &p.images).collect();
        Population {
            images: Tensor::cat(&images, 0),
            states: parts
                .iter()
                .flat_map(|p| p.states.iter().cloned())
                .collect(),
        }
    }

    /// Check what an API returned: `n` uint8 images of `shape` (C, H, W), one state each.
    pub fn check(&self, api: &str, n: usize, shape: [i64; 3]) -> Result<()> {
        let size = self.images.size();
        let want = [n as i64, shape[0], shape[1], shape[2]];
        if size != want || self.images.kind() != Kind::Uint8 || self.states.len() != n {
            return Err(Error::failed(
                api,
                format!(
                    "asked for {n} images of {}×{}×{} (C×H×W), got {:?} ({:?}) with {} states",
                    shape[0],
                    shape[1],
                    shape[2],
                    size,
                    self.images.kind(),
                    self.states.len()
                ),
            ));
        }
        Ok(())
    }
}

/// A generator Private Evolution can use.
pub trait Api {
    /// What the run's metadata records about it (name, settings, fonts, URL …).
    fn describe(&self) -> serde_json::Value;

    /// RANDOM_API: `count` samples of `class`, reproducible from `seed`.
    fn random(&mut self, class: usize, count: usize, seed: u64) -> Result<Population>;

    /// VARIATION_API: one sample similar to each of `parents` (all of `class`), at the
    /// variation degree of `iteration` (1-based: later iterations vary less), reproducible
    /// from `seed`.
    fn variation(
        &mut self,
        class: usize,
        parents: &Population,
        iteration: usize,
        seed: u64,
    ) -> Result<Population>;
}

/// The API named by `--api`: `digits` (the offline simulator with its default settings),
/// `digits:FILE.json` (with settings from a file), or `http://HOST:PORT[/PATH]` (a remote
/// generator speaking [`super::http`]'s protocol). `http.shape` is the private data's image
/// shape (C, H, W), which the API must produce.
pub fn build(spec: &str, http: &super::http::HttpOptions) -> Result<Box<dyn Api>> {
    let s = spec.trim();
    if s.starts_with("digits") && http.shape != [1, super::digits::SIDE, super::digits::SIDE] {
        return Err(Error::field(
            "api",
            format!(
                "the digits simulator draws 28×28 grey digits (mnist), not {}×{}×{} images; use an http:// generator",
                http.shape[0], http.shape[1], http.shape[2]
            ),
        ));
    }
    if s == "digits" {
        return Ok(Box::new(super::digits::Digits::new(Default::default())?));
    }
    if let Some(file) = s.strip_prefix("digits:") {
        let cfg = super::digits::DigitsConfig::from_file(std::path::Path::new(file))?;
        return Ok(Box::new(super::digits::Digits::new(cfg)?));
    }
    if s.starts_with("http://") || s.starts_with("https://") {
        return Ok(Box::new(super::http::HttpApi::new(s, http.clone())?));
    }
    Err(Error::field(
        "api",
        format!("'{s}': expected digits, digits:SETTINGS.json or http://HOST:PORT"),
    ))
}
