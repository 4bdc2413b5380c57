//! Cutting a run's params, tags and metrics into `runs/log-batch` requests within MLflow's
//! limits, and the paths of the artifact proxy.
use super::collect::Metric;

/// MLflow's limits on one `runs/log-batch` request.
pub const MAX_METRICS: usize = 1000;
pub const MAX_PARAMS: usize = 100;
pub const MAX_TAGS: usize = 100;
pub const MAX_ENTITIES: usize = 1000;
/// The request body's limit is 1 MB; batches stay under this estimate of their JSON size.
pub const MAX_BATCH_BYTES: usize = 900_000;

/// One `runs/log-batch` request's entities.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub metrics: Vec<(Metric, i64)>,
    pub params: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
}

impl Batch {
    fn len(&self) -> usize {
        self.metrics.len() + self.params.len() + self.tags.len()
    }
}

/// Cut params, tags and metrics (with their timestamps), in that order, into as few
/// `runs/log-batch` requests as MLflow's limits allow: at most [`MAX_METRICS`] metrics,
/// [`MAX_PARAMS`] params, [`MAX_TAGS`] tags and [`MAX_ENTITIES`] in all per request, and about
/// [`MAX_BATCH_BYTES`] of JSON.
pub fn batches(
    params: &[(String, String)],
    tags: &[(String, String)],
    metrics: &[(Metric, i64)],
) -> Vec<Batch> {
    let mut out: Vec<Batch> = vec![];
    let mut cur = Batch::default();
    let mut bytes = 0;
    // (kind, size): 0 param, 1 tag, 2 metric.
    let items = params
        .iter()
        .map(|(k, v)| (0, k.len() + v.len() + 32))
        .chain(tags.iter().map(|(k, v)| (1, k.len() + v.len() + 32)))
        .chain(metrics.iter().map(|(m, _)| (2, m.key.len() + 96)));
    let (mut p, mut t, mut m) = (0, 0, 0);
    for (kind, size) in items {
        let full = match kind {
            0 => cur.params.len() >= MAX_PARAMS,
            1 => cur.tags.len() >= MAX_TAGS,
            _ => cur.metrics.len() >= MAX_METRICS,
        };
        if full || cur.len() >= MAX_ENTITIES || (cur.len() > 0 && bytes + size > MAX_BATCH_BYTES) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += size;
        match kind {
            0 => {
                cur.params.push(params[p].clone());
                p += 1;
            }
            1 => {
                cur.tags.push(tags[t].clone());
                t += 1;
            }
            _ => {
                cur.metrics.push(metrics[m].clone());
                m += 1;
            }
        }
    }
    if cur.len() > 0 {
        out.push(cur);
    }
    out
}

/// Percent-encode `s` for a URL path (keeping `/` when `slash`) or query value.
pub fn encode(s: &str, slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The path under the artifact proxy of a run's `artifact_uri` (`mlflow-artifacts:/1/RUN/artifacts`
/// or `mlflow-artifacts://HOST:PORT/1/RUN/artifacts` → `1/RUN/artifacts`); None when the server
/// does not proxy the run's artifacts (another scheme: a path, s3://, …).
pub fn artifact_root(artifact_uri: &str) -> Option<String> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
    let rest = match rest.strip_prefix("//") {
        Some(r) => r.split_once('/').map_or("", |(_, p)| p),
        None => rest,
    };
    Some(rest.trim_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(i: usize) -> (Metric, i64) {
        let m = Metric {
            key: format!("m{}", i % 7),
            value: i as f64,
            step: i as i64,
            offset_ms: 0,
        };
        (m, 1)
    }

    #[test]
    fn batches_stay_within_mlflows_limits_and_keep_everything_in_order() {
        let params: Vec<_> = (0..150)
            .map(|i| (format!("p{i}"), "v".to_string()))
            .collect();
        let tags: Vec<_> = (0..5).map(|i| (format!("t{i}"), "v".to_string())).collect();
        let metrics: Vec<_> = (0..2500).map(metric).collect();
        let b = batches(&params, &tags, &metrics);
        for x in &b {
            assert!(
                x.metrics.len() <= MAX_METRICS,
                "{} metrics",
                x.metrics.len()
            );
            assert!(x.params.len() <= MAX_PARAMS, "{} params", x.params.len());
            assert!(x.tags.len() <= MAX_TAGS);
            assert!(x.len() <= MAX_ENTITIES && x.len() > 0);
        }
        let all_params: Vec<_> = b.iter().flat_map(|x| x.params.clone()).collect();
        let all_tags: Vec<_> = b.iter().flat_map(|x| x.tags.clone()).collect();
        let all_metrics: Vec<_> = b.iter().flat_map(|x| x.metrics.clone()).collect();
        assert_eq!((all_params, all_tags, all_metrics), (params, tags, metrics));
        // 100 params; 50 params + 5 tags + 945 metrics; 1000 metrics; 555 metrics.
        assert_eq!(b.len(), 4);
        assert_eq!(b[1].len(), MAX_ENTITIES);
        assert!(batches(&[], &[], &[]).is_empty());
    }

    #[test]
    fn large_values_split_by_size() {
        let params: Vec<_> = (0..100)
            .map(|i| (format!("p{i}"), "x".repeat(6000)))
            .collect();
        let tags: Vec<_> = (0..100)
            .map(|i| (format!("t{i}"), "y".repeat(8000)))
            .collect();
        let b = batches(&params, &tags, &[]);
        for x in &b {
            let size: usize = x
                .params
                .iter()
                .chain(&x.tags)
                .map(|(k, v)| k.len() + v.len() + 32)
                .sum();
            assert!(size <= MAX_BATCH_BYTES, "{size} bytes");
        }
        assert_eq!(b.iter().map(Batch::len).sum::<usize>(), 200);
    }

    #[test]
    fn artifact_roots_and_encoding() {
        assert_eq!(
            artifact_root("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            artifact_root("mlflow-artifacts://127.0.0.1:5000/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(artifact_root("/srv/mlruns/1/abc/artifacts"), None);
        assert_eq!(artifact_root("s3://bucket/1/abc"), None);
        assert_eq!(encode("a b/c.png", false), "a%20b%2Fc.png");
        assert_eq!(encode("1/abc/artifacts", true), "1/abc/artifacts");
        assert_eq!(encode("é", false), "%C3%A9");
    }
}
