//! The report's charts as Vega-Lite specifications (the grammar Altair emits), with their data
//! inline and already aggregated (one row per setting, per epoch, per ROC point): the page
//! only renders them. Hover shows the values (`tooltip`); the bench chart's filters are
//! Vega-Lite parameters bound to select boxes.
use serde_json::{json, Value};

/// A select box over `values` (plus `all`) bound to the parameter `name`.
fn select_param(name: &str, label: &str, values: &[String]) -> Value {
    let mut options = vec![Value::from("all")];
    options.extend(values.iter().map(|v| Value::from(v.as_str())));
    json!({
        "name": name,
        "value": "all",
        "bind": {"input": "select", "options": options, "name": format!("{label} ")}
    })
}

fn distinct(rows: &[Value], field: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if let Some(s) = r.get(field).and_then(Value::as_str) {
            if !out.iter().any(|o| o == s) {
                out.push(s.to_string());
            }
        }
    }
    out
}

/// Success rate vs eps of a bench run, one line per attack × defense × mode (adaptive
/// dashed), 95% intervals as rules, filterable by attack, defense, mode and norm. `rows`:
/// objects with attack, defense, mode, norm, series, eps, success_rate, ci_low, ci_high, n.
pub fn bench_success(rows: Vec<Value>, x_title: &str) -> Value {
    let filters = ["attack", "defense", "mode", "norm"];
    let params: Vec<Value> = filters
        .iter()
        .map(|f| select_param(&format!("f_{f}"), f, &distinct(&rows, f)))
        .collect();
    let cond: Vec<String> = filters
        .iter()
        .map(|f| format!("(f_{f} == 'all' || datum.{f} == f_{f})"))
        .collect();
    let y = json!({"field": "success_rate", "type": "quantitative", "title": "attack success rate",
                   "axis": {"format": "%"}, "scale": {"domain": [0, 1]}});
    let dash = json!({"field": "mode", "type": "nominal", "title": "mode",
                      "scale": {"domain": ["non-adaptive", "adaptive"], "range": [[1, 0], [6, 4]]}});
    let tooltip = json!([
        {"field": "series", "title": "setting"},
        {"field": "eps", "type": "quantitative", "format": ".4f"},
        {"field": "success_rate", "type": "quantitative", "format": ".1%", "title": "success"},
        {"field": "ci_low", "type": "quantitative", "format": ".1%", "title": "95% CI low"},
        {"field": "ci_high", "type": "quantitative", "format": ".1%", "title": "95% CI high"},
        {"field": "n", "type": "quantitative", "title": "images"}
    ]);
    json!({
        "width": 560, "height": 300,
        "data": {"values": rows},
        "params": params,
        "transform": [{"filter": cond.join(" && ")}],
        "encoding": {
            "x": {"field": "eps", "type": "quantitative", "title": x_title},
            "color": {"field": "series", "type": "nominal", "title": "attack · defense"}
        },
        "layer": [
            {"mark": {"type": "line"}, "encoding": {"y": y, "strokeDash": dash, "detail": {"field": "series"}}},
            {"mark": {"type": "rule"}, "encoding": {"y": {"field": "ci_low", "type": "quantitative"}, "y2": {"field": "ci_high"}}},
            {"mark": {"type": "point", "filled": true, "size": 50}, "encoding": {"y": y, "tooltip": tooltip}}
        ]
    })
}

