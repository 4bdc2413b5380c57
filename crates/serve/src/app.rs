//! The HTTP application: routes, the token check, per-request metrics and logs, and the
//! handlers of the protocol endpoints and the adapters.
use crate::batch::{Done, Job, Queue, Refused};
use crate::drift::Drift;
use crate::metrics::{ClassLabels, DetectorLabels, EndpointLabels, Metrics, RequestLabels};
use crate::model::{Images, InputError, ModelInfo, Verdict};
use crate::protocol::{self, Limits};
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything the handlers share.
pub struct AppState {
    pub info: ModelInfo,
    pub images: Arc<dyn Images>,
    pub queue: Mutex<Option<Queue>>,
    pub metrics: Arc<Metrics>,
    pub drift: Mutex<Drift>,
    pub log: Option<Mutex<Box<dyn Write + Send>>>,
    pub token: Option<String>,
    pub shutting_down: AtomicBool,
    pub timeout: Duration,
    pub max_body: usize,
    pub limits: Limits,
    pub reject_flagged: bool,
    pub top_k: usize,
    pub version: String,
}

type St = Arc<AppState>;

/// An error answer: `{"error": msg, …extra}`.
pub struct ApiError {
    status: StatusCode,
    msg: String,
    extra: Option<Value>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            msg: msg.into(),
            extra: None,
            retry_after: None,
        }
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> ApiError {
        ApiError::new(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            e.msg,
        )
    }
}

/// What a handler tells the request log and metrics about its answer.
#[derive(Clone, Default)]
struct LogInfo(Value);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.msg});
        if let Some(Value::Object(m)) = &self.extra {
            for (k, v) in m {
                body[k] = v.clone();
            }
        }
        let mut r = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r.extensions_mut()
            .insert(LogInfo(json!({"error": self.msg})));
        r
    }
}

pub fn router(st: St) -> Router {
    let protected = Router::new()
        .route("/v2/models/{name}/infer", post(v2_infer))
        .route("/v2/models/{name}/versions/{v}/infer", post(v2_infer_v))
        .route("/v2/models/{name}/drift", get(drift_window))
        .route("/predictions/{name}", post(predictions).put(predictions))
        .route("/invocations", post(invocations))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(st.clone(), auth));
    let open = Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/versions/{v}", get(model_metadata_v))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/versions/{v}/ready", get(model_ready_v))
        .route("/v2/models/{name}/config", get(model_config))
        .route("/v2/models/{name}/versions/{v}/config", get(model_config_v))
        .route("/ping", get(ping));
    protected
        .merge(open)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(st.clone(), observe))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(st)
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error while answering this request (the server goes on)",
    )
    .into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no endpoint {} {}; see /v2, /v2/models/{{name}}, /predictions/{{name}}, /invocations, /metrics",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Bearer token on inference and metrics, compared in constant time.
async fn auth(State(st): State<St>, req: Request, next: Next) -> Response {
    if let Some(token) = &st.token {
        // The scheme is case-insensitive (RFC 9110 §11.1), the token is not.
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token: send 'Authorization: Bearer <token>' (the server's --token-file)",
            )
            .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= (x ^ y) as usize;
    }
    diff == 0
}

/// Counts a request in flight for as long as it lives.
struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    fn new(m: &'a Metrics) -> InFlight<'a> {
        m.in_flight.inc();
        InFlight(m)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// Metrics and the log line of every request; echoes `X-Request-Id`.
async fn observe(State(st): State<St>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let rid = req.headers().get("x-request-id").cloned();
    // A guard, not inc/dec around the await: a client that hangs up drops this future.
    let _in_flight = InFlight::new(&st.metrics);
    let t = Instant::now();
    let mut resp = next.run(req).await;
    let secs = t.elapsed().as_secs_f64();
    let code = resp.status().as_u16();
    st.metrics
        .requests
        .get_or_create(&RequestLabels {
            endpoint: endpoint.clone(),
            code: code.to_string(),
        })
        .inc();
    st.metrics
        .request_seconds
        .get_or_create(&EndpointLabels {
            endpoint: endpoint.clone(),
        })
        .observe(secs);
    if let Some(r) = &rid {
        resp.headers_mut().insert("x-request-id", r.clone());
    }
    if let Some(log) = &st.log {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut line = json!({
            "ts": ts, "method": method, "path": path, "endpoint": endpoint,
            "status": code, "ms": secs * 1e3,
        });
        if let Some(r) = rid.as_ref().and_then(|r| r.to_str().ok()) {
            line["request_id"] = json!(r);
        }
        if let Some(LogInfo(Value::Object(m))) = resp.extensions().get::<LogInfo>() {
            for (k, v) in m {
                line[k] = v.clone();
            }
        }
        if let Ok(mut w) = log.lock() {
            let _ = writeln!(w, "{line}");
            let _ = w.flush();
        }
    }
    resp
}

async fn live() -> Json<Value> {
    Json(json!({"live": true}))
}

async fn ping() -> Json<Value> {
    Json(json!({"status": "Healthy"}))
}

async fn ready(State(st): State<St>) -> Response {
    if st.shutting_down.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "error": "shutting down"})),
        )
            .into_response();
    }
    Json(json!({"ready": true})).into_response()
}

