//! The Open Inference Protocol's tensors (KServe v2 REST, with Triton's binary tensor data
//! extension) and MLflow's `{"inputs": …}`: parsing a request into model-ready pixels, and the
//! response. Every refusal is an [`InputError`] naming the field at fault.
use crate::model::{Images, InputError, ModelInfo, Verdict};
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Numbers of a `data` field, nested or flat, flattened in row-major order.
#[derive(Debug, Default)]
struct Flat(Vec<f64>);

impl<'de> Deserialize<'de> for Flat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Flat, D::Error> {
        let mut v = Vec::new();
        d.deserialize_any(FlatVisitor(&mut v))?;
        Ok(Flat(v))
    }
}

struct FlatVisitor<'a>(&'a mut Vec<f64>);

impl<'de> Visitor<'de> for FlatVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("numbers, or (nested) arrays of numbers")
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.0.push(v);
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.0.push(v as f64);
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.0.push(v as f64);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(FlatSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

struct FlatSeed<'a>(&'a mut Vec<f64>);

impl<'de> DeserializeSeed<'de> for FlatSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(FlatVisitor(self.0))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    data: Option<Flat>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<RawInput>,
    outputs: Option<Vec<RawOutput>>,
}

/// An input tensor's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    U8(Vec<u8>),
}

/// One input tensor, checked: shape and data agree.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Data,
}

/// An output the client asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Requested {
    pub name: String,
    pub binary: bool,
}

/// A parsed inference request.
#[derive(Debug)]
pub struct Request {
    pub id: Option<String>,
    pub input: Tensor,
    /// None: the default outputs.
    pub outputs: Option<Vec<Requested>>,
    /// Request parameter `binary_data_output`.
    pub binary_output: bool,
    pub top_k: usize,
}

/// Limits a request is checked against before any image is decoded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Images per request.
    pub max_images: usize,
    /// Pixels (width × height) per image.
    pub max_pixels: u64,
}

const DTYPES: &str =
    "FP32 (the normalized model input, [N,3,S,S]) or UINT8 (8-bit RGB images, [N,H,W,3])";

