//! The linear layer: `y = x · Wᵀ + b`, with PyTorch's weight layout `W: [out, in]`, and the
//! same fused with its activation, `y = act(x · Wᵀ + b)`.
//!
//! It is one op rather than `matmul` + `transpose` + `add`: the three products it needs
//! (`x·Wᵀ`, `∂L/∂y·W`, `(∂L/∂y)ᵀ·x`) each run as one GEMM that reads `W` or `∂L/∂y` transposed in
//! place, and the bias (and the activation) are applied while the output tile is still in cache.

use super::leaky_relu::{LeakyRelu, LeakyReluGrad};
use super::matmul::{
    dims, gemm, gemm_pair_with_lhs_row_sums, gemm_then, gemm_through_rule, gemm_with_lhs_row_sums,
    through_rule, SavedRule,
};
use super::relu::{Relu, ReluGrad};
use super::sigmoid::{Sigmoid, SigmoidGrad};
use super::tanh::{Tanh, TanhGrad};
use super::{assert_same_device, record};
use crate::backend::{BinaryKernel, UnaryKernel};
use crate::tensor::{GradFn, Tensor};

/// `y = act(z)` (times a dropout mask, if fused with one), `z = x · Wᵀ + b` with
/// `x: [batch, in]`, `W: [out, in]`, `b: [out]`:
/// - `∂L/∂z = act'(y) · (∂L/∂y · mask)` (the activation's rule from its saved output, dropout's
///   before it; `∂L/∂y` when there is no activation)
/// - `∂L/∂x = ∂L/∂z · W`        (`[batch, out] · [out, in]`)
/// - `∂L/∂W = (∂L/∂z)ᵀ · x`     (`[out, batch] · [batch, in]`)
/// - `∂L/∂b = Σ_rows ∂L/∂z`     (`[out]`)
///
/// The products read `∂L/∂y` through the rule (`SavedRule`): on CUDA, `∂L/∂z` is computed as
/// the GEMMs load it, never written. `W` is saved only if `x` needs a gradient, `x` only if `W`
/// does.
struct LinearBackward {
    name: &'static str,
    input: Option<Tensor>,
    weight: Option<Tensor>,
    activation: Option<SavedRule>,
}

impl GradFn for LinearBackward {
    fn name(&self) -> &'static str {
        self.name
    }

    fn backward(&self, grad: &Tensor, needs_grad: &[bool]) -> Vec<Option<Tensor>> {
        let rule = self.activation.as_ref();
        let (batch, out_features) = (grad.shape()[0], grad.shape()[1]);
        let grad_input_dims = |w: &Tensor| dims(batch, out_features, w.shape()[1], false, false);
        let grad_weight_dims = |x: &Tensor| dims(out_features, batch, x.shape()[1], true, false);
        let bias_needs_grad = needs_grad.get(2) == Some(&true);
        if let (Some(w), Some(x), true) = (&self.weight, &self.input, bias_needs_grad) {
            // All three: both products in one launch where the device can.
            let (grad_input, (grad_weight, grad_bias)) = gemm_pair_with_lhs_row_sums(
                grad,
                rule,
                (w, grad_input_dims(w)),
                (x, grad_weight_dims(x)),
            );
            return vec![Some(grad_input), Some(grad_weight), Some(grad_bias)];
        }
        let grad_input =
            (self.weight.as_ref()).map(|w| gemm_through_rule(grad, w, grad_input_dims(w), rule));
        let (grad_weight, grad_bias) = match (&self.input, bias_needs_grad) {
            // Both from one pass over ∂L/∂z where the device can.
            (Some(x), true) => {
                let (grad_weight, grad_bias) =
                    gemm_with_lhs_row_sums(grad, x, grad_weight_dims(x), rule);
                (Some(grad_weight), Some(grad_bias))
            }
            (Some(x), false) => (
                Some(gemm_through_rule(grad, x, grad_weight_dims(x), rule)),
                None,
            ),
            (None, true) => {
                let grad_z = rule.map(|rule| through_rule(grad, rule));
                (None, Some(grad_z.as_ref().unwrap_or(grad).sum_over_rows()))
            }
            (None, false) => (None, None),
        };
        let mut grads = vec![grad_input, grad_weight];
        if needs_grad.len() == 3 {
            grads.push(grad_bias);
        }
        grads
    }
}

