//! The architectures `fool train` builds (`--arch`), written with `tch::nn` parameters and a
//! forward pass that can record, for each trainable layer, what the per-example gradient
//! rules in [`crate::privacy::grad_sample`] need (the layer input and output).
//!
//! - `cnn` — the TF-Privacy / Opacus MNIST tutorial CNN: conv 16@8×8 stride 2 (pad 3),
//!   max-pool 2 stride 1, conv 32@4×4 stride 2, max-pool 2 stride 1, dense 32, dense classes.
//! - `small-cnn:conv=N` — the TF-Privacy membership-inference tutorial's `small_cnn`:
//!   N × (conv 32@3×3 valid + max-pool 2), dense 64, dense classes (N = 1..=3).
//! - `resnet18` — ResNet-18 for 32×32 inputs (3×3 stem, no max-pool), GroupNorm by default;
//!   `resnet18:norm=batch` uses BatchNorm, which DP-SGD refuses (it mixes examples).
//!
//! Options after a colon, comma-separated: `act=relu|tanh` (all but ResNet), `conv=N`
//! (small-cnn), `norm=group|batch` (resnet18), e.g. `small-cnn:conv=3,act=tanh`.
use crate::{Error, Result};
use tch::{nn, Kind, Tensor};

/// Activation used between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Act {
    Relu,
    Tanh,
}

/// Normalization layers of the ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    Group,
    Batch,
}

/// An architecture as chosen with `--arch`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum Arch {
    Cnn { act: Act },
    SmallCnn { conv: usize, act: Act },
    Resnet18 { norm: NormKind },
}

impl std::str::FromStr for Arch {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |msg: String| Error::field("arch", msg);
        let (name, opts) = s.split_once(':').unwrap_or((s, ""));
        let mut act = Act::Relu;
        let mut conv = 2usize;
        let mut norm = NormKind::Group;
        for opt in opts.split(',').filter(|o| !o.is_empty()) {
            let (k, v) = opt
                .split_once('=')
                .ok_or_else(|| bad(format!("'{opt}': expected KEY=VALUE after ':'")))?;
            match (k.trim(), v.trim()) {
                ("act", "relu") => act = Act::Relu,
                ("act", "tanh") => act = Act::Tanh,
                ("conv", n) => {
                    conv = n
                        .parse()
                        .ok()
                        .filter(|n| (1..=3).contains(n))
                        .ok_or_else(|| bad(format!("conv={n}: expected 1, 2 or 3")))?
                }
                ("norm", "group") => norm = NormKind::Group,
                ("norm", "batch") => norm = NormKind::Batch,
                (k, v) => {
                    return Err(bad(format!(
                    "unknown option {k}={v} (expected act=relu|tanh, conv=1..3, norm=group|batch)"
                )))
                }
            }
        }
        let arch = match name.trim() {
            "cnn" => Arch::Cnn { act },
            "small-cnn" | "small_cnn" => Arch::SmallCnn { conv, act },
            "resnet18" | "resnet-18" => Arch::Resnet18 { norm },
            other => {
                return Err(bad(format!(
                    "unknown architecture '{other}' (expected cnn, small-cnn:conv=N or resnet18)"
                )))
            }
        };
        let used_conv = opts.contains("conv=");
        let used_act = opts.contains("act=");
        let used_norm = opts.contains("norm=");
        match arch {
            Arch::Cnn { .. } if used_conv || used_norm => {
                Err(bad("cnn takes only act=relu|tanh".into()))
            }
            Arch::SmallCnn { .. } if used_norm => {
                Err(bad("small-cnn takes conv=N and act=…".into()))
            }
            Arch::Resnet18 { .. } if used_conv || used_act => {
                Err(bad("resnet18 takes only norm=group|batch".into()))
            }
            a => Ok(a),
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let act = |a: &Act| match a {
            Act::Relu => "relu",
            Act::Tanh => "tanh",
        };
        match self {
            Arch::Cnn { act: a } => write!(f, "cnn:act={}", act(a)),
            Arch::SmallCnn { conv, act: a } => write!(f, "small-cnn:conv={conv},act={}", act(a)),
            Arch::Resnet18 { norm } => write!(
                f,
                "resnet18:norm={}",
                if *norm == NormKind::Group {
                    "group"
                } else {
                    "batch"
                }
            ),
        }
    }
}

impl Arch {
    /// Whether every trainable layer has a per-example gradient rule (no BatchNorm).
    pub fn dp_compatible(&self) -> bool {
        !matches!(
            self,
            Arch::Resnet18 {
                norm: NormKind::Batch
            }
        )
    }
}

/// A convolution (groups = 1, square kernel).
#[derive(Debug)]
pub struct Conv {
    pub ws: Tensor,
    pub bs: Option<Tensor>,
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
}

/// A dense layer.
#[derive(Debug)]
pub struct Linear {
    pub ws: Tensor,
    pub bs: Option<Tensor>,
}

/// GroupNorm with affine weight and bias.
#[derive(Debug)]
pub struct GroupNorm {
    pub ws: Tensor,
    pub bs: Tensor,
    pub groups: i64,
}

