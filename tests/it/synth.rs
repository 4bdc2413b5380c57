//! `fool synth` (Private Evolution): the digit simulator, the run and its resume, the HTTP
//! generator protocol against a generator server started here, training on the synthetic set,
//! and bad input.
use crate::common::{asset, fool, ok, ok_json};
use base64::Engine;
use fool::datasets::DatasetName;
use fool::synth::digits::{DigitParams, Digits, DigitsConfig};
use fool::synth::http::{HttpApi, HttpOptions};
use fool::synth::{Api, ClassCounts, Population, SynthConfig};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

fn params(size: i32, stroke: i32, rotation: i32) -> DigitParams {
    DigitParams {
        font: 0,
        size,
        stroke,
        rotation,
        dx: 0,
        dy: 0,
    }
}

fn mass(t: &Tensor) -> f64 {
    t.to_kind(Kind::Double).sum(Kind::Double).double_value(&[])
}

#[test]
fn digits_render_centred_and_follow_their_parameters() {
    let mut d = Digits::new(DigitsConfig::default()).unwrap();
    assert_eq!(d.fonts().len(), 21);
    let imgs = d
        .render(
            1,
            &[
                params(20, 0, 0),
                params(20, 2, 0),
                params(12, 0, 0),
                params(20, 0, 30),
            ],
        )
        .unwrap();
    assert_eq!(imgs.size(), [4, 1, 28, 28]);
    assert_eq!(imgs.kind(), Kind::Uint8);
    let m: Vec<f64> = (0..4).map(|i| mass(&imgs.get(i))).collect();
    // A wider stroke draws more ink; a smaller size less.
    assert!(m[1] > 1.3 * m[0], "{m:?}");
    assert!(m[2] < 0.7 * m[0], "{m:?}");
    // Centred: the ink's centre of mass is near the middle.
    let img = imgs.get(0).get(0).to_kind(Kind::Double);
    let xs = Tensor::arange(28, (Kind::Double, Device::Cpu));
    let cx = mass(&(&img * xs.unsqueeze(0))) / m[0];
    let cy = mass(&(&img * xs.unsqueeze(1))) / m[0];
    assert!(
        (cx - 13.5).abs() < 2.0 && (cy - 13.5).abs() < 2.5,
        "{cx} {cy}"
    );
    // Rotating a '1' by 30° moves its ink sideways at the top: the image differs.
    assert!(
        imgs.get(3)
            .not_equal_tensor(&imgs.get(0))
            .any()
            .int64_value(&[])
            == 1
    );
    // A shift moves the ink by whole pixels.
    let shifted = d
        .render(
            1,
            &[DigitParams {
                dx: 2,
                ..params(20, 0, 0)
            }],
        )
        .unwrap();
    assert!(shifted
        .get(0)
        .get(0)
        .narrow(1, 2, 26)
        .equal(&imgs.get(0).get(0).narrow(1, 0, 26)));
}

#[test]
fn digits_variation_perturbs_parameters_within_ranges_and_schedule() {
    let mut d = Digits::new(DigitsConfig::default()).unwrap();
    let parents = d.random(7, 400, 5).unwrap();
    assert!(
        parents.images.equal(&d.random(7, 400, 5).unwrap().images),
        "seeded"
    );
    let cfg = DigitsConfig::default();
    for it in [1usize, 4] {
        let deg = cfg.degree(it);
        let kids = d.variation(7, &parents, it, 9).unwrap();
        assert_eq!(kids.len(), 400);
        let mut font_changes = 0;
        for (p, k) in parents.states.iter().zip(&kids.states) {
            let p: DigitParams = serde_json::from_value(p.clone()).unwrap();
            let k: DigitParams = serde_json::from_value(k.clone()).unwrap();
            assert!(
                (k.size - p.size).abs() <= deg.size
                    && (cfg.size[0]..=cfg.size[1]).contains(&k.size)
            );
            assert!((k.rotation - p.rotation).abs() <= deg.rotation);
            assert!((cfg.rotation[0]..=cfg.rotation[1]).contains(&k.rotation));
            assert!((k.stroke - p.stroke).abs() <= deg.stroke);
            assert!((k.dx - p.dx).abs() <= deg.shift && (k.dy - p.dy).abs() <= deg.shift);
            font_changes += usize::from(k.font != p.font);
        }
        // Font redrawn with probability deg.font (a redraw may pick the same font: 1/21).
        let want = deg.font * 400.0 * 20.0 / 21.0;
        assert!(
            (font_changes as f64 - want).abs() < 40.0,
            "iteration {it}: {font_changes} vs {want}"
        );
    }
}

