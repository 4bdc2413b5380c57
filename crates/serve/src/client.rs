//! A small blocking client of the Open Inference Protocol (what `fool probe` attacks a served
//! model through): model metadata, and inference on 8-bit images with Triton's binary tensor
//! extension both ways (no JSON number parsing of images or logits).
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One output tensor of an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    F32(Vec<f32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

/// An inference answer: outputs by name (with their shapes) and the response parameters.
#[derive(Debug, Clone)]
pub struct Answer {
    pub outputs: BTreeMap<String, (Vec<usize>, Output)>,
    pub parameters: Value,
}

pub struct Client {
    rt: tokio::runtime::Runtime,
    http: HyperClient<HttpConnector, Full<Bytes>>,
    base: String,
    token: Option<String>,
}

impl Client {
    /// `base`: `http://host:port` (loopback only unless `allow_remote`).
    pub fn new(base: &str, token: Option<String>, allow_remote: bool) -> Result<Client, String> {
        let base = base.trim_end_matches('/').to_string();
        crate::load::check_url(&format!("{base}/"), allow_remote)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let http = HyperClient::builder(TokioExecutor::new()).build_http();
        Ok(Client {
            rt,
            http,
            base,
            token,
        })
    }

    fn send(
        &self,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(u16, hyper::HeaderMap, Bytes), String> {
        self.send_within(method, path, headers, body, None)
    }

    /// [`Client::send`], giving up after `timeout` when one is given.
    fn send_within(
        &self,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
        timeout: Option<std::time::Duration>,
    ) -> Result<(u16, hyper::HeaderMap, Bytes), String> {
        let url = format!("{}{path}", self.base);
        let mut b = hyper::Request::builder().method(method).uri(&url);
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        if let Some(t) = &self.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = b
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("{url}: {e}"))?;
        let work = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| format!("{url}: {}", with_causes(&e)))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{url}: {}", with_causes(&e)))?
                .to_bytes();
            Ok((status, headers, body))
        };
        self.rt.block_on(async {
            match timeout {
                None => work.await,
                Some(t) => tokio::time::timeout(t, work).await.unwrap_or_else(|_| {
                    Err(format!("{url}: no answer within {:.1} s", t.as_secs_f64()))
                }),
            }
        })
    }

    fn error_of(status: u16, body: &[u8]) -> String {
        let msg = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
        format!("the server answered {status}: {msg}")
    }

    /// `POST {base}{path}` with a JSON body, waiting at most `timeout` for the whole answer:
    /// the status and the body (any status; the caller judges it). Errors are connection
    /// failures and timeouts.
    pub fn post_json(
        &self,
        path: &str,
        body: &Value,
        timeout: std::time::Duration,
    ) -> Result<(u16, Bytes), String> {
        let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        self.request("POST", path, Some("application/json"), bytes, timeout)
    }

    /// Any request: `method` (GET, POST, PUT, …) on `{base}{path}` (`path` starts with `/` and
    /// is already percent-encoded), with `body` sent as `content_type` when one is given,
    /// waiting at most `timeout` for the whole answer. The status and the body, whatever the
    /// status (the caller judges it); errors are connection failures, timeouts and a method or
    /// path that is not HTTP.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<(u16, Bytes), String> {
        let method = hyper::Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("'{method}' is not an HTTP method"))?;
        let headers: Vec<(&str, String)> = content_type
            .map(|c| ("content-type", c.to_string()))
            .into_iter()
            .collect();
        let (status, _, body) = self.send_within(method, path, &headers, body, Some(timeout))?;
        Ok((status, body))
    }

    /// `GET /v2/models/{model}`.
    pub fn metadata(&self, model: &str) -> Result<Value, String> {
        let (status, _, body) = self.send(
            hyper::Method::GET,
            &format!("/v2/models/{model}"),
            &[],
            Vec::new(),
        )?;
        if status != 200 {
            return Err(Self::error_of(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| format!("model metadata: {e}"))
    }

    /// Infer on `n` 8-bit RGB images (`data`: n×h×w×3 bytes, HWC), asking for `outputs` in binary.
    pub fn infer_u8(
        &self,
        model: &str,
        data: &[u8],
        shape: [usize; 4],
        outputs: &[&str],
    ) -> Result<Answer, String> {
        let header = json!({
            "inputs": [{"name": "image", "datatype": "UINT8", "shape": shape,
                        "parameters": {"binary_data_size": data.len()}}],
            "outputs": outputs.iter().map(|o| json!({"name": o, "parameters": {"binary_data": true}})).collect::<Vec<_>>(),
        });
        let mut body = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        let hlen = body.len();
        body.extend_from_slice(data);
        let (status, headers, bytes) = self.send(
            hyper::Method::POST,
            &format!("/v2/models/{model}/infer"),
            &[
                ("inference-header-content-length", hlen.to_string()),
                ("content-type", "application/octet-stream".into()),
            ],
            body,
        )?;
        if status != 200 {
            return Err(Self::error_of(status, &bytes));
        }
        parse_answer(&headers, &bytes)
    }
}

/// An error with its causes ("client error (Connect): tcp connect error: Connection refused
/// (os error 111)"): hyper's own message alone does not say what went wrong.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Parse an infer response, JSON or JSON + binary outputs.
pub fn parse_answer(headers: &hyper::HeaderMap, bytes: &[u8]) -> Result<Answer, String> {
    let hlen = match headers
        .get("inference-header-content-length")
        .and_then(|v| v.to_str().ok())
    {
        Some(h) => h
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= bytes.len())
            .ok_or_else(|| format!("bad Inference-Header-Content-Length '{h}'"))?,
        None => bytes.len(),
    };
    let v: Value = serde_json::from_slice(&bytes[..hlen]).map_err(|e| format!("answer: {e}"))?;
    let mut rest = &bytes[hlen..];
    let mut outputs = BTreeMap::new();
    for o in v["outputs"].as_array().cloned().unwrap_or_default() {
        let name = o["name"].as_str().unwrap_or("").to_string();
        let shape: Vec<usize> = o["shape"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_u64())
                    .map(|d| d as usize)
                    .collect()
            })
            .unwrap_or_default();
        let dtype = o["datatype"].as_str().unwrap_or("");
        let data = match o["parameters"]["binary_data_size"].as_u64() {
            Some(n) => {
                let n = n as usize;
                if n > rest.len() {
                    return Err(format!("output '{name}': binary data past the end"));
                }
                let (b, r) = rest.split_at(n);
                rest = r;
                match dtype {
                    "FP32" => Output::F32(
                        b.chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect(),
                    ),
                    "INT64" => Output::I64(
                        b.chunks_exact(8)
                            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                            .collect(),
                    ),
                    "BOOL" => Output::Bool(b.iter().map(|&x| x != 0).collect()),
                    d => return Err(format!("output '{name}': datatype {d} not understood")),
                }
            }
            None => {
                let a = o["data"].as_array().cloned().unwrap_or_default();
                match dtype {
                    "FP32" => Output::F32(
                        a.iter()
                            .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                            .collect(),
                    ),
                    "INT64" => Output::I64(a.iter().map(|x| x.as_i64().unwrap_or(-1)).collect()),
                    "BOOL" => {
                        Output::Bool(a.iter().map(|x| x.as_bool().unwrap_or(false)).collect())
                    }
                    d => return Err(format!("output '{name}': datatype {d} not understood")),
                }
            }
        };
        outputs.insert(name, (shape, data));
    }
    Ok(Answer {
        outputs,
        parameters: v["parameters"].clone(),
    })
}
