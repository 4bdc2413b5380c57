//! `fool serve` over HTTP and `fool loadtest`: a real server process per test (tiny TorchScript
//! models in a temporary folder, port 0), spoken to with a raw HTTP/1.1 client over TCP (which
//! also sends what no well-behaved client would: truncated bodies, lying headers). Answers are
//! checked against `fool predict` / `fool detect score` on the same images and against values
//! computed here (normalized tensors, drift PSI).
use crate::common::{fool, json, ok, ok_json, root, tiny_model, trace};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const SIZE: u32 = 32;
const CLASSES: usize = 10;
const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const STD: [f64; 3] = [0.229, 0.224, 0.225];

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client.

/// An HTTP answer: status, headers (names lower-cased) and body.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("answer {} is not JSON ({e}): {}", self.status, self.text()))
    }

    /// The `error` of a JSON error answer.
    fn error(&self) -> String {
        let v = self.json();
        v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("answer {} has no \"error\" string: {v}", self.status))
            .to_string()
    }
}

/// Parse a whole HTTP/1.1 response (Content-Length or chunked or read-to-close).
fn parse_response(raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        let mut body = Vec::new();
        let mut r = rest;
        loop {
            let nl = r.windows(2).position(|w| w == b"\r\n").expect("chunk size");
            let size_text = String::from_utf8_lossy(&r[..nl]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .expect("chunk size in hex");
            r = &r[nl + 2..];
            if size == 0 {
                break;
            }
            body.extend_from_slice(&r[..size]);
            r = &r[size + 2..];
        }
        body
    } else if let Some(n) = get("content-length") {
        let n: usize = n.parse().unwrap();
        assert!(rest.len() >= n, "body shorter than Content-Length {n}");
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

/// Send raw bytes (optionally closing our write half) and read until the server closes.
fn exchange(addr: &str, raw: &[u8], shutdown_write: bool) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.write_all(raw)?;
    if shutdown_write {
        s.shutdown(Shutdown::Write)?;
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let raw = exchange(addr, &request_bytes(method, path, headers, body), false)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    parse_response(&raw)
}

// ---------------------------------------------------------------------------------------------
// Fixtures: a tiny model, images, a server process.

/// A tiny 10-class 32×32 model and its labels in a temporary folder.
struct Fx {
    dir: tempfile::TempDir,
    model: PathBuf,
    labels: PathBuf,
}

impl Fx {
    fn new(seed: i64) -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("tiny.pt");
        tiny_model(&model, CLASSES as i64, SIZE as i64, seed);
        let labels = dir.path().join("labels.json");
        let names: Vec<String> = (0..CLASSES).map(label_name).collect();
        std::fs::write(&labels, serde_json::to_string(&names).unwrap()).unwrap();
        Fx { dir, model, labels }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `--model M --labels L --size 32 --resize 32`.
    fn model_args(&self) -> Vec<String> {
        vec![
            "--model".into(),
            s(&self.model),
            "--labels".into(),
            s(&self.labels),
            "--size".into(),
            SIZE.to_string(),
            "--resize".into(),
            SIZE.to_string(),
        ]
    }

    /// Start `fool serve` on this model with `extra` flags.
    fn serve(&self, extra: &[&str]) -> Server {
        let mut args = vec!["serve".to_string()];
        args.extend(self.model_args());
        args.extend(
            ["--port", "0", "--json", "-q"]
                .iter()
                .chain(extra)
                .map(|a| a.to_string()),
        );
        Server::start(&args)
    }

    /// `fool predict IMG --json`: (index, label, probability of the top class).
    fn predict(&self, image: &Path) -> (usize, String, f64) {
        let v = ok_json(
            fool()
                .arg("predict")
                .arg(image)
                .args(self.model_args())
                .args(["--json", "-q"]),
        );
        let top = &v["top"][0];
        (
            top["index"].as_u64().unwrap() as usize,
            top["label"].as_str().unwrap().to_string(),
            top["prob"].as_f64().unwrap(),
        )
    }

    /// Write `img` as PNG into the folder.
    fn save(&self, name: &str, img: &image::RgbImage) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, png(img)).unwrap();
        p
    }
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn label_name(i: usize) -> String {
    format!("label-{i}")
}

/// A deterministic RGB pattern: a gradient with pseudo-random noise.
fn pattern(w: u32, h: u32, seed: u64) -> image::RgbImage {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let tint = [next() % 256, next() % 256, next() % 256];
    image::RgbImage::from_fn(w, h, |x, y| {
        let mut p = [0u8; 3];
        for (c, v) in p.iter_mut().enumerate() {
            let base = (x * 255 / w.max(1) + y * 97 / h.max(1) + tint[c]) % 256;
            *v = ((base + next() % 64) % 256) as u8;
        }
        image::Rgb(p)
    })
}

fn png(img: &image::RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img.clone())
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// The image's bytes as the flat HWC list a UINT8 tensor holds.
fn hwc(img: &image::RgbImage) -> Vec<u8> {
    img.as_raw().clone()
}

/// The normalized model input (3, S, S) of a 32×32 image, computed here.
fn normalized(img: &image::RgbImage) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let mut out = Vec::with_capacity((3 * w * h) as usize);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let p = img.get_pixel(x, y)[c] as f64 / 255.0;
                out.push(((p - MEAN[c]) / STD[c]) as f32);
            }
        }
    }
    out
}

/// A `fool serve` process; SIGTERM (then SIGKILL after 10 s) when dropped.
struct Server {
    child: Option<Child>,
    addr: String,
    info: Value,
}

impl Server {
    fn start(args: &[String]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fool"))
            .args(args)
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn fool serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so that later writes to stdout never fail.
            let mut sink = Vec::new();
            let _ = r.read_to_end(&mut sink);
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("fool serve {args:?} printed no start-up line within 60 s");
            }
        };
        if line.trim().is_empty() {
            let status = child.wait().unwrap();
            panic!("fool serve {args:?} stopped before listening ({status})");
        }
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("start-up line is not JSON ({e}): {line:?}"));
        let url = info["url"].as_str().expect("url in the start-up line");
        let addr = url
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("url {url} is not http://"))
            .to_string();
        Server {
            child: Some(child),
            addr,
            info,
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    fn get(&self, path: &str) -> Resp {
        http(&self.addr, "GET", path, &[], b"")
    }

    fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        http(&self.addr, "POST", path, headers, body)
    }

    fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.post(
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// POST an image to /predictions/model; must answer 200.
    fn predict(&self, png: &[u8]) -> Value {
        let r = self.post("/predictions/model", &[], png);
        assert_eq!(r.status, 200, "/predictions: {}", r.text());
        r.json()
    }

    /// POST a v2 infer request; must answer 200.
    fn infer(&self, body: &Value) -> Value {
        let r = self.post_json("/v2/models/model/infer", body);
        assert_eq!(r.status, 200, "infer {}: {}", short(body), r.text());
        r.json()
    }

    fn metrics(&self) -> Metrics {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "/metrics: {}", r.text());
        let ct = r.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with("application/openmetrics-text"),
            "/metrics content-type {ct}"
        );
        Metrics(r.text())
    }

    /// The server still answers.
    fn assert_alive(&self, after: &str) {
        let r = self.get("/v2/health/live");
        assert_eq!(r.status, 200, "not live after {after}: {}", r.text());
        assert_eq!(r.json(), json!({"live": true}));
    }

    /// SIGTERM, then wait at most 10 s for the exit.
    fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server already stopped");
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let t = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if t.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("fool serve did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            let panicking = std::thread::panicking();
            let st = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.stop()));
            if st.is_err() && !panicking {
                panic!("fool serve did not stop on SIGTERM");
            }
        }
    }
}

/// A request body shortened for messages.
fn short(v: &Value) -> String {
    let t = v.to_string();
    if t.len() > 200 {
        format!("{}…", &t[..200])
    } else {
        t
    }
}

/// The text exposition of /metrics.
struct Metrics(String);

impl Metrics {
    /// Sum of the samples named `name` whose labels include `labels`; None when there is none.
    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for line in self.0.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (n, l) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            if n != name {
                continue;
            }
            let have: BTreeMap<&str, &str> = l
                .split("\",")
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim_matches('"')))
                .collect();
            if labels.iter().all(|(k, v)| have.get(k) == Some(v)) {
                let v: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in /metrics:\n{}", self.0))
    }
}

/// The output `name` of an infer answer.
fn output<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["outputs"]
        .as_array()
        .unwrap_or_else(|| panic!("no outputs in {v}"))
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name} in {v}"))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Probability rows of an infer answer.
fn prob_rows(v: &Value) -> Vec<Vec<f64>> {
    let o = output(v, "probabilities");
    assert_eq!(o["datatype"], "FP32");
    let shape = floats(&o["shape"]);
    assert_eq!(shape.len(), 2, "{o}");
    assert_eq!(shape[1] as usize, CLASSES);
    floats(&o["data"])
        .chunks(CLASSES)
        .map(<[f64]>::to_vec)
        .collect()
}

