//! A hidden layer of the discriminator as one op: `out = dropout(act(x · Wᵀ + b), p)`.
//!
//! Forward, the backend computes the product, the activation and the dropout together (on
//! CUDA one kernel draws each mask value from Philox as its result leaves the register,
//! instead of a GEMM, a random fill and a product).
//!
//! Backward, the layer's products read `∂L/∂out` through dropout's rule and then the
//! activation's, `∂L/∂z = act'(z) · (∂L/∂out · mask)`, from the saved output and mask (on CUDA
//! as the GEMMs load it: no elementwise pass at all), and the autograd graph holds one node
//! instead of three. Only activations whose derivative follows from the sign of their output
//! qualify (ReLU, LeakyReLU with a positive slope): for a kept element `out = act(z) / (1 − p)`
//! has the sign of `act(z)`, and a dropped one gets no gradient whatever the activation did.

use super::leaky_relu::{LeakyRelu, LeakyReluGrad};
use super::linear::{check_shapes, gemm_dims, inputs, linear_activation, linear_backward};
use super::matmul::{gemm_then_dropout, SavedRule};
use super::relu::{Relu, ReluGrad};
use super::{dropout, record, Activation};
use crate::backend::{BinaryKernel, UnaryKernel};
use crate::rng::reserve_default;
use crate::tensor::Tensor;

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
            ReluGrad,
        ),
        Activation::LeakyRelu(slope) if slope > 0.0 => fused(
            "linear_leaky_relu_dropout",
            (input, weight, bias),
            &LeakyRelu { slope },
            p,
            LeakyReluGrad { slope },
        ),
        _ => dropout(&linear_activation(input, weight, bias, activation), p, true),
    }
}

fn fused<F: UnaryKernel, G: BinaryKernel + Send + 'static>(
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
        let rule = SavedRule {
            saved: out.detach(),
            mask: Some(mask),
            rule: Box::new(grad_kernel),
        };
        linear_backward(name, input, weight, Some(rule))
    });
    out
}