/// Parse a KServe v2 infer body. `header_len`: the `Inference-Header-Content-Length` header, when
/// the body carries binary tensors after its JSON.
pub fn parse_infer(
    body: &[u8],
    header_len: Option<&str>,
    default_top_k: usize,
) -> Result<Request, InputError> {
    let (json_part, mut binary) = match header_len {
        None => (body, &[][..]),
        Some(h) => {
            let n: usize = h.trim().parse().map_err(|_| {
                InputError::bad(format!(
                    "header Inference-Header-Content-Length: '{h}' is not a byte count"
                ))
            })?;
            if n > body.len() {
                return Err(InputError::bad(format!(
                    "header Inference-Header-Content-Length: {n} is longer than the body ({} bytes)",
                    body.len()
                )));
            }
            body.split_at(n)
        }
    };
    let raw: RawRequest = serde_json::from_slice(json_part).map_err(|e| {
        InputError::bad(format!("request body: not a valid inference request: {e}"))
    })?;
    if raw.inputs.len() != 1 {
        return Err(InputError::bad(format!(
            "inputs: expected exactly one input tensor, got {}",
            raw.inputs.len()
        )));
    }
    let top_k = match raw.parameters.get("top_k") {
        None => default_top_k,
        Some(v) => v
            .as_u64()
            .filter(|&k| k >= 1)
            .ok_or_else(|| InputError::bad("parameters.top_k: expected a whole number ≥ 1"))?
            as usize,
    };
    let binary_output = match raw.parameters.get("binary_data_output") {
        None => false,
        Some(v) => v.as_bool().ok_or_else(|| {
            InputError::bad("parameters.binary_data_output: expected true or false")
        })?,
    };
    let input = raw.inputs.into_iter().next().expect("one input");
    let field = format!("inputs[0] '{}'", input.name);
    let mut shape = Vec::with_capacity(input.shape.len());
    for &d in &input.shape {
        if d < 1 {
            return Err(InputError::bad(format!(
                "{field}: shape {:?} has a dimension below 1",
                input.shape
            )));
        }
        shape.push(d as usize);
    }
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let count = count.ok_or_else(|| {
        InputError::too_large(format!("{field}: shape {:?} is too large", input.shape))
    })?;
    let binary_size = match input.parameters.get("binary_data_size") {
        None => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            InputError::bad(format!(
                "{field}: parameters.binary_data_size: expected a byte count"
            ))
        })? as usize),
    };
    let data = match (input.datatype.as_str(), binary_size, input.data) {
        (_, Some(_), Some(_)) => {
            return Err(InputError::bad(format!(
                "{field}: has both data and binary_data_size; give one"
            )))
        }
        (_, None, None) => return Err(InputError::bad(format!("{field}: no data"))),
        ("FP32", Some(b), None) => {
            let bytes = take(&mut binary, b, &field)?;
            if b != count * 4 {
                return Err(InputError::bad(format!(
                    "{field}: shape {shape:?} holds {count} FP32 values ({} bytes) but binary_data_size is {b}",
                    count * 4
                )));
            }
            Data::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        }
        ("UINT8", Some(b), None) => {
            let bytes = take(&mut binary, b, &field)?;
            if b != count {
                return Err(InputError::bad(format!(
                    "{field}: shape {shape:?} holds {count} UINT8 values but binary_data_size is {b}"
                )));
            }
            Data::U8(bytes.to_vec())
        }
        ("FP32", None, Some(Flat(v))) => {
            check_count(&field, &shape, count, v.len())?;
            Data::F32(v.into_iter().map(|x| x as f32).collect())
        }
        ("UINT8", None, Some(Flat(v))) => {
            check_count(&field, &shape, count, v.len())?;
            Data::U8(to_bytes(&field, &v)?)
        }
        (other, _, _) => {
            return Err(InputError::bad(format!(
                "{field}: datatype '{other}' is not supported; expected {DTYPES}"
            )))
        }
    };
    if !binary.is_empty() {
        return Err(InputError::bad(format!(
            "request body: {} bytes after the tensors' binary data",
            binary.len()
        )));
    }
    let outputs = raw.outputs.map(|outs| {
        outs.into_iter()
            .map(|o| Requested {
                binary: o
                    .parameters
                    .get("binary_data")
                    .and_then(Value::as_bool)
                    .unwrap_or(binary_output),
                name: o.name,
            })
            .collect()
    });
    Ok(Request {
        id: raw.id,
        input: Tensor {
            name: input.name,
            shape,
            data,
        },
        outputs,
        binary_output,
        top_k,
    })
}

fn take<'a>(binary: &mut &'a [u8], n: usize, field: &str) -> Result<&'a [u8], InputError> {
    if n > binary.len() {
        return Err(InputError::bad(format!(
            "{field}: binary_data_size {n} but only {} bytes of binary data remain (truncated body?)",
            binary.len()
        )));
    }
    let (a, b) = binary.split_at(n);
    *binary = b;
    Ok(a)
}

fn check_count(field: &str, shape: &[usize], count: usize, got: usize) -> Result<(), InputError> {
    if count != got {
        return Err(InputError::bad(format!(
            "{field}: shape {shape:?} holds {count} values but data has {got}"
        )));
    }
    Ok(())
}

fn to_bytes(field: &str, v: &[f64]) -> Result<Vec<u8>, InputError> {
    v.iter()
        .map(|&x| {
            if x.fract() == 0.0 && (0.0..=255.0).contains(&x) {
                Ok(x as u8)
            } else {
                Err(InputError::bad(format!(
                    "{field}: UINT8 data must be whole numbers 0..255, found {x}"
                )))
            }
        })
        .collect()
}