fn argmax(p: &[f64]) -> usize {
    (0..p.len())
        .max_by(|&a, &b| p[a].total_cmp(&p[b]).then(b.cmp(&a)))
        .unwrap()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// A UINT8 infer request for images of one size.
fn u8_request(imgs: &[&image::RgbImage]) -> Value {
    let (w, h) = imgs[0].dimensions();
    let data: Vec<u8> = imgs.iter().flat_map(|i| hwc(i)).collect();
    json!({"inputs": [{"name": "image", "shape": [imgs.len(), h, w, 3], "datatype": "UINT8",
                       "data": data}]})
}

/// `[[[[r,g,b], …], …]]`: an image as nested HWC arrays.
fn nested_hwc(img: &image::RgbImage) -> Value {
    let (w, h) = img.dimensions();
    Value::Array(
        (0..h)
            .map(|y| {
                Value::Array(
                    (0..w)
                        .map(|x| json!(img.get_pixel(x, y).0.to_vec()))
                        .collect(),
                )
            })
            .collect(),
    )
}

/// `[3][S][S]` nested normalized floats.
fn nested_chw(img: &image::RgbImage) -> Value {
    let x = normalized(img);
    let s = SIZE as usize;
    Value::Array(
        (0..3)
            .map(|c| {
                Value::Array(
                    (0..s)
                        .map(|y| json!(x[c * s * s + y * s..c * s * s + (y + 1) * s].to_vec()))
                        .collect(),
                )
            })
            .collect(),
    )
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A real 1×1 PNG whose IHDR declares `w`×`h` (CRC fixed): a decompression bomb's header.
fn bomb_png(w: u32, h: u32) -> Vec<u8> {
    let mut b = png(&image::RgbImage::new(1, 1));
    assert_eq!(&b[12..16], b"IHDR");
    b[16..20].copy_from_slice(&w.to_be_bytes());
    b[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&b[12..29]);
    b[29..33].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A TorchScript model (normalized input → 10 logits) whose forward pass takes ~0.3–0.6 s:
/// a chain of 600×600 matrix products, scaled so that its output depends on the input.
fn slow_model(path: &Path) -> Duration {
    // Time one 600×600 product here, to choose how many make ~0.4 s.
    let m = tch::Tensor::ones([600, 600], (tch::Kind::Float, tch::Device::Cpu)) / 600.0;
    let t = Instant::now();
    for _ in 0..5 {
        let _ = m.matmul(&m);
    }
    let one = t.elapsed().as_secs_f64() / 5.0;
    let reps = ((0.4 / one.max(1e-5)) as usize).clamp(4, 2000);
    trace(path, SIZE as i64, move |x| {
        let m = tch::Tensor::ones([600, 600], (tch::Kind::Float, tch::Device::Cpu)) / 600.0;
        let mut a = &m + x.mean(tch::Kind::Float) * 1e-3;
        for _ in 0..reps {
            a = a.matmul(&m);
        }
        x.flatten(1, -1).narrow(1, 0, CLASSES as i64) + a.mean(tch::Kind::Float) * 1e-6
    });
    Duration::from_secs_f64(one * reps as f64)
}

/// Run `n` copies of `f` at once; their results in order.
fn concurrently<T: Send + 'static>(
    n: usize,
    f: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = std::sync::Arc::new(f);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (f, b) = (f.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                f(i)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Log lines of `--log FILE`.
fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l:?}: {e}")))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Endpoints.

#[test]
fn health_metadata_and_routing() {
    let fx = Fx::new(1);
    let srv = fx.serve(&[]);
    assert_eq!(srv.info["model"], "model");
    assert_eq!(srv.info["classes"], CLASSES);
    assert_eq!(srv.info["size"], SIZE);

    let r = srv.get("/v2/health/live");
    assert_eq!((r.status, r.json()), (200, json!({"live": true})));
    let r = srv.get("/v2/health/ready");
    assert_eq!((r.status, r.json()), (200, json!({"ready": true})));
    let v = srv.get("/v2").json();
    assert_eq!(v["name"], "fool");
    assert!(v["version"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    assert_eq!(v["extensions"], json!(["binary_tensor_data", "fool"]));

    let meta = srv.get("/v2/models/model");
    assert_eq!(meta.status, 200, "{}", meta.text());
    let m = meta.json();
    assert_eq!(m["name"], "model");
    assert_eq!(m["versions"], json!(["1"]));
    assert_eq!(m["platform"], "pytorch_torchscript");
    let inputs = m["inputs"].as_array().unwrap();
    assert!(
        inputs.contains(&json!({"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]})),
        "{m}"
    );
    assert!(
        inputs.iter().any(|i| i["datatype"] == "UINT8"),
        "no UINT8 input: {m}"
    );
    assert_eq!(
        output(&m, "probabilities")["shape"],
        json!([-1, CLASSES]),
        "{m}"
    );
    assert_eq!(output(&m, "probabilities")["datatype"], "FP32");
    assert_eq!(output(&m, "label")["shape"], json!([-1]));
    assert_eq!(output(&m, "label")["datatype"], "INT64");
    assert_eq!(m["parameters"]["classes"], CLASSES);
    assert_eq!(srv.get("/v2/models/model/versions/1").json(), m);

    let r = srv.get("/v2/models/model/ready");
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"name": "model", "ready": true}))
    );
    let c = srv.get("/v2/models/model/config");
    assert_eq!(c.status, 200, "{}", c.text());
    let c = c.json();
    assert_eq!(c["name"], "model");
    assert!(c["max_batch_size"].as_u64().is_some_and(|n| n >= 1), "{c}");
    assert!(c["input"].as_array().is_some_and(|a| !a.is_empty()), "{c}");
    assert!(
        c["output"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "probabilities" && o["dims"] == json!([CLASSES])),
        "{c}"
    );

    // Not found, not allowed: JSON errors naming what was asked.
    let cases: Vec<(&str, &str, u16, &str)> = vec![
        ("GET", "/v2/models/model/versions/2", 404, "version"),
        ("GET", "/v2/models/model/versions/2/ready", 404, "version"),
        ("GET", "/v2/models/nope", 404, "nope"),
        ("GET", "/v2/models/nope/ready", 404, "nope"),
        ("GET", "/v2/models/nope/config", 404, "nope"),
        ("GET", "/no/such/route", 404, "/no/such/route"),
        ("GET", "/v2/models/model/infer", 405, "GET"),
        ("DELETE", "/v2/health/live", 405, "DELETE"),
        ("POST", "/metrics", 405, "POST"),
    ];
    for (method, path, status, needle) in cases {
        let r = http(&srv.addr, method, path, &[], b"");
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{method} {path}: content-type {:?}",
            r.header("content-type")
        );
        let e = r.error();
        assert!(
            e.contains(needle),
            "{method} {path}: {e:?} lacks {needle:?}"
        );
        if status == 405 {
            // RFC 9110 §15.5.6: a 405 answer MUST carry Allow with the methods the route takes.
            let allow = r.header("allow").unwrap_or_else(|| {
                panic!(
                    "{method} {path}: 405 without an Allow header: {:?}",
                    r.headers
                )
            });
            assert!(!allow.contains(method), "{method} {path}: Allow {allow}");
        }
    }
    // Inference on an unknown model, a valid body otherwise.
    let img = pattern(SIZE, SIZE, 1);
    let body = u8_request(&[&img]);
    for path in [
        "/v2/models/nope/infer",
        "/v2/models/nope/versions/1/infer",
        "/predictions/nope",
    ] {
        let r = srv.post_json(path, &body);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(r.error().contains("nope"), "{path}: {}", r.text());
    }
    let r = srv.post_json("/v2/models/model/versions/2/infer", &body);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(
        srv.post_json("/v2/models/model/versions/1/infer", &body)
            .status,
        200
    );
    let r = srv.get("/ping");
    assert_eq!(r.status, 200, "{}", r.text());
}

// ---------------------------------------------------------------------------------------------
// 2. Correctness, against `fool predict` and each other.

#[test]
fn answers_equal_fool_predict_in_every_protocol() {
    let fx = Fx::new(2);
    let img = pattern(SIZE, SIZE, 7);
    let wide = pattern(40, 50, 8);
    let img_png = png(&img);
    let img_path = fx.save("img.png", &img);
    let wide_path = fx.save("wide.png", &wide);
    let (want_i, want_label, want_p) = fx.predict(&img_path);
    let (wide_i, _, wide_p) = fx.predict(&wide_path);
    assert_eq!(want_label, label_name(want_i));
    let srv = fx.serve(&[]);

    // TorchServe-style: an image file.
    let r = srv.post(
        "/predictions/model",
        &[("X-Request-Id", "abc-123")],
        &img_png,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    let v = r.json();
    assert_eq!(v["model"], "model");
    assert_eq!(v["index"], want_i, "{v}");
    assert_eq!(v["label"], want_label.as_str());
    let conf = v["confidence"].as_f64().unwrap();
    assert!((conf - want_p).abs() < 1e-6, "{conf} vs predict {want_p}");
    let top = v["top_k"].as_array().unwrap();
    assert_eq!(top.len(), 5, "default --top-k 5: {v}");
    assert_eq!(top[0]["index"], want_i);
    assert!(top
        .windows(2)
        .all(|w| w[0]["prob"].as_f64() >= w[1]["prob"].as_f64()));
    let v = srv.predict(&png(&wide));
    assert_eq!(v["index"], wide_i, "40×50 image: {v}");
    assert!((v["confidence"].as_f64().unwrap() - wide_p).abs() < 1e-6);

    // KServe v2, UINT8 JSON [1,H,W,3], with an id.
    let mut req = u8_request(&[&img]);
    req["id"] = json!("req-7");
    let a = srv.infer(&req);
    assert_eq!(a["id"], "req-7");
    assert_eq!(a["model_name"], "model");
    assert_eq!(a["model_version"], "1");
    let probs = prob_rows(&a).remove(0);
    assert_eq!(argmax(&probs), want_i);
    assert!((probs[want_i] - want_p).abs() < 1e-6);
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-5);
    assert_eq!(output(&a, "label")["data"], json!([want_i]));
    assert_eq!(output(&a, "label")["shape"], json!([1]));
    assert!(
        a["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["name"] != "logits"),
        "logits only when asked: {a}"
    );
    assert_eq!(a["parameters"]["label"], want_label.as_str());
    assert!((a["parameters"]["confidence"].as_f64().unwrap() - want_p).abs() < 1e-6);
    let tk: Value = serde_json::from_str(a["parameters"]["top_k"].as_str().unwrap()).unwrap();
    assert_eq!(tk[0][0]["index"], want_i);
    // 3-D [H,W,3] and the 40×50 image (resized and cropped as a file is).
    let mut req3 = u8_request(&[&img]);
    req3["inputs"][0]["shape"] = json!([SIZE, SIZE, 3]);
    assert!(max_diff(&prob_rows(&srv.infer(&req3))[0], &probs) < 1e-7);
    let w = prob_rows(&srv.infer(&u8_request(&[&wide]))).remove(0);
    assert_eq!(argmax(&w), wide_i);
    assert!((w[wide_i] - wide_p).abs() < 1e-6);

    // parameters.top_k: that many entries per image.
    let mut req_k = u8_request(&[&img]);
    req_k["parameters"] = json!({"top_k": 3});
    let k3 = srv.infer(&req_k);
    let tk: Value = serde_json::from_str(k3["parameters"]["top_k"].as_str().unwrap()).unwrap();
    assert_eq!(tk[0].as_array().unwrap().len(), 3, "{k3}");
    assert_eq!(tk[0][0]["label"], want_label.as_str());

    // A 700×700 image as JSON (about 5 MiB, under the default --max-body-mib 16) is taken whole
    // and resized as `fool predict` resizes the PNG.
    let big = pattern(700, 700, 9);
    let big_path = fx.save("big.png", &big);
    let (big_i, _, big_p) = fx.predict(&big_path);
    let big_req = u8_request(&[&big]);
    assert!(big_req.to_string().len() > 3 << 20);
    let b = prob_rows(&srv.infer(&big_req)).remove(0);
    assert_eq!(argmax(&b), big_i);
    assert!((b[big_i] - big_p).abs() < 1e-6, "{} vs {big_p}", b[big_i]);

    // FP32: the normalized tensor computed here; nested data, and only the named outputs.
    let x = normalized(&img);
    let f = srv.infer(&json!({
        "inputs": [{"name": "input", "shape": [1, 3, SIZE, SIZE], "datatype": "FP32", "data": x}],
        "outputs": [{"name": "probabilities"}, {"name": "logits"}]
    }));
    let names: Vec<&Value> = f["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["name"])
        .collect();
    assert_eq!(names, vec!["probabilities", "logits"], "{f}");
    let fp = prob_rows(&f).remove(0);
    assert!(
        max_diff(&fp, &probs) < 1e-5,
        "FP32 vs UINT8: {}",
        max_diff(&fp, &probs)
    );
    let logits = floats(&output(&f, "logits")["data"]);
    let z: f64 = logits.iter().map(|l| (l - logits[want_i]).exp()).sum();
    assert!((1.0 / z - fp[want_i]).abs() < 1e-5, "softmax of logits");
    let nested = srv.infer(&json!({
        "inputs": [{"name": "input", "shape": [1, 3, SIZE, SIZE], "datatype": "FP32",
                    "data": [nested_chw(&img)]}]}));
    assert!(max_diff(&prob_rows(&nested)[0], &fp) < 1e-7);

    // Binary tensor data: UINT8 in, probabilities out as raw little-endian floats.
    let bytes = hwc(&img);
    let header = json!({
        "inputs": [{"name": "image", "shape": [1, SIZE, SIZE, 3], "datatype": "UINT8",
                    "parameters": {"binary_data_size": bytes.len()}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}},
                    {"name": "label"}]
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&bytes);
    let len = header.len().to_string();
    let r = srv.post(
        "/v2/models/model/infer",
        &[
            ("Inference-Header-Content-Length", &len),
            ("Content-Type", "application/octet-stream"),
        ],
        &body,
    );
    assert_eq!(r.status, 200, "binary: {}", r.text());
    let l: usize = r
        .header("inference-header-content-length")
        .expect("Inference-Header-Content-Length in the answer")
        .parse()
        .unwrap();
    let head: Value = serde_json::from_slice(&r.body[..l]).unwrap();
    let po = output(&head, "probabilities");
    assert_eq!(po["parameters"]["binary_data_size"], 4 * CLASSES, "{head}");
    assert!(po.get("data").is_none(), "{head}");
    assert_eq!(output(&head, "label")["data"], json!([want_i]));
    assert_eq!(r.body.len(), l + 4 * CLASSES);
    let raw: Vec<f64> = r.body[l..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
        .collect();
    assert!(
        max_diff(&raw, &probs) < 1e-7,
        "binary {raw:?} vs JSON {probs:?}"
    );
    // binary_data_output for every output; FP32 binary input.
    let xb: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let header = json!({
        "inputs": [{"name": "input", "shape": [1, 3, SIZE, SIZE], "datatype": "FP32",
                    "parameters": {"binary_data_size": xb.len()}}],
        "parameters": {"binary_data_output": true}
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&xb);
    let len = header.len().to_string();
    let r = srv.post(
        "/v2/models/model/infer",
        &[("Inference-Header-Content-Length", &len)],
        &body,
    );
    assert_eq!(r.status, 200, "FP32 binary: {}", r.text());
    let l: usize = r
        .header("inference-header-content-length")
        .unwrap()
        .parse()
        .unwrap();
    let head: Value = serde_json::from_slice(&r.body[..l]).unwrap();
    let mut off = l;
    for o in head["outputs"].as_array().unwrap() {
        let n = o["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
        if o["name"] == "probabilities" {
            let p: Vec<f64> = r.body[off..off + n]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect();
            assert!(max_diff(&p, &fp) < 1e-7);
        }
        if o["name"] == "label" {
            assert_eq!(n, 8);
            let b: [u8; 8] = r.body[off..off + 8].try_into().unwrap();
            assert_eq!(i64::from_le_bytes(b), want_i as i64);
        }
        off += n;
    }
    assert_eq!(off, r.body.len(), "binary outputs fill the body: {head}");

    // A batch of three in one request equals three single requests.
    let imgs: Vec<image::RgbImage> = (0..3).map(|k| pattern(SIZE, SIZE, 20 + k)).collect();
    let refs: Vec<&image::RgbImage> = imgs.iter().collect();
    let batch = srv.infer(&u8_request(&refs));
    let rows = prob_rows(&batch);
    assert_eq!(rows.len(), 3);
    assert_eq!(output(&batch, "label")["shape"], json!([3]));
    assert!(
        batch["parameters"].get("label").is_none(),
        "label only for one image"
    );
    let mut singles = Vec::new();
    for (k, im) in imgs.iter().enumerate() {
        let one = prob_rows(&srv.infer(&u8_request(&[im]))).remove(0);
        assert!(
            max_diff(&rows[k], &one) < 1e-5,
            "batch row {k} vs single: {}",
            max_diff(&rows[k], &one)
        );
        assert_eq!(output(&batch, "label")["data"][k], argmax(&one));
        singles.push(one);
    }

    // MLflow: HWC integers, and normalized floats [N,3,S,S].
    let mlflow = json!({"inputs": [nested_hwc(&img)]}).to_string();
    let r = srv.post("/invocations", &[], mlflow.as_bytes());
    assert_eq!(
        r.status,
        200,
        "/invocations without Content-Type: {}",
        r.text()
    );
    let r = srv.post_json("/invocations", &json!({"inputs": [nested_hwc(&img)]}));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let p = floats(&v["predictions"][0]);
    assert!(max_diff(&p, &probs) < 1e-7, "{v}");
    assert_eq!(v["fool"][0]["index"], want_i);
    assert_eq!(v["fool"][0]["label"], want_label.as_str());
    let r = srv.post_json(
        "/invocations",
        &json!({"instances": imgs.iter().map(nested_chw).collect::<Vec<_>>()}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 3);
    for (k, one) in singles.iter().enumerate() {
        assert!(
            max_diff(&floats(&preds[k]), one) < 1e-5,
            "invocations row {k}"
        );
    }
    // The official Triton client agrees (without a token here; with one in `bearer_token`).
    triton_interop(&fx, &srv, &img, None, want_i, want_p);

    // Media types are case-insensitive (RFC 9110 §8.3.1), parameters allowed.
    for ct in ["application/json; charset=utf-8", "Application/JSON"] {
        let r = srv.post("/invocations", &[("Content-Type", ct)], mlflow.as_bytes());
        assert_eq!(
            r.status,
            200,
            "/invocations with Content-Type {ct}: {}",
            r.text()
        );
    }
}

/// Run tests/interop/triton_client.py against `srv`.
fn triton_interop(
    fx: &Fx,
    srv: &Server,
    img: &image::RgbImage,
    token: Option<&str>,
    want_i: usize,
    want_p: f64,
) {
    use ndarray_npy::WriteNpyExt;
    let python = root().join(".venv/bin/python");
    let probe = Command::new(&python)
        .args(["-c", "import tritonclient.http"])
        .output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "{} cannot import tritonclient: run scripts/serve/setup_py.sh ({:?})",
        python.display(),
        probe.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
    );
    let npy = fx.path("img.npy");
    let (w, h) = img.dimensions();
    ndarray::Array3::from_shape_vec((h as usize, w as usize, 3), hwc(img))
        .unwrap()
        .write_npy(std::fs::File::create(&npy).unwrap())
        .unwrap();
    let mut cmd = Command::new(&python);
    cmd.arg(root().join("tests/interop/triton_client.py"))
        .args(["--url", &srv.addr, "--model", "model", "--image-npy"])
        .arg(&npy);
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "triton_client.py (token {token:?}) failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["label"], want_i, "tritonclient's label: {v}");
    assert!(
        (v["prob"].as_f64().unwrap() - want_p).abs() < 1e-5,
        "tritonclient's prob {v} vs predict {want_p}"
    );
    assert!(v["checks"].as_u64().unwrap() >= 20, "{v}");
}

// ---------------------------------------------------------------------------------------------
// 3. Bad requests: 4xx with a JSON error naming the problem; the server goes on.

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let fx = Fx::new(3);
    let srv = fx.serve(&[
        "--max-body-mib",
        "1",
        "--max-batch-request",
        "2",
        "--max-image-pixels",
        "1500",
    ]);
    let img = pattern(SIZE, SIZE, 3);
    let img_png = png(&img);
    let good = u8_request(&[&img]);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v.to_string().into_bytes()
    };
    let json_ct = ("Content-Type", "application/json");
    let header = json!({"inputs": [{"name": "x", "shape": [1, 3, SIZE, SIZE], "datatype": "FP32",
                                    "parameters": {"binary_data_size": 3 * 32 * 32 * 4}}]})
    .to_string();
    let hlen = header.len().to_string();
    let mut nan = header.clone().into_bytes();
    for i in 0..3 * 32 * 32 {
        let v = if i == 100 { f32::NAN } else { 0.0f32 };
        nan.extend_from_slice(&v.to_le_bytes());
    }
    let mut short_binary = header.clone().into_bytes();
    short_binary.extend_from_slice(&[0u8; 100]);
    let too_long = (nan.len() + 10).to_string();
    let bomb = bomb_png(60000, 60000);
    let wide = pattern(40, 50, 4);
    let three = pattern(SIZE, SIZE, 5);
    let ragged = json!({"inputs": [[[[1, 2, 3], [4, 5, 6]], [[7, 8, 9]]]]}).to_string();
    let three_imgs = json!({"inputs": vec![nested_hwc(&three); 3]}).to_string();
    let infer = "/v2/models/model/infer";
    let deep = format!(
        "{{\"inputs\": {}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_data = format!(
        "{{\"inputs\": [{{\"name\": \"x\", \"shape\": [1], \"datatype\": \"UINT8\", \"data\": {}1{}}}]}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            infer,
            vec![json_ct],
            b"{\"inputs\": [".to_vec(),
            400,
            "not a valid inference request",
        ),
        (
            "two inputs",
            infer,
            vec![json_ct],
            with(&|v| {
                let i = v["inputs"][0].clone();
                v["inputs"] = json!([i.clone(), i]);
            }),
            400,
            "exactly one input",
        ),
        (
            "UINT8 [1,H,W,4]",
            infer,
            vec![json_ct],
            with(&|v| {
                v["inputs"][0]["shape"] = json!([1, 32, 32, 4]);
                v["inputs"][0]["data"] = json!(vec![0; 32 * 32 * 4]);
            }),
            400,
            "shape",
        ),
        (
            "FP32 of another size",
            infer,
            vec![json_ct],
            with(&|v| {
                v["inputs"][0]["datatype"] = json!("FP32");
                v["inputs"][0]["shape"] = json!([1, 3, 16, 16]);
                v["inputs"][0]["data"] = json!(vec![0.0; 3 * 16 * 16]);
            }),
            400,
            "[N,3,32,32]",
        ),
        (
            "datatype INT64",
            infer,
            vec![json_ct],
            with(&|v| v["inputs"][0]["datatype"] = json!("INT64")),
            400,
            "INT64",
        ),
        (
            "data length ≠ shape",
            infer,
            vec![json_ct],
            with(&|v| {
                v["inputs"][0]["data"].as_array_mut().unwrap().pop();
            }),
            400,
            "3071",
        ),
        (
            "UINT8 256",
            infer,
            vec![json_ct],
            with(&|v| v["inputs"][0]["data"][5] = json!(256)),
            400,
            "256",
        ),
        (
            "UINT8 -1",
            infer,
            vec![json_ct],
            with(&|v| v["inputs"][0]["data"][5] = json!(-1)),
            400,
            "-1",
        ),
        (
            "shape with 0",
            infer,
            vec![json_ct],
            with(&|v| v["inputs"][0]["shape"] = json!([0, 32, 32, 3])),
            400,
            "shape",
        ),
        (
            "unknown output",
            infer,
            vec![json_ct],
            with(&|v| v["outputs"] = json!([{"name": "bogus_out"}])),
            400,
            "bogus_out",
        ),
        (
            "unknown field",
            infer,
            vec![json_ct],
            with(&|v| v["inputs"][0]["colour"] = json!("red")),
            400,
            "colour",
        ),
        (
            "top_k 0",
            infer,
            vec![json_ct],
            with(&|v| v["parameters"] = json!({"top_k": 0})),
            400,
            "top_k",
        ),
        (
            "3 images, limit 2",
            infer,
            vec![json_ct],
            u8_request(&[&img, &img, &img]).to_string().into_bytes(),
            413,
            "limit of 2",
        ),
        (
            "UINT8 40×50 over --max-image-pixels",
            infer,
            vec![json_ct],
            u8_request(&[&wide]).to_string().into_bytes(),
            413,
            "pixels",
        ),
        (
            "Inference-Header-Content-Length past the body",
            infer,
            vec![("Inference-Header-Content-Length", too_long.as_str())],
            nan.clone(),
            400,
            "Inference-Header-Content-Length",
        ),
        (
            "Inference-Header-Content-Length not a number",
            infer,
            vec![("Inference-Header-Content-Length", "lots")],
            nan.clone(),
            400,
            "Inference-Header-Content-Length",
        ),
        (
            "binary_data_size past the end",
            infer,
            vec![("Inference-Header-Content-Length", hlen.as_str())],
            short_binary,
            400,
            "binary_data_size",
        ),
        (
            "FP32 NaN in binary data",
            infer,
            vec![("Inference-Header-Content-Length", hlen.as_str())],
            nan,
            400,
            "non-finite",
        ),
        (
            "empty image body",
            "/predictions/model",
            vec![],
            vec![],
            400,
            "empty",
        ),
        (
            "text instead of an image",
            "/predictions/model",
            vec![("Content-Type", "text/plain")],
            b"hello, this is not an image at all".to_vec(),
            415,
            "not a recognised image",
        ),
        (
            "truncated PNG",
            "/predictions/model",
            vec![],
            img_png[..img_png.len() / 2].to_vec(),
            400,
            "cannot decode",
        ),
        (
            "PNG header declaring 60000×60000",
            "/predictions/model",
            vec![],
            bomb,
            413,
            "pixels",
        ),
        (
            "40×50 PNG over --max-image-pixels 1500",
            "/predictions/model",
            vec![],
            png(&wide),
            413,
            "1500",
        ),
        (
            "/invocations as text/plain",
            "/invocations",
            vec![("Content-Type", "text/plain")],
            three_imgs.clone().into_bytes(),
            415,
            "text/plain",
        ),
        (
            "/invocations ragged",
            "/invocations",
            vec![json_ct],
            ragged.into_bytes(),
            400,
            "ragged",
        ),
        (
            "/invocations 3 images, limit 2",
            "/invocations",
            vec![json_ct],
            three_imgs.into_bytes(),
            413,
            "limit of 2",
        ),
        (
            "/invocations without inputs",
            "/invocations",
            vec![json_ct],
            br#"{"data": [1, 2]}"#.to_vec(),
            400,
            "inputs",
        ),
        (
            "data nested 100000 deep",
            infer,
            vec![json_ct],
            deep_data.into_bytes(),
            400,
            "not a valid inference request",
        ),
        (
            "/invocations nested 100000 deep",
            "/invocations",
            vec![json_ct],
            deep.into_bytes(),
            400,
            "not valid JSON",
        ),
        (
            "FP32 1e39 (infinite as f32)",
            infer,
            vec![json_ct],
            with(&|v| {
                v["inputs"][0]["datatype"] = json!("FP32");
                v["inputs"][0]["shape"] = json!([1, 3, 32, 32]);
                let mut d = vec![json!(0.0); 3 * 32 * 32];
                d[7] = json!(1e39);
                v["inputs"][0]["data"] = json!(d);
            }),
            400,
            "non-finite",
        ),
        (
            "/invocations malformed",
            "/invocations",
            vec![json_ct],
            b"[[1, 2".to_vec(),
            400,
            "JSON",
        ),
    ];
    for (what, path, headers, body, status, needle) in &cases {
        let r = srv.post(path, headers, body);
        assert_eq!(r.status, *status, "{what}: {}", r.text());
        let e = r.error();
        assert!(
            e.contains(needle),
            "{what}: error {e:?} does not name {needle:?}"
        );
        assert!(!e.contains('\n'), "{what}: error on several lines: {e:?}");
        srv.assert_alive(what);
    }

    // Errors echo X-Request-Id too.
    let r = srv.post("/predictions/model", &[("X-Request-Id", "bad-1")], b"");
    assert_eq!((r.status, r.header("x-request-id")), (400, Some("bad-1")));

    // A body over --max-body-mib (announced by Content-Length): 413 before it is read.
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        format!(
            "POST /predictions/model HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n",
            2 << 20
        )
        .as_bytes(),
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let r = parse_response(&raw);
    assert_eq!(r.status, 413, "2 MiB body: {}", r.text());
    assert!(r.error().contains("--max-body-mib"), "{}", r.text());
    drop(s);
    srv.assert_alive("a 2 MiB body");
    // The same without Content-Length (chunked): 413 once the limit is passed.
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let chunk = vec![b'x'; 64 << 10];
    let mut raw_req = b"POST /predictions/model HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                        Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..24 {
        raw_req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw_req.extend_from_slice(&chunk);
        raw_req.extend_from_slice(b"\r\n");
    }
    raw_req.extend_from_slice(b"0\r\n\r\n");
    let writer = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = w.write_all(&raw_req);
        })
    };
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    let _ = writer.join();
    match read {
        Ok(_) if !raw.is_empty() => {
            let r = parse_response(&raw);
            assert_eq!(r.status, 413, "1.5 MiB chunked body: {}", r.text());
        }
        // The server may close before our writes end (a reset loses its answer).
        other => eprintln!("serve: chunked 1.5 MiB body: no answer read ({other:?})"),
    }
    drop(s);
    srv.assert_alive("a chunked 1.5 MiB body");

    // A truncated body: Content-Length 10000, 100 bytes, then our write half closes.
    let mut raw_req = b"POST /predictions/model HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                        Content-Length: 10000\r\n\r\n"
        .to_vec();
    raw_req.extend_from_slice(&img_png[..100]);
    let t = Instant::now();
    let raw = exchange(&srv.addr, &raw_req, true);
    assert!(t.elapsed() < Duration::from_secs(20), "truncated body hung");
    if let Ok(raw) = raw {
        if !raw.is_empty() {
            let r = parse_response(&raw);
            assert_eq!(r.status, 400, "truncated body: {}", r.text());
            assert!(r.error().contains("truncated"), "{}", r.text());
        }
    }
    srv.assert_alive("a truncated body");
    // Garbage instead of HTTP.
    let _ = exchange(&srv.addr, b"\x00\x01\x02 not http\r\n\r\n", true);
    srv.assert_alive("garbage bytes");
    // And it still answers correctly.
    assert_eq!(srv.predict(&img_png)["model"], "model");
}

// ---------------------------------------------------------------------------------------------
// 4. Bearer token.

#[test]
fn bearer_token_guards_inference_and_metrics() {
    let fx = Fx::new(4);
    let tok = fx.path("token");
    std::fs::write(&tok, "s3cret\n").unwrap();
    let srv = fx.serve(&["--token-file", &s(&tok)]);
    let img = pattern(SIZE, SIZE, 9);
    let img_png = png(&img);
    let body = u8_request(&[&img]).to_string().into_bytes();
    let mlflow = json!({"inputs": [nested_hwc(&img)]})
        .to_string()
        .into_bytes();
    let endpoints: Vec<(&str, &str, Vec<u8>)> = vec![
        ("POST", "/predictions/model", img_png.clone()),
        ("POST", "/v2/models/model/infer", body.clone()),
        ("POST", "/invocations", mlflow),
        ("GET", "/metrics", vec![]),
        ("GET", "/v2/models/model/drift", vec![]),
    ];
    for (method, path, b) in &endpoints {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer s3cret2"),
            Some("Bearer s3cre"),
            Some("s3cret"),
            Some("Basic czNjcmV0"),
        ] {
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
            let r = http(&srv.addr, method, path, &headers, b);
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}: {}", r.text());
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            assert!(r.error().contains("token"), "{}", r.text());
        }
        let r = http(
            &srv.addr,
            method,
            path,
            &[("Authorization", "Bearer s3cret")],
            b,
        );
        assert_eq!(
            r.status,
            200,
            "{method} {path} with the token: {}",
            r.text()
        );
    }
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2",
        "/v2/models/model",
        "/v2/models/model/ready",
    ] {
        assert_eq!(srv.get(path).status, 200, "{path} without the token");
    }
    let img_path = fx.save("img.png", &img);
    let (want_i, _, want_p) = fx.predict(&img_path);
    triton_interop(&fx, &srv, &img, Some("s3cret"), want_i, want_p);

    // fool loadtest with the same token file: every request 200; without it: every one 401.
    let url = format!("http://{}/predictions/model", srv.addr);
    let loadtest = |token: bool| {
        let mut cmd = fool();
        cmd.args(["loadtest", &url, "--body"]).arg(&img_path).args([
            "--concurrency",
            "2",
            "--requests",
            "6",
            "--json",
            "-q",
        ]);
        if token {
            cmd.arg("--token-file").arg(&tok);
        }
        cmd.output().unwrap()
    };
    let out = loadtest(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(
        (v["ok"].as_u64(), v["statuses"].clone()),
        (Some(6), json!({"200": 6}))
    );
    let out = loadtest(false);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["statuses"], json!({"401": 6}), "{v}");
    assert_eq!(
        (v["ok"].as_u64(), v["errors"].as_u64(), v["lost"].as_u64()),
        (Some(0), Some(6), Some(0))
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Batching, a full queue, timeouts.

#[test]
fn concurrent_requests_run_as_one_batch() {
    let fx = Fx::new(5);
    let log = fx.path("requests.log");
    let srv = fx.serve(&[
        "--max-batch",
        "4",
        "--max-delay-ms",
        "500",
        "--log",
        &s(&log),
    ]);
    let raw: Vec<image::RgbImage> = (0..4).map(|k| pattern(SIZE, SIZE, 40 + k)).collect();
    let imgs: Vec<Vec<u8>> = raw.iter().map(png).collect();
    // Reference answers: the four in one request (one wait of --max-delay-ms, not four).
    let reference = prob_rows(&srv.infer(&u8_request(&raw.iter().collect::<Vec<_>>())));
    let before = srv.metrics();
    let addr = srv.addr.clone();
    let imgs2 = imgs.clone();
    let answers = concurrently(4, move |i| {
        let id = format!("c{i}");
        let r = http(
            &addr,
            "POST",
            "/predictions/model",
            &[("X-Request-Id", &id)],
            &imgs2[i],
        );
        (
            r.status,
            r.header("x-request-id").map(String::from),
            r.json(),
        )
    });
    for (i, (status, rid, v)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "{v}");
        assert_eq!(rid.as_deref(), Some(format!("c{i}").as_str()));
        let want = argmax(&reference[i]);
        assert_eq!(v["index"], want, "{v}");
        let d = (v["confidence"].as_f64().unwrap() - reference[i][want]).abs();
        assert!(
            d < 1e-5,
            "answer {i} differs from the reference answer by {d}"
        );
    }
    let after = srv.metrics();
    let batches =
        after.get("fool_batch_size_count", &[]) - before.get("fool_batch_size_count", &[]);
    let images = after.get("fool_batch_size_sum", &[]) - before.get("fool_batch_size_sum", &[]);
    assert_eq!(
        (batches, images),
        (1.0, 4.0),
        "4 concurrent requests within --max-delay-ms 500 did not run as one batch of 4"
    );
    let lines = log_lines(&log);
    let concurrent: Vec<&Value> = lines
        .iter()
        .filter(|l| l["request_id"].as_str().is_some_and(|r| r.starts_with('c')))
        .collect();
    assert_eq!(concurrent.len(), 4, "{lines:?}");
    for l in &concurrent {
        assert_eq!(l["batch"], 4, "{l}");
        assert_eq!(l["status"], 200);
    }
    // The reference request ran as a batch of its own four.
    assert_eq!(lines[0]["path"], "/v2/models/model/infer");
    assert_eq!(
        (lines[0]["images"].as_u64(), lines[0]["batch"].as_u64()),
        (Some(4), Some(4))
    );
    assert!(lines[0]["queue_ms"].as_f64().unwrap() >= 0.0);
    assert!(lines[0]["compute_ms"].as_f64().unwrap() > 0.0);

    // Two requests of 3 and 2 images at once: 5 images over --max-batch 4 run as passes of 4
    // and 1; each request gets its own rows back, equal to the reference rows.
    let raw: Vec<image::RgbImage> = (0..5).map(|k| pattern(SIZE, SIZE, 60 + k)).collect();
    let single = prob_rows(&srv.infer(&u8_request(&raw.iter().collect::<Vec<_>>())));
    let before = srv.metrics();
    let addr = srv.addr.clone();
    let bodies = [
        u8_request(&[&raw[0], &raw[1], &raw[2]]),
        u8_request(&[&raw[3], &raw[4]]),
    ];
    let answers = concurrently(2, move |i| {
        let r = http(
            &addr,
            "POST",
            "/v2/models/model/infer",
            &[("Content-Type", "application/json")],
            bodies[i].to_string().as_bytes(),
        );
        (r.status, r.json())
    });
    let mut k = 0;
    for (status, v) in &answers {
        assert_eq!(*status, 200, "{v}");
        for row in prob_rows(v) {
            assert!(
                max_diff(&row, &single[k]) < 1e-5,
                "image {k} in a mixed batch: {}",
                max_diff(&row, &single[k])
            );
            k += 1;
        }
    }
    assert_eq!(k, 5);
    let after = srv.metrics();
    let passes = after.get("fool_batch_size_count", &[]) - before.get("fool_batch_size_count", &[]);
    let images = after.get("fool_batch_size_sum", &[]) - before.get("fool_batch_size_sum", &[]);
    assert_eq!((passes, images), (2.0, 5.0), "passes of 4 and 1");
}

