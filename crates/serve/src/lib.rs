//! The HTTP side of `fool serve`, with no knowledge of torch: the model comes in as an
//! [`Images`] (request bodies → pixels) and a [`Factory`] that builds the [`Predictor`] on the
//! one model worker thread.
//!
//! - [`protocol`]: the Open Inference Protocol's tensors (KServe v2 REST + Triton's binary
//!   extension) and MLflow's `{"inputs": …}`;
//! - [`batch`]: the bounded queue and the dynamic-batching worker;
//! - [`metrics`]: the Prometheus registry; [`drift`]: predicted-class drift;
//! - `app`: routes, token, logs; [`load`]: the load generator behind `fool loadtest`.
pub mod batch;
pub mod client;
pub mod drift;
pub mod load;
pub mod metrics;
pub mod model;
pub mod protocol;

mod app;

pub use model::{Factory, Images, InputError, ModelInfo, Predictor, Verdict};

use std::future::IntoFuture;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why the server could not start or run. Messages name the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: {msg}")]
    Setting { field: String, msg: String },
    #[error("model: {0}")]
    Model(String),
    #[error("{0}")]
    Io(String),
}

fn setting(field: &str, msg: impl Into<String>) -> Error {
    Error::Setting {
        field: field.into(),
        msg: msg.into(),
    }
}

/// Where request logs go.
pub enum LogTarget {
    Stdout,
    File(std::path::PathBuf),
}

/// How to serve.
pub struct Config {
    pub host: String,
    pub port: u16,
    pub batching: batch::Limits,
    pub timeout: Duration,
    pub max_body: usize,
    pub limits: protocol::Limits,
    pub token: Option<String>,
    pub reject_flagged: bool,
    pub top_k: usize,
    pub drift_window: usize,
    /// A `fool-drift/1` file's text (and its path, for errors).
    pub drift_reference: Option<(String, String)>,
    pub log: Option<LogTarget>,
    pub version: String,
    /// After SIGTERM / Ctrl-C, how long requests in flight may take before the server exits anyway.
    pub grace: Duration,
}

/// What a finished server reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stopped {
    pub address: String,
    pub model_load_seconds: f64,
}

/// Load the model (on its worker thread), listen, call `ready` with the address and the model,
/// and serve until SIGTERM or Ctrl-C (or `stop` resolves); then stop accepting, answer what is in
/// flight and return.
pub fn serve(
    cfg: Config,
    images: Arc<dyn Images>,
    factory: Factory,
    ready: impl FnOnce(SocketAddr, &ModelInfo),
) -> Result<Stopped, Error> {
    if cfg.batching.max_batch == 0 {
        return Err(setting("max_batch", "must be at least 1"));
    }
    if cfg.batching.queue == 0 {
        return Err(setting("queue", "must be at least 1"));
    }
    if cfg.timeout.is_zero() {
        return Err(setting("timeout_ms", "must be at least 1"));
    }
    if cfg.top_k == 0 {
        return Err(setting("top_k", "must be at least 1"));
    }
    if cfg.limits.max_images == 0 {
        return Err(setting("max_batch_request", "must be at least 1"));
    }
    let log: Option<Mutex<Box<dyn Write + Send>>> = match &cfg.log {
        None => None,
        Some(LogTarget::Stdout) => Some(Mutex::new(Box::new(std::io::stdout()))),
        Some(LogTarget::File(p)) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| setting("log", format!("{}: {e}", p.display())))?;
            Some(Mutex::new(Box::new(std::io::LineWriter::new(f))))
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fool-http")
        .build()
        .map_err(|e| Error::Io(format!("cannot start the async runtime: {e}")))?;
    // Bind before loading the model: a taken port is reported at once.
    let addrs: Vec<SocketAddr> = rt
        .block_on(tokio::net::lookup_host((cfg.host.as_str(), cfg.port)))
        .map_err(|e| {
            setting(
                "host",
                format!("'{}' is not an address this machine has: {e}", cfg.host),
            )
        })?
        .collect();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addrs.as_slice()))
        .map_err(|e| {
            let field = if e.kind() == std::io::ErrorKind::AddrInUse {
                "port"
            } else {
                "host"
            };
            setting(
                field,
                format!("cannot listen on {}:{}: {e}", cfg.host, cfg.port),
            )
        })?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::Io(e.to_string()))?;
    let metrics = Arc::new(metrics::Metrics::new());
    let (queue, worker, loaded) = batch::start(factory, cfg.batching, metrics.clone());
    let (info, load_secs) = match loaded.recv() {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return Err(Error::Model(e)),
        Err(_) => {
            return Err(Error::Model(
                "the model worker stopped while loading".into(),
            ))
        }
    };
    metrics.model_load_seconds.set(load_secs);
    let reference = match &cfg.drift_reference {
        None => None,
        Some((path, text)) => Some(
            drift::Summary::parse(text, info.classes)
                .map_err(|e| setting("drift_reference", format!("{path}: {e}")))?,
        ),
    };
    let state = Arc::new(app::AppState {
        drift: Mutex::new(drift::Drift::new(info.classes, cfg.drift_window, reference)),
        info,
        images,
        queue: Mutex::new(Some(queue)),
        metrics,
        log,
        token: cfg.token.clone(),
        shutting_down: AtomicBool::new(false),
        timeout: cfg.timeout,
        max_body: cfg.max_body,
        limits: cfg.limits,
        reject_flagged: cfg.reject_flagged,
        top_k: cfg.top_k,
        version: cfg.version.clone(),
    });
    ready(address, &state.info);
    let app = app::router(state.clone());
    let st = state.clone();
    let grace = cfg.grace;
    let result = rt.block_on(async move {
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown_signal().await;
            st.shutting_down.store(true, Ordering::SeqCst);
            let _ = stopping_tx.send(());
        });
        let mut server = tokio::spawn(server.into_future());
        tokio::select! {
            r = &mut server => r,
            _ = stopping_rx => {
                // Stop accepting, let what is in flight finish — but not forever: a client stalled
                // in the middle of its body must not keep the server alive.
                match tokio::time::timeout(grace, &mut server).await {
                    Ok(r) => r,
                    Err(_) => {
                        server.abort();
                        Ok(Ok(()))
                    }
                }
            }
        }
    });
    let result = match result {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(e.to_string())),
    };
    // Every handler has answered: close the queue and let the worker finish.
    if let Ok(mut q) = state.queue.lock() {
        q.take();
    }
    drop(state);
    let _ = worker.join();
    rt.shutdown_timeout(Duration::from_secs(1));
    result.map_err(|e| Error::Io(format!("server error: {e}")))?;
    Ok(Stopped {
        address: address.to_string(),
        model_load_seconds: load_secs,
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