/// MLflow's scoring body: `{"inputs": T}` or `{"instances": T}` (T nested arrays, or an object with
/// one named tensor). 4-D `[N,3,S,S]` (or 3-D `[3,S,S]`) are normalized floats; `[N,H,W,3]` (or
/// `[H,W,3]`) are 8-bit images.
pub fn parse_invocations(body: &[u8], info: &ModelInfo) -> Result<Tensor, InputError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| InputError::bad(format!("request body: not valid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| InputError::bad("request body: expected a JSON object {\"inputs\": …}"))?;
    let (key, t) = ["inputs", "instances"]
        .iter()
        .find_map(|k| obj.get(*k).map(|t| (*k, t)))
        .ok_or_else(|| {
            InputError::bad(
                "request body: expected {\"inputs\": …} or {\"instances\": …} (dataframe formats are not accepted for images)",
            )
        })?;
    let t = match t {
        Value::Object(m) if m.len() == 1 => m.values().next().expect("one"),
        Value::Object(m) => {
            return Err(InputError::bad(format!(
                "{key}: expected one tensor, got {} named ones",
                m.len()
            )))
        }
        other => other,
    };
    let mut shape = Vec::new();
    let mut cur = t;
    while let Value::Array(a) = cur {
        shape.push(a.len());
        match a.first() {
            Some(x) => cur = x,
            None => return Err(InputError::bad(format!("{key}: an empty array"))),
        }
    }
    let count: usize = shape.iter().product();
    let mut flat = Vec::with_capacity(count);
    flatten(t, &shape, &mut flat).map_err(|e| InputError::bad(format!("{key}: {e}")))?;
    let s = info.size as usize;
    let image_like = matches!(shape.as_slice(), [_, _, _, 3] | [_, _, 3]);
    let model_like = matches!(shape.as_slice(), [_, 3, a, b] | [3, a, b] if *a == s && *b == s);
    let data = if model_like {
        Data::F32(flat.iter().map(|&x| x as f32).collect())
    } else if image_like {
        Data::U8(to_bytes(key, &flat)?)
    } else {
        return Err(InputError::bad(format!(
            "{key}: shape {shape:?}; expected [N,3,{s},{s}] normalized floats or [N,H,W,3] 8-bit images"
        )));
    };
    Ok(Tensor {
        name: key.into(),
        shape,
        data,
    })
}

fn flatten(v: &Value, shape: &[usize], out: &mut Vec<f64>) -> Result<(), String> {
    match (v, shape) {
        (Value::Array(a), [n, rest @ ..]) => {
            if a.len() != *n {
                return Err(format!(
                    "ragged array: a row of {} where {} expected",
                    a.len(),
                    n
                ));
            }
            for x in a {
                flatten(x, rest, out)?;
            }
            Ok(())
        }
        (Value::Number(x), []) => {
            out.push(x.as_f64().unwrap_or(f64::NAN));
            Ok(())
        }
        (Value::Array(_), []) => Err("ragged array: deeper than its first element".into()),
        (other, _) => Err(format!("expected numbers in nested arrays, found {other}")),
    }
}

/// The tensor as `n` model-ready pixel images: FP32 normalized input is mapped back to pixels
/// (x·std + mean); UINT8 images are resized and cropped by `images`.
pub fn to_pixels(
    t: &Tensor,
    info: &ModelInfo,
    images: &dyn Images,
    limits: Limits,
) -> Result<(Vec<f32>, usize), InputError> {
    let s = info.size as usize;
    let field = format!("input '{}'", t.name);
    match &t.data {
        Data::F32(v) => {
            let n = match t.shape.as_slice() {
                [n, 3, a, b] if *a == s && *b == s => *n,
                [3, a, b] if *a == s && *b == s => 1,
                _ => {
                    return Err(InputError::bad(format!(
                    "{field}: FP32 shape {:?}; expected [N,3,{s},{s}] (the normalized model input)",
                    t.shape
                )))
                }
            };
            check_images(&field, n, limits)?;
            if let Some(x) = v.iter().find(|x| !x.is_finite()) {
                return Err(InputError::bad(format!("{field}: non-finite value {x}")));
            }
            let plane = s * s;
            let mut out = v.clone();
            for (i, x) in out.iter_mut().enumerate() {
                let c = (i / plane) % 3;
                *x = *x * info.std[c] + info.mean[c];
            }
            Ok((out, n))
        }
        Data::U8(v) => {
            let (n, h, w) = match t.shape.as_slice() {
                [n, h, w, 3] => (*n, *h, *w),
                [h, w, 3] => (1, *h, *w),
                _ => {
                    return Err(InputError::bad(format!(
                        "{field}: UINT8 shape {:?}; expected [N,H,W,3] (8-bit RGB images, channels last)",
                        t.shape
                    )))
                }
            };
            check_images(&field, n, limits)?;
            if (h as u64).saturating_mul(w as u64) > limits.max_pixels {
                return Err(InputError::too_large(format!(
                    "{field}: {w}×{h} images, over the limit of {} pixels",
                    limits.max_pixels
                )));
            }
            let per = h * w * 3;
            let mut out = Vec::with_capacity(n * 3 * s * s);
            for k in 0..n {
                out.extend(images.rgb8_pixels(w as u32, h as u32, &v[k * per..(k + 1) * per])?);
            }
            Ok((out, n))
        }
    }
}

