//! `--arch` values: the architectures and their options, parsed and printed.
use crate::{Error, Result};

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
    Cnn {
        act: Act,
        /// GroupNorm (16 groups) after both convolutions when set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        norm: Option<NormKind>,
    },
    SmallCnn {
        conv: usize,
        act: Act,
    },
    /// The MNIST CNN of Wong & Kolter 2018 and Wong et al. 2020 ("Fast is better than free"):
    /// conv 16@4×4 stride 2 pad 1, conv 32@4×4 stride 2 pad 1, dense 100, dense classes.
    WongCnn {
        act: Act,
    },
    /// The CIFAR-10 CNN of Papernot et al. 2021 (tempered sigmoids; Tramèr & Boneh 2021's
    /// end-to-end baseline); `norm` adds GroupNorm after every convolution.
    CifarCnn {
        act: Act,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        norm: Option<NormKind>,
        /// Weight-standardized convolutions ([`crate::nets::Conv::standardize`]).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ws: bool,
    },
    Resnet18 {
        norm: NormKind,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ws: bool,
    },
}

impl std::str::FromStr for Arch {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |msg: String| Error::field("arch", msg);
        let (name, opts) = s.split_once(':').unwrap_or((s, ""));
        let mut act = Act::Relu;
        let mut conv = 2usize;
        let mut norm = Some(NormKind::Group);
        let mut ws = false;
        for opt in opts.split(',').filter(|o| !o.is_empty()) {
            let (k, v) = opt
                .split_once('=')
                .ok_or_else(|| bad(format!("'{opt}': expected KEY=VALUE after ':'")))?;
            match (k.trim(), v.trim()) {
                ("act", "relu") => act = Act::Relu,
                ("act", "tanh") => act = Act::Tanh,
                ("norm", "none") => norm = None,
                ("ws", "true") => ws = true,
                ("ws", "false") => ws = false,
                ("conv", n) => {
                    conv = n
                        .parse()
                        .ok()
                        .filter(|n| (1..=3).contains(n))
                        .ok_or_else(|| bad(format!("conv={n}: expected 1, 2 or 3")))?
                }
                ("norm", "group") => norm = Some(NormKind::Group),
                ("norm", "batch") => norm = Some(NormKind::Batch),
                (k, v) => {
                    return Err(bad(format!(
                        "unknown option {k}={v} (expected act=relu|tanh, conv=1..3, \
                         norm=none|group|batch, ws=true|false)"
                    )))
                }
            }
        }
        let used_conv = opts.contains("conv=");
        let used_act = opts.contains("act=");
        let used_norm = opts.contains("norm=");
        let used_ws = opts.contains("ws=");
        let arch = match name.trim() {
            "cnn" => Arch::Cnn {
                act,
                norm: if used_norm { norm } else { None },
            },
            "small-cnn" | "small_cnn" => Arch::SmallCnn { conv, act },
            "wong-cnn" => Arch::WongCnn { act },
            "cifar-cnn" => {
                if used_conv {
                    return Err(bad("cifar-cnn takes only act=… and norm=none|group".into()));
                }
                Arch::CifarCnn {
                    // The paper's choice: tanh (its tempered sigmoid with s = 2, T = 2, o = 1).
                    act: if used_act { act } else { Act::Tanh },
                    norm: if used_norm { norm } else { None },
                    ws,
                }
            }
            "resnet18" | "resnet-18" => match norm {
                Some(norm) => Arch::Resnet18 { norm, ws },
                None => return Err(bad("resnet18 needs norm=group|batch".into())),
            },
            other => {
                return Err(bad(format!(
                    "unknown architecture '{other}' (expected cnn, small-cnn:conv=N, wong-cnn, \
                     cifar-cnn or resnet18)"
                )))
            }
        };
        match arch {
            Arch::Cnn { .. } if used_conv || used_ws => Err(bad(
                "cnn takes only act=relu|tanh and norm=none|group".into(),
            )),
            Arch::SmallCnn { .. } if used_norm || used_ws => {
                Err(bad("small-cnn takes conv=N and act=…".into()))
            }
            Arch::WongCnn { .. } if used_norm || used_ws || used_conv => {
                Err(bad("wong-cnn takes only act=relu|tanh".into()))
            }
            Arch::Resnet18 { .. } if used_conv || used_act => {
                Err(bad("resnet18 takes only norm=group|batch and ws=…".into()))
            }
            a => Ok(a),
        }
    }
}

impl NormKind {
    /// The option value: group or batch.
    fn name(self) -> &'static str {
        match self {
            NormKind::Group => "group",
            NormKind::Batch => "batch",
        }
    }
}

/// `,norm=…` when a normalization is set (the default none prints nothing).
fn opt_norm(norm: &Option<NormKind>) -> String {
    norm.map(|n| format!(",norm={}", n.name()))
        .unwrap_or_default()
}

/// `,ws=true` when weight standardization is on.
fn opt_ws(ws: bool) -> &'static str {
    if ws {
        ",ws=true"
    } else {
        ""
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let act = |a: &Act| match a {
            Act::Relu => "relu",
            Act::Tanh => "tanh",
        };
        match self {
            Arch::Cnn { act: a, norm } => write!(f, "cnn:act={}{}", act(a), opt_norm(norm)),
            Arch::SmallCnn { conv, act: a } => write!(f, "small-cnn:conv={conv},act={}", act(a)),
            Arch::WongCnn { act: a } => write!(f, "wong-cnn:act={}", act(a)),
            Arch::CifarCnn { act: a, norm, ws } => write!(
                f,
                "cifar-cnn:act={}{}{}",
                act(a),
                opt_norm(norm),
                opt_ws(*ws)
            ),
            Arch::Resnet18 { norm, ws } => {
                write!(f, "resnet18:norm={}{}", norm.name(), opt_ws(*ws))
            }
        }
    }
}

impl Arch {
    /// Whether every trainable layer has a per-example gradient rule (no BatchNorm).
    pub fn dp_compatible(&self) -> bool {
        !matches!(
            self,
            Arch::Resnet18 {
                norm: NormKind::Batch,
                ..
            } | Arch::Cnn {
                norm: Some(NormKind::Batch),
                ..
            } | Arch::CifarCnn {
                norm: Some(NormKind::Batch),
                ..
            }
        )
    }
}
