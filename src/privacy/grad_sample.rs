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
//!   ⟨U_iᵀU_i, G_iᵀG_i⟩ without forming it; bias: Σ_l G_i. Layers with many output positions
//!   (L ≥ 128) and many input channels (≥ 16) skip the patches: libtorch's convolution
//!   backward-weights kernel, called once with the batch as the groups, returns every ∇W_i
//!   (`conv_grad.cpp`; e.g. 16 vs 29 ms for a 64-channel 32×32 ResNet-18 layer at batch 32;
//!   slower than the patches for 1- or 3-channel inputs, and than the ghost norm for small
//!   feature maps);
//! - GroupNorm `y = γ x̂ + β`: Σ_hw g_i x̂_i and Σ_hw g_i.
//!
//! The clipped sum Σ_i c_i ∇_i (c_i = min(1, C/(‖∇_i‖+1e-6)), as Opacus) is then one matrix
//! product per layer with the clip factors folded into G.
use super::conv_grads::{grouped_grads, grouped_pays, positions_first, unfold};
use super::conv_grads::{to_weight_layout, PatchOrder, Patches};
use crate::nets::{Layer, Net, Pass, Tape};
use crate::{Error, Result};
use tch::{Kind, Reduction, Tensor};

/// What the per-layer rules keep between the norm and the sum phases.
enum Prepared {
    /// a (N, D), g (N, Dout)
    Linear { a: Tensor, g: Tensor, bias: bool },
    /// Ghost: patches, gt (N, L, Cout); the weight gradient is never materialized.
    ConvGhost {
        patches: Patches,
        gt: Tensor,
        bias: bool,
    },
    /// Materialized per-example weight gradients (N, Cout, D), bias gradients (N, Cout), and
    /// for a convolution the order of D.
    Materialized {
        w: Tensor,
        b: Option<Tensor>,
        order: Option<PatchOrder>,
    },
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
    let grads = Tensor::f_run_backward(&[losses.sum(losses.kind())], &outputs, false, false)
        .map_err(|e| Error::Torch(e.to_string()))?;
    Ok((tape, grads, losses.detach(), logits.detach()))
}

/// Per-layer preparation and squared per-example norms (N,) of the layer's gradients.
fn prepare(layer: &Layer, input: Tensor, g: Tensor) -> Result<(Prepared, Tensor)> {
    let sq = |t: &Tensor| {
        t.square()
            .flatten(1, -1)
            .sum_dim_intlist(1, false, None::<Kind>)
    };
    match layer {
        Layer::Linear(l) => {
            let mut norm2 = sq(&input) * sq(&g);
            if l.bs.is_some() {
                norm2 += sq(&g);
            }
            let bias = l.bs.is_some();
            Ok((Prepared::Linear { a: input, g, bias }, norm2))
        }
        Layer::Conv(c) if grouped_pays(g.size()[2] * g.size()[3], input.size()[1]) => {
            let (w, b) = grouped_grads(&input, &g, c)?;
            let mut norm2 = sq(&w);
            if let Some(b) = &b {
                norm2 += sq(b);
            }
            Ok((Prepared::Materialized { w, b, order: None }, norm2))
        }
        Layer::Conv(c) => {
            let patches = unfold(&input, c);
            let (l, d) = patches.dims();
            let cout = g.size()[1];
            let gt = positions_first(&g, l);
            let gb =
                c.bs.as_ref()
                    .map(|_| gt.sum_dim_intlist(1, false, None::<Kind>));
            if l * l < cout * d {
                let aa = patches.gram();
                let gg = gt.bmm(&gt.transpose(1, 2));
                let mut norm2 =
                    (aa * gg).sum_dim_intlist([1i64, 2].as_slice(), false, None::<Kind>);
                if let Some(gb) = &gb {
                    norm2 += sq(gb);
                }
                let bias = gb.is_some();
                Ok((Prepared::ConvGhost { patches, gt, bias }, norm2))
            } else {
                let w = gt.transpose(1, 2).bmm(&patches.ld());
                let mut norm2 = sq(&w);
                if let Some(gb) = &gb {
                    norm2 += sq(gb);
                }
                let order = Some(patches.order);
                Ok((Prepared::Materialized { w, b: gb, order }, norm2))
            }
        }
        Layer::GroupNorm(_) => {
            let w = (&g * &input).sum_dim_intlist([2i64, 3].as_slice(), false, None::<Kind>);
            let b = g.sum_dim_intlist([2i64, 3].as_slice(), false, None::<Kind>);
            let norm2 = sq(&w) + sq(&b);
            Ok((
                Prepared::Materialized {
                    w,
                    b: Some(b),
                    order: None,
                },
                norm2,
            ))
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
                v.push(gc.sum_dim_intlist(0, false, None::<Kind>));
            }
            v
        }
        Prepared::ConvGhost { patches, gt, bias } => {
            let (n, l, cout) = (gt.size()[0], gt.size()[1], gt.size()[2]);
            let gc = gt * c.view([n, 1, 1]);
            let w = gc
                .reshape([n * l, cout])
                .transpose(0, 1)
                .mm(&patches.flat());
            let mut v = vec![to_weight_layout(&w, patches.order, &shape(0))];
            if *bias {
                v.push(gc.sum_dim_intlist([0i64, 1].as_slice(), false, None::<Kind>));
            }
            v
        }
        Prepared::Materialized { w, b, order } => {
            let n = w.size()[0];
            let cw = |t: &Tensor| {
                let mut s = vec![n];
                s.extend(std::iter::repeat_n(1, t.dim() - 1));
                (t * c.view(s.as_slice())).sum_dim_intlist(0, false, None::<Kind>)
            };
            let sum = cw(w);
            let mut v = vec![match order {
                Some(o) => to_weight_layout(&sum, *o, &shape(0)),
                None => sum.reshape(shape(0)),
            }];
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
        let mut norm2 = Tensor::zeros([x.size()[0]], (x.kind(), x.device()));
        for (rec, g) in tape.records.into_iter().zip(grads) {
            let (p, n2) = prepare(&net.layers[rec.layer], rec.input, g)?;
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
            let a = rec.input;
            let v = match layer {
                Layer::Linear(l) => {
                    let mut v = vec![g.unsqueeze(2) * a.unsqueeze(1)];
                    if l.bs.is_some() {
                        v.push(g.shallow_clone());
                    }
                    v
                }
                Layer::Conv(c) if grouped_pays(g.size()[2] * g.size()[3], a.size()[1]) => {
                    let (w, b) = grouped_grads(&a, &g, c)?;
                    std::iter::once(w).chain(b).collect()
                }
                Layer::Conv(c) => {
                    let patches = unfold(&a, c);
                    let cout = g.size()[1];
                    let g = g.reshape([n, cout, -1]);
                    let w = g.bmm(&patches.ld());
                    let mut v = vec![to_weight_layout(&w, patches.order, &params[0].size())];
                    if c.bs.is_some() {
                        v.push(g.sum_dim_intlist(2, false, None::<Kind>));
                    }
                    v
                }
                Layer::GroupNorm(_) => vec![
                    (&g * &a).sum_dim_intlist([2i64, 3].as_slice(), false, None::<Kind>),
                    g.sum_dim_intlist([2i64, 3].as_slice(), false, None::<Kind>),
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
