//! ReLU: `y = max(x, 0)`.

use super::{unary_op, Saved};
use crate::backend::{BinaryKernel, UnaryKernel};
use crate::tensor::Tensor;

/// `y = max(x, 0)` (NaN stays NaN, as in PyTorch).
pub(crate) struct Relu;

impl UnaryKernel for Relu {
    const NAME: &'static str = "relu";
    fn apply(&self, x: f32) -> f32 {
        if x <= 0.0 {
            0.0
        } else {
            x
        }
    }
}

/// `∂L/∂x = ∂L/∂y · [y > 0]`, from the saved output; the derivative at 0 is taken as 0.
/// Written as PyTorch's `threshold_backward`, `y ≤ 0 ? 0 : ∂L/∂y`, so that a NaN output passes
/// the gradient on as PyTorch's does.
pub(crate) struct ReluGrad;

impl BinaryKernel for ReluGrad {
    const NAME: &'static str = "relu_backward";
    fn apply(&self, y: f32, grad: f32) -> f32 {
        if y <= 0.0 {
            0.0
        } else {
            grad
        }
    }
}

impl Tensor {
    /// Rectified linear unit, elementwise.
    pub fn relu(&self) -> Tensor {
        unary_op(self, &Relu, Saved::Output, ReluGrad)
    }
}
