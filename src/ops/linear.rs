//! The linear layer: `y = x · Wᵀ + b`, with PyTorch's weight layout `W: [out, in]`.
//!
//! It is one op rather than `matmul` + `transpose` + `add`: the three products it needs
//! (`x·Wᵀ`, `∂L/∂y·W`, `(∂L/∂y)ᵀ·x`) each run as one GEMM that reads `W` or `∂L/∂y` transposed in
//! place, and the bias is added while the output tile is still in cache.

use super::matmul::{dims, gemm};
use super::{assert_same_device, record};
use crate::tensor::{GradFn, Tensor};

/// `y = x · Wᵀ + b` with `x: [batch, in]`, `W: [out, in]`, `b: [out]`:
/// - `∂L/∂x = ∂L/∂y · W`        (`[batch, out] · [out, in]`)
/// - `∂L/∂W = (∂L/∂y)ᵀ · x`     (`[out, batch] · [batch, in]`)
/// - `∂L/∂b = Σ_rows ∂L/∂y`     (`[out]`)
///
/// `W` is saved only if `x` needs a gradient, `x` only if `W` does.
struct LinearBackward {
    input: Option<Tensor>,
    weight: Option<Tensor>,
}

impl GradFn for LinearBackward {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn backward(&self, grad: &Tensor, needs_grad: &[bool]) -> Vec<Option<Tensor>> {
        let (batch, out_features) = (grad.shape()[0], grad.shape()[1]);
        let grad_input = self.weight.as_ref().map(|w| {
            let in_features = w.shape()[1];
            gemm(
                grad,
                w,
                None,
                dims(batch, out_features, in_features, false, false),
            )
        });
        let grad_weight = self.input.as_ref().map(|x| {
            let in_features = x.shape()[1];
            gemm(
                grad,
                x,
                None,
                dims(out_features, batch, in_features, true, false),
            )
        });
        let mut grads = vec![grad_input, grad_weight];
        if needs_grad.len() == 3 {
            grads.push(needs_grad[2].then(|| grad.sum_over_rows()));
        }
        grads
    }
}

/// Applies a linear transformation, `y = x · Wᵀ + b` (PyTorch's `F.linear`).
///
/// # Panics
/// Unless `input` is `[batch, in]`, `weight` is `[out, in]` and `bias` (if any) is `[out]`.
pub fn linear(input: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let (x, w) = (input.shape(), weight.shape());
    assert!(
        x.len() == 2 && w.len() == 2 && x[1] == w[1],
        "linear: input {x:?} and weight {w:?} do not match (need [batch, in] and [out, in])"
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
    let y = gemm(input, weight, bias, dims(x[0], x[1], w[0], false, true));
    let inputs: Vec<&Tensor> = [Some(input), Some(weight), bias]
        .into_iter()
        .flatten()
        .collect();
    record(&y, &inputs, || LinearBackward {
        input: weight.requires_grad().then(|| input.detach()),
        weight: input.requires_grad().then(|| weight.detach()),
    });
    y
}
