//! Logistic sigmoid: `y = 1 / (1 + e^(−x))`.

use super::{unary_op, Saved};
use crate::backend::{BinaryKernel, UnaryKernel};
use crate::tensor::Tensor;

/// `y = 1 / (1 + e^(−x))`, evaluated so that `e^(·)` never overflows.
pub(crate) struct Sigmoid;

impl UnaryKernel for Sigmoid {
    const NAME: &'static str = "sigmoid";
    fn apply(&self, x: f32) -> f32 {
        crate::math::sigmoid(x) // e^(−|x|): never overflows; vectorises (see math.rs)
    }
}

/// `∂L/∂x = ∂L/∂y · y · (1 − y)`, from the saved output: `σ' = σ(1 − σ)`.
pub(crate) struct SigmoidGrad;

impl BinaryKernel for SigmoidGrad {
    const NAME: &'static str = "sigmoid_backward";
    fn apply(&self, y: f32, grad: f32) -> f32 {
        grad * y * (1.0 - y)
    }
}

impl Tensor {
    /// Logistic sigmoid, elementwise.
    pub fn sigmoid(&self) -> Tensor {
        unary_op(self, &Sigmoid, Saved::Output, SigmoidGrad)
    }
}
