//! The fully connected layer.

use super::Module;
use crate::device::Device;
use crate::ops::{linear, linear_activation, linear_activation_dropout, Activation};
use crate::rng::{reserve_default, Generator};
use crate::tensor::Tensor;

/// `y = x · Wᵀ + b`, with `weight: [out_features, in_features]` and `bias: [out_features]`,
/// laid out as in PyTorch so state dicts carry over.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `[out_features, in_features]`.
    pub weight: Tensor,
    /// `[out_features]`, if the layer has one.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A layer with PyTorch's default initialisation, drawn from the process-wide generator.
    pub fn new(in_features: usize, out_features: usize, device: &Device) -> Self {
        // The weight's draw, then the bias's (see `new_with`).
        let mut generator = reserve_default(&[in_features * out_features, out_features]);
        Linear::new_with(in_features, out_features, device, &mut generator)
    }

    /// A layer with PyTorch's default initialisation: weight and bias ~ U(−1/√in, 1/√in)
    /// (what `kaiming_uniform_(a=√5)` and the bias rule reduce to), weight drawn first; with no
    /// inputs, a zero bias, as PyTorch's (its bound would be 1/√0).
    pub fn new_with(
        in_features: usize,
        out_features: usize,
        device: &Device,
        generator: &mut Generator,
    ) -> Self {
        let bound = if in_features == 0 {
            0.0
        } else {
            1.0 / (in_features as f32).sqrt()
        };
        let weight = Tensor::uniform_with(
            &[out_features, in_features],
            -bound,
            bound,
            device,
            generator,
        );
        let bias = Tensor::uniform_with(&[out_features], -bound, bound, device, generator);
        Linear::from_tensors(weight, Some(bias))
    }

    /// A layer over given tensors, which become parameters (they are set to require grad).
    ///
    /// # Panics
    /// Unless `weight` is `[out, in]` and `bias` (if any) is `[out]`.
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Self {
        assert!(
            weight.dim() == 2,
            "Linear: weight must be [out, in], got {:?}",
            weight.shape()
        );
        if let Some(bias) = &bias {
            assert!(
                bias.shape() == [weight.shape()[0]],
                "Linear: weight {:?} and bias {:?} do not match",
                weight.shape(),
                bias.shape()
            );
            bias.set_requires_grad(true);
        }
        weight.set_requires_grad(true);
        Linear { weight, bias }
    }

    /// The width of an input row.
    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }

    /// The width of an output row.
    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }
}

impl Module for Linear {
    fn forward(&self, input: &Tensor) -> Tensor {
        linear(input, &self.weight, self.bias.as_ref())
    }

    fn forward_then(&self, input: &Tensor, activation: Activation) -> Option<Tensor> {
        Some(linear_activation(
            input,
            &self.weight,
            self.bias.as_ref(),
            activation,
        ))
    }

    fn forward_then_dropout(
        &self,
        input: &Tensor,
        activation: Activation,
        p: f32,
    ) -> Option<Tensor> {
        Some(linear_activation_dropout(
            input,
            &self.weight,
            self.bias.as_ref(),
            activation,
            p,
        ))
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut params = vec![("weight".to_string(), self.weight.clone())];
        if let Some(bias) = &self.bias {
            params.push(("bias".to_string(), bias.clone()));
        }
        params
    }

    fn describe(&self) -> String {
        let bias = if self.bias.is_some() { "True" } else { "False" };
        match self.weight.shape() {
            [out_features, in_features] => format!(
                "Linear(in_features={in_features}, out_features={out_features}, bias={bias})"
            ),
            // The field is public: a weight replaced by one of another rank still prints.
            shape => format!("Linear(weight={shape:?}, bias={bias})"),
        }
    }
}
