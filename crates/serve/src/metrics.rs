//! The Prometheus metrics, in a registry owned by the app (no process-wide globals: two
//! servers in one process, as in the tests, keep their own counts). Names follow Prometheus'
//! conventions: `fool_` prefix, base units (`_seconds`, `_bytes`), counters end in `_total`.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    pub class: String,
    pub label: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DetectorLabels {
    pub detector: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~33 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: HistogramFamily<EndpointLabels>,
    pub queue_seconds: Histogram,
    pub compute_seconds: Histogram,
    pub batch_size: Histogram,
    pub in_flight: Gauge,
    pub queue_depth: Gauge,
    pub predictions: Family<ClassLabels, Counter>,
    pub confidence: Histogram,
    pub detector_score: Histogram,
    pub flagged: Family<DetectorLabels, Counter>,
    pub rejected: Counter,
    pub model_load_seconds: Gauge<f64, AtomicU64>,
    pub resident_memory: Gauge,
    pub drift_psi: Gauge<f64, AtomicU64>,
    pub drift_kl: Gauge<f64, AtomicU64>,
    pub drift_confidence_shift: Gauge<f64, AtomicU64>,
    pub window_confidence: Gauge<f64, AtomicU64>,
    pub window_predictions: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        r.register(
            "fool_requests",
            "HTTP requests answered, by endpoint (route) and status code",
            requests.clone(),
        );
        let request_seconds: HistogramFamily<EndpointLabels> =
            Family::new_with_constructor(latency_histogram);
        r.register_with_unit(
            "fool_request_duration",
            "Time from request to response, by endpoint",
            Unit::Seconds,
            request_seconds.clone(),
        );
        let queue_seconds = latency_histogram();
        r.register_with_unit(
            "fool_queue_duration",
            "Time a request's images waited in the queue before their batch started",
            Unit::Seconds,
            queue_seconds.clone(),
        );
        let compute_seconds = latency_histogram();
        r.register_with_unit(
            "fool_compute_duration",
            "Time of one batch on the model worker (defense, model, detectors)",
            Unit::Seconds,
            compute_seconds.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        r.register(
            "fool_batch_size",
            "Images per forward pass",
            batch_size.clone(),
        );
        let in_flight = Gauge::default();
        r.register(
            "fool_requests_in_flight",
            "Requests being answered now",
            in_flight.clone(),
        );
        let queue_depth = Gauge::default();
        r.register(
            "fool_queue_depth",
            "Requests waiting for the model worker",
            queue_depth.clone(),
        );
        let predictions = Family::<ClassLabels, Counter>::default();
        r.register(
            "fool_predictions",
            "Images classified, by predicted class",
            predictions.clone(),
        );
        let confidence = Histogram::new((1..=10).map(|i| i as f64 / 10.0));
        r.register(
            "fool_prediction_confidence",
            "Probability of the predicted class",
            confidence.clone(),
        );
        let detector_score =
            Histogram::new([0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0]);
        r.register(
            "fool_detector_score",
            "Feature-squeezing score (largest L1 distance between softmaxes, 0..2)",
            detector_score.clone(),
        );
        let flagged = Family::<DetectorLabels, Counter>::default();
        r.register(
            "fool_flagged",
            "Inputs flagged as adversarial, by detector (squeeze, stateful)",
            flagged.clone(),
        );
        let rejected = Counter::default();
        r.register(
            "fool_rejected",
            "Requests refused because an input was flagged (--reject-flagged)",
            rejected.clone(),
        );
        let model_load_seconds = Gauge::<f64, AtomicU64>::default();
        r.register_with_unit(
            "fool_model_load",
            "Time to load and probe the model",
            Unit::Seconds,
            model_load_seconds.clone(),
        );
        let resident_memory = Gauge::default();
        r.register_with_unit(
            "process_resident_memory",
            "Resident memory of the server process",
            Unit::Bytes,
            resident_memory.clone(),
        );
        let drift_psi = Gauge::<f64, AtomicU64>::default();
        r.register(
            "fool_drift_class_psi",
            "Population stability index of the predicted-class distribution: sliding window vs reference",
            drift_psi.clone(),
        );
        let drift_kl = Gauge::<f64, AtomicU64>::default();
        r.register(
            "fool_drift_class_kl",
            "KL divergence (nats) of the window's predicted-class distribution from the reference",
            drift_kl.clone(),
        );
        let drift_confidence_shift = Gauge::<f64, AtomicU64>::default();
        r.register(
            "fool_drift_confidence_shift",
            "Mean confidence of the window minus that of the reference",
            drift_confidence_shift.clone(),
        );
        let window_confidence = Gauge::<f64, AtomicU64>::default();
        r.register(
            "fool_window_mean_confidence",
            "Mean confidence over the sliding window",
            window_confidence.clone(),
        );
        let window_predictions = Gauge::default();
        r.register(
            "fool_window_predictions",
            "Predictions in the sliding window (drift gauges are 0 until it and the reference are full)",
            window_predictions.clone(),
        );
        Metrics {
            registry: r,
            requests,
            request_seconds,
            queue_seconds,
            compute_seconds,
            batch_size,
            in_flight,
            queue_depth,
            predictions,
            confidence,
            detector_score,
            flagged,
            rejected,
            model_load_seconds,
            resident_memory,
            drift_psi,
            drift_kl,
            drift_confidence_shift,
            window_confidence,
            window_predictions,
        }
    }

    /// The text exposition (OpenMetrics text, which Prometheus scrapes).
    pub fn encode(&self) -> String {
        if let Some(b) = resident_bytes() {
            self.resident_memory.set(b);
        }
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

/// Resident set size from /proc (Linux); None elsewhere.
fn resident_bytes() -> Option<i64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
