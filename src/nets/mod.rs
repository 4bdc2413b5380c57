//! The architectures `fool train` builds (`--arch`), written with `tch::nn` parameters and a
//! forward pass that can record, for each trainable layer, what the per-example gradient
//! rules in [`crate::privacy::grad_sample`] need (the layer input and output).
//!
//! - `cnn` — the TF-Privacy / Opacus MNIST tutorial CNN: conv 16@8×8 stride 2 (pad 3),
//!   max-pool 2 stride 1, conv 32@4×4 stride 2, max-pool 2 stride 1, dense 32, dense classes.
//! - `small-cnn:conv=N` — the TF-Privacy membership-inference tutorial's `small_cnn`:
//!   N × (conv 32@3×3 valid + max-pool 2), dense 64, dense classes (N = 1..=3).
//! - `wong-cnn` — the MNIST CNN of Wong & Kolter 2018 and Wong et al. 2020 (their adversarial
//!   training experiments): conv 16@4×4 stride 2 pad 1, conv 32@4×4 stride 2 pad 1, dense 100,
//!   dense classes, ReLU.
//! - `cifar-cnn` — the CIFAR-10 CNN of Papernot et al. 2021 ("Tempered sigmoid activations",
//!   also Tramèr & Boneh 2021's end-to-end baseline): 3 × (2 × conv k@3×3 pad 1, max-pool 2
//!   stride 2) for k = 32, 64, 128, dense 128, dense classes; tanh by default (the paper's
//!   tempered sigmoid s = 2, T = 2, o = 1); `norm=group` adds GroupNorm (16 groups, as De et
//!   al. 2022) after every convolution.
//! - `ws=true` (cifar-cnn, resnet18): scaled weight standardization of every convolution
//!   (De et al. 2022's WSConv2D; the per-example rule maps the gradient of the standardized
//!   weight through the standardization's Jacobian).
//! - `resnet18` — ResNet-18 for 32×32 inputs (3×3 stem, no max-pool), GroupNorm by default;
//!   `resnet18:norm=batch` uses BatchNorm, which DP-SGD refuses (it mixes examples).
//!
//! Options after a colon, comma-separated: `act=relu|tanh` (all but ResNet), `conv=N`
//! (small-cnn), `norm=none|group|batch` (cnn and cifar-cnn, default none; resnet18,
//! group|batch, default group), `ws=true|false` (cifar-cnn, resnet18), e.g.
//! `small-cnn:conv=3,act=tanh`. The `cnn` with `norm=group` adds GroupNorm (16 groups) after
//! both convolutions.
//!
//! Layout: [`Arch`] and its options are parsed in `arch`; the layers, their constructors and
//! the forward-pass [`Tape`] live in `layers`; here, [`Net`] wires layers into architectures.
mod arch;
mod layers;

pub use arch::{Act, Arch, NormKind};
pub use layers::{Conv, GroupNorm, Layer, Linear, Pass, Record, Tape};

use crate::{Error, Result};
use layers::{conv, linear, norm, standardized};
use tch::{nn, Tensor};

struct Block {
    c1: usize,
    n1: usize,
    c2: usize,
    n2: usize,
    down: Option<(usize, usize)>,
}

