//! Hyperbolic tangent: `y = tanh(x)`.

use super::{unary_op, Saved};
use crate::backend::{BinaryKernel, UnaryKernel};
use crate::tensor::Tensor;

/// `y = tanh(x)`.
pub(crate) struct Tanh;

impl UnaryKernel for Tanh {
    const NAME: &'static str = "tanh";
    fn apply(&self, x: f32) -> f32 {
        crate::math::tanh(x) // not libm's: ours vectorises (see math.rs)
    }
}

/// `∂L/∂x = ∂L/∂y · (1 − y²)`, from the saved output: `tanh' = 1 − tanh²`.
pub(crate) struct TanhGrad;

impl BinaryKernel for TanhGrad {
    const NAME: &'static str = "tanh_backward";
    fn apply(&self, y: f32, grad: f32) -> f32 {
        grad * (1.0 - y * y)
    }
}

impl Tensor {
    /// Hyperbolic tangent, elementwise.
    pub fn tanh(&self) -> Tensor {
        unary_op(self, &Tanh, Saved::Output, TanhGrad)
    }
}
