//! The three kinds of run folders as MLflow params, metrics and tags: a training run, a bench
//! output, an audit.
use super::collect::{flatten, mtime_ms, to_value, Collected, Kind, Metric};
use crate::audit::AuditResult;
use crate::bench::{eps_key, BenchConfig, SummaryRow};
use crate::files::read_json;
use crate::train::{Metadata, RunDir};
use crate::Result;
use std::path::Path;

pub(super) fn train(run: &RunDir, c: &mut Collected) -> Result<()> {
    let meta: Metadata = run.read_metadata()?;
    c.kind = Kind::Train;
    c.end_ms = mtime_ms(&run.metadata_path())?;
    flatten("", &to_value("metadata.json", &meta.config)?, &mut c.params);
    let mut extra = serde_json::json!({
        "train_examples": meta.train_examples,
        "test_examples": meta.test_examples,
        "sample_rate": meta.sample_rate,
        "members": meta.members,
        "device": meta.device,
        "synthetic": meta.synthetic,
    });
    if let Some(p) = &meta.pate {
        let mut v = to_value("metadata.json", p)?;
        if let Some(o) = v.as_object_mut() {
            // The analysis is in metadata.json (an artifact); the results are metrics below.
            for k in [
                "analysis",
                "epsilon_data_independent",
                "epsilon_data_dependent",
                "epsilon_released",
                "label_accuracy",
            ] {
                o.remove(k);
            }
        }
        extra["pate"] = v;
    }
    flatten("", &extra, &mut c.params);
    let mut elapsed = 0.0;
    let mut push = |key: &str, value: f64, step: usize, at: f64| {
        c.metrics.push(Metric {
            key: key.to_string(),
            value,
            step: step as i64,
            offset_ms: (at * 1000.0).round() as i64,
        });
    };
    for r in &meta.history {
        elapsed += r.seconds.max(0.0);
        let e = r.epoch;
        for (k, v) in [
            ("test_accuracy", Some(r.test_accuracy)),
            ("train_accuracy", Some(r.train_accuracy)),
            ("train_loss", Some(r.train_loss)),
            ("test_loss", Some(r.test_loss)),
            ("epsilon", r.epsilon),
            ("robust_accuracy", r.robust_accuracy),
            ("examples_per_second", Some(r.examples_per_second)),
            ("epoch_seconds", Some(r.seconds)),
            ("lr", r.lr),
            ("clipped_fraction", r.clipped_fraction),
            ("mean_grad_norm", r.mean_grad_norm),
            ("steps", Some(r.steps as f64)),
        ] {
            if let Some(v) = v {
                push(k, v, e, elapsed);
            }
        }
        let audit: Vec<&AuditResult> = r.audit.iter().flatten().collect();
        for a in audit.iter().filter(|a| a.slice == "all") {
            push(&format!("audit/{}/auc", a.attack), a.auc, e, elapsed);
            push(
                &format!("audit/{}/advantage", a.attack),
                a.advantage,
                e,
                elapsed,
            );
            let tpr = a.tpr_at_fpr_0_001;
            push(
                &format!("audit/{}/tpr_at_fpr_0.001", a.attack),
                tpr,
                e,
                elapsed,
            );
        }
        for (key, f) in BEST {
            let best = audit.iter().filter(|a| a.slice == "all").map(|a| f(a));
            if let Some(v) = best.reduce(f64::max) {
                push(key, v, e, elapsed);
            }
        }
    }
    let last = meta.epochs_done;
    for (k, v) in [
        ("final_test_accuracy", meta.test_accuracy),
        ("final_epsilon", meta.epsilon),
    ] {
        if let Some(v) = v {
            push(k, v, last, elapsed);
        }
    }
    if let Some(p) = &meta.pate {
        for (k, v) in [
            (
                "pate.epsilon_data_independent",
                Some(p.epsilon_data_independent),
            ),
            (
                "pate.epsilon_data_dependent",
                Some(p.epsilon_data_dependent),
            ),
            ("pate.epsilon_released", p.epsilon_released),
            ("pate.label_accuracy", p.label_accuracy),
        ] {
            if let Some(v) = v {
                push(k, v, last, elapsed);
            }
        }
    }
    c.duration_ms = (elapsed * 1000.0).round() as i64;
    c.tags
        .push(("fool.seed".into(), meta.config.seed.to_string()));
    c.tags
        .push(("fool.dataset".into(), meta.dataset.to_string()));
    let model = run.model_path();
    if model.is_file() {
        let sha = crate::model::sha256_file(&model)?;
        c.tags.push(("fool.model_sha256".into(), sha));
    }
    Ok(())
}

