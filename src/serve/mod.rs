//! `fool serve`'s model side: what the HTTP crate `fool_serve` needs of a model, made from
//! fool's own parts — request bodies decoded as every fool command decodes images (within the
//! decoding limits, resized and cropped as the model card says), and a predictor on the model
//! worker thread that runs the optional defense, the classifier, the feature-squeezing detector
//! and stateful detection ([`crate::detect`]) on each batch.
use crate::defenses::{self, Chain, Defense as _};
use crate::detect::stateful::{self, QueryMemory};
use crate::detect::{self, Detector as _, FeatureSqueezing};
use crate::model::{Classifier, ModelSpec};
use crate::preprocess::Preprocess;
use crate::{Error, Result};
use fool_serve::{Factory, Images, InputError, ModelInfo, Predictor, Verdict};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

pub mod probe;

/// Stateful detection: k, the memory's size and the threshold (None: the detector file's).
#[derive(Debug, Clone)]
pub struct StatefulChoice {
    pub k: Option<usize>,
    pub threshold: Option<f64>,
    pub memory: usize,
}

/// What to serve.
#[derive(Debug, Clone)]
pub struct Settings {
    pub spec: ModelSpec,
    /// The name in URLs.
    pub name: String,
    /// A defense spec applied before the model (`jpeg:75`).
    pub defense: Option<String>,
    /// A detector file from `fool detect calibrate`.
    pub detector: Option<PathBuf>,
    pub stateful: Option<StatefulChoice>,
    /// libtorch's intra-op threads for the model worker (None: libtorch's default, the cores).
    pub threads: Option<usize>,
}

impl Settings {
    /// What can be checked without loading the model: the defense spec, the detector file, the
    /// stateful settings; the model name.
    pub fn check(&self) -> Result<()> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(Error::field(
                "name",
                format!(
                    "'{}' must be letters, digits, '-', '_' or '.' (it appears in URLs)",
                    self.name
                ),
            ));
        }
        if let Some(d) = &self.defense {
            defenses::parse(d)?;
        }
        let file = match &self.detector {
            Some(p) => Some(detect::load(p)?),
            None => None,
        };
        if let Some(s) = &self.stateful {
            stateful_memory(s, file.as_ref().and_then(|f| f.stateful.as_ref()))?;
        }
        Ok(())
    }
}

/// The stateful detector the settings ask for.
fn stateful_memory(
    s: &StatefulChoice,
    file: Option<&detect::StatefulSettings>,
) -> Result<QueryMemory> {
    let k = s.k.or(file.map(|f| f.k)).unwrap_or(20);
    let threshold = s.threshold.or(file.map(|f| f.threshold)).ok_or_else(|| {
        Error::field(
            "stateful_threshold",
            "not given and no detector file with a stateful calibration (fool detect calibrate --stateful-k K)",
        )
    })?;
    QueryMemory::new(k, s.memory, threshold)
}

/// Request bodies → pixels, as fool reads image files.
pub struct ServedImages {
    pub pre: Preprocess,
}

fn input_error(e: Error) -> InputError {
    match e {
        Error::Unsupported { .. } => InputError::unsupported(e.to_string()),
        Error::TooLarge { .. } => InputError::too_large(e.to_string()),
        other => InputError::bad(other.to_string()),
    }
}

impl ServedImages {
    fn to_vec(&self, img: &image::RgbImage) -> std::result::Result<Vec<f32>, InputError> {
        let t = self
            .pre
            .pixels(img, tch::Device::Cpu)
            .contiguous()
            .view([-1]);
        Vec::<f32>::try_from(t).map_err(|e| InputError::bad(e.to_string()))
    }
}

impl Images for ServedImages {
    fn decode(&self, bytes: &[u8]) -> std::result::Result<Vec<f32>, InputError> {
        let img =
            crate::imageio::decode_rgb(bytes, Path::new("request body")).map_err(input_error)?;
        self.to_vec(&img)
    }

    fn rgb8_pixels(
        &self,
        w: u32,
        h: u32,
        data: &[u8],
    ) -> std::result::Result<Vec<f32>, InputError> {
        let img = image::RgbImage::from_raw(w, h, data.to_vec())
            .ok_or_else(|| InputError::bad(format!("{w}×{h} image: wrong number of bytes")))?;
        self.to_vec(&img)
    }
}

/// The decoder for `spec`'s model (its card's preprocessing).
pub fn images(spec: &ModelSpec) -> Result<ServedImages> {
    let pre = spec.preprocess()?;
    pre.validate()?;
    Ok(ServedImages { pre })
}

/// The predictor on the worker thread.
struct Served {
    model: Classifier,
    defense: Option<Chain>,
    detector: Option<FeatureSqueezing>,
    memory: Option<QueryMemory>,
    _no_grad: tch::NoGradGuard,
}