#[test]
fn a_full_queue_is_refused_with_retry_after_and_slow_answers_time_out() {
    let fx = Fx::new(6);
    let slow = fx.path("slow.pt");
    let forward = slow_model(&slow);
    eprintln!("serve: slow model, about {forward:?} per forward pass");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "serve".to_string(),
            "--model".into(),
            s(&slow),
            "--labels".into(),
            s(&fx.labels),
            "--size".into(),
            "32".into(),
            "--resize".into(),
            "32".into(),
            "--port".into(),
            "0".into(),
            "--json".into(),
            "-q".into(),
        ];
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let img_png = png(&pattern(SIZE, SIZE, 11));
    // One forward at a time, one request waiting: of 6 at once, some are refused.
    let srv = Server::start(&args(&[
        "--max-batch",
        "1",
        "--max-delay-ms",
        "0",
        "--queue",
        "1",
    ]));
    let addr = srv.addr.clone();
    let body = img_png.clone();
    let t = Instant::now();
    let answers = concurrently(6, move |_| {
        let r = http(&addr, "POST", "/predictions/model", &[], &body);
        (
            r.status,
            r.header("retry-after").map(String::from),
            r.text(),
        )
    });
    eprintln!("serve: 6 requests on a queue of 1 in {:?}", t.elapsed());
    let refused: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    assert!(!refused.is_empty(), "no 503 with --queue 1: {answers:?}");
    for a in &refused {
        assert!(
            a.1.as_deref()
                .is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)),
            "503 without Retry-After: {a:?}"
        );
        assert!(a.2.contains("queue"), "{a:?}");
    }
    assert!(
        answers.iter().all(|a| a.0 == 200 || a.0 == 503),
        "{answers:?}"
    );
    assert!(answers.iter().any(|a| a.0 == 200), "{answers:?}");
    let m = srv.metrics();
    assert_eq!(
        m.get(
            "fool_requests_total",
            &[("endpoint", "/predictions/{name}"), ("code", "503")]
        ),
        refused.len() as f64
    );
    drop(srv);

    // A request not answered within --timeout-ms: 504; the server goes on.
    let srv = Server::start(&args(&["--timeout-ms", "50"]));
    let t = Instant::now();
    let r = srv.post("/predictions/model", &[], &img_png);
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.error().contains("--timeout-ms"), "{}", r.text());
    assert!(
        t.elapsed() < forward + Duration::from_secs(5),
        "504 after {:?}",
        t.elapsed()
    );
    srv.assert_alive("a timeout");
}

