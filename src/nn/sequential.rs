//! A chain of modules, each fed the previous one's output.

use std::fmt;

use super::Module;
use crate::tensor::Tensor;

/// Modules applied in order. Parameters are named by position, as in PyTorch:
/// `"0.weight"`, `"0.bias"`, `"2.weight"`, …
///
/// Printed (`{}` or `{:?}`), it reads as PyTorch prints an `nn.Sequential`:
///
/// ```
/// use ferrograd::nn::{Linear, Module, ReLU, Sequential};
/// let net = Sequential::new().add(Linear::new(2, 3, &ferrograd::Device::Cpu)).add(ReLU);
/// assert_eq!(
///     net.to_string(),
///     "Sequential(\n  (0): Linear(in_features=2, out_features=3, bias=True)\n  (1): ReLU()\n)"
/// );
/// ```
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    /// A network of no layers, to [`add`](Sequential::add) them to.
    pub fn new() -> Self {
        Sequential::default()
    }

    /// Appends a layer (builder style).
    #[allow(clippy::should_implement_trait)] // a builder step, not `+`
    pub fn add(mut self, layer: impl Module + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// The number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    /// Each layer in turn, except that a layer followed by an activation it can fuse (a
    /// `Linear` then a `ReLU`, say) runs both as one kernel, and with a dropout after them as
    /// one op: the same values, gradients and random draws, fewer passes over the output.
    fn forward(&self, input: &Tensor) -> Tensor {
        let mut x = input.clone();
        let mut i = 0;
        while let Some(layer) = self.layers.get(i) {
            let activation = self.layers.get(i + 1).and_then(|next| next.activation());
            let dropout = self.layers.get(i + 2).and_then(|next| next.dropout());
            let fused = match (activation, dropout) {
                (Some(a), Some(p)) => layer.forward_then_dropout(&x, a, p).map(|y| (y, 3)),
                _ => None,
            }
            .or_else(|| activation.and_then(|a| layer.forward_then(&x, a).map(|y| (y, 2))));
            let (y, layers_done) = fused.unwrap_or_else(|| (layer.forward(&x), 1));
            x = y;
            i += layers_done;
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

    /// `Sequential(`, a line `  (i): <layer>` per layer (a nested one's lines indented once
    /// more), then `)`; `Sequential()` when empty.
    fn describe(&self) -> String {
        if self.layers.is_empty() {
            return "Sequential()".to_string();
        }
        let mut text = "Sequential(\n".to_string();
        for (i, layer) in self.layers.iter().enumerate() {
            let layer = layer.describe().replace('\n', "\n  ");
            text += &format!("  ({i}): {layer}\n");
        }
        text + ")"
    }
}

impl fmt::Display for Sequential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl fmt::Debug for Sequential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}
