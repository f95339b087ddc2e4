//! Dropout as a module: active in training mode, the identity in evaluation mode.

use super::Module;
use crate::ops::dropout;
use crate::tensor::Tensor;

/// Zeroes each element with probability `p` while training and scales the rest by
/// `1 / (1 − p)`. Masks come from the process-wide generator ([`crate::manual_seed`]).
#[derive(Clone, Copy, Debug)]
pub struct Dropout {
    p: f32,
    training: bool,
}

impl Dropout {
    /// # Panics
    /// Unless `0 ≤ p ≤ 1`.
    pub fn new(p: f32) -> Self {
        assert!(
            (0.0..=1.0).contains(&p),
            "Dropout: probability has to be between 0 and 1, but got {p}"
        );
        Dropout { p, training: true }
    }

    /// The probability that an element is zeroed in training.
    pub fn p(&self) -> f32 {
        self.p
    }

    /// Whether the layer drops elements (training) or passes its input through (evaluation).
    pub fn is_training(&self) -> bool {
        self.training
    }
}

impl Module for Dropout {
    fn forward(&self, input: &Tensor) -> Tensor {
        dropout(input, self.p, self.training)
    }

    fn dropout(&self) -> Option<f32> {
        self.training.then_some(self.p)
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    /// PyTorch's text, `inplace` included (ours never is).
    fn describe(&self) -> String {
        format!("Dropout(p={}, inplace=False)", self.p)
    }
}