fn small_config(out_seed: u64) -> SynthConfig {
    SynthConfig {
        private: "mnist:train[0:3000]".into(),
        dataset: DatasetName::Mnist,
        data_dir: asset("mnist"),
        api: "digits".into(),
        epsilon: 5.0,
        delta: None,
        samples: 600,
        iterations: 3,
        lookahead: 2,
        threshold: 2.0,
        neighbours: 1,
        embedding: fool::synth::embed::Embedding::Pixels,
        class_counts: ClassCounts::Public,
        seed: out_seed,
    }
}

/// An API that fails from a given VARIATION_API call on (a crash in the middle of a run).
struct Failing {
    inner: Digits,
    calls: usize,
    fail_at: usize,
}

impl Api for Failing {
    fn describe(&self) -> Value {
        self.inner.describe()
    }
    fn random(&mut self, class: usize, count: usize, seed: u64) -> fool::Result<Population> {
        self.inner.random(class, count, seed)
    }
    fn variation(
        &mut self,
        c: usize,
        p: &Population,
        it: usize,
        seed: u64,
    ) -> fool::Result<Population> {
        self.calls += 1;
        if self.calls >= self.fail_at {
            return Err(fool::Error::failed("test API", "crashed"));
        }
        self.inner.variation(c, p, it, seed)
    }
}

fn labels_csv(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("data/labels.csv")).unwrap()
}

/// `fool::synth::run` with the default digit simulator, on the CPU, ignoring its events.
fn run_digits(
    cfg: &SynthConfig,
    out: &std::path::Path,
    resume: bool,
) -> fool::Result<fool::synth::Summary> {
    let mut api = Digits::new(Default::default()).unwrap();
    fool::synth::run(cfg, &mut api, out, resume, Device::Cpu, &mut |_| {})
}