/// One trainable layer.
#[derive(Debug)]
pub enum Layer {
    Conv(Conv),
    Linear(Linear),
    GroupNorm(GroupNorm),
    BatchNorm(nn::BatchNorm),
}

impl Layer {
    /// The layer's parameters, weight then bias, in the order of [`Net::params`].
    pub fn params(&self) -> Vec<&Tensor> {
        match self {
            Layer::Conv(Conv { ws, bs, .. }) | Layer::Linear(Linear { ws, bs }) => {
                std::iter::once(ws).chain(bs.iter()).collect()
            }
            Layer::GroupNorm(g) => vec![&g.ws, &g.bs],
            Layer::BatchNorm(b) => b.ws.iter().chain(b.bs.iter()).collect(),
        }
    }
}

/// What one trainable layer saw in a recorded forward pass.
pub struct Record {
    pub layer: usize,
    /// Conv/linear: the layer input; GroupNorm: the normalized input x̂ (before the affine).
    pub input: Tensor,
    /// The layer output, whose gradient the per-example rules need.
    pub output: Tensor,
}

/// Records of a forward pass, in execution order.
#[derive(Default)]
pub struct Tape {
    pub records: Vec<Record>,
}

/// How a forward pass runs.
pub struct Pass<'a> {
    pub train: bool,
    pub tape: Option<&'a mut Tape>,
}

impl Pass<'_> {
    pub fn eval() -> Pass<'static> {
        Pass {
            train: false,
            tape: None,
        }
    }
    pub fn train() -> Pass<'static> {
        Pass {
            train: true,
            tape: None,
        }
    }
}

struct Block {
    c1: usize,
    n1: usize,
    c2: usize,
    n2: usize,
    down: Option<(usize, usize)>,
}

enum Body {
    Cnn { act: Act },
    SmallCnn { conv: usize, act: Act },
    Resnet { blocks: Vec<Block> },
}

/// A network: its layers (parameters in a `VarStore`) and how they connect.
pub struct Net {
    pub arch: Arch,
    pub layers: Vec<Layer>,
    body: Body,
    pub in_channels: i64,
    pub side: i64,
    pub classes: i64,
}

fn conv(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, padding: i64, bias: bool) -> Layer {
    let cfg = nn::ConvConfig {
        stride,
        padding,
        bias,
        ..Default::default()
    };
    let c = nn::conv2d(p, cin, cout, k, cfg);
    Layer::Conv(Conv {
        ws: c.ws,
        bs: c.bs,
        kernel: k,
        stride,
        padding,
    })
}

fn linear(p: nn::Path, din: i64, dout: i64) -> Layer {
    let l = nn::linear(p, din, dout, Default::default());
    Layer::Linear(Linear { ws: l.ws, bs: l.bs })
}

fn norm(p: nn::Path, kind: NormKind, c: i64) -> Layer {
    match kind {
        NormKind::Group => {
            let g = nn::group_norm(p, 32.min(c), c, Default::default());
            Layer::GroupNorm(GroupNorm {
                ws: g.ws.expect("affine"),
                bs: g.bs.expect("affine"),
                groups: 32.min(c),
            })
        }
        NormKind::Batch => Layer::BatchNorm(nn::batch_norm2d(p, c, Default::default())),
    }
}

/// Spatial side after a convolution.
fn conv_out(side: i64, k: i64, s: i64, p: i64) -> i64 {
    (side + 2 * p - k) / s + 1
}

