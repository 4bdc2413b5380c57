//! `fool report html DIR... --out report.html`: one self-contained HTML file of every run given
//! — bench sweeps (success rate vs eps with intervals and filters, the summary, a gallery of
//! kept adversarial examples), training runs (curves, ε and membership leakage by epoch, the
//! comparison of runs, privacy vs utility), audits (ROC curves on log-log axes), PATE ensembles,
//! robustness reports and model
//! reports (classification report, confusion matrix, misclassified images). It works offline,
//! opened from disk: the chart runtime is embedded, images are data URIs, and its
//! Content-Security-Policy forbids any request. Charts are Vega-Lite specifications built from
//! the runs' own files, aggregated before embedding (one row per setting or epoch), so a
//! 100,000-row sweep stays small.
//!
//! Folders that are not runs, or only partly readable, are reported as notes (`Built::notes`)
//! and the page is written for what is readable; only when nothing is readable is it an error.
mod bench;
pub mod collect;
mod gallery;
mod model_section;
mod other;
pub mod page;
mod runs;
mod specs;

use crate::files::write_text;
use crate::{Error, Result};
use collect::Loaded;
use page::{esc, Page};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// How much of the kept images goes into the page.
#[derive(Debug, Clone)]
pub struct Options {
    pub title: String,
    /// Gallery cards per bench run at most (spread over its settings).
    pub gallery_max: usize,
    /// Misclassified images per model report at most.
    pub misclassified_max: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            title: "fool report".into(),
            gallery_max: 48,
            misclassified_max: 120,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Built {
    pub out: PathBuf,
    pub bytes: u64,
    /// Each readable folder and its kind (`bench`, `train`, `audit`, `model`, `pate`,
    /// `robustness`).
    pub runs: Vec<(String, String)>,
    pub charts: usize,
    pub gallery_cards: usize,
    pub images: usize,
    /// What was missing or unreadable (also shown at the top of the page).
    pub notes: Vec<String>,
}

/// The images of the page, each embedded once (as `data-img` references the script resolves).
#[derive(Default)]
pub struct Images {
    uris: serde_json::Map<String, serde_json::Value>,
    ids: HashMap<String, String>,
}

impl Images {
    /// The id of the image known as `key`, made by `uri` the first time.
    pub fn add(&mut self, key: String, uri: impl FnOnce() -> String) -> String {
        if let Some(id) = self.ids.get(&key) {
            return id.clone();
        }
        let id = format!("i{}", self.uris.len());
        self.uris.insert(id.clone(), uri().into());
        self.ids.insert(key, id.clone());
        id
    }
}

/// Build the report of `dirs` into the file `out` (written atomically), calling `progress(done,
/// total)` after each folder.
pub fn build(
    dirs: &[PathBuf],
    out: &Path,
    opts: &Options,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Built> {
    if out.is_dir() {
        return Err(Error::field(
            "out",
            format!(
                "{} is a folder; give the HTML file to write, e.g. {}/report.html",
                out.display(),
                out.display()
            ),
        ));
    }
    let html = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    if !html {
        return Err(Error::field(
            "out",
            format!(
                "{}: expected an .html file name (the report is one HTML file)",
                out.display()
            ),
        ));
    }
    if let Some(d) = dirs
        .iter()
        .find(|d| out.starts_with(d) && d.join("metadata.json").is_file())
    {
        return Err(Error::field(
            "out",
            format!(
                "{} is inside the run {}; write the report elsewhere",
                out.display(),
                d.display()
            ),
        ));
    }
    let mut notes = Vec::new();
    let (mut benches, mut trains, mut audits, mut models) = (vec![], vec![], vec![], vec![]);
    let (mut pates, mut robust) = (vec![], vec![]);
    let mut kinds = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        match collect::load(d, &mut notes) {
            Ok(Loaded::Bench(b)) => {
                kinds.push((d.display().to_string(), "bench".to_string()));
                benches.push(b)
            }
            Ok(Loaded::Train(t)) => {
                kinds.push((d.display().to_string(), "train".to_string()));
                trains.push(*t)
            }
            Ok(Loaded::Audit(a)) => {
                kinds.push((d.display().to_string(), "audit".to_string()));
                audits.push(a)
            }
            Ok(Loaded::Model(m)) => {
                kinds.push((d.display().to_string(), "model".to_string()));
                models.push(m)
            }
            Ok(Loaded::Pate(p)) => {
                kinds.push((d.display().to_string(), "pate".to_string()));
                pates.push(*p)
            }
            Ok(Loaded::Robustness(r)) => {
                kinds.push((d.display().to_string(), "robustness".to_string()));
                robust.push(r)
            }
            Err(e) => notes.push(format!("{e}: left out")),
        }
        progress(i + 1, dirs.len());
    }
    if kinds.is_empty() {
        return Err(Error::field(
            "runs",
            format!(
                "none of the {} folders could be read: {}",
                dirs.len(),
                notes.join("; ")
            ),
        ));
    }
    let mut page = Page::default();
    let mut images = Images::default();
    let comparison = runs::comparison_rows(&trains, &mut notes);
    if comparison.len() >= 2 {
        runs::comparison(&mut page, &comparison);
    }
    let mut cards = 0;
    for (k, b) in benches.iter().enumerate() {
        cards += bench::section(&mut page, &mut images, b, k, opts.gallery_max);
    }
    if !trains.is_empty() {
        runs::training(&mut page, &trains);
        if comparison.len() == 1 {
            runs::comparison(&mut page, &comparison);
        }
    }
    runs::audits(&mut page, &trains, &audits);
    for (k, r) in robust.iter().enumerate() {
        other::robustness(&mut page, r, k);
    }
    for (k, p) in pates.iter().enumerate() {
        other::pate(&mut page, p, k);
    }
    for (k, m) in models.iter().enumerate() {
        cards += model_section::section(
            &mut page,
            &mut images,
            m,
            k,
            opts.misclassified_max,
            &mut notes,
        );
    }
    let charts = page.charts();
    let header = header(opts, &kinds, &notes);
    let n_images = images.uris.len();
    let html = page.finish(&opts.title, &header, images.uris);
    write_text(out, &html)?;
    Ok(Built {
        out: out.to_path_buf(),
        bytes: html.len() as u64,
        runs: kinds,
        charts,
        gallery_cards: cards,
        images: n_images,
        notes,
    })
}

fn header(opts: &Options, kinds: &[(String, String)], notes: &[String]) -> String {
    let runs: Vec<String> = kinds
        .iter()
        .map(|(d, k)| format!("{} ({k})", esc(d)))
        .collect();
    let mut h = format!(
        "<h1>{}</h1><div class=\"meta\">fool {} · {}</div>",
        esc(&opts.title),
        env!("CARGO_PKG_VERSION"),
        runs.join(" · ")
    );
    if !notes.is_empty() {
        let items: String = notes
            .iter()
            .map(|n| format!("<li>{}</li>", esc(n)))
            .collect();
        h += &format!("<ul class=\"notes\">{items}</ul>");
    }
    h
}