#[test]
fn synth_run_accounts_exactly_and_resumes_to_the_same_data() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_config(3);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let s = run_digits(&cfg, &a, false).unwrap();
    // δ auto = 1/(n ln n); σ calibrated so T = 3 mechanisms spend ε exactly.
    let n = 3000f64;
    assert!((s.privacy.delta - 1.0 / (n * n.ln())).abs() < 1e-15);
    let eps: Vec<f64> = s.iterations.iter().map(|r| r.epsilon_spent).collect();
    assert_eq!(eps.len(), 4);
    assert_eq!(eps[0], 0.0);
    assert!((eps[3] - 5.0).abs() < 1e-6, "{eps:?}");
    let e1 =
        fool::privacy::accountant::gdp::epsilon_of(s.privacy.noise, 1, s.privacy.delta).unwrap();
    assert!((eps[1] - e1).abs() < 1e-9 && eps[1] < eps[2] && eps[2] < eps[3]);
    assert_eq!(s.samples_per_class.iter().sum::<usize>(), 600);
    // The vote moves the population towards the private data (in pixels).
    assert!(
        s.iterations[3].frechet_distance < 0.8 * s.iterations[0].frechet_distance,
        "{:?}",
        s.iterations
    );
    let data = a.join("data");
    assert_eq!(labels_csv(&a).lines().count(), 601);
    let ds: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(ds["iteration"], 3);
    assert_eq!(ds["private_rows"], json!([0, 3000]));
    assert!(a.join("iterations/iter-03.png").exists());

    // The same run crashing in iteration 2 (after iteration 1 was saved), then resumed.
    let mut failing = Failing {
        inner: Digits::new(Default::default()).unwrap(),
        calls: 0,
        fail_at: 10 * 3 + 5,
    };
    let err =
        fool::synth::run(&cfg, &mut failing, &b, false, Device::Cpu, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("crashed"));
    let ds: Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("data/dataset.json")).unwrap())
            .unwrap();
    assert_eq!(
        ds["iteration"], 1,
        "the data folder holds the last finished iteration"
    );
    // Without --resume the folder is refused; with it the run continues.
    assert!(run_digits(&cfg, &b, false).is_err());
    let mut started_at = None;
    let s2 = fool::synth::run(
        &cfg,
        &mut Digits::new(Default::default()).unwrap(),
        &b,
        true,
        Device::Cpu,
        &mut |e| {
            if let fool::synth::Event::Started { resumed_at, .. } = e {
                started_at = Some(resumed_at);
            }
        },
    )
    .unwrap();
    assert_eq!(started_at, Some(1));
    assert_eq!(s2.iterations.len(), 4);
    assert_eq!(
        s2.iterations[3].epsilon_spent,
        s.iterations[3].epsilon_spent
    );
    // Same seeds, same noise: the resumed run made exactly the same data set.
    assert_eq!(labels_csv(&a), labels_csv(&b));
    for f in [
        "images/000000.png",
        "images/000321.png",
        "images/000599.png",
        "states.jsonl",
    ] {
        assert_eq!(
            std::fs::read(data.join(f)).unwrap(),
            std::fs::read(b.join("data").join(f)).unwrap(),
            "{f}"
        );
    }
    // Other settings are refused on resume.
    let other = SynthConfig {
        epsilon: 4.0,
        ..cfg
    };
    let e = run_digits(&other, &b, true).unwrap_err();
    assert!(e.to_string().contains("other settings"), "{e}");
    // An output folder overlapping a private folder is refused before anything is written.
    let private = tmp.path().join("private");
    std::fs::create_dir_all(&private).unwrap();
    let inside = SynthConfig {
        private: private.display().to_string(),
        ..small_config(3)
    };
    for out in [
        private.clone(),
        private.join("synth"),
        tmp.path().to_path_buf(),
    ] {
        let e = run_digits(&inside, &out, false).unwrap_err();
        assert!(e.to_string().contains("overlap"), "{}: {e}", out.display());
    }
    assert!(!private.join("data").exists() && !private.join("synth").exists());
}

/// A generator server speaking fool's protocol on loopback: random = uniform noise images
/// with the class as state, variation = the parent with a few pixels changed. `mode` makes it
/// misbehave: "ok", "flaky" (every other request answers 503), "wrong-size", "garbage",
/// "slow" (answers after 3 s).
fn generator(mode: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/gen", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let n = count.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let req: Value = serde_json::from_slice(&body).unwrap();
            let (status, answer) = answer(mode, n, &path, &req);
            if mode == "slow" {
                std::thread::sleep(std::time::Duration::from_secs(3));
            }
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (url, requests)
}

