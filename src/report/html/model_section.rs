//! A model report's section (`fool report model`): per-class precision, recall, F1 and
//! support (scikit-learn's classification report), the confusion matrix as a heat map, and
//! the misclassified images, filterable by true and predicted class.
use super::collect::ModelRun;
use super::gallery::data_uri;
use super::page::{esc, Cell, Page};
use super::specs;
use super::Images;
use serde_json::json;

/// Cells of the heat map at most (the largest counts are kept).
const MAX_CELLS: usize = 20_000;

/// Write the section of model report `k`; returns the misclassified images shown.
pub fn section(
    page: &mut Page,
    images: &mut Images,
    run: &ModelRun,
    k: usize,
    max_images: usize,
    notes: &mut Vec<String>,
) -> usize {
    let r = &run.report;
    let c = &r.classification;
    page.section(
        &format!("model-{k}"),
        &format!("model: {}", run.name),
        "model",
    );
    page.body += &format!(
        "<p class=\"desc\">{} on {} ({} images): accuracy {:.2}% · {} misclassified · sha256 {}… · folder {}</p>\n",
        esc(&r.model),
        esc(&r.dataset),
        r.n,
        100.0 * c.accuracy,
        r.misclassified.len(),
        esc(r.model_sha256.get(..12).unwrap_or(&r.model_sha256)),
        esc(&run.dir.display().to_string())
    );
    let f = |v: f64| format!("{v:.4}");
    let mut rows: Vec<Vec<Cell>> = c
        .classes
        .iter()
        .map(|x| {
            vec![
                Cell::Text(x.label.clone()),
                Cell::num(Some(x.precision), f),
                Cell::num(Some(x.recall), f),
                Cell::num(Some(x.f1), f),
                Cell::num(Some(x.support as f64), |v| format!("{v}")),
            ]
        })
        .collect();
    rows.push(vec![
        Cell::Text("accuracy".into()),
        Cell::Text(String::new()),
        Cell::Text(String::new()),
        Cell::num(Some(c.accuracy), f),
        Cell::num(Some(c.macro_avg.support as f64), |v| format!("{v}")),
    ]);
    for (name, a) in [
        ("macro avg", &c.macro_avg),
        ("weighted avg", &c.weighted_avg),
    ] {
        rows.push(vec![
            Cell::Text(name.into()),
            Cell::num(Some(a.precision), f),
            Cell::num(Some(a.recall), f),
            Cell::num(Some(a.f1), f),
            Cell::num(Some(a.support as f64), |v| format!("{v}")),
        ]);
    }
    page.body += "<h3>Classification report</h3><div class=\"scroll\">";
    page.table(
        "classification",
        &["class", "precision", "recall", "f1-score", "support"],
        rows,
    );
    page.body += "</div>\n<h3>Confusion matrix</h3>";
    let mut cells = Vec::new();
    for (t, row) in c.confusion.iter().enumerate() {
        let total: usize = row.iter().sum();
        for (p, &n) in row.iter().enumerate() {
            if n > 0 {
                cells.push((n, t, p, total));
            }
        }
    }
    if cells.len() > MAX_CELLS {
        notes.push(format!(
            "{}: the confusion matrix has {} non-zero cells; the heat map shows the {MAX_CELLS} largest (confusion.csv has all)",
            run.dir.display(),
            cells.len()
        ));
        cells.sort_by_key(|c| std::cmp::Reverse(c.0));
        cells.truncate(MAX_CELLS);
    }
    let label = |i: usize| r.labels.get(i).cloned().unwrap_or_else(|| i.to_string());
    let data = cells
        .iter()
        .map(|&(n, t, p, total)| json!({"true": label(t), "pred": label(p), "count": n, "share": n as f64 / total.max(1) as f64}))
        .collect();
    let present: Vec<String> = c.classes.iter().map(|x| x.label.clone()).collect();
    let div = page.chart(specs::confusion(data, &present, present.len() <= 20));
    page.body += &div;
    let mut cards = String::new();
    let mut shown = 0;
    for m in &r.misclassified {
        let Some(rel) = &m.image else { continue };
        if shown >= max_images {
            break;
        }
        let Ok(img) = image::open(run.dir.join(rel)) else {
            continue;
        };
        let img = img.to_rgb8();
        let id = images.add(run.dir.join(rel).display().to_string(), || data_uri(&img));
        cards += &format!(
            "<div class=\"card\" data-true=\"{}\" data-pred=\"{}\"><figure><img data-img=\"{id}\" alt=\"{}\">\
             <figcaption>{}<br>true {} · predicted {} ({:.0}%)</figcaption></figure></div>\n",
            esc(&label(m.label)),
            esc(&label(m.pred)),
            esc(&m.item),
            esc(&m.item),
            esc(&label(m.label)),
            esc(&label(m.pred)),
            100.0 * m.confidence
        );
        shown += 1;
    }
    if shown > 0 {
        let opts = |field: fn(&crate::report::model::Miss) -> usize| {
            let mut v: Vec<usize> = r
                .misclassified
                .iter()
                .filter(|m| m.image.is_some())
                .map(field)
                .collect();
            v.sort_unstable();
            v.dedup();
            v.iter()
                .map(|&i| format!("<option>{}</option>", esc(&label(i))))
                .collect::<String>()
        };
        page.body += &format!(
            "<h3>Misclassified images</h3><div class=\"browse\"><div class=\"controls\">\
             <label>true class <select data-filter=\"true\"><option>all</option>{}</select></label>\
             <label>predicted <select data-filter=\"pred\"><option>all</option>{}</select></label> <span class=\"count\"></span></div>\
             <div class=\"cards\">{cards}</div></div>\n",
            opts(|m| m.label),
            opts(|m| m.pred)
        );
    }
    page.end_section();
    shown
}
