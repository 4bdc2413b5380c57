//! A bounded load generator for an HTTP endpoint (behind `fool loadtest`): `concurrency`
//! clients send `requests` requests in all (each with its own `X-Request-Id`), within a time
//! limit, to loopback addresses unless told otherwise. It checks that every request got exactly
//! one answer carrying its own id, and reports throughput and latency percentiles.
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to send, how often, how many at once.
#[derive(Debug, Clone)]
pub struct Plan {
    pub url: String,
    pub method: String,
    pub body: Vec<u8>,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub concurrency: usize,
    pub requests: usize,
    /// Stop sending after this long (requests not sent are reported as not sent).
    pub max_duration: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    pub allow_remote: bool,
}

/// The outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub url: String,
    pub concurrency: usize,
    /// Requests planned.
    pub requests: usize,
    /// Requests sent (fewer than planned when the time limit ended the run).
    pub sent: usize,
    /// 2xx answers.
    pub ok: usize,
    /// Answers by status code, and `error` for requests that got no answer.
    pub statuses: BTreeMap<String, usize>,
    /// Non-2xx answers and failures.
    pub errors: usize,
    /// Answers whose X-Request-Id was not the request's (never expected).
    pub mismatched_ids: usize,
    /// Requests answered more than once, or not at all (never expected).
    pub duplicates: usize,
    pub lost: usize,
    pub seconds: f64,
    /// 2xx answers per second.
    pub throughput: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// The host of an `http://` URL and whether it is a loopback address.
pub fn check_url(url: &str, allow_remote: bool) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("'{url}' is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("'{url}': only http:// URLs are supported"));
    }
    let host = uri.host().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback && !allow_remote {
        return Err(format!(
            "'{host}' is not a loopback address; the load test only targets this machine unless --allow-remote is given"
        ));
    }
    Ok(uri)
}

/// The `q`-quantile (0..1) of sorted values, by linear interpolation (NumPy's default).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Run the plan; `progress(done)` after each answer.
pub fn run(plan: &Plan, progress: Arc<dyn Fn(usize) + Send + Sync>) -> Result<Report, String> {
    let uri = check_url(&plan.url, plan.allow_remote)?;
    if plan.concurrency == 0 || plan.requests == 0 {
        return Err("concurrency and requests must be at least 1".into());
    }
    let method: hyper::Method = plan
        .method
        .parse()
        .map_err(|_| format!("'{}' is not an HTTP method", plan.method))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(plan.concurrency)
            .build_http();
        let body = Bytes::from(plan.body.clone());
        let next = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(Mutex::new(vec![0u32; plan.requests]));
        let latencies = Arc::new(Mutex::new(Vec::with_capacity(plan.requests)));
        let statuses = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
        let mismatched = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let stop_at = start + plan.max_duration;
        let mut tasks = Vec::new();
        for _ in 0..plan.concurrency {
            let (client, body, next, answered, latencies, statuses, mismatched, done) = (
                client.clone(),
                body.clone(),
                next.clone(),
                answered.clone(),
                latencies.clone(),
                statuses.clone(),
                mismatched.clone(),
                done.clone(),
            );
            let (uri, method, plan) = (uri.clone(), method.clone(), plan.clone());
            let progress = progress.clone();
            tasks.push(async move {
                loop {
                    if Instant::now() >= stop_at {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= plan.requests {
                        break;
                    }
                    let mut b = hyper::Request::builder()
                        .method(method.clone())
                        .uri(uri.clone())
                        .header("x-request-id", i.to_string())
                        .header("content-type", plan.content_type.as_str());
                    for (k, v) in &plan.headers {
                        b = b.header(k.as_str(), v.as_str());
                    }
                    let req = b.body(Full::new(body.clone())).expect("request");
                    let t = Instant::now();
                    let outcome = tokio::time::timeout(plan.timeout, async {
                        let resp = client.request(req).await.map_err(|e| e.to_string())?;
                        let status = resp.status().as_u16();
                        let id = resp
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<usize>().ok());
                        resp.into_body()
                            .collect()
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok::<_, String>((status, id))
                    })
                    .await;
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    let key = match outcome {
                        Ok(Ok((status, id))) => {
                            if id != Some(i) {
                                mismatched.fetch_add(1, Ordering::SeqCst);
                            }
                            if let Some(j) = id.filter(|&j| j < plan.requests) {
                                answered.lock().expect("lock")[j] += 1;
                            }
                            if (200..300).contains(&status) {
                                latencies.lock().expect("lock").push(ms);
                            }
                            status.to_string()
                        }
                        Ok(Err(_)) => "error".to_string(),
                        Err(_) => "timeout".to_string(),
                    };
                    *statuses.lock().expect("lock").entry(key).or_default() += 1;
                    progress(done.fetch_add(1, Ordering::SeqCst) + 1);
                }
            });
        }
        futures_join(tasks).await;
        let seconds = start.elapsed().as_secs_f64();
        let sent = next.load(Ordering::SeqCst).min(plan.requests);
        let mut lat = latencies.lock().expect("lock").clone();
        lat.sort_by(f64::total_cmp);
        let statuses = statuses.lock().expect("lock").clone();
        let ok = lat.len();
        let total: usize = statuses.values().sum();
        let answered = answered.lock().expect("lock").clone();
        let duplicates = answered.iter().filter(|&&c| c > 1).count();
        // Sent but never answered (connection errors, timeouts).
        let got_status: usize = statuses
            .iter()
            .filter(|(k, _)| k.parse::<u16>().is_ok())
            .map(|(_, v)| v)
            .sum();
        let lost = sent - got_status.min(sent);
        Ok(Report {
            url: plan.url.clone(),
            concurrency: plan.concurrency,
            requests: plan.requests,
            sent,
            ok,
            errors: total - ok,
            statuses,
            mismatched_ids: mismatched.load(Ordering::SeqCst),
            duplicates,
            lost,
            seconds,
            throughput: ok as f64 / seconds.max(1e-9),
            p50_ms: percentile(&lat, 0.50),
            p95_ms: percentile(&lat, 0.95),
            p99_ms: percentile(&lat, 0.99),
            max_ms: lat.last().copied().unwrap_or(0.0),
            mean_ms: if lat.is_empty() {
                0.0
            } else {
                lat.iter().sum::<f64>() / lat.len() as f64
            },
        })
    })
}

/// Await all futures concurrently on the current task.
async fn futures_join<F: std::future::Future<Output = ()> + Send + 'static>(tasks: Vec<F>) {
    let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_as_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 2.5);
        assert!((percentile(&v, 0.95) - 3.85).abs() < 1e-12);
        assert_eq!(percentile(&v, 1.0), 4.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }

    #[test]
    fn only_loopback_unless_allowed() {
        assert!(check_url("http://127.0.0.1:8080/x", false).is_ok());
        assert!(check_url("http://localhost:1/x", false).is_ok());
        assert!(check_url("http://[::1]:1/x", false).is_ok());
        let e = check_url("http://10.0.0.1:8080/x", false).unwrap_err();
        assert!(e.contains("not a loopback"), "{e}");
        assert!(check_url("http://10.0.0.1:8080/x", true).is_ok());
        assert!(check_url("https://127.0.0.1/x", false)
            .unwrap_err()
            .contains("http://"));
    }
}