enum Body {
    /// Convolutions (each followed by its normalization layer when `norms`), the activation,
    /// and a 2×2 max-pool with stride `pools[i]` after convolution i where it is Some; then
    /// dense, activation, dense.
    Plain {
        act: Act,
        norms: bool,
        pools: Vec<Option<i64>>,
    },
    Resnet {
        blocks: Vec<Block>,
    },
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

/// `t` (N, C, H, W) as a channels-last copy (same shape, strides of NHWC; a no-op copy when
/// it already is). The CNNs convert each convolution's output before the activation, so the
/// activation, the max-pool and their backward passes all run on one layout: libtorch's CPU
/// max-pool kernel for NCHW compares element by element with a branch per window position and
/// runs 3–8× slower than its channels-last kernel, vectorized over channels (256×16×14×14,
/// 2 cores: 9.2 ms forward + backward vs 3.4 ms including the copy), and an element-wise
/// backward over mixed layouts falls back to a scalar loop (`benches/dp_step.rs`). Values and
/// gradients are the same as on NCHW; the next convolution takes channels-last input as it is.
fn channels_last(t: Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Max-pooling over 2×2 windows with stride 1 or 2, floor mode.
fn max_pool_2x2(t: &Tensor, stride: i64) -> Tensor {
    t.max_pool2d([2, 2], [stride, stride], [0, 0], [1, 1], false)
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
            Arch::Cnn { act, norm: nk } => {
                let s1 = conv_out(side, 8, 2, 3) - 1;
                let s2 = conv_out(s1, 4, 2, 0) - 1;
                if s2 < 1 {
                    return Err(Error::field(
                        "arch",
                        format!("cnn needs inputs of at least 16×16, got {side}×{side}"),
                    ));
                }
                layers.push(conv(&root / "conv1", in_channels, 16, 8, 2, 3, true));
                if let Some(nk) = nk {
                    layers.push(norm(&root / "norm1", nk, 16, 16));
                }
                layers.push(conv(&root / "conv2", 16, 32, 4, 2, 0, true));
                if let Some(nk) = nk {
                    layers.push(norm(&root / "norm2", nk, 32, 16));
                }
                layers.push(linear(&root / "fc1", 32 * s2 * s2, 32));
                layers.push(linear(&root / "fc2", 32, classes));
                Body::Plain {
                    act,
                    norms: nk.is_some(),
                    pools: vec![Some(1), Some(1)],
                }
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
                Body::Plain {
                    act,
                    norms: false,
                    pools: vec![Some(2); n],
                }
            }
            Arch::WongCnn { act } => {
                let s = conv_out(conv_out(side, 4, 2, 1), 4, 2, 1);
                if s < 1 {
                    return Err(Error::field(
                        "arch",
                        format!("wong-cnn needs inputs of at least 4×4, got {side}×{side}"),
                    ));
                }
                layers.push(conv(&root / "conv1", in_channels, 16, 4, 2, 1, true));
                layers.push(conv(&root / "conv2", 16, 32, 4, 2, 1, true));
                layers.push(linear(&root / "fc1", 32 * s * s, 100));
                layers.push(linear(&root / "fc2", 100, classes));
                Body::Plain {
                    act,
                    norms: false,
                    pools: vec![None, None],
                }
            }
            Arch::CifarCnn { act, norm: nk, ws } => {
                if side % 8 != 0 {
                    return Err(Error::field(
                        "arch",
                        format!("cifar-cnn needs a side divisible by 8, got {side}×{side}"),
                    ));
                }
                let mut cin = in_channels;
                for (i, cout) in [32i64, 32, 64, 64, 128, 128].into_iter().enumerate() {
                    let c = conv(&root / format!("conv{}", i + 1), cin, cout, 3, 1, 1, true);
                    layers.push(standardized(c, ws));
                    if let Some(nk) = nk {
                        layers.push(norm(&root / format!("norm{}", i + 1), nk, cout, 16));
                    }
                    cin = cout;
                }
                let s = side / 8;
                layers.push(linear(&root / "fc1", 128 * s * s, 128));
                layers.push(linear(&root / "fc2", 128, classes));
                Body::Plain {
                    act,
                    norms: nk.is_some(),
                    pools: [None, Some(2)].repeat(3),
                }
            }
            Arch::Resnet18 { norm: nk, ws } => {
                let mut push = |l: Layer| {
                    layers.push(standardized(l, ws));
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
                push(norm(&root / "stem" / "norm", nk, 64, 32));
                let mut blocks = Vec::new();
                let mut cin = 64;
                for (stage, &cout) in [64i64, 128, 256, 512].iter().enumerate() {
                    for b in 0..2 {
                        let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                        let p = &root / format!("layer{}", stage + 1) / b;
                        let c1 = push(conv(&p / "conv1", cin, cout, 3, stride, 1, false));
                        let n1 = push(norm(&p / "norm1", nk, cout, 32));
                        let c2 = push(conv(&p / "conv2", cout, cout, 3, 1, 1, false));
                        let n2 = push(norm(&p / "norm2", nk, cout, 32));
                        let down = if stride != 1 || cin != cout {
                            let d = push(conv(&p / "down", cin, cout, 1, stride, 0, false));
                            Some((d, push(norm(&p / "down_norm", nk, cout, 32))))
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
                    &c.weight(),
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
            Body::Plain {
                act: a,
                norms,
                pools,
            } => {
                let per = if *norms { 2 } else { 1 };
                let mut h = x.shallow_clone();
                for (i, pool) in pools.iter().enumerate() {
                    let mut y = self.layer(i * per, &h, pass);
                    if *norms {
                        y = self.layer(i * per + 1, &y, pass);
                    }
                    h = act(*a, channels_last(y));
                    if let Some(stride) = pool {
                        h = max_pool_2x2(&h, *stride);
                    }
                }
                let dense = pools.len() * per;
                let h = act(*a, self.layer(dense, &h.flatten(1, -1), pass));
                self.layer(dense + 1, &h, pass)
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
                let h = h.mean_dim([2i64, 3].as_slice(), false, h.kind());
                self.layer(self.layers.len() - 1, &h, pass)
            }
        }
    }
}
