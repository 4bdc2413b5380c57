//! Convolution helpers of the per-example gradient rules (`grad_sample`): input patches laid out
//! for one strided copy, the output gradient read positions-first, and every example's weight
//! gradient from one grouped convolution backward (`conv_grad.cpp`, the one libtorch call tch
//! does not wrap).
use crate::nets::Conv;
use crate::{Error, Result};
use std::ffi::{c_char, CStr};
use tch::Tensor;

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
/// kernel ([`grouped_weight_grads`]) rather than from patches: many output positions and many
/// input channels. With few channels (a 3-channel stem: 2.3 vs 1.2 ms) the patches are cheap;
/// with few positions the ghost norm is (`benches/dp_step.rs`; BENCHMARKS.md has the numbers).
pub(super) fn grouped_pays(positions: i64, in_channels: i64) -> bool {
    positions >= 128 && in_channels >= 16
}

/// Every example's weight gradient (N, Cout, C, k, k) of conv `c` with input `x` and output
/// gradient `g`, by one call of libtorch's convolution backward with the batch as the groups.
pub(super) fn grouped_weight_grads(x: &Tensor, g: &Tensor, c: &Conv) -> Result<Tensor> {
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
    Ok(unsafe { Tensor::from_ptr(ptr) })
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
