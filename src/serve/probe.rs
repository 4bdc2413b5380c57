//! `fool probe`: attack a *served* model through its HTTP API with a query-based black-box
//! attack (fool's Square attack), as an attacker who only has the endpoint would — and see
//! whether the server notices. Each image is first sent once as it is (benign traffic: how many
//! clean queries the server's stateful detector flags), then attacked untargeted away from the
//! server's own clean answer; every query is an 8-bit image (UINT8, exactly what would be saved),
//! so the server's answer on the final query is the verification.
use crate::attacks::{self, Budget, Goal, Victim};
use crate::preprocess::Preprocess;
use crate::{Error, Result};
use fool_serve::client::{Client, Output};
use std::cell::RefCell;
use std::path::PathBuf;
use tch::{Kind, Tensor};

/// How to probe.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `http://host:port`.
    pub url: String,
    pub model: String,
    pub token: Option<String>,
    pub allow_remote: bool,
    /// L∞ budget (pixel space, on the 8-bit grid).
    pub eps: f64,
    /// Square's query budget per image.
    pub queries: usize,
    pub seed: u64,
}

/// One image's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageProbe {
    pub image: String,
    /// The server's class for the clean image.
    pub clean_class: usize,
    /// Whether the clean query was flagged (a false positive).
    pub clean_flagged: bool,
    /// The server's class for the final adversarial image.
    pub adversarial_class: usize,
    /// The attack changed the server's answer.
    pub success: bool,
    /// Queries the attack sent (the final check included).
    pub queries: usize,
    /// The attack's first query the server flagged (1-based), if any.
    pub first_flag: Option<usize>,
    /// Attack queries flagged.
    pub flags: usize,
    /// Flagged before the attack succeeded (or at all, when it did not).
    pub detected_before_success: bool,
}

/// The whole probe.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub url: String,
    pub model: String,
    pub attack: String,
    pub eps: f64,
    pub max_queries: usize,
    /// Whether the server runs stateful detection / feature squeezing (from its metadata).
    pub stateful: bool,
    pub squeezing: bool,
    pub images: Vec<ImageProbe>,
    /// Fraction of attacks that changed the answer.
    pub success_rate: f64,
    /// Fraction of attacks flagged at least once.
    pub detection_rate: f64,
    /// Fraction of attacks that succeeded before any flag (undetected success).
    pub undetected_success_rate: f64,
    /// Median first flagged query among detected attacks.
    pub median_first_flag: Option<f64>,
    /// Clean queries flagged / sent.
    pub clean_flagged: usize,
}

/// The served model as a victim: each `logits` call is one inference request.
struct Remote<'a> {
    client: &'a Client,
    model: String,
    flag_outputs: Vec<&'static str>,
    /// Per call: any image flagged.
    log: RefCell<Vec<bool>>,
}

impl Remote<'_> {
    /// (logits (N,C) as a CPU tensor, per-image flagged) for pixel-space `x` on the 8-bit grid.
    fn query(&self, x: &Tensor) -> Result<(Tensor, Vec<bool>)> {
        let (n, _, h, w) = x.size4()?;
        let bytes: Vec<u8> = Vec::try_from(
            (x.to_device(tch::Device::Cpu) * 255.0)
                .round()
                .clamp(0.0, 255.0)
                .to_kind(Kind::Uint8)
                .permute([0, 2, 3, 1])
                .contiguous()
                .view([-1]),
        )?;
        let mut outputs = vec!["logits"];
        outputs.extend(self.flag_outputs.iter().copied());
        let a = self
            .client
            .infer_u8(
                &self.model,
                &bytes,
                [n as usize, h as usize, w as usize, 3],
                &outputs,
            )
            .map_err(|e| Error::failed("probe", e))?;
        let (shape, logits) = a
            .outputs
            .get("logits")
            .ok_or_else(|| Error::failed("probe", "the answer has no logits"))?;
        let Output::F32(v) = logits else {
            return Err(Error::failed("probe", "logits are not FP32"));
        };
        let c = shape.get(1).copied().unwrap_or(0) as i64;
        let t = Tensor::from_slice(v).view([n, c]);
        let mut flagged = vec![false; n as usize];
        for name in &self.flag_outputs {
            if let Some((_, Output::Bool(b))) = a.outputs.get(*name) {
                for (f, &x) in flagged.iter_mut().zip(b) {
                    *f |= x;
                }
            }
        }
        Ok((t, flagged))
    }
}

