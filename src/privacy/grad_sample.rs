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
//!
//! **Augmentation multiplicity** (De et al. 2022, [`clipped_sum_grouped`]): the batch holds K
//! augmented copies of each example, consecutive, and an example's gradient is the *mean* of its
//! copies' gradients, clipped as one — so one example still moves the sum by at most C and the
//! privacy analysis is unchanged. The rules above extend by treating the K copies as more
//! output positions of one example: a linear layer's K rows, or a convolution's K·L positions,
//! enter the ghost norm ⟨AAᵀ, GGᵀ⟩ or the materialized G Aᵀ of the example together; the
//! materialized per-copy gradients (grouped convolutions, GroupNorm) are summed over the copies.
use super::conv_grads::{grouped_grads, grouped_pays, positions_first, unfold};
use super::conv_grads::{to_weight_layout, PatchOrder, Patches};
use crate::nets::{Conv, Layer, Net, Pass, Tape};
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

/// Forward with a tape, backward of the summed cross-entropy (divided by the multiplicity `k`,
/// so that the copies of an example add up to the gradient of their mean) to every recorded
/// output.
fn backprop(
    net: &Net,
    x: &Tensor,
    y: &Tensor,
    k: i64,
) -> Result<(Tape, Vec<Tensor>, Tensor, Tensor)> {
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
    let total = losses.sum(losses.kind());
    let total = if k == 1 { total } else { total / k as f64 };
    let grads = Tensor::f_run_backward(&[total], &outputs, false, false)
        .map_err(|e| Error::Torch(e.to_string()))?;
    Ok((tape, grads, losses.detach(), logits.detach()))
}

/// Per-copy tensors (N·k, …) summed over each example's k consecutive copies: (N, …).
fn per_example(t: Tensor, k: i64) -> Tensor {
    if k == 1 {
        return t;
    }
    let mut s = t.size();
    s[0] /= k;
    s.insert(1, k);
    t.reshape(s.as_slice())
        .sum_dim_intlist(1, false, None::<Kind>)
}

/// (N·k, L, D) as (N, k·L, D): the copies of an example as more positions of it.
fn merge_copies(t: &Tensor, k: i64) -> Tensor {
    if k == 1 {
        return t.shallow_clone();
    }
    let s = t.size();
    t.reshape([s[0] / k, k * s[1], s[2]])
}

/// Squared per-example norms of per-row rank-one gradients g aᵀ summed over each example's k
/// rows: ‖Σ_r g_r a_rᵀ‖² = Σ_{r,r'} (a_r·a_r')(g_r·g_r').
fn ghost_rows(a: &Tensor, g: &Tensor, k: i64) -> Tensor {
    let n = a.size()[0] / k;
    let a = a.reshape([n, k, -1]);
    let g = g.reshape([n, k, -1]);
    (a.bmm(&a.transpose(1, 2)) * g.bmm(&g.transpose(1, 2))).sum_dim_intlist(
        [1i64, 2].as_slice(),
        false,
        None::<Kind>,
    )
}

/// Every example's gradient of a convolution's weight W, (N, *weight shape), and bias,
/// (N, Cout), materialized by the grouped kernel or from the patches; `k` copies per example.
/// Under weight standardization the gradient of the applied Ŵ goes through its Jacobian.
fn conv_materialized(
    c: &Conv,
    input: &Tensor,
    g: &Tensor,
    k: i64,
) -> Result<(Tensor, Option<Tensor>)> {
    let (w, b) = if grouped_pays(g.size()[2] * g.size()[3], input.size()[1]) {
        let (w, b) = grouped_grads(input, g, c)?;
        (per_example(w, k), b.map(|b| per_example(b, k)))
    } else {
        let patches = unfold(input, c);
        let (l, _) = patches.dims();
        let gm = merge_copies(&positions_first(g, l), k);
        let w = gm.transpose(1, 2).bmm(&merge_copies(&patches.ld(), k));
        let b =
            c.bs.as_ref()
                .map(|_| gm.sum_dim_intlist(1, false, None::<Kind>));
        (to_weight_layout(&w, patches.order, &c.ws.size()), b)
    };
    if c.standardize {
        return Ok((c.through_standardization(&w), b));
    }
    Ok((w, b))
}

