//! `fool serve` (a classifier over HTTP: the Open Inference Protocol, TorchServe- and
//! MLflow-style adapters, dynamic batching, Prometheus metrics, adversarial-input flags) and
//! `fool loadtest` (a bounded load generator for it).
use super::{print_json, ModelArgs};
use anyhow::{Context, Result};
use clap::Args;
use fool::serve::{Settings, StatefulChoice};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The model's name in URLs (/v2/models/NAME, /predictions/NAME)
    #[arg(long, default_value = "model")]
    name: String,
    /// Address to listen on; only this machine can connect unless you give another
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free port, printed at start)
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Most images in one forward pass
    #[arg(long, default_value_t = 8)]
    max_batch: usize,
    /// How long the worker waits for more requests to fill a batch, in ms
    #[arg(long, default_value_t = 5)]
    max_delay_ms: u64,
    /// Requests waiting at most; more are answered 503 with Retry-After
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// A request not answered within this many ms is answered 504
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Largest request body, in MiB (413 over it)
    #[arg(long, default_value_t = 16)]
    max_body_mib: usize,
    /// Most images in one request (413 over it)
    #[arg(long, default_value_t = 64)]
    max_batch_request: usize,
    /// Classes in each answer's top-k list
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// libtorch threads for the model (intra-op) [default on CPU: the cores minus one, at least 1:
    /// a core is left to HTTP and image decoding]
    #[arg(long)]
    threads: Option<usize>,
    /// A defense applied before the model, as `fool predict --defense` takes it (jpeg:75, bits:5+median:2)
    #[arg(long)]
    defense: Option<String>,
    /// A detector file from `fool detect calibrate`: each input gets a feature-squeezing score and a flag
    #[arg(long)]
    detector: Option<PathBuf>,
    /// Refuse (422) inputs that a detector flags, instead of answering with the flag
    #[arg(long)]
    reject_flagged: bool,
    /// Stateful detection of query-based attacks: a memory of recent queries; a query too close
    /// to its k nearest ones is flagged (threshold from the detector file's stateful calibration
    /// or --stateful-threshold)
    #[arg(long)]
    stateful: bool,
    /// Neighbours averaged by stateful detection [default: the detector file's, else 20]
    #[arg(long, requires = "stateful")]
    stateful_k: Option<usize>,
    /// Flag a query whose mean distance (RMS pixel difference, 0..1) to its k nearest recent
    /// queries is below this [default: the detector file's]
    #[arg(long, requires = "stateful")]
    stateful_threshold: Option<f64>,
    /// Recent queries remembered by stateful detection
    #[arg(long, default_value_t = 1000, requires = "stateful")]
    stateful_memory: usize,
    /// A file holding a bearer token: inference and /metrics then need `Authorization: Bearer TOKEN`
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// After SIGTERM or Ctrl-C, how long (ms) requests in flight may take before the server exits anyway
    #[arg(long, default_value_t = 5000)]
    grace_ms: u64,
    /// Append a JSON line per request to this file (- for stdout)
    #[arg(long)]
    log: Option<PathBuf>,
    /// Predictions in the drift window (and in the reference window when no reference is given)
    #[arg(long, default_value_t = 1000)]
    drift_window: usize,
    /// A drift reference (fool-drift/1, e.g. saved from GET /v2/models/NAME/drift); default: the
    /// first --drift-window predictions
    #[arg(long)]
    drift_reference: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// Print the start-up line as JSON
    #[arg(long)]
    json: bool,
    /// No notes on stderr
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(a: ServeArgs) -> Result<ExitCode> {
    let spec = a.model.spec()?;
    if a.model.model.is_none() && !spec.path.exists() {
        return Err(fool::Error::bad_file(
            &spec.path,
            "default model not found; run scripts/setup/setup.sh or pass --model PATH",
        )
        .into());
    }
    let token = match &a.token_file {
        None => None,
        Some(p) => {
            let t = fool::files::read_regular_to_string(p, "a token file")?
                .trim()
                .to_string();
            if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(
                    fool::Error::bad_file(p, "expected one token (no spaces) on one line").into(),
                );
            }
            Some(t)
        }
    };
    let drift_reference = match &a.drift_reference {
        None => None,
        Some(p) => Some((
            p.display().to_string(),
            fool::files::read_regular_to_string(p, "a drift reference (JSON)")?,
        )),
    };
    let settings = Settings {
        spec: spec.clone(),
        name: a.name.clone(),
        defense: a.defense.clone(),
        detector: a.detector.clone(),
        stateful: a.stateful.then_some(StatefulChoice {
            k: a.stateful_k,
            threshold: a.stateful_threshold,
            memory: a.stateful_memory,
        }),
        threads: a.threads,
    };
    settings.check()?;
    if let Some(log) = a.log.as_ref().filter(|p| p.as_os_str() != "-") {
        // The log is appended to: never to a file the server reads.
        let inputs: Vec<&std::path::Path> = [
            Some(&spec.path),
            a.model.labels.as_ref(),
            a.detector.as_ref(),
            a.token_file.as_ref(),
            a.drift_reference.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|p| p.as_path())
        .collect();
        fool::files::refuse_overwrite(log, &inputs, "log")?;
    }
    if a.reject_flagged && a.detector.is_none() && !a.stateful {
        return Err(fool::Error::field(
            "reject_flagged",
            "needs a detector: --detector FILE and/or --stateful",
        )
        .into());
    }
    let images = fool::serve::images(&spec)?;
    let cfg = fool_serve::Config {
        host: a.host.clone(),
        port: a.port,
        batching: fool_serve::batch::Limits {
            max_batch: a.max_batch,
            max_delay: Duration::from_millis(a.max_delay_ms),
            queue: a.queue,
        },
        timeout: Duration::from_millis(a.timeout_ms),
        max_body: a.max_body_mib.saturating_mul(1 << 20),
        limits: fool_serve::protocol::Limits {
            max_images: a.max_batch_request,
            max_pixels: fool::imageio::decode_limits().0,
        },
        token,
        reject_flagged: a.reject_flagged,
        top_k: a.top_k,
        drift_window: a.drift_window,
        drift_reference,
        log: a.log.as_ref().map(|p| {
            if p.as_os_str() == "-" {
                fool_serve::LogTarget::Stdout
            } else {
                fool_serve::LogTarget::File(p.clone())
            }
        }),
        version: env!("CARGO_PKG_VERSION").into(),
        grace: Duration::from_millis(a.grace_ms),
    };
    let (json, quiet) = (a.json, a.quiet);
    let stopped = fool_serve::serve(
        cfg,
        Arc::new(images),
        fool::serve::factory(settings),
        move |addr, info| {
            // Not println!: a server whose stdout is closed keeps serving.
            let mut out = std::io::stdout().lock();
            let url = format!("http://{addr}");
            if json {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::json!({"url": url, "model": info.name, "path": info.path,
                        "classes": info.classes, "size": info.size, "device": info.device,
                        "defense": info.defense, "detector": info.detector.as_ref().map(|d| &d.0),
                        "stateful": info.stateful.is_some()})
                );
            } else {
                let _ = writeln!(
                    out,
                    "fool serve: model '{}' ({}, {} classes, {}×{} input, {}) at {url}",
                    info.name, info.path, info.classes, info.size, info.size, info.device
                );
                if !quiet {
                    eprintln!(
                        "fool serve: try `curl -s --data-binary @assets/dog.png {url}/predictions/{}`; \
                         metrics at {url}/metrics; Ctrl-C or SIGTERM stops it after answering what is in flight",
                        info.name
                    );
                }
            }
            let _ = out.flush();
        },
    )
    .map_err(|e| match e {
        fool_serve::Error::Setting { field, msg } => anyhow::Error::from(fool::Error::field(&field, msg)),
        other => anyhow::anyhow!("{other}"),
    })?;
    if !quiet {
        eprintln!("fool serve: stopped ({})", stopped.address);
    }
    Ok(ExitCode::SUCCESS)
}