/// Lines of `metric` by epoch, one per run. `rows`: objects with run, epoch and the metrics.
fn by_epoch(rows: &[Value], metric: &str, title: &str, percent: bool, dash: Option<&str>) -> Value {
    let mut y = json!({"field": metric, "type": "quantitative", "title": title});
    if percent {
        y["axis"] = json!({"format": "%"});
    }
    let mut enc = json!({
        "x": {"field": "epoch", "type": "quantitative", "axis": {"tickMinStep": 1, "format": "d"}},
        "y": y,
        "color": {"field": "run", "type": "nominal"},
        "tooltip": [{"field": "run"}, {"field": "epoch"}, {"field": metric, "type": "quantitative", "format": ".4f"}]
    });
    if let Some(d) = dash {
        enc["strokeDash"] = json!({"field": d, "type": "nominal"});
    }
    json!({
        "width": 300, "height": 200,
        "title": title,
        "data": {"values": rows},
        "transform": [{"filter": format!("isValid(datum['{metric}'])")}],
        "mark": {"type": "line", "point": true},
        "encoding": enc
    })
}

/// Training curves: loss (train and test dashed apart), accuracy, ε by epoch. `rows`: one per
/// run × epoch × split (`split`: train|test) with loss, accuracy, epsilon.
pub fn training(rows: Vec<Value>) -> Value {
    json!({
        "hconcat": [
            by_epoch(&rows, "loss", "loss", false, Some("split")),
            by_epoch(&rows, "accuracy", "accuracy", true, Some("split")),
            by_epoch(&rows.iter().filter(|r| r["split"] == "test").cloned().collect::<Vec<_>>(), "epsilon", "ε spent", false, None)
        ]
    })
}

/// Membership leakage by epoch (the best attack's AUC and advantage at each audited epoch).
pub fn privacy_by_epoch(rows: Vec<Value>) -> Value {
    json!({"hconcat": [
        by_epoch(&rows, "auc", "membership AUC", false, None),
        by_epoch(&rows, "advantage", "membership advantage", false, None)
    ]})
}

/// Privacy vs utility: one labelled point per run, x membership AUC, y test accuracy.
pub fn privacy_vs_utility(rows: Vec<Value>) -> Value {
    let enc = json!({
        "x": {"field": "auc", "type": "quantitative", "title": "membership AUC (0.5 = no leak)", "scale": {"zero": false}},
        "y": {"field": "accuracy", "type": "quantitative", "title": "test accuracy", "axis": {"format": "%"}, "scale": {"zero": false}},
    });
    json!({
        "width": 420, "height": 280,
        "data": {"values": rows},
        "encoding": enc,
        "layer": [
            {"mark": {"type": "point", "filled": true, "size": 90},
             "encoding": {"color": {"field": "kind", "type": "nominal"},
                          "tooltip": [{"field": "run"}, {"field": "kind"}, {"field": "epsilon", "title": "ε"},
                                      {"field": "accuracy", "format": ".2%"}, {"field": "auc", "format": ".3f"}]}},
            {"mark": {"type": "text", "dx": 8, "align": "left"}, "encoding": {"text": {"field": "run"}}}
        ]
    })
}

/// ROC curves on log-log axes (rates below 1e-5 are drawn at 1e-5), with the chance diagonal.
pub fn roc(rows: Vec<Value>) -> Value {
    let axis = |title: &str| json!({"type": "quantitative", "title": title, "scale": {"type": "log", "domain": [1e-5, 1]}});
    let mut x = axis("false-positive rate");
    x["field"] = json!("fpr");
    let mut y = axis("true-positive rate");
    y["field"] = json!("tpr");
    let diag = json!([{"fpr": 1e-5, "tpr": 1e-5}, {"fpr": 1, "tpr": 1}]);
    json!({
        "width": 420, "height": 360,
        "layer": [
            {"data": {"values": diag}, "mark": {"type": "line", "color": "#bbb", "strokeDash": [4, 4]},
             "encoding": {"x": x, "y": y}},
            {"data": {"values": rows}, "mark": {"type": "line"},
             "encoding": {"x": x, "y": y, "color": {"field": "curve", "type": "nominal", "title": "run · attack"},
                          "tooltip": [{"field": "curve"}, {"field": "fpr", "format": ".2e"}, {"field": "tpr", "format": ".3f"}]}}
        ]
    })
}

