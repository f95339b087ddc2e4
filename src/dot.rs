//! Draws the autograd graph behind a tensor in Graphviz's DOT language.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::PoisonError;

use crate::autograd::topological_order;
use crate::tensor::{NodeKind, Tensor};

impl Tensor {
    /// The graph behind this tensor as Graphviz DOT: one box per node, labelled with its op
    /// (or `leaf`) and shape, and, once a backward pass has run, the gradient the node keeps
    /// (a leaf's, or one kept by [`Tensor::retain_grad`]), as micrograd's drawings show; and an
    /// arrow from each input to the op that used it. Render it with
    /// `dot -Tsvg graph.dot -o graph.svg`.
    pub fn to_dot(&self) -> String {
        self.to_dot_named(&[])
    }

    /// [`Tensor::to_dot`] with the boxes of the tensors in `names` labelled by their names
    /// (`W1 [4, 3]`, `h = tanh [1, 4]`), as torchviz's `make_dot(y, params=…)`: pass a model's
    /// [`crate::nn::Module::named_parameters`], or name tensors of your own (an intermediate
    /// too: `("h", h.clone())`). A named tensor outside the graph draws no box.
    pub fn to_dot_named(&self, names: &[(String, Tensor)]) -> String {
        let mut dot =
            String::from("digraph autograd {\n  node [shape=box, fontname=\"monospace\"];\n");
        let Some(root) = self.node() else {
            let _ = writeln!(dot, "  n [label=\"tensor {:?} (no grad)\"];", self.shape());
            dot.push_str("}\n");
            return dot;
        };
        // Quotes and backslashes escaped, as a DOT string needs them.
        let names: HashMap<u64, String> = names
            .iter()
            .filter_map(|(name, tensor)| {
                let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
                Some((tensor.node()?.id, escaped))
            })
            .collect();
        for node in topological_order(&root) {
            let (kind, style) = match &node.kind {
                NodeKind::Leaf => ("leaf", ", style=filled, fillcolor=lightblue"),
                NodeKind::Op { grad_fn, .. } => (grad_fn.name(), ""),
            };
            let label = match (names.get(&node.id), &node.kind) {
                (None, _) => kind.to_string(),
                (Some(name), NodeKind::Leaf) => name.to_string(),
                (Some(name), NodeKind::Op { .. }) => format!("{name} = {kind}"),
            };
            let grad = node.grad.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = writeln!(
                dot,
                "  n{} [label=\"{label} {:?}{}\"{style}];",
                node.id,
                node.shape,
                grad.as_ref().map_or(String::new(), grad_line)
            );
            for input in node.inputs() {
                let _ = writeln!(dot, "  n{} -> n{};", input.id, node.id);
            }
        }
        dot.push_str("}\n");
        dot
    }
}

/// A kept gradient as the second line of its node's label: `\ngrad [0.1250, -0.5000, …]`, its
/// first values at most, so that a layer's gradient does not fill the picture.
fn grad_line(grad: &Tensor) -> String {
    const SHOWN: usize = 4;
    // Only the values shown are read back: a layer's gradient may be megabytes on a GPU.
    let values = if grad.numel() > SHOWN {
        grad.storage().slice(0, SHOWN).to_vec()
    } else {
        grad.to_vec()
    };
    let mut shown: Vec<String> = values.iter().map(|v| format!("{v:.4}")).collect();
    if grad.numel() > SHOWN {
        shown.push("…".to_string());
    }
    match grad.shape() {
        [] => format!("\\ngrad {}", shown[0]),
        _ => format!("\\ngrad [{}]", shown.join(", ")),
    }
}