async fn server_metadata(State(st): State<St>) -> Json<Value> {
    Json(json!({
        "name": "fool",
        "version": st.version,
        "extensions": ["binary_tensor_data", "fool"],
    }))
}

fn check_model(st: &AppState, name: &str) -> Result<(), ApiError> {
    if name != st.info.name {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "unknown model '{name}'; this server serves '{}'",
                st.info.name
            ),
        ));
    }
    Ok(())
}

fn check_version(v: &str) -> Result<(), ApiError> {
    if v != "1" {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown model version '{v}'; the only version is 1"),
        ));
    }
    Ok(())
}

async fn model_metadata(
    State(st): State<St>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_model(&st, &name)?;
    Ok(Json(protocol::model_metadata(&st.info)))
}

async fn model_metadata_v(
    State(st): State<St>,
    Path((name, v)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    check_version(&v)?;
    model_metadata(State(st), Path(name)).await
}

async fn model_ready(State(st): State<St>, Path(name): Path<String>) -> Result<Response, ApiError> {
    check_model(&st, &name)?;
    let r = !st.shutting_down.load(Ordering::SeqCst);
    let code = if r {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((code, Json(json!({"name": name, "ready": r}))).into_response())
}

async fn model_ready_v(
    State(st): State<St>,
    Path((name, v)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_version(&v)?;
    model_ready(State(st), Path(name)).await
}

async fn model_config(
    State(st): State<St>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_model(&st, &name)?;
    let s = st.info.size as i64;
    Ok(Json(json!({
        "name": st.info.name,
        "platform": "pytorch_torchscript",
        "max_batch_size": st.limits.max_images,
        "input": [{"name": "input", "data_type": "TYPE_FP32", "dims": [3, s, s]},
                  {"name": "image", "data_type": "TYPE_UINT8", "dims": [-1, -1, 3]}],
        "output": protocol::outputs_offered(&st.info).into_iter().map(|(n, d, per)| json!({
            "name": n,
            "data_type": format!("TYPE_{d}"),
            "dims": per.map_or(vec![1], |c| vec![c]),
        })).collect::<Vec<_>>(),
        "dynamic_batching": {},
    })))
}

async fn model_config_v(
    State(st): State<St>,
    Path((name, v)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    check_version(&v)?;
    model_config(State(st), Path(name)).await
}

/// The body, within `--max-body-mib`: 413 over it, 400 when the client stops sending early.
async fn read_body(st: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body over the limit of {} bytes (--max-body-mib)",
                st.max_body
            ),
        )
    };
    if let Some(n) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if n > st.max_body as u64 {
            return Err(too_large());
        }
    }
    let read = tokio::time::timeout(st.timeout, axum::body::to_bytes(body, st.max_body)).await;
    let Ok(read) = read else {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not received within {} ms (--timeout-ms)",
                st.timeout.as_millis()
            ),
        ));
    };
    match read {
        Ok(b) => Ok(b),
        Err(e) => {
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = src {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Err(too_large());
                }
                src = s.source();
            }
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("request body could not be read in full (truncated?): {e}"),
            ))
        }
    }
}