// ---------------------------------------------------------------------------------------------
// 6. Shutdown.

#[test]
fn sigterm_answers_what_is_in_flight_then_exits_0() {
    let fx = Fx::new(7);
    let mut srv = fx.serve(&["--max-delay-ms", "1500", "--max-batch", "16"]);
    let addr = srv.addr.clone();
    let img_png = png(&pattern(SIZE, SIZE, 12));
    let a2 = addr.clone();
    let inflight = std::thread::spawn(move || {
        concurrently(3, move |_| {
            let r = http(&a2, "POST", "/predictions/model", &[], &img_png);
            (r.status, r.text())
        })
    });
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    unsafe {
        libc::kill(srv.pid(), libc::SIGTERM);
    }
    // Ready turns 503 while the three wait (best effort: it may already have stopped listening).
    // The signal is handled asynchronously: give the server a moment to see it, or a request
    // accepted just before could still be answered as ready.
    std::thread::sleep(Duration::from_millis(200));
    if let Ok(raw) = exchange(
        &addr,
        &request_bytes("GET", "/v2/health/ready", &[], b""),
        false,
    ) {
        if !raw.is_empty() {
            let r = parse_response(&raw);
            assert_eq!(r.status, 503, "ready while shutting down: {}", r.text());
        }
    }
    let answers = inflight.join().unwrap();
    for a in &answers {
        assert_eq!(a.0, 200, "in flight at SIGTERM: {a:?}");
    }
    let status = srv.stop();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(
        TcpStream::connect(&addr).is_err(),
        "{addr} still accepts connections after exit"
    );
}