fn check_images(field: &str, n: usize, limits: Limits) -> Result<(), InputError> {
    if n > limits.max_images {
        return Err(InputError::too_large(format!(
            "{field}: {n} images in one request, over the limit of {}",
            limits.max_images
        )));
    }
    Ok(())
}

/// The outputs a model offers: (name, datatype, per-image shape: None = [N], Some(C) = [N, C]).
pub fn outputs_offered(info: &ModelInfo) -> Vec<(&'static str, &'static str, Option<usize>)> {
    let mut v = vec![
        ("probabilities", "FP32", Some(info.classes)),
        ("label", "INT64", None),
        ("logits", "FP32", Some(info.classes)),
    ];
    if info.detector.is_some() {
        v.push(("detector_score", "FP32", None));
        v.push(("flagged", "BOOL", None));
    }
    if info.stateful.is_some() {
        v.push(("stateful_distance", "FP32", None));
        v.push(("stateful_flagged", "BOOL", None));
    }
    v
}

/// Check the requested output names before anything runs.
pub fn check_outputs(req: &Request, info: &ModelInfo) -> Result<(), InputError> {
    let offered = outputs_offered(info);
    for o in req.outputs.iter().flatten() {
        if !offered.iter().any(|(n, _, _)| *n == o.name) {
            let names: Vec<&str> = offered.iter().map(|(n, _, _)| *n).collect();
            return Err(InputError::bad(format!(
                "outputs: unknown output '{}'; this model offers {}",
                o.name,
                names.join(", ")
            )));
        }
    }
    Ok(())
}

