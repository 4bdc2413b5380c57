//! Per-example gradients for the whole batch at once, by per-layer rules (the approach of
//! Opacus's grad samplers), with "ghost" norms where they are cheaper (Li et al. 2022;
//! Bu et al. 2022, mixed ghost clipping).
//!
//! One forward pass records each layer's input and output ([`crate::nets::Tape`]); one
//! backward pass of the *summed* loss gives ∂loss_i/∂output_i for every example i (autograd
//! is asked only for those, so no weight gradient is ever formed by autograd). Then per layer:
//!
//! - linear `z = W a + b`: g_i aᵢᵀ, so ‖∇W_i‖² = ‖a_i‖²‖g_i‖² (never materialized);
//! - conv: with U_i = unfold(a_i) (D × L) and G_i (C_out × L), ∇W_i = G_i U_iᵀ; its squared norm is
//!   either computed from the materialized (C_out × D) matrix or, when L² < C_out·D, as the "ghost"
//!   ⟨U_iᵀU_i, G_iᵀG_i⟩ without forming it; bias: Σ_l G_i;
//! - GroupNorm `y = γ x̂ + β`: Σ_hw g_i x̂_i and Σ_hw g_i.
//!
//! The clipped sum Σ_i c_i ∇_i (c_i = min(1, C/(‖∇_i‖+1e-6)), as Opacus) is then one matrix
//! product per layer with the clip factors folded into G.
use crate::nets::{Layer, Net, Pass, Tape};
use crate::{Error, Result};
use tch::{Kind, Reduction, Tensor};

/// What the per-layer rules keep between the norm and the sum phases.
enum Prepared {
    /// a (N, D), g (N, Dout)
    Linear { a: Tensor, g: Tensor, bias: bool },
    /// Ghost: u (N, D, L), g (N, Cout, L); the weight gradient is never materialized.
    ConvGhost { u: Tensor, g: Tensor, bias: bool },
    /// Materialized per-example weight gradients (N, Cout, D) and bias gradients (N, Cout).
    Materialized { w: Tensor, b: Option<Tensor> },
}

/// Results of one vectorized per-example pass.
pub struct ClippedSum {
    /// Σ_i c_i ∇θ L_i for each parameter, aligned with [`Net::params`].
    pub grads: Vec<Tensor>,
    /// Per-example gradient norms before clipping, (N,).
    pub norms: Tensor,
    /// Per-example losses, (N,).
    pub losses: Tensor,
    /// Logits (detached), (N, classes).
    pub logits: Tensor,
}

/// Forward with a tape, backward of the summed cross-entropy to every recorded output.
fn backprop(net: &Net, x: &Tensor, y: &Tensor) -> Result<(Tape, Vec<Tensor>, Tensor, Tensor)> {
    if !net.arch.dp_compatible() {
        return Err(Error::field(
            "arch",
            format!(
                "{} has BatchNorm, which mixes the examples of a batch, so per-example \
                 gradients (and DP-SGD) are undefined; use norm=group",
                net.arch
            ),
        ));
    }
    let mut tape = Tape::default();
    let logits = net.forward(
        x,
        &mut Pass {
            train: true,
            tape: Some(&mut tape),
        },
    );
    let losses = logits.cross_entropy_loss::<Tensor>(y, None, Reduction::None, -100, 0.0);
    let outputs: Vec<&Tensor> = tape.records.iter().map(|r| &r.output).collect();
    let grads = Tensor::f_run_backward(&[losses.sum(Kind::Float)], &outputs, false, false)
        .map_err(|e| Error::Torch(e.to_string()))?;
    Ok((tape, grads, losses.detach(), logits.detach()))
}

/// Per-layer preparation and squared per-example norms (N,) of the layer's gradients.
fn prepare(layer: &Layer, input: Tensor, g: Tensor) -> (Prepared, Tensor) {
    let n = g.size()[0];
    let sq = |t: &Tensor| {
        t.square()
            .flatten(1, -1)
            .sum_dim_intlist(1, false, Kind::Float)
    };
    match layer {
        Layer::Linear(l) => {
            let mut norm2 = sq(&input) * sq(&g);
            if l.bs.is_some() {
                norm2 += sq(&g);
            }
            let bias = l.bs.is_some();
            (Prepared::Linear { a: input, g, bias }, norm2)
        }
        Layer::Conv(c) => {
            let k = c.kernel;
            let u = input.im2col([k, k], [1, 1], [c.padding, c.padding], [c.stride, c.stride]);
            let (d, l) = (u.size()[1], u.size()[2]);
            let cout = g.size()[1];
            let g = g.reshape([n, cout, l]);
            let gb =
                c.bs.as_ref()
                    .map(|_| g.sum_dim_intlist(2, false, Kind::Float));
            if l * l < cout * d {
                let ut = u.transpose(1, 2);
                let aa = ut.bmm(&u);
                let gg = g.transpose(1, 2).bmm(&g);
                let mut norm2 = (aa * gg).sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Float);
                if let Some(gb) = &gb {
                    norm2 += sq(gb);
                }
                let bias = gb.is_some();
                (Prepared::ConvGhost { u, g, bias }, norm2)
            } else {
                let w = g.bmm(&u.transpose(1, 2));
                let mut norm2 = sq(&w);
                if let Some(gb) = &gb {
                    norm2 += sq(gb);
                }
                (Prepared::Materialized { w, b: gb }, norm2)
            }
        }
        Layer::GroupNorm(_) => {
            let w = (&g * &input).sum_dim_intlist([2i64, 3].as_slice(), false, Kind::Float);
            let b = g.sum_dim_intlist([2i64, 3].as_slice(), false, Kind::Float);
            let norm2 = sq(&w) + sq(&b);
            (Prepared::Materialized { w, b: Some(b) }, norm2)
        }
        Layer::BatchNorm(_) => unreachable!("refused in backprop"),
    }
}

