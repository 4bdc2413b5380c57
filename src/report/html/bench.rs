//! A bench run's section: the success-rate chart with its filters, the sortable summary, and
//! the gallery of kept examples (original | amplified perturbation | adversarial, with both
//! predictions).
use super::collect::BenchRun;
use super::gallery::{data_uri, perturbation};
use super::page::{esc, pct, Cell, Page};
use super::specs;
use super::Images;
use crate::bench::examples::{adv_path, clean_path, labels_path};
use crate::labels::Labels;
use serde_json::json;
use std::path::Path;

/// Class names for a bench's labels: the names `fool bench --keep-examples` saved, else the
/// model's labels.json beside it, else numbers.
fn labels_for(run: &BenchRun) -> Labels {
    let max = run
        .example_rows
        .iter()
        .map(|(_, r)| r.label.max(r.adv_pred).max(r.clean_pred))
        .max()
        .unwrap_or(0);
    let beside = Path::new(&run.config.model)
        .parent()
        .map(|d| d.join("labels.json"));
    let candidates = [labels_path(&run.dir)].into_iter().chain(beside);
    for p in candidates {
        if let Ok(l) = Labels::load(&p) {
            if l.len() > max {
                return l;
            }
        }
    }
    Labels::numbered(max + 1)
}

/// Write the section of bench run `k`; returns the number of gallery cards.
pub fn section(
    page: &mut Page,
    images: &mut Images,
    run: &BenchRun,
    k: usize,
    gallery_max: usize,
) -> usize {
    let c = &run.config;
    page.section(
        &format!("bench-{k}"),
        &format!("bench: {}", run.name),
        "bench",
    );
    let norm = c.norm.name();
    page.body += &format!(
        "<p class=\"desc\">{} images of {} · model {} (sha256 {}…) · attacks {} · eps ({norm}) {} · defenses {} · targets {:?} · steps {} · seed {} · folder {}</p>\n",
        c.files.len(),
        esc(&c.dataset),
        esc(&c.model),
        esc(c.model_sha256.get(..12).unwrap_or(&c.model_sha256)),
        esc(&c.attacks.join(", ")),
        esc(&c.eps.iter().map(|e| format!("{e:.4}")).collect::<Vec<_>>().join(", ")),
        esc(&c.defenses.join(", ")),
        c.targets,
        c.steps.map_or("default".into(), |s| s.to_string()),
        c.seed,
        esc(&run.dir.display().to_string()),
    );
    let rows: Vec<serde_json::Value> = run
        .summary
        .iter()
        .map(|r| {
            let series = if r.mode == "adaptive" {
                format!("{} · {} (adaptive)", r.attack, r.defense)
            } else {
                format!("{} · {}", r.attack, r.defense)
            };
            json!({"attack": r.attack, "defense": r.defense, "mode": r.mode, "norm": r.norm.name(),
                   "series": series, "eps": r.eps, "success_rate": r.success_rate,
                   "ci_low": r.ci_low, "ci_high": r.ci_high, "n": r.n})
        })
        .collect();
    if !rows.is_empty() {
        let div = page.chart(specs::bench_success(
            rows,
            &format!("eps ({norm}, pixels 0..1)"),
        ));
        page.body += &div;
    }
    let table: Vec<Vec<Cell>> = run
        .summary
        .iter()
        .map(|r| {
            vec![
                Cell::Text(r.attack.clone()),
                Cell::num(Some(r.eps), |v| format!("{v:.4}")),
                Cell::Text(r.defense.clone()),
                Cell::Text(r.mode.clone()),
                Cell::num(Some(r.n as f64), |v| format!("{v}")),
                Cell::num(Some(r.success_rate), |v| pct(v, 1)),
                Cell::Text(format!("[{}, {}]", pct(r.ci_low, 1), pct(r.ci_high, 1))),
                Cell::num(Some(r.clean_accuracy), |v| pct(v, 1)),
                Cell::num(Some(r.robust_accuracy), |v| pct(v, 1)),
                Cell::num(r.mean_linf, |v| format!("{v:.4}")),
                Cell::num(r.mean_l2, |v| format!("{v:.3}")),
                Cell::num(Some(r.mean_queries), |v| format!("{v:.0}")),
            ]
        })
        .collect();
    page.body += "<h3>Summary</h3><div class=\"scroll\">";
    page.table(
        "summary",
        &[
            "attack",
            "eps",
            "defense",
            "mode",
            "images",
            "success",
            "95% CI",
            "clean acc",
            "robust acc",
            "mean L∞",
            "mean L2",
            "queries",
        ],
        table,
    );
    page.body += "</div>\n";
    let cards = gallery(page, images, run, gallery_max);
    page.end_section();
    cards
}