/// The best-of-attacks audit metrics of a training epoch.
type Best = (&'static str, fn(&AuditResult) -> f64);
const BEST: [Best; 3] = [
    ("audit_best_auc", |a| a.auc),
    ("audit_best_advantage", |a| a.advantage),
    ("audit_best_tpr_at_fpr_0.001", |a| a.tpr_at_fpr_0_001),
];

pub(super) fn bench(dir: &Path, c: &mut Collected) -> Result<()> {
    let cfg: BenchConfig = crate::bench::read_config(dir)?;
    let summary_path = dir.join("summary.json");
    let summary: Vec<SummaryRow> = read_json(&summary_path)?;
    c.kind = Kind::Bench;
    c.end_ms = mtime_ms(&summary_path)?;
    let mut v = to_value("bench.json", &cfg)?;
    if let Some(o) = v.as_object_mut() {
        // The image list can be long: its length is the param.
        o.remove("files");
        o.insert("images".into(), cfg.files.len().into());
    }
    flatten("", &v, &mut c.params);
    for (i, e) in cfg.eps.iter().enumerate() {
        c.metrics.push(Metric {
            key: "eps".into(),
            value: *e,
            step: i as i64,
            offset_ms: 0,
        });
    }
    for row in &summary {
        let Some(step) = cfg.eps.iter().position(|e| eps_key(*e) == eps_key(row.eps)) else {
            c.warnings.push(format!(
                "summary.json: eps {} of {} is not in bench.json's eps list; not logged",
                row.eps, row.attack
            ));
            continue;
        };
        let setting = format!("{}/{}/{}", row.attack, row.defense, row.mode);
        for (what, value) in [
            ("success_rate", row.success_rate),
            ("robust_accuracy", row.robust_accuracy),
        ] {
            c.metrics.push(Metric {
                key: format!("{what}/{setting}"),
                value,
                step: step as i64,
                offset_ms: 0,
            });
        }
    }
    c.tags.push(("fool.seed".into(), cfg.seed.to_string()));
    c.tags
        .push(("fool.model_sha256".into(), cfg.model_sha256.clone()));
    Ok(())
}

pub(super) fn audit(dir: &Path, c: &mut Collected) -> Result<()> {
    let path = dir.join("audit.json");
    let rows: Vec<AuditResult> = read_json(&path)?;
    c.kind = Kind::Audit;
    c.end_ms = mtime_ms(&path)?;
    let mut attacks: Vec<String> = vec![];
    let mut slices: Vec<String> = vec![];
    for r in &rows {
        let a = r.attack.to_string();
        if !attacks.contains(&a) {
            attacks.push(a);
        }
        if !slices.contains(&r.slice) {
            slices.push(r.slice.clone());
        }
    }
    let all = rows.iter().filter(|r| r.slice == "all");
    let members = all.clone().map(|r| r.n_members).max();
    let nonmembers = all.clone().map(|r| r.n_nonmembers).max();
    flatten(
        "",
        &serde_json::json!({
            "attacks": attacks,
            "slices": slices,
            "n_members": members,
            "n_nonmembers": nonmembers,
        }),
        &mut c.params,
    );
    for r in &rows {
        for (what, value) in [
            ("auc", r.auc),
            ("advantage", r.advantage),
            ("tpr_at_fpr_0.001", r.tpr_at_fpr_0_001),
            ("tpr_at_fpr_0.01", r.tpr_at_fpr_0_01),
            ("balanced_accuracy", r.balanced_accuracy),
        ] {
            c.metrics.push(Metric {
                key: format!("{what}/{}/{}", r.attack, r.slice),
                value,
                step: 0,
                offset_ms: 0,
            });
        }
    }
    for (key, f) in BEST {
        if let Some(v) = all.clone().map(f).reduce(f64::max) {
            let key = key.trim_start_matches("audit_").to_string();
            c.metrics.push(Metric {
                key,
                value: v,
                step: 0,
                offset_ms: 0,
            });
        }
    }
    Ok(())
}