/// One output's values: floats, integers or booleans.
enum Values {
    F32(Vec<f32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

fn output_values(name: &str, v: &[Verdict]) -> Values {
    match name {
        "probabilities" => Values::F32(v.iter().flat_map(|x| x.probs.iter().copied()).collect()),
        "logits" => Values::F32(v.iter().flat_map(|x| x.logits.iter().copied()).collect()),
        "label" => Values::I64(v.iter().map(|x| x.top().0 as i64).collect()),
        "detector_score" => Values::F32(
            v.iter()
                .map(|x| x.detector.map_or(f32::NAN, |d| d.0))
                .collect(),
        ),
        "flagged" => Values::Bool(v.iter().map(|x| x.detector.is_some_and(|d| d.1)).collect()),
        // -1 until the memory holds k queries.
        "stateful_distance" => Values::F32(
            v.iter()
                .map(|x| x.stateful.and_then(|s| s.0).unwrap_or(-1.0))
                .collect(),
        ),
        "stateful_flagged" => {
            Values::Bool(v.iter().map(|x| x.stateful.is_some_and(|s| s.1)).collect())
        }
        _ => Values::Bool(Vec::new()),
    }
}

/// The top-k list of each image, `[{index, label, prob}]`.
pub fn top_k_json(v: &Verdict, k: usize, info: &ModelInfo) -> Value {
    Value::Array(
        v.top_k(k)
            .into_iter()
            .map(|(i, p)| json!({"index": i, "label": info.labels.get(i).cloned().unwrap_or_default(), "prob": p}))
            .collect(),
    )
}

/// The infer response: body bytes and, when outputs are binary, the JSON part's length for the
/// `Inference-Header-Content-Length` header.
pub fn infer_response(
    req: &Request,
    info: &ModelInfo,
    verdicts: &[Verdict],
) -> (Vec<u8>, Option<usize>) {
    let n = verdicts.len();
    let wanted: Vec<Requested> = match &req.outputs {
        Some(o) => o.clone(),
        None => outputs_offered(info)
            .into_iter()
            .filter(|(name, _, _)| *name != "logits")
            .map(|(name, _, _)| Requested {
                name: name.into(),
                binary: req.binary_output,
            })
            .collect(),
    };
    let offered = outputs_offered(info);
    let mut outputs = Vec::new();
    let mut binary = Vec::new();
    for w in &wanted {
        let Some(&(name, dtype, per)) = offered.iter().find(|(n, _, _)| *n == w.name) else {
            continue;
        };
        let shape: Vec<usize> = match per {
            Some(c) => vec![n, c],
            None => vec![n],
        };
        let values = output_values(name, verdicts);
        let mut o = json!({"name": name, "datatype": dtype, "shape": shape});
        if w.binary {
            let before = binary.len();
            match values {
                Values::F32(v) => v
                    .iter()
                    .for_each(|x| binary.extend_from_slice(&x.to_le_bytes())),
                Values::I64(v) => v
                    .iter()
                    .for_each(|x| binary.extend_from_slice(&x.to_le_bytes())),
                Values::Bool(v) => v.iter().for_each(|&x| binary.push(x as u8)),
            }
            o["parameters"] = json!({"binary_data_size": binary.len() - before});
        } else {
            o["data"] = match values {
                Values::F32(v) => json!(v),
                Values::I64(v) => json!(v),
                Values::Bool(v) => json!(v),
            };
        }
        outputs.push(o);
    }
    let tops: Vec<Value> = verdicts
        .iter()
        .map(|v| top_k_json(v, req.top_k, info))
        .collect();
    let mut params = json!({"top_k": Value::Array(tops).to_string()});
    if let [v] = verdicts {
        let (i, p) = v.top();
        params["label"] = json!(info.labels.get(i).cloned().unwrap_or_default());
        params["confidence"] = json!(p);
        if let Some((s, f)) = v.detector {
            params["detector_score"] = json!(s);
            params["flagged"] = json!(f);
        }
        if let Some((d, f)) = v.stateful {
            params["stateful_distance"] = json!(d.unwrap_or(-1.0));
            params["stateful_flagged"] = json!(f);
        }
    }
    let mut body = json!({
        "model_name": info.name,
        "model_version": "1",
        "outputs": outputs,
        "parameters": params,
    });
    if let Some(id) = &req.id {
        body["id"] = json!(id);
    }
    let mut bytes = serde_json::to_vec(&body).expect("JSON");
    if binary.is_empty() && !wanted.iter().any(|w| w.binary) {
        return (bytes, None);
    }
    let header = bytes.len();
    bytes.extend_from_slice(&binary);
    (bytes, Some(header))
}

/// Model metadata (`GET /v2/models/{name}`).
pub fn model_metadata(info: &ModelInfo) -> Value {
    let s = info.size;
    json!({
        "name": info.name,
        "versions": ["1"],
        "platform": "pytorch_torchscript",
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [-1, 3, s, s]},
            {"name": "image", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}
        ],
        "outputs": outputs_offered(info).into_iter().map(|(name, dtype, per)| {
            let shape: Vec<i64> = match per { Some(c) => vec![-1, c as i64], None => vec![-1] };
            json!({"name": name, "datatype": dtype, "shape": shape})
        }).collect::<Vec<_>>(),
        "parameters": metadata_parameters(info),
    })
}