/// Σ_i c_i ∇_i for one layer's parameters (weight, then bias), shaped like them.
fn weighted_sum(layer: &Layer, p: &Prepared, c: &Tensor) -> Vec<Tensor> {
    let params = layer.params();
    let shape = |i: usize| params[i].size();
    match p {
        Prepared::Linear { a, g, bias } => {
            let gc = g * c.unsqueeze(1);
            let mut v = vec![gc.transpose(0, 1).mm(a)];
            if *bias {
                v.push(gc.sum_dim_intlist(0, false, Kind::Float));
            }
            v
        }
        Prepared::ConvGhost { u, g, bias } => {
            let (n, cout, l) = (g.size()[0], g.size()[1], g.size()[2]);
            let d = u.size()[1];
            let gc = g * c.view([n, 1, 1]);
            let w = gc
                .permute([1, 0, 2])
                .reshape([cout, n * l])
                .mm(&u.permute([0, 2, 1]).reshape([n * l, d]));
            let mut v = vec![w.reshape(shape(0))];
            if *bias {
                v.push(gc.sum_dim_intlist([0i64, 2].as_slice(), false, Kind::Float));
            }
            v
        }
        Prepared::Materialized { w, b } => {
            let n = w.size()[0];
            let cw = |t: &Tensor| {
                let mut s = vec![n];
                s.extend(std::iter::repeat_n(1, t.dim() - 1));
                (t * c.view(s.as_slice())).sum_dim_intlist(0, false, Kind::Float)
            };
            let mut v = vec![cw(w).reshape(shape(0))];
            if let Some(b) = b {
                v.push(cw(b));
            }
            v
        }
    }
}

/// Per-example clipping to `clip` and the clipped sum, vectorized over the batch.
pub fn clipped_sum(net: &Net, x: &Tensor, y: &Tensor, clip: f64) -> Result<ClippedSum> {
    let (tape, grads, losses, logits) = backprop(net, x, y)?;
    tch::no_grad(|| {
        let mut prepared = Vec::with_capacity(grads.len());
        let mut norm2 = Tensor::zeros([x.size()[0]], (Kind::Float, x.device()));
        for (rec, g) in tape.records.into_iter().zip(grads) {
            let (p, n2) = prepare(&net.layers[rec.layer], rec.input, g);
            norm2 += n2;
            prepared.push((rec.layer, p));
        }
        let norms = norm2.sqrt();
        let c = (clip / (&norms + 1e-6)).clamp_max(1.0);
        let mut by_layer: Vec<Option<Vec<Tensor>>> = (0..net.layers.len()).map(|_| None).collect();
        for (li, p) in &prepared {
            by_layer[*li] = Some(weighted_sum(&net.layers[*li], p, &c));
        }
        let mut out = Vec::new();
        for (li, layer) in net.layers.iter().enumerate() {
            match by_layer[li].take() {
                Some(v) => out.extend(v),
                None => out.extend(layer.params().iter().map(|p| p.zeros_like())),
            }
        }
        Ok(ClippedSum {
            grads: out,
            norms,
            losses,
            logits,
        })
    })
}

/// Every per-example gradient, materialized: for each parameter a tensor (N, *shape).
/// Memory-hungry; meant for tests and small models.
pub fn per_example_grads(net: &Net, x: &Tensor, y: &Tensor) -> Result<Vec<Tensor>> {
    let (tape, grads, _, _) = backprop(net, x, y)?;
    let n = x.size()[0];
    tch::no_grad(|| {
        let mut by_layer: Vec<Option<Vec<Tensor>>> = (0..net.layers.len()).map(|_| None).collect();
        for (rec, g) in tape.records.into_iter().zip(grads) {
            let layer = &net.layers[rec.layer];
            let params = layer.params();
            let per_shape = |i: usize| {
                let mut s = vec![n];
                s.extend(params[i].size());
                s
            };
            let a = rec.input;
            let v = match layer {
                Layer::Linear(l) => {
                    let mut v = vec![g.unsqueeze(2) * a.unsqueeze(1)];
                    if l.bs.is_some() {
                        v.push(g.shallow_clone());
                    }
                    v
                }
                Layer::Conv(c) => {
                    let k = c.kernel;
                    let u = a.im2col([k, k], [1, 1], [c.padding, c.padding], [c.stride, c.stride]);
                    let cout = g.size()[1];
                    let g = g.reshape([n, cout, -1]);
                    let mut v = vec![g.bmm(&u.transpose(1, 2)).reshape(per_shape(0))];
                    if c.bs.is_some() {
                        v.push(g.sum_dim_intlist(2, false, Kind::Float));
                    }
                    v
                }
                Layer::GroupNorm(_) => vec![
                    (&g * &a).sum_dim_intlist([2i64, 3].as_slice(), false, Kind::Float),
                    g.sum_dim_intlist([2i64, 3].as_slice(), false, Kind::Float),
                ],
                Layer::BatchNorm(_) => unreachable!("refused in backprop"),
            };
            by_layer[rec.layer] = Some(v);
        }
        let mut out = Vec::new();
        for (li, layer) in net.layers.iter().enumerate() {
            match by_layer[li].take() {
                Some(v) => out.extend(v),
                None => out.extend(layer.params().iter().map(|p| {
                    let mut s = vec![n];
                    s.extend(p.size());
                    Tensor::zeros(s.as_slice(), (p.kind(), p.device()))
                })),
            }
        }
        Ok(out)
    })
}