impl Victim for Remote<'_> {
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let (t, flagged) = self.query(x)?;
        self.log.borrow_mut().push(flagged.iter().any(|&f| f));
        Ok(t.to_device(x.device()))
    }
}

/// Probe the server with `images` (files), one image at a time.
pub fn probe(
    s: &Settings,
    images: &[PathBuf],
    on_image: &mut dyn FnMut(usize, usize),
) -> Result<Report> {
    if images.is_empty() {
        return Err(Error::field("images", "no image given"));
    }
    if s.queries == 0 {
        return Err(Error::field("queries", "must be at least 1"));
    }
    let client =
        Client::new(&s.url, s.token.clone(), s.allow_remote).map_err(|e| Error::field("url", e))?;
    let meta = client
        .metadata(&s.model)
        .map_err(|e| Error::failed("probe", e))?;
    let size = meta["inputs"][0]["shape"][2]
        .as_u64()
        .ok_or_else(|| Error::failed("probe", "the model metadata gives no input size"))?
        as u32;
    let offered: Vec<&str> = meta["outputs"]
        .as_array()
        .map(|a| a.iter().filter_map(|o| o["name"].as_str()).collect())
        .unwrap_or_default();
    let mut flag_outputs = Vec::new();
    let stateful = offered.contains(&"stateful_flagged");
    let squeezing = offered.contains(&"flagged");
    if stateful {
        flag_outputs.push("stateful_flagged");
    }
    if squeezing {
        flag_outputs.push("flagged");
    }
    let remote = Remote {
        client: &client,
        model: s.model.clone(),
        flag_outputs,
        log: RefCell::new(Vec::new()),
    };
    let pre = Preprocess {
        size,
        resize: ((size as f64) * 256.0 / 224.0).round() as u32,
        ..Preprocess::default()
    };
    let attack = attacks::registry::build("square", Some(s.queries), true)?;
    let budget = Budget::linf(s.eps);
    tch::manual_seed(s.seed as i64);
    // Benign traffic first: each clean image once.
    let mut clean = Vec::with_capacity(images.len());
    for p in images {
        let img = crate::imageio::load_rgb(p)?;
        let x = pre.pixels(&img, tch::Device::Cpu).unsqueeze(0);
        let (logits, flagged) = tch::no_grad(|| remote.query(&x))?;
        clean.push((x, attacks::goal::predictions(&logits)[0], flagged[0]));
    }
    let mut out = Vec::with_capacity(images.len());
    for (i, (p, (x, class, clean_flagged))) in images.iter().zip(clean).enumerate() {
        on_image(i, images.len());
        remote.log.borrow_mut().clear();
        let goal = Goal::new(None, &[class], tch::Device::Cpu);
        let res = attack.run(&remote, &x, &goal, budget, &mut |_| {})?;
        let (logits, _) = tch::no_grad(|| remote.query(&res.adv))?;
        let adversarial_class = attacks::goal::predictions(&logits)[0];
        let log = remote.log.borrow().clone();
        let first_flag = log.iter().position(|&f| f).map(|k| k + 1);
        // The query at which the attack first reached its goal (Square stops there).
        let success = adversarial_class != class;
        let queries = log.len() + 1;
        out.push(ImageProbe {
            image: p.display().to_string(),
            clean_class: class,
            clean_flagged,
            adversarial_class,
            success,
            queries,
            first_flag,
            flags: log.iter().filter(|&&f| f).count(),
            detected_before_success: first_flag.is_some_and(|f| !success || f < log.len()),
        });
    }
    let n = out.len() as f64;
    let mut firsts: Vec<f64> = out
        .iter()
        .filter_map(|r| r.first_flag.map(|f| f as f64))
        .collect();
    firsts.sort_by(f64::total_cmp);
    let median_first_flag = (!firsts.is_empty()).then(|| crate::detect::quantile(&firsts, 0.5));
    Ok(Report {
        url: s.url.clone(),
        model: s.model.clone(),
        attack: "square".into(),
        eps: s.eps,
        max_queries: s.queries,
        stateful,
        squeezing,
        success_rate: out.iter().filter(|r| r.success).count() as f64 / n,
        detection_rate: out.iter().filter(|r| r.first_flag.is_some()).count() as f64 / n,
        undetected_success_rate: out
            .iter()
            .filter(|r| r.success && !r.detected_before_success)
            .count() as f64
            / n,
        median_first_flag,
        clean_flagged: out.iter().filter(|r| r.clean_flagged).count(),
        images: out,
    })
}
