//! Adam (Kingma & Ba 2015) with the update of `torch.optim.Adam` (β = (0.9, 0.999), ε = 1e-8,
//! bias correction): the one implementation, used by training (`train::optim`) and by the
//! Carlini–Wagner attack, as torchattacks' CW uses `torch.optim.Adam`.
use tch::Tensor;

pub const BETA1: f64 = 0.9;
pub const BETA2: f64 = 0.999;
pub const EPS: f64 = 1e-8;

/// Update Adam's moments `m` and `v` of one tensor with its gradient `grad` (in place) and
/// return the change to subtract from the tensor at step `t` (1-based):
/// lr/(1−β₁ᵗ) · m / (√(v/(1−β₂ᵗ)) + ε), computed in PyTorch's order.
pub fn adam_step(m: &mut Tensor, v: &mut Tensor, grad: &Tensor, t: i32, lr: f64) -> Tensor {
    let bc1 = 1.0 - f64::powi(BETA1, t);
    let bc2 = 1.0 - f64::powi(BETA2, t);
    let _ = m.g_mul_scalar_(BETA1).g_add_(&(grad * (1.0 - BETA1)));
    let _ = v
        .g_mul_scalar_(BETA2)
        .g_add_(&(grad * grad * (1.0 - BETA2)));
    let denom = (&*v / bc2).sqrt() + EPS;
    &*m / denom * (lr / bc1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn first_step_moves_each_value_by_lr_against_its_gradient_sign() {
        // At t = 1 the bias-corrected moments are g and g², so the step is lr·g/(|g| + ε).
        let g = Tensor::from_slice(&[0.5f32, -2.0, 1e-3]);
        let mut m = g.zeros_like();
        let mut v = g.zeros_like();
        let d = adam_step(&mut m, &mut v, &g, 1, 0.1);
        let d = Vec::<f32>::try_from(d).unwrap();
        for (got, want) in d.iter().zip([0.1f32, -0.1, 0.1]) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
        // A constant gradient keeps a step of lr·sign(g) (the moments stay unbiased).
        let g = Tensor::full([4], 3.0, (Kind::Float, Device::Cpu));
        let (mut m, mut v) = (g.zeros_like(), g.zeros_like());
        for t in 1..=50 {
            let d = adam_step(&mut m, &mut v, &g, t, 0.01);
            assert!((d.double_value(&[0]) - 0.01).abs() < 1e-6);
        }
    }
}