/// Queue the pixels and wait for the model: 503 when the queue is full or closed, 504 after the
/// timeout, 500 when the model fails.
async fn run_model(st: &AppState, x: Vec<f32>, n: usize) -> Result<Done, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let queue = st.queue.lock().ok().and_then(|q| q.clone());
    let Some(queue) = queue else {
        return Err(unavailable("the server is shutting down"));
    };
    let submitted = queue.submit(Job {
        x,
        n,
        enqueued: Instant::now(),
        reply: tx,
    });
    // No sender may outlive the submission: shutdown closes the queue by dropping the last one.
    drop(queue);
    match submitted {
        Ok(()) => {}
        Err(Refused::Full) => {
            let mut e = unavailable("the request queue is full (--queue); retry later");
            e.retry_after = Some(1);
            return Err(e);
        }
        Err(Refused::Closed) => return Err(unavailable("the model worker has stopped")),
    }
    match tokio::time::timeout(st.timeout, rx).await {
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no answer within {} ms (--timeout-ms): the model is overloaded",
                st.timeout.as_millis()
            ),
        )),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the model worker stopped before answering",
        )),
        Ok(Ok(Err(e))) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the model failed on this batch: {e}"),
        )),
        Ok(Ok(Ok(done))) => Ok(done),
    }
}

fn unavailable(msg: &str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg)
}

/// Count the verdicts in the metrics and the drift window; refuse flagged inputs when asked.
fn account(st: &AppState, done: &Done) -> Result<LogInfo, ApiError> {
    let m = &st.metrics;
    let mut labels = Vec::new();
    let mut confs = Vec::new();
    let mut scores = Vec::new();
    let mut flagged = Vec::new();
    {
        let mut drift = st.drift.lock().unwrap_or_else(|p| p.into_inner());
        for v in &done.verdicts {
            let (i, p) = v.top();
            m.predictions
                .get_or_create(&ClassLabels {
                    class: i.to_string(),
                    label: st.info.labels.get(i).cloned().unwrap_or_default(),
                })
                .inc();
            m.confidence.observe(p as f64);
            drift.observe(i, p);
            if let Some((s, f)) = v.detector {
                m.detector_score.observe(s as f64);
                if f {
                    m.flagged
                        .get_or_create(&DetectorLabels {
                            detector: "squeeze".into(),
                        })
                        .inc();
                }
                scores.push(json!(s));
            }
            if v.stateful.is_some_and(|s| s.1) {
                m.flagged
                    .get_or_create(&DetectorLabels {
                        detector: "stateful".into(),
                    })
                    .inc();
            }
            labels.push(i);
            confs.push(p);
            flagged.push(v.flagged());
        }
    }
    let mut info = json!({
        "images": done.verdicts.len(), "classes": labels, "confidence": confs,
        "queue_ms": done.queued * 1e3, "compute_ms": done.compute * 1e3, "batch": done.batch,
    });
    if !scores.is_empty() {
        info["detector_score"] = json!(scores);
    }
    if st.info.detector.is_some() || st.info.stateful.is_some() {
        info["flagged"] = json!(flagged);
    }
    if st.reject_flagged {
        if let Some((k, v)) = done.verdicts.iter().enumerate().find(|(_, v)| v.flagged()) {
            m.rejected.inc();
            let mut e = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "input {k} flagged as adversarial ({}) and refused (--reject-flagged)",
                    why_flagged(v)
                ),
            );
            e.extra = Some(json!({
                "detector_score": v.detector.map(|d| d.0),
                "stateful_distance": v.stateful.and_then(|s| s.0),
            }));
            return Err(e);
        }
    }
    Ok(LogInfo(info))
}

fn why_flagged(v: &Verdict) -> String {
    let mut why = Vec::new();
    if let Some((s, true)) = v.detector {
        why.push(format!(
            "feature-squeezing score {s:.4} above the threshold"
        ));
    }
    if let Some((d, true)) = v.stateful {
        why.push(format!(
            "k-NN distance {:.4} to recent queries below the threshold",
            d.unwrap_or(-1.0)
        ));
    }
    why.join("; ")
}