/// What a client of a server needs: `fool loadtest` and `fool probe`.
#[derive(Args, Debug)]
pub struct ClientArgs {
    /// A bearer token file (the server's --token-file)
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Allow a target that is not this machine
    #[arg(long)]
    allow_remote: bool,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// No progress bar
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args, Debug)]
pub struct LoadtestArgs {
    /// The endpoint, e.g. http://127.0.0.1:8080/predictions/model (loopback only unless --allow-remote)
    url: String,
    /// The request body: a file sent with every request (an image for /predictions, JSON for /v2 or /invocations)
    #[arg(long)]
    body: PathBuf,
    /// Content-Type [default: application/json for .json files, else application/octet-stream]
    #[arg(long)]
    content_type: Option<String>,
    /// HTTP method
    #[arg(long, default_value = "POST")]
    method: String,
    /// Clients sending at once
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Requests in all
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Stop sending after this many seconds
    #[arg(long, default_value_t = 300)]
    max_seconds: u64,
    /// Per-request timeout, ms
    #[arg(long, default_value_t = 60_000)]
    timeout_ms: u64,
    #[command(flatten)]
    client: ClientArgs,
}

pub fn loadtest(a: LoadtestArgs) -> Result<ExitCode> {
    fool::files::check_regular(&a.body, "a request body file")?;
    let body = std::fs::read(&a.body).map_err(|e| fool::Error::io(&a.body, e))?;
    let content_type = a.content_type.clone().unwrap_or_else(|| {
        if a.body.extension().is_some_and(|e| e == "json") {
            "application/json".into()
        } else {
            "application/octet-stream".into()
        }
    });
    let mut headers = Vec::new();
    if let Some(p) = &a.client.token_file {
        let t = fool::files::read_regular_to_string(p, "a token file")?;
        headers.push(("authorization".to_string(), format!("Bearer {}", t.trim())));
    }
    if a.concurrency == 0 {
        return Err(fool::Error::field("concurrency", "must be at least 1").into());
    }
    if a.requests == 0 {
        return Err(fool::Error::field("requests", "must be at least 1").into());
    }
    let plan = fool_serve::load::Plan {
        url: a.url.clone(),
        method: a.method.clone(),
        body,
        content_type,
        headers,
        concurrency: a.concurrency,
        requests: a.requests,
        max_duration: Duration::from_secs(a.max_seconds),
        timeout: Duration::from_millis(a.timeout_ms),
        allow_remote: a.client.allow_remote,
    };
    let bar = super::progress_bar(a.requests as u64, a.client.quiet || a.client.json);
    let b2 = bar.clone();
    let report = fool_serve::load::run(&plan, Arc::new(move |d| b2.set_position(d as u64)))
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.url))
        .context("loadtest")?;
    bar.finish_and_clear();
    if a.client.json {
        print_json(&report)?;
    } else {
        println!(
            "{} requests to {} from {} clients in {:.2} s: {} ok, {} errors ({})",
            report.sent,
            report.url,
            report.concurrency,
            report.seconds,
            report.ok,
            report.errors,
            report
                .statuses
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "throughput {:.1} req/s; latency p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            report.throughput, report.p50_ms, report.p95_ms, report.p99_ms, report.max_ms
        );
        println!(
            "answers: {} lost, {} answered twice, {} with another request's id",
            report.lost, report.duplicates, report.mismatched_ids
        );
    }
    let clean = report.lost == 0 && report.duplicates == 0 && report.mismatched_ids == 0;
    Ok(
        if clean && report.errors == 0 && report.sent == report.requests {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(super::EXIT_ERROR)
        },
    )
}

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// The server, e.g. http://127.0.0.1:8080 (loopback only unless --allow-remote)
    url: String,
    /// Images to attack (each is first sent once as it is: benign traffic)
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// The model's name on the server
    #[arg(long, default_value = "model")]
    name: String,
    /// L∞ budget in pixel space, 4/255 or 0.0157
    #[arg(long, default_value = "4/255", value_parser = fool::attacks::parse_eps)]
    eps: f64,
    /// Square's query budget per image
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Seeds the attack's random squares
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    client: ClientArgs,
}