/// The confusion matrix as a heat map: `rows` of (true, pred, count) cells with count > 0.
pub fn confusion(rows: Vec<Value>, labels: &[String], text: bool) -> Value {
    let side = (labels.len() as f64 * 24.0).clamp(320.0, 640.0);
    let enc = json!({
        "x": {"field": "pred", "type": "ordinal", "title": "predicted", "sort": labels},
        "y": {"field": "true", "type": "ordinal", "title": "true", "sort": labels},
    });
    let mut layers = vec![json!({
        "mark": "rect",
        "encoding": {"color": {"field": "count", "type": "quantitative", "scale": {"type": "symlog", "scheme": "blues"}},
                     "tooltip": [{"field": "true"}, {"field": "pred", "title": "predicted"}, {"field": "count"}, {"field": "share", "format": ".1%", "title": "of the class"}]}
    })];
    if text {
        layers.push(json!({"mark": {"type": "text", "fontSize": 9},
                           "encoding": {"text": {"field": "count"},
                                        "color": {"condition": {"test": "datum.share > 0.5", "value": "white"}, "value": "black"}}}));
    }
    json!({"width": side, "height": side, "data": {"values": rows}, "encoding": enc, "layer": layers})
}

/// A PATE ensemble's teachers: test accuracy per teacher, as bars.
pub fn teachers(rows: Vec<Value>) -> Value {
    json!({
        "width": 560, "height": 200,
        "data": {"values": rows},
        "mark": "bar",
        "encoding": {
            "x": {"field": "teacher", "type": "ordinal", "axis": {"labels": false, "ticks": false}},
            "y": {"field": "accuracy", "type": "quantitative", "title": "test accuracy", "axis": {"format": "%"}},
            "tooltip": [{"field": "teacher"}, {"field": "accuracy", "format": ".2%"}, {"field": "examples", "title": "trained on"}]
        }
    })
}

/// Robust accuracy (with its interval) against membership TPR at 0.1% FPR, a labelled point
/// per run (`fool report robustness`).
pub fn robust_vs_privacy(rows: Vec<Value>) -> Value {
    let x = json!({"field": "tpr", "type": "quantitative", "title": "membership TPR at 0.1% FPR"});
    json!({
        "width": 420, "height": 280,
        "data": {"values": rows},
        "layer": [
            {"mark": "rule", "encoding": {"x": x, "y": {"field": "ci_low", "type": "quantitative"}, "y2": {"field": "ci_high"}}},
            {"mark": {"type": "point", "filled": true, "size": 90},
             "encoding": {"x": x, "y": {"field": "robust", "type": "quantitative", "title": "robust accuracy", "axis": {"format": "%"}},
                          "color": {"field": "kind", "type": "nominal"},
                          "tooltip": [{"field": "run"}, {"field": "kind"}, {"field": "robust", "format": ".1%"}, {"field": "tpr", "format": ".4f"}]}},
            {"mark": {"type": "text", "dx": 8, "align": "left"},
             "encoding": {"x": x, "y": {"field": "robust", "type": "quantitative"}, "text": {"field": "run"}}}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_list_each_value_once_after_all() {
        let rows = vec![
            json!({"attack": "pgd", "defense": "none", "mode": "non-adaptive", "norm": "linf"}),
            json!({"attack": "fgsm", "defense": "none", "mode": "adaptive", "norm": "linf"}),
            json!({"attack": "pgd", "defense": "jpeg", "mode": "adaptive", "norm": "linf"}),
        ];
        let spec = bench_success(rows, "eps");
        let opts = &spec["params"][0]["bind"]["options"];
        assert_eq!(opts, &json!(["all", "pgd", "fgsm"]));
        assert_eq!(
            spec["params"][1]["bind"]["options"],
            json!(["all", "none", "jpeg"])
        );
        assert!(spec["transform"][0]["filter"]
            .as_str()
            .unwrap()
            .contains("datum.norm == f_norm"));
    }
}