/// SIGTERM with clients that never finish: one connected and silent, one idle after a
/// keep-alive exchange, one stalled in the middle of its body. The server still exits 0 within
/// 10 s (it cannot answer the stalled one, and must not wait for it forever).
#[test]
fn sigterm_does_not_wait_forever_for_idle_or_stalled_clients() {
    let fx = Fx::new(13);
    let mut srv = fx.serve(&[]);
    let silent = TcpStream::connect(&srv.addr).unwrap();
    let mut idle = TcpStream::connect(&srv.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    idle.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let mut stalled = TcpStream::connect(&srv.addr).unwrap();
    stalled
        .write_all(
            b"POST /predictions/model HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    unsafe {
        libc::kill(srv.pid(), libc::SIGTERM);
    }
    let mut child = srv.child.take().unwrap();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop((silent, idle, stalled));
    let status = status.expect(
        "fool serve still running 10 s after SIGTERM with a silent, an idle keep-alive and a stalled client",
    );
    assert_eq!(status.code(), Some(0), "{status}");
}

/// A client that goes away while its request waits for the model: no request stays counted in
/// fool_requests_in_flight, and the server answers the next one.
#[test]
fn abandoned_requests_do_not_stay_in_flight() {
    let fx = Fx::new(14);
    let srv = fx.serve(&["--max-delay-ms", "800", "--max-batch", "16"]);
    let img_png = png(&pattern(SIZE, SIZE, 14));
    {
        let mut s = TcpStream::connect(&srv.addr).unwrap();
        s.write_all(&request_bytes("POST", "/predictions/model", &[], &img_png))
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let m = srv.metrics();
        assert_eq!(
            m.get("fool_requests_in_flight", &[]),
            2.0,
            "one waiting, one /metrics"
        );
        // The client hangs up, its request still in the batcher.
    }
    std::thread::sleep(Duration::from_millis(1500));
    let m = srv.metrics();
    assert_eq!(
        m.get("fool_requests_in_flight", &[]),
        1.0,
        "an abandoned request is still counted in flight (only this /metrics request is)"
    );
    assert_eq!(srv.predict(&img_png)["model"], "model");
}

// ---------------------------------------------------------------------------------------------
// 7. Metrics and drift; 9. the request log.

#[test]
fn metrics_count_what_was_served_and_the_log_has_a_line_per_request() {
    let fx = Fx::new(8);
    let log = fx.path("requests.log");
    let srv = fx.serve(&["--log", &s(&log)]);
    // 12 synthetic images, classified in one request.
    let imgs: Vec<image::RgbImage> = (0..12).map(|k| pattern(SIZE, SIZE, 100 + k)).collect();
    let refs: Vec<&image::RgbImage> = imgs.iter().collect();
    let rows = prob_rows(&srv.infer(&u8_request(&refs)));
    let classes: Vec<usize> = rows.iter().map(|r| argmax(r)).collect();
    // Three /predictions, one with an id, one bad request.
    let mut predicted = classes.clone();
    for k in 0..3 {
        let hdr: Vec<(&str, &str)> = if k == 0 {
            vec![("X-Request-Id", "log-me")]
        } else {
            vec![]
        };
        let r = srv.post("/predictions/model", &hdr, &png(&imgs[k]));
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["index"], classes[k]);
        predicted.push(classes[k]);
    }
    let r = srv.post("/predictions/model", &[], b"");
    assert_eq!(r.status, 400);
    assert_eq!(srv.get("/v2/health/live").status, 200);
    let m = srv.metrics();
    let preds = "/predictions/{name}";
    assert_eq!(
        m.get(
            "fool_requests_total",
            &[("endpoint", preds), ("code", "200")]
        ),
        3.0
    );
    assert_eq!(
        m.get(
            "fool_requests_total",
            &[("endpoint", preds), ("code", "400")]
        ),
        1.0
    );
    assert_eq!(
        m.get(
            "fool_requests_total",
            &[("endpoint", "/v2/models/{name}/infer"), ("code", "200")]
        ),
        1.0
    );
    assert_eq!(m.get("fool_predictions_total", &[]), predicted.len() as f64);
    for c in 0..CLASSES {
        let n = predicted.iter().filter(|&&p| p == c).count() as f64;
        let label = label_name(c);
        let got = m
            .find(
                "fool_predictions_total",
                &[("class", &c.to_string()), ("label", &label)],
            )
            .unwrap_or(0.0);
        assert_eq!(got, n, "class {c}:\n{}", m.0);
    }
    assert_eq!(
        m.get(
            "fool_request_duration_seconds_count",
            &[("endpoint", preds)]
        ),
        4.0
    );
    assert!(m.get("fool_request_duration_seconds_sum", &[("endpoint", preds)]) > 0.0);
    // Four batches ran (one of 12, three of 1).
    assert_eq!(m.get("fool_queue_duration_seconds_count", &[]), 4.0);
    assert_eq!(m.get("fool_compute_duration_seconds_count", &[]), 4.0);
    assert!(m.get("fool_compute_duration_seconds_sum", &[]) > 0.0);
    // Five forward passes: the 12 in chunks of 8 and 4 (--max-batch 8), then three of 1.
    assert_eq!(m.get("fool_batch_size_count", &[]), 5.0);
    assert_eq!(m.get("fool_batch_size_sum", &[]), 15.0);
    assert_eq!(m.get("fool_prediction_confidence_count", &[]), 15.0);
    // The /metrics request itself is in flight.
    assert_eq!(m.get("fool_requests_in_flight", &[]), 1.0);
    assert!(m.get("fool_model_load_seconds", &[]) > 0.0);
    assert!(m.get("process_resident_memory_bytes", &[]) > 1e6);
    assert!(
        m.0.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );

    // The log: one line per request so far (the /metrics one included).
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 7, "{lines:#?}");
    for l in &lines {
        for k in ["method", "path", "endpoint", "status", "ms", "ts"] {
            assert!(l.get(k).is_some(), "log line lacks {k}: {l}");
        }
    }
    let infer = &lines[0];
    assert_eq!(infer["method"], "POST");
    assert_eq!(infer["path"], "/v2/models/model/infer");
    assert_eq!(infer["endpoint"], "/v2/models/{name}/infer");
    assert_eq!(infer["status"], 200);
    assert_eq!(infer["classes"], json!(classes));
    assert_eq!(infer["confidence"].as_array().unwrap().len(), 12);
    assert_eq!(infer["batch"], 12);
    assert!(infer.get("request_id").is_none());
    assert_eq!(lines[1]["request_id"], "log-me");
    assert_eq!(lines[1]["classes"], json!([classes[0]]));
    let c = lines[1]["confidence"][0].as_f64().unwrap();
    assert!((c - rows[0][classes[0]]).abs() < 1e-6);
    assert_eq!(lines[4]["status"], 400);
    assert!(lines[4]["error"]
        .as_str()
        .is_some_and(|e| e.contains("empty")));
    assert_eq!(lines[5]["path"], "/v2/health/live");
    assert_eq!(lines[6]["path"], "/metrics");
    assert!(lines.iter().all(|l| l["ms"].as_f64().unwrap() >= 0.0));
}

