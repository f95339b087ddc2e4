//! Activation functions as modules, for use in a [`super::Sequential`].

use super::Module;
use crate::ops::Activation;
use crate::tensor::Tensor;

/// `max(x, 0)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReLU;

impl Module for ReLU {
    fn forward(&self, input: &Tensor) -> Tensor {
        input.relu()
    }

    fn activation(&self) -> Option<Activation> {
        Some(Activation::Relu)
    }
}

/// `x` for `x > 0`, `negative_slope · x` otherwise.
#[derive(Clone, Copy, Debug)]
pub struct LeakyReLU {
    /// The slope for `x ≤ 0` (0.2 in the GAN's discriminator).
    pub negative_slope: f32,
}

impl LeakyReLU {
    /// `LeakyReLU(negative_slope)`, as `nn.LeakyReLU(negative_slope)`.
    pub fn new(negative_slope: f32) -> Self {
        LeakyReLU { negative_slope }
    }
}

impl Module for LeakyReLU {
    fn forward(&self, input: &Tensor) -> Tensor {
        input.leaky_relu(self.negative_slope)
    }

    fn activation(&self) -> Option<Activation> {
        Some(Activation::LeakyRelu(self.negative_slope))
    }

    fn describe(&self) -> String {
        format!("LeakyReLU(negative_slope={})", self.negative_slope)
    }
}

/// `tanh(x)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tanh;

impl Module for Tanh {
    fn forward(&self, input: &Tensor) -> Tensor {
        input.tanh()
    }

    fn activation(&self) -> Option<Activation> {
        Some(Activation::Tanh)
    }
}

/// `1 / (1 + e^(−x))`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sigmoid;

impl Module for Sigmoid {
    fn forward(&self, input: &Tensor) -> Tensor {
        input.sigmoid()
    }

    fn activation(&self) -> Option<Activation> {
        Some(Activation::Sigmoid)
    }
}
