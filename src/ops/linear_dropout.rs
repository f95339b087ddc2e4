//! A hidden layer of the discriminator as one op: `out = dropout(act(x · Wᵀ + b), p)`.
//!
//! Forward, the backend computes the product, the activation and the dropout together (on
//! CUDA one kernel draws each mask value from Philox as its result leaves the register,
//! instead of a GEMM, a random fill and a product).
//!
//! Unfused, the backward pass runs two elementwise passes before the layer's products:
//! dropout's `g₁ = ∂L/∂out · mask`, then the activation's `∂L/∂z = act'(z) · g₁`. Here both
//! are one pass, `f(out, mask, ∂L/∂out)`, and the autograd graph holds one node instead of
//! three. Only activations whose derivative follows from the sign of their output qualify
//! (ReLU, LeakyReLU with a positive slope): for a kept element `out = act(z) / (1 − p)` has
//! the sign of `act(z)`, and a dropped one gets no gradient whatever the activation did.

use super::leaky_relu::LeakyRelu;
use super::linear::{check_shapes, gemm_dims, inputs, linear_activation, linear_backward};
use super::matmul::gemm_then_dropout;
use super::relu::Relu;
use super::{dropout, record, Activation};
use crate::backend::{TernaryKernel, UnaryKernel};
use crate::rng::reserve_default;
use crate::tensor::Tensor;

/// `∂L/∂z = ReLU'(z) · (∂L/∂out · mask)`, from `(out, mask, ∂L/∂out)`: the same operations,
/// in the same order, as dropout's rule followed by ReLU's.
struct ReluDropoutGrad;

impl TernaryKernel for ReluDropoutGrad {
    const NAME: &'static str = "relu_dropout_backward";
    fn apply(&self, out: f32, mask: f32, grad: f32) -> f32 {
        let through_dropout = grad * mask;
        if out > 0.0 {
            through_dropout
        } else {
            0.0
        }
    }
}

/// `∂L/∂z = LeakyReLU'(z) · (∂L/∂out · mask)`, from `(out, mask, ∂L/∂out)`.
struct LeakyReluDropoutGrad {
    slope: f32,
}

impl TernaryKernel for LeakyReluDropoutGrad {
    const NAME: &'static str = "leaky_relu_dropout_backward";
    fn apply(&self, out: f32, mask: f32, grad: f32) -> f32 {
        let through_dropout = grad * mask;
        if out > 0.0 {
            through_dropout
        } else {
            self.slope * through_dropout
        }
    }
    fn param(&self) -> f32 {
        self.slope
    }
}

/// `dropout(act(x · Wᵀ + b), p)` in training mode, as one op: the same values, gradients and
/// random draws as [`linear_activation`] followed by [`dropout`] (so the same seed gives the
/// same results either way). Activations other than ReLU and a LeakyReLU of positive slope
/// run as that unfused pair.
///
/// # Panics
/// As [`super::linear`], and unless `0 ≤ p ≤ 1`.
pub fn linear_activation_dropout(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    activation: Activation,
    p: f32,
) -> Tensor {
    assert!(
        (0.0..=1.0).contains(&p),
        "dropout: probability has to be between 0 and 1, but got {p}"
    );
    match activation {
        _ if p == 0.0 => linear_activation(input, weight, bias, activation),
        Activation::Relu => fused(
            "linear_relu_dropout",
            (input, weight, bias),
            &Relu,
            p,
            ReluDropoutGrad,
        ),
        Activation::LeakyRelu(slope) if slope > 0.0 => fused(
            "linear_leaky_relu_dropout",
            (input, weight, bias),
            &LeakyRelu { slope },
            p,
            LeakyReluDropoutGrad { slope },
        ),
        _ => dropout(&linear_activation(input, weight, bias, activation), p, true),
    }
}

fn fused<F: UnaryKernel, G: TernaryKernel + Send + Sync + 'static>(
    name: &'static str,
    (input, weight, bias): (&Tensor, &Tensor, Option<&Tensor>),
    activation: &F,
    p: f32,
    grad_kernel: G,
) -> Tensor {
    check_shapes(input, weight, bias);
    let dims = gemm_dims(input, weight);
    // The draw `dropout` would make, from the process-wide generator.
    let mut generator = reserve_default(&[dims.m * dims.n]);
    let (out, mask) = gemm_then_dropout((input, weight, bias), dims, activation, p, &mut generator);
    record(&out, &inputs(input, weight, bias), || {
        let saved = out.detach();
        let chain_grad = Box::new(move |grad: &Tensor| saved.zip3_map(&mask, grad, &grad_kernel));
        linear_backward(name, input, weight, Some(chain_grad))
    });
    out
}