#[test]
fn drift_of_predicted_classes_and_reference_files() {
    let fx = Fx::new(9);
    // Two images the model puts in different classes (found with a throwaway server).
    let imgs: Vec<image::RgbImage> = (0..27u32)
        .map(|k| {
            let c = [k % 3, k / 3 % 3, k / 9].map(|v| (v * 127).min(255) as u8);
            image::RgbImage::from_pixel(SIZE, SIZE, image::Rgb(c))
        })
        .collect();
    let classes: Vec<usize> = {
        let srv = fx.serve(&[]);
        let refs: Vec<&image::RgbImage> = imgs.iter().collect();
        prob_rows(&srv.infer(&u8_request(&refs)))
            .iter()
            .map(|r| argmax(r))
            .collect()
    };
    let b = (1..imgs.len())
        .find(|&k| classes[k] != classes[0])
        .unwrap_or_else(|| panic!("the tiny model puts 27 colours in one class: {classes:?}"));
    let (ca, cb) = (classes[0], classes[b]);
    let (a_png, b_png) = (png(&imgs[0]), png(&imgs[b]));

    let srv = fx.serve(&["--drift-window", "2"]);
    let m = srv.metrics();
    assert_eq!(m.get("fool_window_predictions", &[]), 0.0);
    assert_eq!(m.get("fool_drift_class_psi", &[]), 0.0);
    let mut conf_b = 0.0;
    for png_bytes in [&a_png, &a_png] {
        srv.predict(png_bytes);
    }
    for png_bytes in [&b_png, &b_png] {
        conf_b = srv.predict(png_bytes)["confidence"].as_f64().unwrap();
    }
    let m = srv.metrics();
    assert_eq!(m.get("fool_window_predictions", &[]), 2.0);
    let mut reference = vec![0u64; CLASSES];
    reference[ca] = 2;
    let mut window = vec![0u64; CLASSES];
    window[cb] = 2;
    let (psi, kl) = psi_kl(&window, &reference);
    let got = m.get("fool_drift_class_psi", &[]);
    assert!(psi > 0.0);
    assert!(
        (got - psi).abs() < 1e-9 * psi.max(1.0),
        "PSI {got}, computed here {psi}"
    );
    assert!((m.get("fool_drift_class_kl", &[]) - kl).abs() < 1e-9 * kl.max(1.0));
    assert!((m.get("fool_window_mean_confidence", &[]) - conf_b).abs() < 1e-6);

    let d = srv.get("/v2/models/model/drift");
    assert_eq!(d.status, 200, "{}", d.text());
    let summary = d.json();
    assert_eq!(summary["format"], "fool-drift/1");
    assert_eq!(summary["count"], 2);
    assert_eq!(summary["class_counts"], json!(window));
    assert!((summary["mean_confidence"].as_f64().unwrap() - conf_b).abs() < 1e-6);
    drop(srv);

    // The summary as the reference of a new server: B's window then matches it (PSI 0).
    let reff = fx.path("drift.json");
    std::fs::write(&reff, summary.to_string()).unwrap();
    let srv = fx.serve(&["--drift-window", "2", "--drift-reference", &s(&reff)]);
    srv.predict(&b_png);
    srv.predict(&b_png);
    let m = srv.metrics();
    assert_eq!(m.get("fool_window_predictions", &[]), 2.0);
    assert!(m.get("fool_drift_class_psi", &[]).abs() < 1e-12, "{}", m.0);
    assert!(m.get("fool_drift_confidence_shift", &[]).abs() < 1e-6);
    drop(srv);

    // Malformed references: exit 1 naming --drift-reference.
    let bad = fx.path("bad-drift.json");
    for text in [
        "{\"format\": \"fool-drift/1\"}".to_string(),
        summary.to_string().replace("fool-drift/1", "fool-drift/9"),
        json!({"format": "fool-drift/1", "count": 2, "class_counts": [2, 0],
               "mean_confidence": 0.5})
        .to_string(),
        "not json".to_string(),
    ] {
        std::fs::write(&bad, &text).unwrap();
        start_fails(
            &fx,
            &["--drift-reference", &s(&bad)],
            &["--drift-reference", "bad-drift.json"],
        );
    }
}