/// Load everything on the worker thread; errors are one line naming the file or setting.
fn load(settings: Settings) -> Result<(Served, ModelInfo)> {
    match settings.threads {
        Some(0) => return Err(Error::field("threads", "must be at least 1")),
        Some(t) => tch::set_num_threads(t as i32),
        // One core is left to HTTP and decoding: libtorch's threads spin at every layer, and
        // on a CPU shared with the request threads that costs more than the extra thread gains
        // (BENCHMARKS.md "fool serve": 2 threads 24 req/s, 1 thread 72 req/s on 2 cores).
        None if settings.spec.device == tch::Device::Cpu => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            tch::set_num_threads(cores.saturating_sub(1).max(1) as i32);
        }
        None => {}
    }
    let loaded = settings.spec.load()?;
    // After the load-time probe, which checks the input gradient.
    let no_grad = tch::no_grad_guard();
    let model = loaded.model;
    let defense = match &settings.defense {
        Some(d) => Some(defenses::parse(d)?).filter(|c| !c.0.is_empty()),
        None => None,
    };
    let file = match &settings.detector {
        Some(p) => {
            let f = detect::load(p)?;
            f.check_model(p, &model)?;
            Some(f)
        }
        None => None,
    };
    let detector = match &file {
        Some(f) => Some(f.detector()?),
        None => None,
    };
    let memory = match &settings.stateful {
        Some(s) => Some(stateful_memory(
            s,
            file.as_ref().and_then(|f| f.stateful.as_ref()),
        )?),
        None => None,
    };
    let info = ModelInfo {
        name: settings.name.clone(),
        path: settings.spec.path.display().to_string(),
        size: model.pre.size,
        classes: model.num_classes,
        labels: (0..model.num_classes)
            .map(|i| loaded.labels.name(i).to_string())
            .collect(),
        mean: model.pre.mean.map(|v| v as f32),
        std: model.pre.std.map(|v| v as f32),
        defense: defense.as_ref().map(|d| d.name()),
        detector: detector.as_ref().map(|d| (d.name(), d.threshold())),
        stateful: memory.as_ref().map(|m| (m.k, m.threshold)),
        device: crate::device::device_name(model.device),
    };
    Ok((
        Served {
            model,
            defense,
            detector,
            memory,
            _no_grad: no_grad,
        },
        info,
    ))
}

/// The factory `fool_serve::serve` runs on its model worker thread.
pub fn factory(settings: Settings) -> Factory {
    Box::new(move || {
        load(settings)
            .map(|(s, info)| (Box::new(s) as Box<dyn Predictor>, info))
            .map_err(|e| e.to_string())
    })
}

fn rows(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(
        t.to_kind(Kind::Float)
            .to_device(tch::Device::Cpu)
            .contiguous()
            .view([-1]),
    )?)
}

impl Served {
    fn run(&mut self, x: &[f32], n: usize) -> Result<Vec<Verdict>> {
        let s = self.model.pre.size as i64;
        let xt = Tensor::from_slice(x)
            .view([n as i64, 3, s, s])
            .to_device(self.model.device);
        let input = match &self.defense {
            Some(d) => d.apply(&xt)?,
            None => xt.shallow_clone(),
        };
        let logits = self.model.logits(&input)?;
        let probs_t = logits.softmax(1, Kind::Float);
        // The detector scores the input as it came; without a defense the model's softmax on it
        // is the one just computed.
        let scores = match &self.detector {
            Some(d) => {
                let given = self.defense.is_none().then_some(&probs_t);
                let rows = d.distances_given(&self.model, &xt, given)?;
                Some(
                    rows.iter()
                        .map(|r| detect::max_distance(r))
                        .collect::<Vec<f64>>(),
                )
            }
            None => None,
        };
        let (logits, probs) = (rows(&logits)?, rows(&probs_t)?);
        let c = self.model.num_classes;
        let per = x.len() / n.max(1);
        let size = self.model.pre.size as usize;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let detector = match (&scores, &self.detector) {
                (Some(sc), Some(d)) => Some((sc[i] as f32, d.flag(sc[i]))),
                _ => None,
            };
            let stateful = self.memory.as_mut().map(|m| {
                let o = m.observe(stateful::embed(&x[i * per..(i + 1) * per], size));
                (o.distance.map(|d| d as f32), o.flagged)
            });
            out.push(Verdict {
                probs: probs[i * c..(i + 1) * c].to_vec(),
                logits: logits[i * c..(i + 1) * c].to_vec(),
                detector,
                stateful,
            });
        }
        Ok(out)
    }
}

impl Predictor for Served {
    fn predict(&mut self, x: &[f32], n: usize) -> std::result::Result<Vec<Verdict>, String> {
        self.run(x, n).map_err(|e| e.to_string())
    }
}