fn answer(mode: &str, n: usize, path: &str, req: &Value) -> (u16, String) {
    if mode == "flaky" && n.is_multiple_of(2) {
        return (503, r#"{"error": "busy"}"#.into());
    }
    if mode == "garbage" {
        return (200, "not json at all".into());
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let (count, mut pixels, states): (usize, Vec<u8>, Vec<Value>) = match path {
        "/gen/random" => {
            let count = req["count"].as_u64().unwrap() as usize;
            let seed = req["seed"].as_u64().unwrap();
            let px = (0..count * 784)
                .map(|i| ((i as u64 * 2654435761 + seed) % 251) as u8)
                .collect();
            (count, px, vec![req["class"].clone(); count])
        }
        "/gen/variation" => {
            let mut px = b64.decode(req["images"]["data"].as_str().unwrap()).unwrap();
            let count = px.len() / 784;
            for i in 0..count {
                px[i * 784 + (req["seed"].as_u64().unwrap() as usize + i) % 784] ^= 0x55;
            }
            (count, px, req["states"].as_array().unwrap().clone())
        }
        _ => return (404, r#"{"error": "no such endpoint"}"#.into()),
    };
    let mut shape = json!([count, 28, 28, 1]);
    if mode == "wrong-size" {
        shape = json!([count, 32, 32, 1]);
        pixels.resize(count * 1024, 0);
    }
    (
        200,
        json!({"images": {"shape": shape, "data": b64.encode(&pixels)}, "states": states})
            .to_string(),
    )
}

fn opts(batch: usize) -> HttpOptions {
    HttpOptions {
        batch,
        timeout: 1.0,
        retries: 2,
        ..Default::default()
    }
}

#[test]
fn http_api_speaks_the_protocol_in_batches_and_retries() {
    let (url, requests) = generator("ok");
    let mut api = HttpApi::new(&url, opts(30)).unwrap();
    let p = api.random(4, 70, 11).unwrap();
    assert_eq!(p.images.size(), [70, 1, 28, 28]);
    assert_eq!(p.states[69], json!(4));
    assert_eq!(
        requests.load(Ordering::SeqCst),
        3,
        "70 images in batches of 30"
    );
    let v = api.variation(4, &p, 2, 1).unwrap();
    assert_eq!(v.len(), 70);
    // Each child differs from its own parent in exactly one pixel.
    let diff = v
        .images
        .not_equal_tensor(&p.images)
        .view([70, -1])
        .sum_dim_intlist(1, false, Kind::Int64);
    assert!(diff.eq(1).all().int64_value(&[]) == 1);

    let (url, requests) = generator("flaky");
    let mut api = HttpApi::new(&url, opts(1000)).unwrap();
    assert_eq!(api.random(0, 5, 1).unwrap().len(), 5);
    assert_eq!(requests.load(Ordering::SeqCst), 2, "one 503, then retried");

    for (mode, says) in [
        ("wrong-size", "shape"),
        ("garbage", "not JSON"),
        ("slow", "no answer within"),
    ] {
        let (url, _) = generator(mode);
        let e = HttpApi::new(
            &url,
            HttpOptions {
                retries: 0,
                ..opts(1000)
            },
        )
        .unwrap()
        .random(0, 3, 1)
        .unwrap_err();
        assert!(
            e.to_string().contains(says) && e.to_string().contains(&url),
            "{mode}: {e}"
        );
    }
}

#[test]
fn synth_cli_with_an_http_generator_then_train_on_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _) = generator("ok");
    let out = tmp.path().join("s");
    let v = ok_json(
        fool()
            .args([
                "synth",
                "--private",
                "mnist:train[0:2000]",
                "--api",
                &url,
                "--epsilon",
                "2",
                "--samples",
                "100",
                "--iterations",
                "2",
                "--lookahead",
                "1",
                "--json",
                "--out",
            ])
            .arg(&out),
    );
    assert_eq!(v["summary"]["privacy"]["mechanisms"], 2);
    assert!(
        (v["summary"]["iterations"][2]["epsilon_spent"]
            .as_f64()
            .unwrap()
            - 2.0)
            .abs()
            < 1e-6
    );
    assert_eq!(v["summary"]["api"]["api"], "http");
    // A model trained on the synthetic set carries its (ε, δ) and audits the private rows.
    let run = tmp.path().join("run");
    ok(fool()
        .args([
            "train",
            "--epochs",
            "1",
            "--samples",
            "0",
            "--quiet",
            "--data",
        ])
        .arg(out.join("data"))
        .arg("--out")
        .arg(&run));
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metadata.json")).unwrap()).unwrap();
    assert!((meta["epsilon"].as_f64().unwrap() - 2.0).abs() < 1e-6);
    assert_eq!(
        meta["synthetic"]["private_rows"],
        json!({"start": 0, "end": 2000})
    );
    assert_eq!(meta["train_examples"], 100);
    let (members, _) = fool::npy::read_int(&run.join("members.npy"), "members").unwrap();
    assert_eq!(members, (0..2000).collect::<Vec<i64>>());
    // The privacy report names what made it private.
    let rep = ok(fool()
        .args(["report", "privacy"])
        .arg(&run)
        .arg("--out")
        .arg(tmp.path().join("rep")));
    let text = String::from_utf8_lossy(&rep.stdout);
    assert!(text.contains("PE synthetic data"), "{text}");
}

#[test]
fn synth_bad_input_gets_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let base = |extra: &[&str]| {
        let mut c = fool();
        c.args(["synth", "--private", "mnist:train[0:500]", "--out"])
            .arg(&out);
        c.args(extra);
        c
    };
    for (args, says) in [
        (vec!["--epsilon", "0"], "epsilon"),
        (vec!["--epsilon", "-1"], "epsilon"),
        (vec!["--epsilon", "1", "--delta", "1.5"], "delta"),
        (vec!["--epsilon", "1", "--delta", "x"], "--delta"),
        (vec!["--epsilon", "1", "--iterations", "0"], "iterations"),
        (vec!["--epsilon", "1", "--samples", "5"], "samples"),
        (
            vec!["--epsilon", "1", "--api", "http://127.0.0.1:9/"],
            "127.0.0.1:9",
        ),
        (vec!["--epsilon", "1", "--api", "ftp://x"], "api"),
        (
            vec!["--epsilon", "1", "--api", "digits:/nonexistent.json"],
            "nonexistent.json",
        ),
        (
            vec!["--epsilon", "1", "--embedding", "inception"],
            "embedding",
        ),
        (
            vec!["--epsilon", "1", "--class-counts", "maybe"],
            "--class-counts",
        ),
    ] {
        let o = base(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            !out.join("data").exists(),
            "{args:?}: no data set half-written"
        );
    }
    let o = fool()
        .args([
            "synth",
            "--private",
            "cifar10:train[0:100]",
            "--epsilon",
            "1",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("digits simulator draws 28×28 grey digits"));
}

/// A network embedding: a small traced feature extractor ((N,3,32,32) → (N,48)); the private
/// embedding is cached for a resumed run; a network whose card names the private data set is
/// refused.
#[test]
fn synth_with_a_network_embedding_caches_the_private_side_and_refuses_private_networks() {
    let tmp = tempfile::tempdir().unwrap();
    let net = tmp.path().join("public/features.pt");
    std::fs::create_dir_all(net.parent().unwrap()).unwrap();
    crate::common::trace(&net, 32, |x| x.adaptive_avg_pool2d([4, 4]).flatten(1, -1));
    let out = tmp.path().join("s");
    let run = |out: &std::path::Path, emb: &str| {
        let mut c = fool();
        c.args([
            "synth",
            "--private",
            "mnist:train[0:1000]",
            "--epsilon",
            "4",
            "--samples",
            "100",
            "--iterations",
            "1",
            "--lookahead",
            "1",
            "--embedding-size",
            "32",
            "--quiet",
            "--embedding",
            emb,
            "--out",
        ])
        .arg(out);
        c
    };
    let emb = format!("network:{}", net.display());
    ok(&mut run(&out, &emb));
    let cached = Tensor::read_npy(out.join("private-embedding.npy")).unwrap();
    assert_eq!(cached.size(), [1000, 48]);
    let key = std::fs::read_to_string(out.join("private-embedding.key")).unwrap();
    assert!(key.contains("mnist:train[0:1000]"), "{key}");
    // A card beside the network saying it was trained on MNIST: refused, nothing written.
    std::fs::write(
        net.parent().unwrap().join("metadata.json"),
        r#"{"dataset": "mnist"}"#,
    )
    .unwrap();
    let o = run(&tmp.path().join("t"), &emb).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("trained on mnist") && err.contains("features.pt"),
        "{err}"
    );
    assert!(!tmp.path().join("t/data").exists());
}

#[test]
fn train_on_a_folder_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("f");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("labels.csv"), "file,index\n").unwrap();
    let out = tmp.path().join("run");
    // No dataset.json and no --dataset.
    let o = fool()
        .args(["train", "--data"])
        .arg(&folder)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--dataset"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // --test-data without an image folder as --data.
    let o = fool()
        .args([
            "train",
            "--dataset",
            "mnist",
            "--test-data",
            "assets/mnist",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--test-data"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // An image of the wrong size in the folder: named, nothing written.
    image::GrayImage::new(20, 20)
        .save(folder.join("a.png"))
        .unwrap();
    std::fs::write(folder.join("labels.csv"), "file,index\na.png,3\n").unwrap();
    let o = fool()
        .args(["train", "--dataset", "mnist", "--data"])
        .arg(&folder)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("a.png") && err.contains("20×20"), "{err}");
    assert!(!out.join("model.pt").exists());
}