/// The model's extras in its metadata: only set values (the protocol's parameters are scalars;
/// fool's arrays and objects are extras that clients ignore).
fn metadata_parameters(info: &ModelInfo) -> Value {
    let mut p = json!({
        "path": info.path,
        "classes": info.classes,
        "mean": info.mean,
        "std": info.std,
        "device": info.device,
    });
    if let Some(d) = &info.defense {
        p["defense"] = json!(d);
    }
    if let Some(d) = &info.detector {
        p["detector"] = json!({"name": d.0, "threshold": d.1});
    }
    if let Some(s) = info.stateful {
        p["stateful"] = json!({"k": s.0, "threshold": s.1});
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ModelInfo {
        ModelInfo {
            name: "m".into(),
            path: "m.pt".into(),
            size: 2,
            classes: 3,
            labels: vec!["a".into(), "b".into(), "c".into()],
            mean: [0.5, 0.5, 0.5],
            std: [0.25, 0.25, 0.25],
            defense: None,
            detector: Some(("fs".into(), 0.5)),
            stateful: None,
            device: "cpu".into(),
        }
    }

    struct Echo;
    impl Images for Echo {
        fn decode(&self, _: &[u8]) -> Result<Vec<f32>, InputError> {
            Err(InputError::unsupported("no"))
        }
        fn rgb8_pixels(&self, w: u32, h: u32, data: &[u8]) -> Result<Vec<f32>, InputError> {
            assert_eq!((w, h), (2, 2));
            // HWC → CHW in [0,1].
            let mut out = vec![0.0; 12];
            for (i, &b) in data.iter().enumerate() {
                out[(i % 3) * 4 + i / 3] = b as f32 / 255.0;
            }
            Ok(out)
        }
    }

    const LIMITS: Limits = Limits {
        max_images: 4,
        max_pixels: 100,
    };

    #[test]
    fn json_and_binary_inputs_give_the_same_tensor() {
        let json_body = br#"{"id":"x","inputs":[{"name":"i","shape":[1,2,2,3],"datatype":"UINT8","data":[[[[0,1,2],[3,4,5]],[[6,7,8],[9,10,11]]]]}]}"#;
        let a = parse_infer(json_body, None, 5).unwrap();
        let header = br#"{"inputs":[{"name":"i","shape":[1,2,2,3],"datatype":"UINT8","parameters":{"binary_data_size":12}}]}"#;
        let mut bin = header.to_vec();
        bin.extend(0u8..12);
        let b = parse_infer(&bin, Some(&header.len().to_string()), 5).unwrap();
        assert_eq!(a.input.data, b.input.data);
        assert_eq!(a.id.as_deref(), Some("x"));
        let (px, n) = to_pixels(&a.input, &info(), &Echo, LIMITS).unwrap();
        assert_eq!(n, 1);
        // Channel 0 (R) holds bytes 0, 3, 6, 9.
        assert_eq!(&px[..4], &[0.0, 3.0 / 255.0, 6.0 / 255.0, 9.0 / 255.0]);
    }

    #[test]
    fn fp32_input_is_mapped_back_to_pixels() {
        let body = br#"{"inputs":[{"name":"x","shape":[3,2,2],"datatype":"FP32","data":[0,0,0,0,1,1,1,1,-2,-2,-2,-2]}]}"#;
        let r = parse_infer(body, None, 5).unwrap();
        let (px, n) = to_pixels(&r.input, &info(), &Echo, LIMITS).unwrap();
        assert_eq!(n, 1);
        assert_eq!(px[0], 0.5);
        assert_eq!(px[4], 0.75);
        assert_eq!(px[8], 0.0);
    }

    #[test]
    fn bad_requests_name_the_problem() {
        let err = |body: &[u8], h: Option<&str>| {
            let r = parse_infer(body, h, 5).and_then(|r| {
                check_outputs(&r, &info())?;
                to_pixels(&r.input, &info(), &Echo, LIMITS).map(|_| ())
            });
            r.unwrap_err()
        };
        let e = err(b"{", None);
        assert!(
            e.msg.contains("not a valid inference request") && e.status == 400,
            "{e}"
        );
        let e = err(br#"{"inputs":[]}"#, None);
        assert!(e.msg.contains("exactly one input"), "{e}");
        let e = err(
            br#"{"inputs":[{"name":"i","shape":[1,2,2,3],"datatype":"INT64","data":[1]}]}"#,
            None,
        );
        assert!(e.msg.contains("datatype 'INT64' is not supported"), "{e}");
        let e = err(
            br#"{"inputs":[{"name":"i","shape":[1,2,2,3],"datatype":"UINT8","data":[1,2]}]}"#,
            None,
        );
        assert!(e.msg.contains("holds 12 values but data has 2"), "{e}");
        let e = err(
            br#"{"inputs":[{"name":"i","shape":[1,1,1,3],"datatype":"UINT8","data":[1,2,256]}]}"#,
            None,
        );
        assert!(e.msg.contains("0..255"), "{e}");
        let e = err(
            br#"{"inputs":[{"name":"i","shape":[1,1,1,4],"datatype":"UINT8","data":[1,2,3,4]}]}"#,
            None,
        );
        assert!(e.msg.contains("UINT8 shape [1, 1, 1, 4]"), "{e}");
        let e = err(br#"{"inputs":[{"name":"i","shape":[5,1,1,3],"datatype":"UINT8","data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}"#, None);
        assert!(e.status == 413 && e.msg.contains("5 images"), "{e}");
        let short = br#"{"inputs":[{"name":"i","shape":[1,20,20,3],"datatype":"UINT8","parameters":{"binary_data_size":1200}}]}"#;
        let e = err(short, Some(&short.len().to_string()));
        assert!(e.msg.contains("binary_data_size 1200"), "{e}");
        let e = err(br#"{}"#, Some("1000"));
        assert!(e.msg.contains("Inference-Header-Content-Length"), "{e}");
        let e = err(br#"{"inputs":[{"name":"i","shape":[1,1,1,3],"datatype":"UINT8","data":[1,2,3]}],"outputs":[{"name":"nope"}]}"#, None);
        assert!(
            e.msg.contains("unknown output 'nope'") && e.msg.contains("detector_score"),
            "{e}"
        );
        let mut nan = br#"{"inputs":[{"name":"i","shape":[1,3,2,2],"datatype":"FP32","parameters":{"binary_data_size":48}}]}"#.to_vec();
        let hl = nan.len().to_string();
        for k in 0..12 {
            nan.extend_from_slice(&(if k == 5 { f32::NAN } else { 0.0f32 }).to_le_bytes());
        }
        let e = err(&nan, Some(&hl));
        assert!(e.msg.contains("non-finite"), "{e}");
    }

    #[test]
    fn binary_outputs_follow_the_json_in_order() {
        let body = br#"{"inputs":[{"name":"i","shape":[1,1,1,3],"datatype":"UINT8","data":[1,2,3]}],"outputs":[{"name":"label","parameters":{"binary_data":true}},{"name":"probabilities","parameters":{"binary_data":true}},{"name":"flagged"}]}"#;
        let req = parse_infer(body, None, 2).unwrap();
        let v = Verdict {
            probs: vec![0.25, 0.5, 0.25],
            logits: vec![0.0, 1.0, 0.0],
            detector: Some((0.75, true)),
            stateful: None,
        };
        let (bytes, header) = infer_response(&req, &info(), std::slice::from_ref(&v));
        let h = header.expect("binary outputs");
        let j: Value = serde_json::from_slice(&bytes[..h]).unwrap();
        assert_eq!(j["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(j["outputs"][1]["parameters"]["binary_data_size"], 12);
        assert_eq!(j["outputs"][2]["data"], json!([true]));
        assert_eq!(j["parameters"]["label"], "b");
        assert_eq!(j["parameters"]["flagged"], true);
        let rest = &bytes[h..];
        assert_eq!(i64::from_le_bytes(rest[..8].try_into().unwrap()), 1);
        assert_eq!(f32::from_le_bytes(rest[12..16].try_into().unwrap()), 0.5);
        assert_eq!(rest.len(), 20);
        let tk: Value = serde_json::from_str(j["parameters"]["top_k"].as_str().unwrap()).unwrap();
        assert_eq!(tk[0][0]["index"], 1);
        assert_eq!(tk[0].as_array().unwrap().len(), 2);
    }

    #[test]
    fn mlflow_bodies_by_shape() {
        let i = info();
        let t = parse_invocations(
            br#"{"inputs":[[[[1,2,3],[4,5,6]],[[7,8,9],[10,11,12]]]]}"#,
            &i,
        )
        .unwrap();
        assert_eq!(t.shape, vec![1, 2, 2, 3]);
        assert!(matches!(t.data, Data::U8(_)));
        let t = parse_invocations(
            br#"{"instances":[[[0.1,0.2],[0.3,0.4]],[[0,0],[0,0]],[[0,0],[0,0]]]}"#,
            &i,
        )
        .unwrap();
        assert_eq!(t.shape, vec![3, 2, 2]);
        assert!(matches!(t.data, Data::F32(_)));
        let e = parse_invocations(br#"{"inputs":[[1,2],[3]]}"#, &i).unwrap_err();
        assert!(e.msg.contains("ragged"), "{e}");
        let e = parse_invocations(br#"{"dataframe_split":{}}"#, &i).unwrap_err();
        assert!(e.msg.contains("\"inputs\""), "{e}");
    }
}
