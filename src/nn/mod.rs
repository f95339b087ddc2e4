//! Layers as PyTorch's `torch.nn` has them: [`Module`]s that own their parameters, and
//! [`functional`] for the stateless forms.

mod activation;
mod dropout;
pub mod functional;
mod linear;
mod sequential;

pub use activation::{LeakyReLU, ReLU, Sigmoid, Tanh};
pub use dropout::Dropout;
pub use linear::Linear;
pub use sequential::Sequential;

use crate::ops::Activation;
use crate::tensor::Tensor;

/// A layer or a network of layers. `Send + Sync`, so a training step can run on any thread
/// of the rayon pool.
pub trait Module: Send + Sync {
    /// The module applied to `input` (a batch: one example a row), recorded for `backward`
    /// where its parameters require gradients.
    fn forward(&self, input: &Tensor) -> Tensor;

    /// The elementwise activation this module is, if it is one a preceding layer can fuse.
    fn activation(&self) -> Option<Activation> {
        None
    }

    /// `activation(self.forward(input))` in one pass, if this module can fuse it (a linear
    /// layer applies it in its GEMM's epilogue); `None` otherwise.
    fn forward_then(&self, _input: &Tensor, _activation: Activation) -> Option<Tensor> {
        None
    }

    /// The probability of the dropout this module applies, if it is a dropout in training
    /// mode that a preceding layer and activation can fuse.
    fn dropout(&self) -> Option<f32> {
        None
    }

    /// `dropout(activation(self.forward(input)), p)` as one op, if this module can fuse it;
    /// `None` otherwise.
    fn forward_then_dropout(
        &self,
        _input: &Tensor,
        _activation: Activation,
        _p: f32,
    ) -> Option<Tensor> {
        None
    }

    /// Parameters under PyTorch's names (`"weight"`, `"0.bias"`, …), so state can be matched
    /// with a PyTorch model's `state_dict()`.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// The tensors an optimiser should update.
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, tensor)| tensor)
            .collect()
    }

    /// Switches between training and evaluation behaviour (only dropout differs here).
    fn set_training(&mut self, _training: bool) {}

    /// Training mode, as after construction.
    fn train(&mut self) {
        self.set_training(true);
    }

    /// Evaluation mode: dropout becomes the identity.
    fn eval(&mut self) {
        self.set_training(false);
    }

    /// The module as PyTorch prints it (its `repr`): `Linear(in_features=100,
    /// out_features=256, bias=True)`, or for a [`Sequential`] its layers on numbered, indented
    /// lines. By default the type's name and `()`, as PyTorch prints a module without settings
    /// (`ReLU()`).
    fn describe(&self) -> String {
        let path = std::any::type_name_of_val(self);
        let without_generics = path.split('<').next().unwrap_or(path);
        let name = without_generics.rsplit("::").next().unwrap_or(path);
        format!("{name}()")
    }
}