/// Per-layer preparation and squared per-example norms (N,) of the layer's gradients, the
/// batch holding `k` consecutive copies of each example.
fn prepare(layer: &Layer, input: Tensor, g: Tensor, k: i64) -> Result<(Prepared, Tensor)> {
    let sq = |t: &Tensor| {
        t.square()
            .flatten(1, -1)
            .sum_dim_intlist(1, false, None::<Kind>)
    };
    match layer {
        Layer::Linear(l) => {
            let mut norm2 = if k == 1 {
                sq(&input) * sq(&g)
            } else {
                ghost_rows(&input, &g, k)
            };
            if l.bs.is_some() {
                norm2 += sq(&per_example(g.shallow_clone(), k));
            }
            let bias = l.bs.is_some();
            Ok((Prepared::Linear { a: input, g, bias }, norm2))
        }
        // Materialized per example: by the grouped kernel where it pays, and always under
        // weight standardization, whose gradient of W is J·(the gradient of Ŵ).
        Layer::Conv(c)
            if c.standardize || grouped_pays(g.size()[2] * g.size()[3], input.size()[1]) =>
        {
            let (w, b) = conv_materialized(c, &input, &g, k)?;
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
            let gm = merge_copies(&gt, k);
            let gb =
                c.bs.as_ref()
                    .map(|_| gm.sum_dim_intlist(1, false, None::<Kind>));
            if k * l * k * l < cout * d {
                let aa = if k == 1 {
                    patches.gram()
                } else {
                    let m = merge_copies(&patches.ld(), k);
                    m.bmm(&m.transpose(1, 2))
                };
                let gg = gm.bmm(&gm.transpose(1, 2));
                let mut norm2 =
                    (aa * gg).sum_dim_intlist([1i64, 2].as_slice(), false, None::<Kind>);
                if let Some(gb) = &gb {
                    norm2 += sq(gb);
                }
                let bias = gb.is_some();
                Ok((Prepared::ConvGhost { patches, gt, bias }, norm2))
            } else {
                let w = gm.transpose(1, 2).bmm(&merge_copies(&patches.ld(), k));
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
            let (w, b) = (per_example(w, k), per_example(b, k));
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

/// Σ_i c_i ∇_i for one layer's parameters (weight, then bias), shaped like them; `c` holds the
/// per-example factors, `rows` the same repeated for each copy (per-row operands).
fn weighted_sum(layer: &Layer, p: &Prepared, c: &Tensor, rows: &Tensor) -> Vec<Tensor> {
    let params = layer.params();
    let shape = |i: usize| params[i].size();
    match p {
        Prepared::Linear { a, g, bias } => {
            let gc = g * rows.unsqueeze(1);
            let mut v = vec![gc.transpose(0, 1).mm(a)];
            if *bias {
                v.push(gc.sum_dim_intlist(0, false, None::<Kind>));
            }
            v
        }
        Prepared::ConvGhost { patches, gt, bias } => {
            let (n, l, cout) = (gt.size()[0], gt.size()[1], gt.size()[2]);
            let gc = gt * rows.view([n, 1, 1]);
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
    clipped_sum_grouped(net, x, y, clip, 1)
}

/// [`clipped_sum`] with augmentation multiplicity: `x` holds `k` consecutive copies of each
/// example (N·k rows, `y` repeated alike); example i's gradient is the mean of its copies'
/// gradients, clipped as a whole. Norms are per example (N,); losses and logits per copy (N·k).
pub fn clipped_sum_grouped(
    net: &Net,
    x: &Tensor,
    y: &Tensor,
    clip: f64,
    k: usize,
) -> Result<ClippedSum> {
    let rows_n = x.size()[0];
    let k = k as i64;
    if k < 1 || rows_n % k != 0 {
        return Err(Error::field(
            "multiplicity",
            format!("{rows_n} rows are not whole groups of {k} copies"),
        ));
    }
    let (tape, grads, losses, logits) = backprop(net, x, y, k)?;
    tch::no_grad(|| {
        let mut prepared = Vec::with_capacity(grads.len());
        let mut norm2 = Tensor::zeros([rows_n / k], (x.kind(), x.device()));
        for (rec, g) in tape.records.into_iter().zip(grads) {
            let (p, n2) = prepare(&net.layers[rec.layer], rec.input, g, k)?;
            norm2 += n2;
            prepared.push((rec.layer, p));
        }
        let norms = norm2.sqrt();
        let c = (clip / (&norms + 1e-6)).clamp_max(1.0);
        let rows = if k == 1 {
            c.shallow_clone()
        } else {
            c.repeat_interleave_self_int(k, Some(0), None::<i64>)
        };
        let mut by_layer: Vec<Option<Vec<Tensor>>> = (0..net.layers.len()).map(|_| None).collect();
        for (li, p) in &prepared {
            by_layer[*li] = Some(weighted_sum(&net.layers[*li], p, &c, &rows));
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
    let (tape, grads, _, _) = backprop(net, x, y, 1)?;
    let n = x.size()[0];
    tch::no_grad(|| {
        let mut by_layer: Vec<Option<Vec<Tensor>>> = (0..net.layers.len()).map(|_| None).collect();
        for (rec, g) in tape.records.into_iter().zip(grads) {
            let layer = &net.layers[rec.layer];
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
                    let (w, b) = conv_materialized(c, &a, &g, 1)?;
                    std::iter::once(w).chain(b).collect()
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
