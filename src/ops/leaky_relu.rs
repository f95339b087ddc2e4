//! Leaky ReLU: `y = x` for `x > 0`, `y = slope · x` otherwise.

use super::{unary_op, Saved};
use crate::backend::{BinaryKernel, UnaryKernel};
use crate::tensor::Tensor;

/// `y = x > 0 ? x : slope · x`.
pub(crate) struct LeakyRelu {
    pub slope: f32,
}

impl UnaryKernel for LeakyRelu {
    const NAME: &'static str = "leaky_relu";
    fn apply(&self, x: f32) -> f32 {
        if x > 0.0 {
            x
        } else {
            self.slope * x
        }
    }
    fn param(&self) -> f32 {
        self.slope
    }
}

/// `∂L/∂x = ∂L/∂y · (x > 0 ? 1 : slope)`, from the saved input (a negative slope would make
/// the output's sign useless for this test).
pub(crate) struct LeakyReluGrad {
    pub slope: f32,
}

impl BinaryKernel for LeakyReluGrad {
    const NAME: &'static str = "leaky_relu_backward";
    fn apply(&self, x: f32, grad: f32) -> f32 {
        if x > 0.0 {
            grad
        } else {
            self.slope * grad
        }
    }
    fn param(&self) -> f32 {
        self.slope
    }
}

impl Tensor {
    /// Leaky ReLU with the given negative slope (PyTorch's `negative_slope`), elementwise.
    pub fn leaky_relu(&self, negative_slope: f32) -> Tensor {
        let forward = LeakyRelu {
            slope: negative_slope,
        };
        let grad = LeakyReluGrad {
            slope: negative_slope,
        };
        unary_op(self, &forward, Saved::Input, grad)
    }
}