/// crates/serve/src/drift.rs's formula: counts + ½ per class, PSI = Σ (w−r) ln(w/r), KL = Σ w ln(w/r).
fn psi_kl(window: &[u64], reference: &[u64]) -> (f64, f64) {
    let k = window.len() as f64;
    let nw = window.iter().sum::<u64>() as f64 + 0.5 * k;
    let nr = reference.iter().sum::<u64>() as f64 + 0.5 * k;
    let mut psi = 0.0;
    let mut kl = 0.0;
    for (a, b) in window.iter().zip(reference) {
        let w = (*a as f64 + 0.5) / nw;
        let r = (*b as f64 + 0.5) / nr;
        psi += (w - r) * (w / r).ln();
        kl += w * (w / r).ln();
    }
    (psi, kl)
}

// ---------------------------------------------------------------------------------------------
// 8. Detection.

#[test]
fn detector_scores_flags_and_rejects() {
    let fx = Fx::new(10);
    let cal = fx.path("cal");
    std::fs::create_dir(&cal).unwrap();
    let mut csv = String::from("file,index\n");
    for k in 0..10 {
        let name = format!("img{k:02}.png");
        std::fs::write(cal.join(&name), png(&pattern(SIZE, SIZE, 300 + k))).unwrap();
        csv.push_str(&format!("{name},{}\n", k % CLASSES as u64));
    }
    std::fs::write(cal.join("labels.csv"), csv).unwrap();
    let det = fx.path("det.json");
    ok(fool()
        .args(["detect", "calibrate", "-q"])
        .arg(&cal)
        .args(fx.model_args())
        .args([
            "--squeezers",
            "bits:4,median:3",
            "--fpr",
            "0.2",
            "--stateful-k",
            "2",
            "--out",
        ])
        .arg(&det));
    let file: Value = serde_json::from_slice(&std::fs::read(&det).unwrap()).unwrap();
    let st_k = file["stateful"]["k"]
        .as_u64()
        .expect("stateful calibration");
    let st_threshold = file["stateful"]["threshold"].as_f64().unwrap();
    assert_eq!(st_k, 2);

    let img = pattern(SIZE, SIZE, 77);
    let img_path = fx.save("probe.png", &img);
    let scored = ok_json(
        fool()
            .args(["detect", "score", "--json", "-q", "--detector"])
            .arg(&det)
            .arg(&img_path)
            .args(fx.model_args()),
    );
    let want = scored["images"][0]["score"].as_f64().unwrap();
    let want_flag = scored["images"][0]["flagged"].as_bool().unwrap();

    // --detector with --stateful: k and threshold from the file.
    let srv = fx.serve(&["--detector", &s(&det), "--stateful"]);
    assert_eq!(srv.info["stateful"], true);
    let meta = srv.get("/v2/models/model").json();
    assert_eq!(meta["parameters"]["stateful"]["k"], st_k, "{meta}");
    let t = meta["parameters"]["stateful"]["threshold"]
        .as_f64()
        .unwrap();
    assert!((t - st_threshold).abs() < 1e-12, "{meta}");
    let dt = meta["parameters"]["detector"]["threshold"]
        .as_f64()
        .unwrap();
    assert!((dt - file["threshold"].as_f64().unwrap()).abs() < 1e-12);
    for name in [
        "detector_score",
        "flagged",
        "stateful_distance",
        "stateful_flagged",
    ] {
        output(&meta, name);
    }
    let v = srv.predict(&png(&img));
    let got = v["detector_score"].as_f64().expect("detector_score");
    assert!(
        (got - want).abs() < 1e-5,
        "served score {got}, fool detect score {want}"
    );
    assert_eq!(v["flagged"], want_flag);
    let a = srv.infer(&u8_request(&[&img]));
    let s_out = floats(&output(&a, "detector_score")["data"]);
    assert!((s_out[0] - want).abs() < 1e-5);
    assert_eq!(output(&a, "detector_score")["datatype"], "FP32");
    assert_eq!(output(&a, "flagged")["datatype"], "BOOL");
    assert_eq!(output(&a, "flagged")["data"], json!([want_flag]));
    assert!((a["parameters"]["detector_score"].as_f64().unwrap() - want).abs() < 1e-5);
    output(&a, "stateful_distance");
    output(&a, "stateful_flagged");
    drop(srv);

    // Threshold 0: everything is flagged; --reject-flagged refuses it (422).
    let mut zero = file.clone();
    zero["threshold"] = json!(0.0);
    let det0 = fx.path("det0.json");
    std::fs::write(&det0, serde_json::to_string_pretty(&zero).unwrap()).unwrap();
    let srv = fx.serve(&["--detector", &s(&det0), "--reject-flagged"]);
    let r = srv.post("/predictions/model", &[], &png(&img));
    assert_eq!(r.status, 422, "{}", r.text());
    let v = r.json();
    assert!(r.error().contains("flagged"), "{v}");
    assert!(
        (v["detector_score"]
            .as_f64()
            .expect("detector_score in the 422")
            - want)
            .abs()
            < 1e-5,
        "{v}"
    );
    let r = srv.post_json("/v2/models/model/infer", &u8_request(&[&img]));
    assert_eq!(r.status, 422, "{}", r.text());
    let m = srv.metrics();
    assert_eq!(m.get("fool_rejected_total", &[]), 2.0);
    assert_eq!(m.get("fool_flagged_total", &[("detector", "squeeze")]), 2.0);
    drop(srv);

    // Stateful detection alone: the same image three times; k = 2 neighbours from the third.
    let srv = fx.serve(&[
        "--stateful",
        "--stateful-k",
        "2",
        "--stateful-threshold",
        "0.01",
    ]);
    let meta = srv.get("/v2/models/model").json();
    assert_eq!(
        meta["parameters"]["stateful"],
        json!({"k": 2, "threshold": 0.01})
    );
    let answers: Vec<Value> = (0..3).map(|_| srv.predict(&png(&img))).collect();
    for a in &answers[..2] {
        assert_eq!(a["stateful_flagged"], false, "{a}");
        assert!(a["stateful_distance"].is_null(), "{a}");
        assert!(a.get("detector_score").is_none(), "{a}");
    }
    assert_eq!(answers[2]["stateful_flagged"], true, "{}", answers[2]);
    assert_eq!(answers[2]["stateful_distance"].as_f64(), Some(0.0));
    let m = srv.metrics();
    assert_eq!(
        m.get("fool_flagged_total", &[("detector", "stateful")]),
        1.0
    );
    // A different image afterwards is not flagged (the memory was cleared by the flag).
    let other = srv.predict(&png(&pattern(SIZE, SIZE, 78)));
    assert_eq!(other["stateful_flagged"], false, "{other}");
}

