//! Trainable layers, their constructors (PyTorch's default initialisation), and the tape a
//! forward pass records for the per-example gradient rules.
use super::NormKind;
use tch::{nn, Tensor};

/// A convolution (groups = 1, square kernel).
#[derive(Debug)]
pub struct Conv {
    pub ws: Tensor,
    pub bs: Option<Tensor>,
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
    /// Scaled weight standardization (Qiao et al. 2019; Brock et al. 2021, Haiku's WSConv2D
    /// as De et al. 2022 use it): the convolution uses Ŵ = (W − μ)/√(D·var + ε) per output
    /// channel (D = fan-in), not W.
    pub standardize: bool,
}

/// ε of the weight standardization.
const WS_EPS: f64 = 1e-4;

impl Conv {
    /// (Cout, D) rows of the weight and their standardization: (Ŵ, s) with s = √(D·var + ε).
    fn standardized_rows(&self) -> (Tensor, Tensor) {
        let cout = self.ws.size()[0];
        let w = self.ws.reshape([cout, -1]);
        let d = w.size()[1] as f64;
        let centred = &w - w.mean_dim([1i64].as_slice(), true, None::<tch::Kind>);
        let var = centred
            .square()
            .mean_dim([1i64].as_slice(), true, None::<tch::Kind>);
        let s = (var * d + WS_EPS).sqrt();
        (centred / &s, s)
    }

    /// The weight the convolution applies: W, or Ŵ when standardized (differentiable in W).
    pub fn weight(&self) -> Tensor {
        if !self.standardize {
            return self.ws.shallow_clone();
        }
        self.standardized_rows()
            .0
            .reshape(self.ws.size().as_slice())
    }

    /// Gradients with respect to Ŵ, (N, *weight shape), mapped to gradients with respect to W
    /// through the standardization's Jacobian (symmetric, the same for every example):
    /// J g = (g − mean(g) − Ŵ (Ŵ·g)) / s per output channel.
    pub fn through_standardization(&self, g: &Tensor) -> Tensor {
        let (wh, s) = tch::no_grad(|| self.standardized_rows());
        let n = g.size()[0];
        let cout = wh.size()[0];
        let g = g.reshape([n, cout, -1]);
        let mean = g.mean_dim([2i64].as_slice(), true, None::<tch::Kind>);
        let dot = (&g * &wh).sum_dim_intlist([2i64].as_slice(), true, None::<tch::Kind>);
        let out = (g - mean - wh.unsqueeze(0) * dot) / s.unsqueeze(0);
        let mut shape = vec![n];
        shape.extend(self.ws.size());
        out.reshape(shape.as_slice())
    }
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

/// PyTorch's default weight initialisation of `nn.Conv2d` and `nn.Linear`:
/// `kaiming_uniform_(a=√5)`, i.e. U(−b, b) with b = gain·√(3/fan_in) and gain = √(2/(1+5)) =
/// 1/√3, so b = 1/√fan_in. (tch's default is Kaiming uniform with the ReLU gain √2, a bound
/// √6 ≈ 2.45 times larger per layer, which starts the CNNs with logits ~30× PyTorch's.)
const TORCH_WEIGHT_INIT: nn::Init = nn::Init::Kaiming {
    dist: nn::init::NormalOrUniform::Uniform,
    fan: nn::init::FanInOut::FanIn,
    non_linearity: nn::init::NonLinearity::ExplicitGain(0.577_350_269_189_625_8),
};

/// PyTorch's default bias initialisation: U(−1/√fan_in, 1/√fan_in) (tch's convolutions start
/// at zero).
fn torch_bias_init(fan_in: i64) -> nn::Init {
    let b = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform { lo: -b, up: b }
}

pub(super) fn conv(
    p: nn::Path,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    padding: i64,
    bias: bool,
) -> Layer {
    let cfg = nn::ConvConfig {
        stride,
        padding,
        bias,
        ws_init: TORCH_WEIGHT_INIT,
        bs_init: torch_bias_init(cin * k * k),
        ..Default::default()
    };
    let c = nn::conv2d(p, cin, cout, k, cfg);
    Layer::Conv(Conv {
        ws: c.ws,
        bs: c.bs,
        kernel: k,
        stride,
        padding,
        standardize: false,
    })
}

/// The convolution `l` with weight standardization switched on when `ws`.
pub(super) fn standardized(l: Layer, ws: bool) -> Layer {
    match l {
        Layer::Conv(c) => Layer::Conv(Conv {
            standardize: ws,
            ..c
        }),
        other => other,
    }
}

pub(super) fn linear(p: nn::Path, din: i64, dout: i64) -> Layer {
    let cfg = nn::LinearConfig {
        ws_init: TORCH_WEIGHT_INIT,
        bs_init: Some(torch_bias_init(din)),
        bias: true,
    };
    let l = nn::linear(p, din, dout, cfg);
    Layer::Linear(Linear { ws: l.ws, bs: l.bs })
}

/// A normalization layer over `c` channels; GroupNorm with min(`groups`, c) groups.
pub(super) fn norm(p: nn::Path, kind: NormKind, c: i64, groups: i64) -> Layer {
    match kind {
        NormKind::Group => {
            let groups = groups.min(c);
            let g = nn::group_norm(p, groups, c, Default::default());
            Layer::GroupNorm(GroupNorm {
                ws: g.ws.expect("affine"),
                bs: g.bs.expect("affine"),
                groups,
            })
        }
        NormKind::Batch => Layer::BatchNorm(nn::batch_norm2d(p, c, Default::default())),
    }
}
