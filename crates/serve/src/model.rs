//! What the server needs of a model, without knowing how it runs: [`Images`] turns request
//! bodies into model-ready pixels (on the request's thread), a [`Predictor`] runs batches (on
//! the one model worker thread, where it is built by the factory given to [`crate::serve`]).

/// Facts about the served model, for metadata, validation and labels.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    /// The name clients use in URLs (`/v2/models/{name}`).
    pub name: String,
    /// The model file, for metadata.
    pub path: String,
    /// Input side S: the model takes (N, 3, S, S).
    pub size: u32,
    /// Number of classes C.
    pub classes: usize,
    /// C label names.
    pub labels: Vec<String>,
    /// Normalization: model input = (pixel − mean) / std, per channel.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// What the model worker applies before the model (`jpeg:75`), if anything.
    pub defense: Option<String>,
    /// The feature-squeezing detector's name and threshold, when one is loaded.
    pub detector: Option<(String, f64)>,
    /// Stateful detection (k, threshold), when on.
    pub stateful: Option<(usize, f64)>,
    /// The device the worker runs on (`cpu`, `cuda:0`).
    pub device: String,
}

/// A request body or tensor the model cannot take: the message names what is wrong, the status
/// is 400 (malformed), 413 (over a limit) or 415 (not an image format the server reads).
#[derive(Debug, Clone, PartialEq)]
pub struct InputError {
    pub msg: String,
    pub status: u16,
}

impl InputError {
    pub fn bad(msg: impl Into<String>) -> InputError {
        InputError {
            msg: msg.into(),
            status: 400,
        }
    }
    pub fn too_large(msg: impl Into<String>) -> InputError {
        InputError {
            msg: msg.into(),
            status: 413,
        }
    }
    pub fn unsupported(msg: impl Into<String>) -> InputError {
        InputError {
            msg: msg.into(),
            status: 415,
        }
    }
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

/// Request bodies → model-ready pixels: (3, S, S) channel-first, in [0, 1], row-major.
pub trait Images: Send + Sync + 'static {
    /// An encoded image file (PNG, JPEG, …), decoded within the limits, resized and cropped as
    /// the model's images are.
    fn decode(&self, bytes: &[u8]) -> Result<Vec<f32>, InputError>;
    /// An 8-bit RGB image given as `h`×`w`×3 bytes (HWC), resized and cropped likewise.
    fn rgb8_pixels(&self, w: u32, h: u32, data: &[u8]) -> Result<Vec<f32>, InputError>;
}

/// The model's verdict on one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Softmax, C values.
    pub probs: Vec<f32>,
    /// Logits, C values.
    pub logits: Vec<f32>,
    /// Feature-squeezing score and whether it is above the threshold.
    pub detector: Option<(f32, bool)>,
    /// Stateful detection: the mean distance to the k nearest recent queries (None until the
    /// memory holds k) and whether it is below the threshold.
    pub stateful: Option<(Option<f32>, bool)>,
}

impl Verdict {
    /// The predicted class and its probability.
    pub fn top(&self) -> (usize, f32) {
        let mut best = (0, f32::NEG_INFINITY);
        for (i, &p) in self.probs.iter().enumerate() {
            if p > best.1 {
                best = (i, p);
            }
        }
        best
    }

    /// The `k` most probable classes, most probable first (ties: lower index first).
    pub fn top_k(&self, k: usize) -> Vec<(usize, f32)> {
        let mut idx: Vec<usize> = (0..self.probs.len()).collect();
        idx.sort_by(|&a, &b| self.probs[b].total_cmp(&self.probs[a]).then(a.cmp(&b)));
        idx.truncate(k);
        idx.into_iter().map(|i| (i, self.probs[i])).collect()
    }

    /// Whether any detector flagged the image.
    pub fn flagged(&self) -> bool {
        self.detector.is_some_and(|d| d.1) || self.stateful.is_some_and(|s| s.1)
    }
}

/// Runs batches on the model worker thread.
pub trait Predictor {
    /// `x` holds `n` images of (3, S, S) pixels in [0, 1], one after the other; one verdict per
    /// image, in order. An error fails every request of the batch (answered 500).
    fn predict(&mut self, x: &[f32], n: usize) -> Result<Vec<Verdict>, String>;
}

/// Loads the model on the worker thread (libtorch's per-thread settings belong there) and says
/// what it is. An error stops the server before it listens.
pub type Factory = Box<dyn FnOnce() -> Result<(Box<dyn Predictor>, ModelInfo), String> + Send>;