/// Applies a linear transformation, `y = x · Wᵀ + b` (PyTorch's `F.linear`).
///
/// # Panics
/// Unless `input` is `[batch, in]`, `weight` is `[out, in]` and `bias` (if any) is `[out]`.
pub fn linear(input: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    check_shapes(input, weight, bias);
    let y = gemm(input, weight, bias, gemm_dims(input, weight));
    record(&y, &inputs(input, weight, bias), || {
        linear_backward("linear", input, weight, None)
    });
    y
}

/// An activation that [`linear_activation`] fuses into the linear layer's GEMM.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `x` for `x > 0`, else the negative slope given times `x`.
    LeakyRelu(f32),
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e⁻ˣ)`.
    Sigmoid,
}

/// `act(x · Wᵀ + b)` in one GEMM whose epilogue applies the activation: the same values and
/// gradients as [`linear`] followed by the activation, one pass over the output fewer each way.
/// (A LeakyReLU with a slope ≤ 0 cannot recover its input's sign from its output, which the
/// fused backward relies on: it runs unfused.)
///
/// # Panics
/// As [`linear`].
pub fn linear_activation(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    activation: Activation,
) -> Tensor {
    match activation {
        Activation::Relu => fused("linear_relu", input, weight, bias, &Relu, ReluGrad),
        Activation::LeakyRelu(slope) if slope > 0.0 => fused(
            "linear_leaky_relu",
            input,
            weight,
            bias,
            &LeakyRelu { slope },
            LeakyReluGrad { slope },
        ),
        Activation::LeakyRelu(slope) => linear(input, weight, bias).leaky_relu(slope),
        Activation::Tanh => fused("linear_tanh", input, weight, bias, &Tanh, TanhGrad),
        Activation::Sigmoid => fused("linear_sigmoid", input, weight, bias, &Sigmoid, SigmoidGrad),
    }
}

/// The fused forward; its backward reads `∂L/∂y` through `grad_kernel(y, ·)` (see
/// [`LinearBackward`]).
fn fused<F: UnaryKernel, G: BinaryKernel + Send + 'static>(
    name: &'static str,
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    forward: &F,
    grad_kernel: G,
) -> Tensor {
    check_shapes(input, weight, bias);
    let y = gemm_then(input, weight, bias, gemm_dims(input, weight), forward);
    record(&y, &inputs(input, weight, bias), || {
        let rule = SavedRule {
            saved: y.detach(),
            mask: None,
            rule: Box::new(grad_kernel),
        };
        linear_backward(name, input, weight, Some(rule))
    });
    y
}

pub(super) fn linear_backward(
    name: &'static str,
    input: &Tensor,
    weight: &Tensor,
    activation: Option<SavedRule>,
) -> impl GradFn {
    LinearBackward {
        name,
        input: weight.requires_grad().then(|| input.detach()),
        weight: input.requires_grad().then(|| weight.detach()),
        activation,
    }
}

pub(super) fn check_shapes(input: &Tensor, weight: &Tensor, bias: Option<&Tensor>) {
    let (x, w) = (input.shape(), weight.shape());
    assert!(
        x.len() == 2 && w.len() == 2 && x[1] == w[1],
        "linear: input {x:?} and weight {w:?} do not match (need [batch, in] and [out, in])"
    );
    assert!(
        crate::tensor::checked_numel(&[x[0], w[0]]).is_some(),
        "linear: input {x:?} and weight {w:?} give a result of more elements than a usize can count"
    );
    assert_same_device("linear", input, weight);
    if let Some(b) = bias {
        assert!(
            b.shape() == [w[0]],
            "linear: weight {w:?} and bias {:?} do not match (need [out, in] and [out])",
            b.shape()
        );
        assert_same_device("linear", input, b);
    }
}

/// `x · Wᵀ`: `[batch, in] · [in, out]`, with `W` read transposed where it is stored.
pub(super) fn gemm_dims(input: &Tensor, weight: &Tensor) -> crate::backend::GemmDims {
    let (x, w) = (input.shape(), weight.shape());
    dims(x[0], x[1], w[0], false, true)
}

pub(super) fn inputs<'a>(
    input: &'a Tensor,
    weight: &'a Tensor,
    bias: Option<&'a Tensor>,
) -> Vec<&'a Tensor> {
    [Some(input), Some(weight), bias]
        .into_iter()
        .flatten()
        .collect()
}
