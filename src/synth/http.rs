//! `--api http://HOST:PORT[/PREFIX]`: a remote generator (a diffusion model, a foundation-model
//! service, another simulator) behind a small JSON protocol.
//!
//! ```text
//! POST PREFIX/random     {"class": 3, "count": 500, "seed": 123, "shape": [C, H, W]}
//! POST PREFIX/variation  {"class": 3, "images": IMAGES, "states": [...], "iteration": 2,
//!                         "degree": 0.5 or null, "seed": 456, "shape": [C, H, W]}
//! answer (both)          {"images": IMAGES, "states": [...]}      (states optional)
//! IMAGES                 {"shape": [N, H, W, C], "data": "<base64 of N·H·W·C uint8, row-major>"}
//! ```
//!
//! `random` answers `count` images of the class; `variation` one image similar to each given
//! image (the i-th answer varies the i-th image), less different for later iterations
//! (`degree`, when `--variation-degrees` gives a schedule, else the generator's own schedule
//! for `iteration`). `states` are opaque per-image values (a latent, a prompt, simulator
//! parameters) that fool keeps with each image and sends back with it. Requests carry at most
//! `batch` images; a connection error, a timeout or a 5xx answer is retried with back-off, a
//! 4xx answer is not; answers with the wrong number or size of images, or bytes that are not
//! the protocol, are errors naming the URL.
use super::api::{Api, Population};
use crate::{Error, Result};
use base64::Engine;
use serde_json::{json, Value};
use std::time::Duration;
use tch::{Kind, Tensor};

/// How fool talks to the generator.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HttpOptions {
    /// Images per request at most.
    pub batch: usize,
    /// Seconds to wait for one answer.
    pub timeout: f64,
    /// Retries of a failed request (connection error, timeout, 5xx).
    pub retries: u32,
    /// Variation degree per iteration (1-based; the last repeats); empty: not sent.
    pub degrees: Vec<f64>,
    /// The image shape (C, H, W) the private data has.
    pub shape: [i64; 3],
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            batch: 1000,
            timeout: 120.0,
            retries: 3,
            degrees: vec![],
            shape: [1, 28, 28],
        }
    }
}

pub struct HttpApi {
    url: String,
    prefix: String,
    client: fool_serve::client::Client,
    opts: HttpOptions,
}

fn encode(images: &Tensor) -> Result<Value> {
    let s = images.size();
    let nhwc = images.permute([0, 2, 3, 1]).contiguous();
    let bytes = Vec::<u8>::try_from(nhwc.view([-1]))?;
    Ok(json!({"shape": [s[0], s[2], s[3], s[1]],
              "data": base64::engine::general_purpose::STANDARD.encode(bytes)}))
}

impl HttpApi {
    pub fn new(url: &str, opts: HttpOptions) -> Result<HttpApi> {
        let bad = |m: String| Error::field("api", m);
        if opts.batch == 0 {
            return Err(Error::field("api_batch", "must be at least 1"));
        }
        if !(opts.timeout > 0.0 && opts.timeout.is_finite()) {
            return Err(Error::field(
                "api_timeout",
                "must be a positive number of seconds",
            ));
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad(format!("'{url}': only http:// generators are supported")))?;
        let (auth, path) = rest.split_once('/').unwrap_or((rest, ""));
        if auth.is_empty() {
            return Err(bad(format!("'{url}': expected http://HOST:PORT[/PATH]")));
        }
        let prefix = if path.trim_matches('/').is_empty() {
            String::new()
        } else {
            format!("/{}", path.trim_matches('/'))
        };
        let client =
            fool_serve::client::Client::new(&format!("http://{auth}"), None, true).map_err(bad)?;
        Ok(HttpApi {
            url: url.to_string(),
            prefix,
            client,
            opts,
        })
    }

