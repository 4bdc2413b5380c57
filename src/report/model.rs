//! `fool report model --model M --dataset cifar10:test --out DIR`: how a model does per class on
//! a data set slice — the classification report (scikit-learn's, [`super::classification`]),
//! the confusion matrix, and the misclassified images, browsable in `DIR/report.html`:
//!
//! ```text
//! DIR/model_report.json          ModelReport (what `fool report html` reads)
//! DIR/classification_report.txt  the table as scikit-learn prints it
//! DIR/confusion.csv              rows: true class, columns: predicted
//! DIR/misclassified/ROW.png      the first `keep` misclassified images, as the model saw them
//! ```
use super::classification::{self, Classification};
use crate::datasets::spec::{check_model, load_rows, DatasetSpec};
use crate::files::{ensure_writable_dir, write_json, write_text};
use crate::imageio::{save_png, tensor_to_rgb};
use crate::labels::Labels;
use crate::model::Classifier;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::Kind;

/// A misclassified image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Miss {
    /// `test/00042`.
    pub item: String,
    pub label: usize,
    pub pred: usize,
    /// The softmax probability of the predicted class.
    pub confidence: f64,
    /// The image, relative to the report folder (None past `keep`).
    pub image: Option<String>,
}

/// `model_report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelReport {
    pub fool_version: String,
    pub model: String,
    pub model_sha256: String,
    pub dataset: String,
    pub n: usize,
    pub labels: Vec<String>,
    pub classification: Classification,
    /// Every misclassified image (the first `keep` with a picture).
    pub misclassified: Vec<Miss>,
}

/// Evaluate `model` on the slice `dataset` (files in `data`, default assets/NAME), write the
/// report into `out`, calling `progress(done, total)` per batch.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    model: &Classifier,
    model_path: &Path,
    labels: &Labels,
    dataset: &str,
    data: Option<&Path>,
    batch: usize,
    keep: usize,
    out: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ModelReport> {
    let spec = DatasetSpec::parse(dataset).ok_or_else(|| {
        Error::field(
            "dataset",
            format!(
                "'{dataset}': expected a data set slice such as cifar10:test or mnist:test[0:1000]"
            ),
        )
    })??;
    let (ds, items) = spec.load(data)?;
    check_model(&ds, model, model_path)?;
    if items.is_empty() {
        return Err(Error::field("dataset", format!("'{dataset}' has no rows")));
    }
    ensure_writable_dir(out, "out")?;
    let (mut y_true, mut y_pred, mut misses) = (vec![], vec![], vec![]);
    let miss_dir = out.join("misclassified");
    for chunk in items.chunks(batch.max(1)) {
        let lb = load_rows(&ds, model, chunk);
        let probs = tch::no_grad(|| model.probs(&lb.x))?.to_kind(Kind::Double);
        let (conf, pred) = probs.max_dim(1, false);
        let pred = Vec::<i64>::try_from(&pred).map_err(|e| Error::Torch(e.to_string()))?;
        let conf = Vec::<f64>::try_from(&conf).map_err(|e| Error::Torch(e.to_string()))?;
        for (i, it) in lb.items.iter().enumerate() {
            let p = pred[i] as usize;
            y_true.push(it.label);
            y_pred.push(p);
            if p != it.label {
                let image = (misses.len() < keep)
                    .then(|| format!("misclassified/{}.png", it.file.replace('/', "-")));
                if let Some(rel) = &image {
                    std::fs::create_dir_all(&miss_dir)
                        .map_err(|e| Error::bad_file(&miss_dir, e.to_string()))?;
                    save_png(&tensor_to_rgb(&lb.x.get(i as i64)), &out.join(rel))?;
                }
                misses.push(Miss {
                    item: it.file.clone(),
                    label: it.label,
                    pred: p,
                    confidence: conf[i],
                    image,
                });
            }
        }
        progress(y_true.len(), items.len());
    }
    let names: Vec<String> = (0..model.num_classes)
        .map(|c| labels.name(c).to_string())
        .collect();
    let classification =
        classification::report(&y_true, &y_pred, model.num_classes, |c| names[c].clone());
    let report = ModelReport {
        fool_version: env!("CARGO_PKG_VERSION").to_string(),
        model: model_path.display().to_string(),
        model_sha256: crate::model::sha256_file(model_path)?,
        dataset: dataset.to_string(),
        n: y_true.len(),
        labels: names,
        classification,
        misclassified: misses,
    };
    write_text(
        &out.join("classification_report.txt"),
        &classification::text(&report.classification),
    )?;
    let mut csv = String::from("true\\pred");
    for l in &report.labels {
        csv += &format!(",{}", csv_field(l));
    }
    csv.push('\n');
    for (t, row) in report.classification.confusion.iter().enumerate() {
        csv += &csv_field(&report.labels[t]);
        for v in row {
            csv += &format!(",{v}");
        }
        csv.push('\n');
    }
    write_text(&out.join("confusion.csv"), &csv)?;
    write_json(&out.join("model_report.json"), &report)?;
    Ok(report)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
