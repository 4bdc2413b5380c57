//! `--mlflow` and `fool report mlflow` against a real MLflow tracking server: what arrives is read
//! back through MLflow's own REST API (runs/get, metrics/get-history, artifacts/list).
//!
//! The server's URI comes from FOOL_MLFLOW_URI (scripts/test.sh starts one with
//! scripts/setup/mlflow_server.sh); when it is unset these tests start one with that script
//! (and leave it running: `bash scripts/setup/mlflow_server.sh stop` ends it). A server that
//! cannot be had fails the tests, it never skips them.
use crate::common::{fool, json, ok, ok_json, root};
use fool_serve::client::Client;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// The tracking server's URI.
fn server() -> String {
    static URI: OnceLock<String> = OnceLock::new();
    URI.get_or_init(|| {
        if let Ok(u) = std::env::var("FOOL_MLFLOW_URI") {
            if !u.is_empty() {
                return u.trim_end_matches('/').to_string();
            }
        }
        let script = root().join("scripts/setup/mlflow_server.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg("start")
            .output()
            .expect("run scripts/setup/mlflow_server.sh");
        let text = String::from_utf8_lossy(&out.stdout);
        let uri = text
            .lines()
            .find_map(|l| l.strip_prefix("export FOOL_MLFLOW_URI="))
            .map(str::to_string);
        match (out.status.success(), uri) {
            (true, Some(u)) => u,
            _ => panic!(
                "FOOL_MLFLOW_URI is unset and `bash scripts/setup/mlflow_server.sh start` failed: \
                 start an MLflow server with that script (scripts/test.sh does) and export \
                 FOOL_MLFLOW_URI.\n{}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    })
    .clone()
}

/// A GET of MLflow's REST API: the JSON answer (which must be 200).
fn get(path: &str) -> Value {
    let c = Client::new(&server(), None, true).unwrap();
    let (status, body) = c
        .request("GET", path, None, vec![], Duration::from_secs(30))
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

fn run_of(id: &str) -> Value {
    get(&format!("/api/2.0/mlflow/runs/get?run_id={id}"))["run"].clone()
}

/// `data.params` or `data.tags` of a run as a map.
fn pairs(run: &Value, what: &str) -> std::collections::HashMap<String, String> {
    run["data"][what]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["key"].as_str().unwrap().into(),
                        p["value"].as_str().unwrap().into(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The (step, value) history of a metric, by step.
fn history(run_id: &str, key: &str) -> Vec<(i64, f64)> {
    let v = get(&format!(
        "/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key={}",
        key.replace(' ', "%20")
    ));
    let mut h: Vec<(i64, f64)> = v["metrics"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| (m["step"].as_i64().unwrap(), m["value"].as_f64().unwrap()))
                .collect()
        })
        .unwrap_or_default();
    h.sort_by(|a, b| a.partial_cmp(b).unwrap());
    h
}

fn artifacts(run_id: &str) -> Vec<String> {
    let v = get(&format!("/api/2.0/mlflow/artifacts/list?run_id={run_id}"));
    v["files"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["path"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// An experiment name of its own for each test (and each run of the suite).
fn experiment(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("it-{test}-{}-{nanos}", std::process::id())
}

/// `fool train` on 256 MNIST examples for 2 epochs, with DP (ε per epoch), in `out`.
fn train(out: &Path, extra: &[&str]) -> assert_cmd::Command {
    let mut c = fool();
    c.args("train --dataset mnist --limit 256 --epochs 2 --batch 64 --samples 0 --dp --noise 1.0 --seed 3 --out".split(' '))
        .arg(out)
        .args(extra);
    c
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn a_training_run_is_logged_with_its_params_metrics_tags_and_files() {
    let uri = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dp-run");
    let exp = experiment("train");
    let meta = ok_json(&mut train(
        &out,
        &["--json", "--mlflow", &uri, "--experiment", &exp],
    ));
    let id = meta["mlflow"]["run_id"]
        .as_str()
        .expect("mlflow.run_id in --json")
        .to_string();
    assert_eq!(meta["mlflow"]["reused"], false);
    let record = read_json(&out.join("mlflow.json"));
    assert_eq!(record["run_id"], id.as_str());
    assert_eq!(record["uri"], uri.as_str());
    assert!(record["uploaded_at"].as_str().unwrap().ends_with('Z'));

    let run = run_of(&id);
    assert_eq!(run["info"]["status"], "FINISHED");
    assert_eq!(run["info"]["run_name"], "dp-run");
    let params = pairs(&run, "params");
    for (k, v) in [
        ("dataset", "mnist"),
        ("epochs", "2"),
        ("batch", "64"),
        ("limit", "256"),
        ("seed", "3"),
        ("dp.noise", "1.0"),
        ("dp.clip", "1.0"),
        ("dp.delta", "0.00001"),
        ("arch.name", "cnn"),
        ("train_examples", "256"),
    ] {
        assert_eq!(
            params.get(k).map(String::as_str),
            Some(v),
            "param {k}: {params:?}"
        );
    }
    let tags = pairs(&run, "tags");
    let sha = fool::model::sha256_file(&out.join("model.pt")).unwrap();
    for (k, v) in [
        ("fool.version", env!("CARGO_PKG_VERSION")),
        ("fool.kind", "train"),
        ("fool.seed", "3"),
        ("fool.model_sha256", sha.as_str()),
        ("mlflow.runName", "dp-run"),
        ("mlflow.source.name", "fool"),
    ] {
        assert_eq!(
            tags.get(k).map(String::as_str),
            Some(v),
            "tag {k}: {tags:?}"
        );
    }
    // Every epoch's values, step = epoch, exactly as metadata.json has them.
    let disk = read_json(&out.join("metadata.json"));
    let hist = disk["history"].as_array().unwrap();
    assert_eq!(hist.len(), 2);
    for key in [
        "test_accuracy",
        "train_accuracy",
        "train_loss",
        "test_loss",
        "epsilon",
        "examples_per_second",
    ] {
        let want: Vec<(i64, f64)> = hist
            .iter()
            .map(|r| (r["epoch"].as_i64().unwrap(), r[key].as_f64().unwrap()))
            .collect();
        assert_eq!(history(&id, key), want, "metric {key}");
    }
    assert_eq!(
        history(&id, "final_epsilon"),
        vec![(2, disk["epsilon"].as_f64().unwrap())]
    );
    let files = artifacts(&id);
    for f in [
        "metadata.json",
        "model.pt",
        "model.json",
        "training.png",
        "training.svg",
        "members.npy",
    ] {
        assert!(
            files.contains(&f.to_string()),
            "{f} not in the artifacts {files:?}"
        );
    }
    assert!(!files.contains(&"mlflow.json".to_string()), "{files:?}");
}

/// A tiny bench on 6 MNIST test rows at 2 eps, two defenses (one with `:` in its name).
fn bench(out: &Path, model: &Path, extra: &[&str]) -> assert_cmd::Command {
    let mut c = fool();
    c.args(["bench", "mnist:test[0:6]", "--model"])
        .arg(model)
        .args(["--size", "28", "--resize", "28", "--data"])
        .arg(crate::common::asset("mnist"))
        .args("--attack fgsm --eps 0,0.1 --defense none,jpeg:75 --batch 3 --quiet --out".split(' '))
        .arg(out)
        .args(extra);
    c
}

#[test]
fn a_bench_logs_its_success_rates_per_eps_and_many_settings_go_in_several_batches() {
    let uri = server();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m28.pt");
    crate::common::tiny_model(&model, 10, 28, 5);
    let out = dir.path().join("sweep");
    let exp = experiment("bench");
    let v = ok_json(&mut bench(
        &out,
        &model,
        &["--json", "--mlflow", &uri, "--experiment", &exp],
    ));
    let summary = v["summary"]
        .as_array()
        .expect("the summary under \"summary\"");
    let id = v["mlflow"]["run_id"].as_str().unwrap().to_string();
    let run = run_of(&id);
    let params = pairs(&run, "params");
    assert_eq!(params["attacks"], "fgsm");
    assert_eq!(params["eps"], "0.0,0.1");
    assert_eq!(params["defenses"], "none,jpeg:75");
    assert_eq!(params["images"], "6");
    let cfg = read_json(&out.join("bench.json"));
    let tags = pairs(&run, "tags");
    assert_eq!(tags["fool.kind"], "bench");
    assert_eq!(
        tags["fool.model_sha256"],
        cfg["model_sha256"].as_str().unwrap()
    );
    assert_eq!(history(&id, "eps"), vec![(0, 0.0), (1, 0.1)]);
    for (defense, key) in [("none", "none"), ("jpeg:75", "jpeg_75")] {
        for what in ["success_rate", "robust_accuracy"] {
            let want: Vec<(i64, f64)> = [0.0, 0.1]
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let row = summary
                        .iter()
                        .find(|r| r["defense"] == defense && r["eps"].as_f64() == Some(*e))
                        .unwrap();
                    (i as i64, row[what].as_f64().unwrap())
                })
                .collect();
            let key = format!("{what}/fgsm/{key}/non-adaptive");
            assert_eq!(history(&id, &key), want, "{key}");
        }
    }
    assert!(artifacts(&id).contains(&"success_vs_eps.png".to_string()));

    // 600 settings × 2 eps × 2 metrics: more than one request's 1000 metrics.
    let many = dir.path().join("many");
    std::fs::create_dir(&many).unwrap();
    std::fs::copy(out.join("bench.json"), many.join("bench.json")).unwrap();
    let rows: Vec<Value> = (0..600)
        .flat_map(|k| {
            summary
                .iter()
                .filter(|r| r["defense"] == "none")
                .map(move |r| {
                    let mut r = r.clone();
                    r["defense"] = format!("d{k}").into();
                    r
                })
        })
        .collect();
    std::fs::write(
        many.join("summary.json"),
        serde_json::to_string(&rows).unwrap(),
    )
    .unwrap();
    let up = ok_json(
        fool()
            .args([
                "report",
                "mlflow",
                "--json",
                "--mlflow",
                &uri,
                "--experiment",
                &exp,
            ])
            .arg(&many),
    );
    let u = &up[0];
    assert_eq!(u["metrics"], 2 * 1200 + 2);
    assert!(u["requests"].as_u64().unwrap() >= 3, "{u}");
    let id = u["run_id"].as_str().unwrap();
    let last = summary
        .iter()
        .find(|r| r["defense"] == "none" && r["eps"] == 0.1)
        .unwrap();
    assert_eq!(
        history(id, "success_rate/fgsm/d599/non-adaptive"),
        vec![
            (
                0,
                summary
                    .iter()
                    .find(|r| r["defense"] == "none" && r["eps"] == 0.0)
                    .unwrap()["success_rate"]
                    .as_f64()
                    .unwrap()
            ),
            (1, last["success_rate"].as_f64().unwrap())
        ]
    );
}

#[test]
fn report_mlflow_uploads_a_folder_once_and_again_into_the_same_run() {
    let uri = server();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("later");
    ok(&mut train(&out, &["--quiet"]));
    assert!(!out.join("mlflow.json").exists());
    let exp = experiment("report");
    let upload = |extra: &[&str]| {
        let v = ok_json(
            fool()
                .args([
                    "report",
                    "mlflow",
                    "--json",
                    "--mlflow",
                    &uri,
                    "--experiment",
                    &exp,
                ])
                .arg(&out)
                .args(extra),
        );
        v[0].clone()
    };
    let first = upload(&[]);
    assert_eq!(first["reused"], false);
    assert_eq!(first["kind"], "train");
    let id = first["run_id"].as_str().unwrap().to_string();
    assert!(first["params"].as_u64().unwrap() >= 10 && first["metrics"].as_u64().unwrap() >= 12);
    assert!(first["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "model.pt"));
    let second = upload(&[]);
    assert_eq!(second["reused"], true);
    assert_eq!(second["run_id"], id.as_str());
    // No metric value twice: the second upload's are the same points.
    assert_eq!(history(&id, "test_accuracy").len(), 2);
    // --new-run makes another run.
    let third = upload(&["--new-run"]);
    assert_ne!(third["run_id"], id.as_str());
    assert_eq!(
        read_json(&out.join("mlflow.json"))["run_id"],
        third["run_id"]
    );
    // Another experiment than the run's: refused, naming --new-run.
    let o = fool()
        .args([
            "report",
            "mlflow",
            "--mlflow",
            &uri,
            "--experiment",
            &experiment("other"),
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--new-run") && err.contains("another experiment"),
        "{err}"
    );

    // An audit folder, written and logged by `fool audit --out … --mlflow`.
    let audit_dir = out.join("audit");
    let v = ok_json(
        fool()
            .args(["audit", "--model"])
            .arg(out.join("model.pt"))
            .args([
                "--max-examples",
                "100",
                "--attacks",
                "threshold",
                "--json",
                "--mlflow",
                &uri,
                "--experiment",
                &exp,
                "--out",
            ])
            .arg(&audit_dir),
    );
    let rows = v["results"].as_array().unwrap();
    let aid = v["mlflow"]["run_id"].as_str().unwrap();
    let loss = rows
        .iter()
        .find(|r| r["attack"] == "threshold-loss" && r["slice"] == "all")
        .unwrap();
    assert_eq!(
        history(aid, "auc/threshold-loss/all"),
        vec![(0, loss["auc"].as_f64().unwrap())]
    );
    assert_eq!(pairs(&run_of(aid), "tags")["fool.kind"], "audit");
    assert!(artifacts(aid).contains(&"audit.json".to_string()));
    // --mlflow without --out: nothing to log, refused before any work.
    let o = fool()
        .args(["audit", "--model"])
        .arg(out.join("model.pt"))
        .args(["--mlflow", &uri])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--mlflow: needs --out"));
}

#[test]
fn a_pate_student_is_logged_as_a_training_run_with_its_privacy() {
    let uri = server();
    let dir = tempfile::tempdir().unwrap();
    let e = dir.path().join("ensemble");
    ok(fool()
        .args("pate teachers --dataset mnist --teachers 4 --limit 400 --epochs 1 --batch 10 --optimizer adam --lr 0.003 --quiet --out".split(' '))
        .arg(&e));
    ok(fool()
        .args(["pate", "votes", "-q", "--pool", "mnist:test[0:1000]"])
        .arg(&e));
    let s = dir.path().join("student");
    let exp = experiment("pate");
    let meta = ok_json(
        fool()
            .args(["pate", "student"])
            .arg(&e)
            .args("--aggregator gnmax --sigma 1 --queries 100 --epochs 1 --json --out".split(' '))
            .arg(&s)
            .args(["--mlflow", &uri, "--experiment", &exp]),
    );
    let id = meta["mlflow"]["run_id"].as_str().unwrap();
    let run = run_of(id);
    let params = pairs(&run, "params");
    assert_eq!(params["pate.teachers"], "4");
    assert_eq!(params["pate.aggregator.kind"], "gnmax");
    assert_eq!(params["student.queries"], "100");
    assert!(
        !params.contains_key("pate.epsilon_released"),
        "a result, not a param"
    );
    let eps = meta["epsilon"].as_f64().unwrap();
    assert_eq!(history(id, "final_epsilon"), vec![(1, eps)]);
    assert_eq!(
        history(id, "pate.epsilon_data_dependent"),
        vec![(1, meta["pate"]["epsilon_data_dependent"].as_f64().unwrap())]
    );
    assert_eq!(pairs(&run, "tags")["fool.kind"], "train");
    assert!(artifacts(id).contains(&"pate.json".to_string()));
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A server answering every request with `200 text/plain "hello"` (not MLflow).
fn plain_server() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten().take(50) {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello");
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[test]
fn an_unreachable_or_wrong_server_is_a_warning_for_commands_and_an_error_for_report_mlflow() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("offline");
    let closed = format!("http://127.0.0.1:{}", closed_port());
    let o = train(&out, &["--json", "--mlflow", &closed])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    let w = warnings[0];
    assert!(
        w.starts_with(&format!(
            "fool: warning: --mlflow {closed}: cannot reach the MLflow server"
        )),
        "{w}"
    );
    assert!(
        w.contains(&format!(
            "upload them later with: fool report mlflow {} --mlflow {closed}",
            out.display()
        )),
        "{w}"
    );
    let v = json(&o);
    assert!(
        v["mlflow"]["error"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{v}"
    );
    assert_eq!(v["epochs_done"], 2);
    for f in ["metadata.json", "model.pt", "training.png"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    assert!(!out.join("mlflow.json").exists());

    let report = |uri: &str| {
        let o = fool()
            .args(["report", "mlflow", "--mlflow", uri])
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{uri}");
        String::from_utf8_lossy(&o.stderr).trim().to_string()
    };
    let e = report(&closed);
    assert!(
        e.starts_with(&format!("fool: error: --mlflow {closed}: cannot reach")),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    // The MLflow server under a path that is not its API: 404 HTML pages.
    let wrong = format!("{}/no-mlflow-here", server());
    let e = report(&wrong);
    assert!(
        e.contains("not an MLflow tracking server") && e.contains("404 with an HTML page"),
        "{e}"
    );
    let plain = plain_server();
    let e = report(&plain);
    assert!(
        e.contains("not an MLflow tracking server") && e.contains("200 with 'hello'"),
        "{e}"
    );
    let e = report("https://127.0.0.1:5000");
    assert!(
        e.contains("--mlflow https://127.0.0.1:5000: https is not supported"),
        "{e}"
    );
    let e = report("127.0.0.1:5000");
    assert!(e.contains("not an MLflow tracking URI"), "{e}");

    // The same wrong server for a command: a warning, exit 0.
    let out2 = dir.path().join("wrong");
    let o = train(&out2, &["--quiet", "--mlflow", &wrong])
        .output()
        .unwrap();
    assert!(o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("warning: --mlflow") && stderr.contains("not an MLflow tracking server"),
        "{stderr}"
    );
    assert!(out2.join("model.pt").is_file());
}
