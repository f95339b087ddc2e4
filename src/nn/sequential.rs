//! A chain of modules, each fed the previous one's output.

use super::Module;
use crate::tensor::Tensor;

/// Modules applied in order. Parameters are named by position, as in PyTorch:
/// `"0.weight"`, `"0.bias"`, `"2.weight"`, …
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    pub fn new() -> Self {
        Sequential::default()
    }

    /// Appends a layer (builder style).
    #[allow(clippy::should_implement_trait)] // a builder step, not `+`
    pub fn add(mut self, layer: impl Module + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    /// Each layer in turn, except that a layer followed by an activation it can fuse (a
    /// `Linear` then a `ReLU`, say) runs both as one kernel: the same values and gradients,
    /// one pass over the output fewer each way.
    fn forward(&self, input: &Tensor) -> Tensor {
        let mut x = input.clone();
        let mut layers = self.layers.iter().peekable();
        while let Some(layer) = layers.next() {
            let activation = layers.peek().and_then(|next| next.activation());
            x = match activation.and_then(|a| layer.forward_then(&x, a)) {
                Some(fused) => {
                    layers.next(); // the activation is done
                    fused
                }
                None => layer.forward(&x),
            };
        }
        x
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, layer)| {
                layer
                    .named_parameters()
                    .into_iter()
                    .map(move |(name, tensor)| (format!("{i}.{name}"), tensor))
            })
            .collect()
    }

    fn set_training(&mut self, training: bool) {
        for layer in &mut self.layers {
            layer.set_training(training);
        }
    }
}
