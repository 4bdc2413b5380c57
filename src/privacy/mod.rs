//! Privacy: differentially private training (per-example gradients, DP-SGD) and its
//! accounting (RDP and PRV accountants), kept apart as Opacus does: the optimizer never
//! knows how ε is computed.
pub mod accountant;
mod conv_grads;
pub mod dpsgd;
pub mod grad_sample;
pub mod pate;