// ---------------------------------------------------------------------------------------------
// 10. Loadtest.

#[test]
fn loadtest_reports_every_answer() {
    let fx = Fx::new(11);
    let srv = fx.serve(&[]);
    let body = fx.save("img.png", &pattern(SIZE, SIZE, 13));
    let url = format!("http://{}/predictions/model", srv.addr);
    let v = ok_json(fool().args(["loadtest", &url, "--body"]).arg(&body).args([
        "--concurrency",
        "4",
        "--requests",
        "40",
        "--json",
        "-q",
    ]));
    assert_eq!(v["requests"], 40, "{v}");
    assert_eq!(v["sent"], 40, "{v}");
    assert_eq!(v["ok"], 40, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["lost"], 0, "{v}");
    assert_eq!(v["duplicates"], 0, "{v}");
    assert_eq!(v["mismatched_ids"], 0, "{v}");
    assert_eq!(v["statuses"]["200"], 40, "{v}");
    assert!(v["throughput"].as_f64().unwrap() > 0.0, "{v}");
    let p = |k: &str| v[k].as_f64().unwrap();
    assert!(
        0.0 < p("p50_ms") && p("p50_ms") <= p("p95_ms") && p("p95_ms") <= p("p99_ms"),
        "{v}"
    );
    assert!(p("p99_ms") <= p("max_ms"), "{v}");
    let m = srv.metrics();
    assert_eq!(
        m.get(
            "fool_requests_total",
            &[("endpoint", "/predictions/{name}"), ("code", "200")]
        ),
        40.0
    );
    // Nothing listening: every request lost, exit 1.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = fool()
        .args(["loadtest", &format!("http://{closed}/x"), "--body"])
        .arg(&body)
        .args(["--requests", "5", "--concurrency", "2", "--json", "-q"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["statuses"], json!({"error": 5}), "{v}");
    assert_eq!(
        (v["ok"].as_u64(), v["lost"].as_u64()),
        (Some(0), Some(5)),
        "{v}"
    );
    // Not this machine: refused at once.
    let t = Instant::now();
    let out = fool()
        .args(["loadtest", "http://10.1.2.3:9/x", "--body"])
        .arg(&body)
        .args(["--requests", "5", "-q"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("loopback"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 12. Start-up errors.

/// `fool serve` with `extra` on the fixture's model must exit 1 at once with one line on stderr
/// containing each of `needles`, and leave nothing listening.
fn start_fails(fx: &Fx, extra: &[&str], needles: &[&str]) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    start_fails_on(fx, port, extra, needles);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "{extra:?}: something listens on {port}"
    );
}

fn start_fails_on(fx: &Fx, port: u16, extra: &[&str], needles: &[&str]) {
    let mut cmd = fool();
    cmd.arg("serve")
        .args(fx.model_args())
        .args(["--port", &port.to_string(), "--json", "-q"])
        .args(extra)
        .timeout(Duration::from_secs(60));
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{extra:?}: {err}");
    assert!(
        out.stdout.is_empty(),
        "{extra:?} printed {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(err.trim().lines().count(), 1, "{extra:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{extra:?}: {err:?} lacks {n:?}");
    }
}

#[test]
fn start_up_errors_name_the_flag() {
    let fx = Fx::new(12);
    // A model file that is not TorchScript.
    let bad = fx.path("not-a-model.pt");
    std::fs::write(&bad, "this is not a TorchScript archive").unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = fool()
        .args(["serve", "--model"])
        .arg(&bad)
        .args(["--labels", &s(&fx.labels), "--size", "32", "--port"])
        .arg(port.to_string())
        .args(["--json", "-q"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("not-a-model.pt"), "{err}");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());

    // A taken port.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    start_fails_on(&fx, port, &[], &["--port", &port.to_string()]);
    drop(taken);

    let tok = fx.path("empty-token");
    std::fs::write(&tok, "\n").unwrap();
    let spaced = fx.path("spaced-token");
    std::fs::write(&spaced, "two words\n").unwrap();
    let no_file = fx.path("missing.json");
    let model_bytes = std::fs::read(&fx.model).unwrap();
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            vec!["--defense".into(), "nonsense".into()],
            vec!["--defense".into(), "nonsense".into()],
        ),
        (
            vec!["--reject-flagged".into()],
            vec!["--reject-flagged".into()],
        ),
        (
            vec!["--stateful".into()],
            vec!["--stateful-threshold".into()],
        ),
        (
            vec!["--token-file".into(), s(&tok)],
            vec!["empty-token".into()],
        ),
        (
            vec!["--token-file".into(), s(&spaced)],
            vec!["spaced-token".into()],
        ),
        (
            vec!["--name".into(), "a/b".into()],
            vec!["--name".into(), "a/b".into()],
        ),
        (vec!["--name".into(), "".into()], vec!["--name".into()]),
        (
            vec!["--detector".into(), s(&no_file)],
            vec!["missing.json".into()],
        ),
        (
            vec!["--max-batch".into(), "0".into()],
            vec!["--max-batch".into()],
        ),
        (vec!["--queue".into(), "0".into()], vec!["--queue".into()]),
        (
            vec!["--timeout-ms".into(), "0".into()],
            vec!["--timeout-ms".into()],
        ),
        (
            vec![
                "--stateful".into(),
                "--stateful-k".into(),
                "0".into(),
                "--stateful-threshold".into(),
                "0.1".into(),
            ],
            vec!["--stateful-k".into()],
        ),
        (
            vec![
                "--stateful".into(),
                "--stateful-k".into(),
                "5".into(),
                "--stateful-memory".into(),
                "3".into(),
                "--stateful-threshold".into(),
                "0.1".into(),
            ],
            vec!["--stateful-memory".into()],
        ),
        (
            vec!["--stateful".into(), "--stateful-threshold=-1".into()],
            vec!["--stateful-threshold".into()],
        ),
        (
            vec!["--log".into(), "/nonexistent/dir/requests.log".into()],
            vec!["--log".into(), "/nonexistent/dir/requests.log".into()],
        ),
        (vec!["--top-k".into(), "0".into()], vec!["--top-k".into()]),
        // The log is appended to: the model file (an input) is refused, and left as it was.
        (
            vec!["--log".into(), s(&fx.model)],
            vec!["--log".into(), "refusing to overwrite an input".into()],
        ),
        (
            vec!["--max-batch-request".into(), "0".into()],
            vec!["--max-batch-request".into()],
        ),
        (
            vec!["--drift-reference".into(), s(&no_file)],
            vec!["missing.json".into()],
        ),
    ];
    for (extra, needles) in &cases {
        let e: Vec<&str> = extra.iter().map(String::as_str).collect();
        let n: Vec<&str> = needles.iter().map(String::as_str).collect();
        start_fails(&fx, &e, &n);
    }
    assert_eq!(
        std::fs::read(&fx.model).unwrap(),
        model_bytes,
        "--log must not touch the model"
    );
    // A host that does not resolve: the flag at fault is --host (not --port).
    start_fails(
        &fx,
        &["--host", "no-such-host.invalid"],
        &["no-such-host.invalid", "--host"],
    );
}