pub fn probe(a: ProbeArgs) -> Result<ExitCode> {
    let token = match &a.client.token_file {
        Some(p) => Some(
            fool::files::read_regular_to_string(p, "a token file")?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    for p in &a.images {
        fool::files::check_regular(p, "an image file")?;
    }
    let settings = fool::serve::probe::Settings {
        url: a.url.clone(),
        model: a.name.clone(),
        token,
        allow_remote: a.client.allow_remote,
        eps: a.eps,
        queries: a.queries,
        seed: a.seed,
    };
    let bar = super::progress_bar(a.images.len() as u64, a.client.quiet || a.client.json);
    let r =
        fool::serve::probe::probe(&settings, &a.images, &mut |i, _| bar.set_position(i as u64))?;
    bar.finish_and_clear();
    if a.client.json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Square attack (L∞ eps {:.4}, ≤ {} queries) on '{}' at {} — server detectors: {}",
        r.eps,
        r.max_queries,
        r.model,
        r.url,
        match (r.stateful, r.squeezing) {
            (true, true) => "stateful + feature squeezing",
            (true, false) => "stateful",
            (false, true) => "feature squeezing",
            (false, false) => "none",
        }
    );
    println!(
        "{:<40} {:>6} {:>6} {:>8} {:>8} {:>10} {:>6}",
        "image", "clean", "adv", "success", "queries", "first flag", "flags"
    );
    for i in &r.images {
        let name = std::path::Path::new(&i.image)
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        println!(
            "{:<40} {:>6} {:>6} {:>8} {:>8} {:>10} {:>6}",
            name,
            i.clean_class,
            i.adversarial_class,
            if i.success { "yes" } else { "no" },
            i.queries,
            i.first_flag.map_or("-".to_string(), |f| f.to_string()),
            i.flags
        );
    }
    println!(
        "success {:.1}%  detected {:.1}%  undetected success {:.1}%  median first flag {}  clean queries flagged {}/{}",
        100.0 * r.success_rate,
        100.0 * r.detection_rate,
        100.0 * r.undetected_success_rate,
        r.median_first_flag.map_or("-".to_string(), |m| format!("{m:.0}")),
        r.clean_flagged,
        r.images.len()
    );
    Ok(ExitCode::SUCCESS)
}