async fn v2_infer(
    State(st): State<St>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_model(&st, &name)?;
    let bytes = read_body(&st, &headers, body).await?;
    let header_len = headers
        .get("inference-header-content-length")
        .map(|v| v.to_str().unwrap_or("?").to_string());
    let st2 = st.clone();
    let (req, x, n) = tokio::task::spawn_blocking(move || -> Result<_, InputError> {
        let req = protocol::parse_infer(&bytes, header_len.as_deref(), st2.top_k)?;
        protocol::check_outputs(&req, &st2.info)?;
        let (x, n) = protocol::to_pixels(&req.input, &st2.info, &*st2.images, st2.limits)?;
        Ok((req, x, n))
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "request parsing failed"))??;
    let done = run_model(&st, x, n).await?;
    let log = account(&st, &done)?;
    let (body, header_len) = protocol::infer_response(&req, &st.info, &done.verdicts);
    let mut r = Response::new(Body::from(body));
    match header_len {
        Some(h) => {
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r.headers_mut()
                .insert("inference-header-content-length", HeaderValue::from(h));
        }
        None => {
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    r.extensions_mut().insert(log);
    Ok(r)
}

async fn v2_infer_v(
    State(st): State<St>,
    Path((name, v)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_version(&v)?;
    v2_infer(State(st), Path(name), headers, body).await
}

/// One verdict as the adapters answer it.
fn verdict_json(st: &AppState, v: &Verdict, k: usize) -> Value {
    let (i, p) = v.top();
    let mut o = json!({
        "index": i,
        "label": st.info.labels.get(i).cloned().unwrap_or_default(),
        "confidence": p,
        "top_k": protocol::top_k_json(v, k, &st.info),
    });
    if let Some((s, f)) = v.detector {
        o["detector_score"] = json!(s);
        o["flagged"] = json!(f);
    }
    if let Some((d, f)) = v.stateful {
        o["stateful_distance"] = json!(d);
        o["stateful_flagged"] = json!(f);
    }
    o
}

async fn predictions(
    State(st): State<St>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_model(&st, &name)?;
    let bytes = read_body(&st, &headers, body).await?;
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "request body is empty; send an image file (curl --data-binary @dog.png)",
        ));
    }
    let images = st.images.clone();
    let x = tokio::task::spawn_blocking(move || images.decode(&bytes))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "image decoding failed"))??;
    let done = run_model(&st, x, 1).await?;
    let log = account(&st, &done)?;
    let mut o = verdict_json(&st, &done.verdicts[0], st.top_k);
    o["model"] = json!(st.info.name);
    let mut r = Json(o).into_response();
    r.extensions_mut().insert(log);
    Ok(r)
}

async fn invocations(
    State(st): State<St>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let media = ct.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type '{ct}' is not accepted; send application/json"),
            ));
        }
    }
    let bytes = read_body(&st, &headers, body).await?;
    let st2 = st.clone();
    let (x, n) = tokio::task::spawn_blocking(move || -> Result<_, InputError> {
        let t = protocol::parse_invocations(&bytes, &st2.info)?;
        protocol::to_pixels(&t, &st2.info, &*st2.images, st2.limits)
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "request parsing failed"))??;
    let done = run_model(&st, x, n).await?;
    let log = account(&st, &done)?;
    let preds: Vec<&Vec<f32>> = done.verdicts.iter().map(|v| &v.probs).collect();
    let fool: Vec<Value> = done
        .verdicts
        .iter()
        .map(|v| verdict_json(&st, v, st.top_k))
        .collect();
    let mut r = Json(json!({"predictions": preds, "fool": fool})).into_response();
    r.extensions_mut().insert(log);
    Ok(r)
}

async fn metrics(State(st): State<St>) -> Response {
    {
        let d = st.drift.lock().unwrap_or_else(|p| p.into_inner());
        st.metrics.window_predictions.set(d.len() as i64);
        st.metrics
            .window_confidence
            .set(d.mean_confidence().unwrap_or(0.0));
        if let Some(g) = d.gauges() {
            st.metrics.drift_psi.set(g.psi);
            st.metrics.drift_kl.set(g.kl);
            st.metrics.drift_confidence_shift.set(g.confidence_shift);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response()
}

async fn drift_window(
    State(st): State<St>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_model(&st, &name)?;
    let d = st.drift.lock().unwrap_or_else(|p| p.into_inner());
    Ok(Json(
        serde_json::to_value(d.current()).unwrap_or(Value::Null),
    ))
}
