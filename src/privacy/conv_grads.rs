//! Convolution helpers of the per-example gradient rules (`grad_sample`): input patches laid out
//! for one strided copy, the output gradient read positions-first, and every example's weight
//! gradient from one grouped convolution backward (`conv_grad.cpp`, the one libtorch call tch
//! does not wrap).
use crate::nets::Conv;
use crate::{Error, Result};
use std::ffi::{c_char, CStr};
use tch::{Kind, Tensor};

extern "C" {
    /// `src/privacy/conv_grad.cpp`: (N, Cout, C, k, k), or null with a message in `err`.
    fn fool_per_example_conv_weight_grad(
        grad_out: *const torch_sys::C_tensor,
        input: *const torch_sys::C_tensor,
        kernel: i64,
        stride: i64,
        padding: i64,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut torch_sys::C_tensor;
}

/// Whether a conv layer's per-example weight gradients come from the grouped backward-weights
/// kernel ([`grouped_grads`]) rather than from patches: many output positions and many
/// input channels. With few channels (a 3-channel stem: 2.3 vs 1.2 ms) the patches are cheap;
/// with few positions the ghost norm is (`benches/dp_step.rs`; BENCHMARKS.md has the numbers).
pub(super) fn grouped_pays(positions: i64, in_channels: i64) -> bool {
    positions >= 128 && in_channels >= 16
}

/// Every example's weight gradient (N, Cout, C, k, k) of conv `c` with input `x` and output
/// gradient `g`, by one call of libtorch's convolution backward with the batch as the groups;
/// with a bias, also its per-example gradient (N, Cout).
pub(super) fn grouped_grads(x: &Tensor, g: &Tensor, c: &Conv) -> Result<(Tensor, Option<Tensor>)> {
    let mut err = [0 as c_char; 512];
    // SAFETY: both pointers are live tensors borrowed for the call; the result is a new
    // at::Tensor owned by the returned Tensor (tch frees it on drop); err is NUL-terminated.
    let ptr = unsafe {
        fool_per_example_conv_weight_grad(
            g.as_ptr(),
            x.as_ptr(),
            c.kernel,
            c.stride,
            c.padding,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if ptr.is_null() {
        let msg = unsafe { CStr::from_ptr(err.as_ptr()) };
        return Err(Error::Torch(
            msg.to_string_lossy()
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
        ));
    }
    let w = unsafe { Tensor::from_ptr(ptr) };
    let b =
        c.bs.as_ref()
            .map(|_| g.sum_dim_intlist([2i64, 3].as_slice(), false, None::<Kind>));
    Ok((w, b))
}

/// How the D = C·k·k entries of a patch are ordered.
#[derive(Clone, Copy)]
pub(super) enum PatchOrder {
    /// (C, kh, kw), the order of a weight (Cout, C, k, k): for NCHW inputs.
    Chw,
    /// (kh, kw, C): for channels-last inputs, whose channels are contiguous in memory.
    Hwc,
}

/// A convolution's input patches for every output position, gathered by one strided copy of a
/// view of the (padded) input, laid out so that the copy moves the longest contiguous runs:
/// - a channels-last input: (N, L, D) with D in (kh, kw, C) order — a patch row is contiguous;
/// - an NCHW input with stride 1: (N, D, L), as `im2col` — an output row is contiguous;
/// - an NCHW input with a larger stride: (N, L, D) with D in (C, kh, kw) order — a kernel row is.
///
/// L = output positions, D = C·k·k. About 3× faster on the CPU than libtorch's `im2col`, which
/// runs a parallel region per example; with L before D the weighted sum's (N·L, D) operand is a
/// free reshape (`benches/dp_step.rs`).
pub(super) struct Patches {
    t: Tensor,
    pub(super) order: PatchOrder,
    /// Whether `t` is (N, L, D) (else (N, D, L)).
    l_first: bool,
}

impl Patches {
    /// Output positions L and patch length D.
    pub(super) fn dims(&self) -> (i64, i64) {
        let s = self.t.size();
        if self.l_first {
            (s[1], s[2])
        } else {
            (s[2], s[1])
        }
    }

    /// (N, L, D), a view.
    pub(super) fn ld(&self) -> Tensor {
        if self.l_first {
            self.t.shallow_clone()
        } else {
            self.t.transpose(1, 2)
        }
    }

    /// The per-example Gram matrices of the patches, (N, L, L).
    pub(super) fn gram(&self) -> Tensor {
        let ld = self.ld();
        ld.bmm(&ld.transpose(1, 2))
    }

    /// (N·L, D): a reshape when L comes first, else a copy.
    pub(super) fn flat(&self) -> Tensor {
        let (l, d) = self.dims();
        self.ld().reshape([self.t.size()[0] * l, d])
    }
}

pub(super) fn unfold(x: &Tensor, c: &Conv) -> Patches {
    let (k, s, p) = (c.kernel, c.stride, c.padding);
    let x = if p > 0 {
        x.constant_pad_nd([p, p, p, p])
    } else {
        x.shallow_clone()
    };
    let size = x.size();
    let (n, ch, h, w) = (size[0], size[1], size[2], size[3]);
    let (ho, wo) = ((h - k) / s + 1, (w - k) / s + 1);
    let (l, d) = (ho * wo, ch * k * k);
    let st = x.stride();
    if ch > 1 && st[1] == 1 {
        let t = x
            .as_strided(
                [n, ho, wo, k, k, ch],
                [st[0], st[2] * s, st[3] * s, st[2], st[3], st[1]],
                None::<i64>,
            )
            .reshape([n, l, d]);
        Patches {
            t,
            order: PatchOrder::Hwc,
            l_first: true,
        }
    } else if s == 1 && wo > k && st[3] == 1 {
        let t = x
            .as_strided(
                [n, ch, k, k, ho, wo],
                [st[0], st[1], st[2], st[3], st[2], st[3]],
                None::<i64>,
            )
            .reshape([n, d, l]);
        Patches {
            t,
            order: PatchOrder::Chw,
            l_first: false,
        }
    } else {
        let t = x
            .as_strided(
                [n, ho, wo, ch, k, k],
                [st[0], st[2] * s, st[3] * s, st[1], st[2], st[3]],
                None::<i64>,
            )
            .reshape([n, l, d]);
        Patches {
            t,
            order: PatchOrder::Chw,
            l_first: true,
        }
    }
}

/// `t` (…, Cout, D) with D in `order`, as (…, Cout, C, k, k).
pub(super) fn to_weight_layout(t: &Tensor, order: PatchOrder, weight: &[i64]) -> Tensor {
    let lead: Vec<i64> = t.size()[..t.dim() - 2].to_vec();
    let (cout, ch, k) = (weight[0], weight[1], weight[2]);
    match order {
        PatchOrder::Chw => t.reshape([lead.as_slice(), &[cout, ch, k, k]].concat()),
        PatchOrder::Hwc => {
            let r = lead.len() as i64;
            let mut perm: Vec<i64> = (0..r).collect();
            perm.extend([r, r + 3, r + 1, r + 2]);
            t.reshape([lead.as_slice(), &[cout, k, k, ch]].concat())
                .permute(perm.as_slice())
                .contiguous()
        }
    }
}

/// A convolution's output gradient g (N, Cout, Ho, Wo) as (N, L, Cout), L = Ho·Wo: a view when
/// g is channels-last (as behind the CNNs' channels-last activations), else a transposed view
/// of its (N, Cout, L) reshape. Matrix products take either without a copy.
pub(super) fn positions_first(g: &Tensor, l: i64) -> Tensor {
    let (n, cout) = (g.size()[0], g.size()[1]);
    let nhwc = g.permute([0, 2, 3, 1]);
    if nhwc.is_contiguous() {
        nhwc.reshape([n, l, cout])
    } else {
        g.reshape([n, cout, l]).transpose(1, 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device};

    /// The grouped kernel against the patch rule, in float32 (the training dtype; no kinks, so
    /// only rounding separates them), for an NCHW input with padding and stride and for a
    /// channels-last one (the CNNs' pooled activations).
    #[test]
    fn grouped_grads_equal_the_patch_rule() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        for (cin, side, k, s, p, cl) in [(16, 12, 3, 2, 1, false), (32, 15, 3, 1, 0, true)] {
            let c = Conv {
                ws: vs.root().randn("w", &[8, cin, k, k], 0.0, 1.0),
                bs: Some(vs.root().zeros("b", &[8])),
                kernel: k,
                stride: s,
                padding: p,
                standardize: false,
            };
            let mut x = Tensor::randn([4, cin, side, side], (Kind::Float, Device::Cpu));
            if cl {
                x = x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
            }
            let y = x.conv2d(&c.ws, c.bs.as_ref(), [s, s], [p, p], [1, 1], 1);
            let g = y.randn_like();
            let (w, b) = grouped_grads(&x, &g, &c).unwrap();
            let patches = unfold(&x, &c);
            let (l, _) = patches.dims();
            let want = positions_first(&g, l).transpose(1, 2).bmm(&patches.ld());
            let want = to_weight_layout(&want, patches.order, &c.ws.size());
            let scale = want.abs().max().double_value(&[]);
            let diff = (&w - &want).abs().max().double_value(&[]);
            assert!(
                diff <= 1e-5 * scale,
                "cin {cin}: weight diff {diff} (scale {scale})"
            );
            let b_want = g.sum_dim_intlist([2i64, 3].as_slice(), false, None::<Kind>);
            assert!(b.unwrap().allclose(&b_want, 1e-5, 1e-5, false));
            assert_eq!(w.size(), [4, 8, cin, k, k]);
        }
    }
}