impl Net {
    /// Build `arch` for inputs (C, side, side) and `classes` outputs, parameters under `vs`
    /// (PyTorch's default initialisation).
    pub fn new(
        vs: &nn::VarStore,
        arch: &Arch,
        in_channels: i64,
        side: i64,
        classes: i64,
    ) -> Result<Net> {
        let root = vs.root();
        let mut layers = Vec::new();
        let body = match *arch {
            Arch::Cnn { act } => {
                let s1 = conv_out(side, 8, 2, 3) - 1;
                let s2 = conv_out(s1, 4, 2, 0) - 1;
                if s2 < 1 {
                    return Err(Error::field(
                        "arch",
                        format!("cnn needs inputs of at least 16×16, got {side}×{side}"),
                    ));
                }
                layers.push(conv(&root / "conv1", in_channels, 16, 8, 2, 3, true));
                layers.push(conv(&root / "conv2", 16, 32, 4, 2, 0, true));
                layers.push(linear(&root / "fc1", 32 * s2 * s2, 32));
                layers.push(linear(&root / "fc2", 32, classes));
                Body::Cnn { act }
            }
            Arch::SmallCnn { conv: n, act } => {
                let mut s = side;
                let mut cin = in_channels;
                for i in 0..n {
                    layers.push(conv(
                        &root / format!("conv{}", i + 1),
                        cin,
                        32,
                        3,
                        1,
                        0,
                        true,
                    ));
                    s = (s - 2) / 2;
                    cin = 32;
                }
                if s < 1 {
                    return Err(Error::field(
                        "arch",
                        format!("small-cnn:conv={n} is too deep for {side}×{side} inputs"),
                    ));
                }
                layers.push(linear(&root / "fc1", 32 * s * s, 64));
                layers.push(linear(&root / "fc2", 64, classes));
                Body::SmallCnn { conv: n, act }
            }
            Arch::Resnet18 { norm: nk } => {
                let mut push = |l: Layer| {
                    layers.push(l);
                    layers.len() - 1
                };
                push(conv(
                    &root / "stem" / "conv",
                    in_channels,
                    64,
                    3,
                    1,
                    1,
                    false,
                ));
                push(norm(&root / "stem" / "norm", nk, 64));
                let mut blocks = Vec::new();
                let mut cin = 64;
                for (stage, &cout) in [64i64, 128, 256, 512].iter().enumerate() {
                    for b in 0..2 {
                        let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                        let p = &root / format!("layer{}", stage + 1) / b;
                        let c1 = push(conv(&p / "conv1", cin, cout, 3, stride, 1, false));
                        let n1 = push(norm(&p / "norm1", nk, cout));
                        let c2 = push(conv(&p / "conv2", cout, cout, 3, 1, 1, false));
                        let n2 = push(norm(&p / "norm2", nk, cout));
                        let down = if stride != 1 || cin != cout {
                            let d = push(conv(&p / "down", cin, cout, 1, stride, 0, false));
                            Some((d, push(norm(&p / "down_norm", nk, cout))))
                        } else {
                            None
                        };
                        blocks.push(Block {
                            c1,
                            n1,
                            c2,
                            n2,
                            down,
                        });
                        cin = cout;
                    }
                }
                push(linear(&root / "fc", 512, classes));
                Body::Resnet { blocks }
            }
        };
        Ok(Net {
            arch: arch.clone(),
            layers,
            body,
            in_channels,
            side,
            classes,
        })
    }

    /// All trainable parameters, layer by layer, weight then bias.
    pub fn params(&self) -> Vec<&Tensor> {
        self.layers.iter().flat_map(|l| l.params()).collect()
    }

    /// Run layer `i` on `x`, recording it when the pass has a tape.
    fn layer(&self, i: usize, x: &Tensor, pass: &mut Pass) -> Tensor {
        let (input, out) = match &self.layers[i] {
            Layer::Conv(c) => {
                let y = x.conv2d(
                    &c.ws,
                    c.bs.as_ref(),
                    [c.stride, c.stride],
                    [c.padding, c.padding],
                    [1, 1],
                    1,
                );
                (x.shallow_clone(), y)
            }
            Layer::Linear(l) => (x.shallow_clone(), x.linear(&l.ws, l.bs.as_ref())),
            Layer::GroupNorm(g) => {
                let xhat = x.group_norm(g.groups, None::<Tensor>, None::<Tensor>, 1e-5, true);
                let c = g.ws.size()[0];
                let y = &xhat * g.ws.view([1, c, 1, 1]) + g.bs.view([1, c, 1, 1]);
                (xhat, y)
            }
            Layer::BatchNorm(b) => return x.apply_t(b, pass.train),
        };
        if let Some(tape) = pass.tape.as_deref_mut() {
            tape.records.push(Record {
                layer: i,
                input: input.detach(),
                output: out.shallow_clone(),
            });
        }
        out
    }

    /// Logits for a batch of normalized inputs (N, C, side, side).
    pub fn forward(&self, x: &Tensor, pass: &mut Pass) -> Tensor {
        let act = |a: Act, t: Tensor| match a {
            Act::Relu => t.relu(),
            Act::Tanh => t.tanh(),
        };
        match &self.body {
            Body::Cnn { act: a } => {
                let h = act(*a, self.layer(0, x, pass)).max_pool2d(
                    [2, 2],
                    [1, 1],
                    [0, 0],
                    [1, 1],
                    false,
                );
                let h = act(*a, self.layer(1, &h, pass)).max_pool2d(
                    [2, 2],
                    [1, 1],
                    [0, 0],
                    [1, 1],
                    false,
                );
                let h = h.flatten(1, -1);
                let h = act(*a, self.layer(2, &h, pass));
                self.layer(3, &h, pass)
            }
            Body::SmallCnn { conv, act: a } => {
                let mut h = x.shallow_clone();
                for i in 0..*conv {
                    h = act(*a, self.layer(i, &h, pass)).max_pool2d_default(2);
                }
                let h = act(*a, self.layer(*conv, &h.flatten(1, -1), pass));
                self.layer(conv + 1, &h, pass)
            }
            Body::Resnet { blocks } => {
                let mut h = self.layer(1, &self.layer(0, x, pass), pass).relu();
                for b in blocks {
                    let y = self.layer(b.n1, &self.layer(b.c1, &h, pass), pass).relu();
                    let y = self.layer(b.n2, &self.layer(b.c2, &y, pass), pass);
                    let skip = match b.down {
                        Some((d, n)) => self.layer(n, &self.layer(d, &h, pass), pass),
                        None => h,
                    };
                    h = (y + skip).relu();
                }
                let h = h.mean_dim([2i64, 3].as_slice(), false, Kind::Float);
                self.layer(self.layers.len() - 1, &h, pass)
            }
        }
    }
}