/// The gallery: at most `max` cards, spread evenly over the settings.
fn gallery(page: &mut Page, images: &mut Images, run: &BenchRun, max: usize) -> usize {
    if run.example_rows.is_empty() {
        page.body += "<p class=\"desc\">No examples kept (run fool bench with --keep-examples N to see some here).</p>\n";
        return 0;
    }
    let setting = |r: &crate::bench::Row| {
        format!("{} eps {:.4} · {} · {}", r.attack, r.eps, r.defense, r.mode)
    };
    let mut settings: Vec<String> = Vec::new();
    for (_, r) in &run.example_rows {
        let s = setting(r);
        if !settings.contains(&s) {
            settings.push(s);
        }
    }
    let per = (max / settings.len().max(1)).max(1);
    let labels = labels_for(run);
    let mut body = String::new();
    let mut shown = 0;
    for (k, s) in settings.iter().enumerate() {
        // Rotate through the kept images so that a tight cap still shows different ones.
        let mine: Vec<&(usize, crate::bench::Row)> = run
            .example_rows
            .iter()
            .filter(|(_, r)| setting(r) == *s)
            .collect();
        let start = if mine.is_empty() { 0 } else { k % mine.len() };
        let picked = mine
            .iter()
            .cycle()
            .skip(start)
            .take(per.min(mine.len()))
            .copied();
        for (index, r) in picked {
            if shown >= max {
                break;
            }
            let adaptive = (r.mode == "adaptive").then_some(r.defense.as_str());
            let (cp, ap) = (
                clean_path(&run.dir, *index),
                adv_path(&run.dir, &r.attack, r.eps, adaptive, *index),
            );
            let (Ok(clean), Ok(adv)) = (image::open(&cp), image::open(&ap)) else {
                continue;
            };
            let (clean, adv) = (clean.to_rgb8(), adv.to_rgb8());
            let Some((pert, amp)) = perturbation(&clean, &adv) else {
                continue;
            };
            let cref = images.add(format!("{}#clean{index}", run.dir.display()), || {
                data_uri(&clean)
            });
            let pref = images.add(format!("{}#{}", ap.display(), "pert"), || data_uri(&pert));
            let aref = images.add(ap.display().to_string(), || data_uri(&adv));
            let target = r
                .target
                .map(|t| format!(" → target {}", labels.short(t)))
                .unwrap_or_default();
            let verdict = if r.success {
                "<span class=\"ok\">fooled</span>"
            } else {
                "<span class=\"held\">held</span>"
            };
            body += &format!(
                "<div class=\"card\" data-setting=\"{}\" data-success=\"{}\"><div class=\"imgs\">\
                 <figure><img data-img=\"{cref}\" alt=\"original\"><figcaption>original: {}</figcaption></figure>\
                 <figure><img data-img=\"{pref}\" alt=\"perturbation\"><figcaption>perturbation ×{amp:.0}</figcaption></figure>\
                 <figure><img data-img=\"{aref}\" alt=\"adversarial\"><figcaption>adversarial: {}</figcaption></figure></div>\
                 <div>{} · true {}{} · {verdict} · L∞ {:.4} ({:.0}/255)</div></div>\n",
                esc(s),
                if r.success { "1" } else { "" },
                esc(labels.short(r.clean_pred)),
                esc(labels.short(r.adv_pred)),
                esc(s),
                esc(labels.short(r.label)),
                esc(&target),
                r.linf,
                r.linf * 255.0,
            );
            shown += 1;
        }
    }
    let options: String = settings
        .iter()
        .map(|s| format!("<option>{}</option>", esc(s)))
        .collect();
    page.body += &format!(
        "<h3>Examples</h3><div class=\"browse\"><div class=\"controls\">\
         <label>setting <select data-filter=\"setting\"><option>all</option>{options}</select></label>\
         <label><input type=\"checkbox\" data-filter=\"success\"> only the fooled</label> <span class=\"count\"></span></div>\
         <div class=\"cards\">{body}</div></div>\n"
    );
    shown
}