    fn decode(&self, what: &str, v: &Value, n: usize) -> Result<Population> {
        let fail =
            |m: String| Error::failed(&format!("generator {}", self.url), format!("{what}: {m}"));
        let [c, h, w] = self.opts.shape;
        let shape: Vec<i64> = v["images"]["shape"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        if shape != [n as i64, h, w, c] {
            return Err(fail(format!(
                "expected images of shape [{n}, {h}, {w}, {c}] (N, H, W, C), got {:?}",
                v["images"]["shape"]
            )));
        }
        let data = v["images"]["data"]
            .as_str()
            .ok_or_else(|| fail("images.data is not a base64 string".into()))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| fail(format!("images.data is not base64: {e}")))?;
        if bytes.len() as i64 != n as i64 * h * w * c {
            return Err(fail(format!(
                "images.data holds {} bytes, the shape needs {}",
                bytes.len(),
                n as i64 * h * w * c
            )));
        }
        let images = Tensor::from_slice(&bytes)
            .to_kind(Kind::Uint8)
            .view([n as i64, h, w, c])
            .permute([0, 3, 1, 2])
            .contiguous();
        let states = match &v["states"] {
            Value::Null => vec![Value::Null; n],
            Value::Array(a) if a.len() == n => a.clone(),
            o => {
                return Err(fail(format!(
                    "states must be a list of {n} values, got {}",
                    o.to_string().chars().take(80).collect::<String>()
                )))
            }
        };
        Ok(Population { images, states })
    }

    /// One request with retries; the parsed answer.
    fn call(&self, endpoint: &str, body: &Value, n: usize) -> Result<Population> {
        let path = format!("{}/{endpoint}", self.prefix);
        let timeout = Duration::from_secs_f64(self.opts.timeout);
        let mut last = String::new();
        for attempt in 0..=self.opts.retries {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(250 << (attempt - 1).min(5)));
            }
            match self.client.post_json(&path, body, timeout) {
                Err(e) => last = e,
                Ok((status, bytes)) if status >= 500 => {
                    last = format!("the generator answered {status}: {}", snippet(&bytes));
                }
                Ok((status, bytes)) if status != 200 => {
                    return Err(Error::failed(
                        &format!("generator {}/{endpoint}", self.url.trim_end_matches('/')),
                        format!("answered {status}: {}", snippet(&bytes)),
                    ));
                }
                Ok((_, bytes)) => {
                    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
                        Error::failed(
                            &format!("generator {}", self.url),
                            format!(
                                "{endpoint}: the answer is not JSON ({e}): {}",
                                snippet(&bytes)
                            ),
                        )
                    })?;
                    return self.decode(endpoint, &v, n);
                }
            }
        }
        Err(Error::failed(
            &format!("generator {}", self.url),
            format!("{endpoint}: {last} (after {} tries)", self.opts.retries + 1),
        ))
    }
}

fn snippet(b: &[u8]) -> String {
    String::from_utf8_lossy(b).chars().take(200).collect()
}

impl Api for HttpApi {
    fn describe(&self) -> Value {
        json!({"api": "http", "url": self.url, "options": self.opts})
    }

    fn random(&mut self, class: usize, count: usize, seed: u64) -> Result<Population> {
        let mut parts = vec![];
        let mut done = 0;
        let mut b = 0u64;
        while done < count {
            let m = self.opts.batch.min(count - done);
            let body = json!({"class": class, "count": m, "seed": seed.wrapping_add(b) & 0x1f_ffff_ffff_ffff,
                              "shape": self.opts.shape});
            parts.push(self.call("random", &body, m)?);
            done += m;
            b += 1;
        }
        if parts.is_empty() {
            let [c, h, w] = self.opts.shape;
            return Ok(Population {
                images: Tensor::zeros([0, c, h, w], (Kind::Uint8, tch::Device::Cpu)),
                states: vec![],
            });
        }
        Ok(Population::concat(&parts))
    }

    fn variation(
        &mut self,
        class: usize,
        parents: &Population,
        iteration: usize,
        seed: u64,
    ) -> Result<Population> {
        let degree = (!self.opts.degrees.is_empty())
            .then(|| self.opts.degrees[(iteration.max(1) - 1).min(self.opts.degrees.len() - 1)]);
        let mut parts = vec![];
        let n = parents.len();
        let mut start = 0;
        let mut b = 0u64;
        while start < n {
            let m = self.opts.batch.min(n - start);
            let rows: Vec<usize> = (start..start + m).collect();
            let chunk = parents.select(&rows);
            let body = json!({"class": class, "images": encode(&chunk.images)?, "states": chunk.states,
                              "iteration": iteration, "degree": degree,
                              "seed": seed.wrapping_add(b) & 0x1f_ffff_ffff_ffff, "shape": self.opts.shape});
            parts.push(self.call("variation", &body, m)?);
            start += m;
            b += 1;
        }
        if parts.is_empty() {
            return Ok(parents.select(&[]));
        }
        Ok(Population::concat(&parts))
    }
}
