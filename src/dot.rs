//! Draws the autograd graph behind a tensor in Graphviz's DOT language.

use std::fmt::Write;

use crate::autograd::topological_order;
use crate::tensor::{NodeKind, Tensor};

impl Tensor {
    /// The graph behind this tensor as Graphviz DOT: one box per node, labelled with its op
    /// (or `leaf`) and shape, and an arrow from each input to the op that used it. Render it
    /// with `dot -Tsvg graph.dot -o graph.svg`.
    pub fn to_dot(&self) -> String {
        let mut dot =
            String::from("digraph autograd {\n  node [shape=box, fontname=\"monospace\"];\n");
        let Some(root) = self.node() else {
            let _ = writeln!(dot, "  n [label=\"tensor {:?} (no grad)\"];", self.shape());
            dot.push_str("}\n");
            return dot;
        };
        for node in topological_order(&root) {
            let (label, style) = match &node.kind {
                NodeKind::Leaf => ("leaf", ", style=filled, fillcolor=lightblue"),
                NodeKind::Op { grad_fn, .. } => (grad_fn.name(), ""),
            };
            let _ = writeln!(
                dot,
                "  n{} [label=\"{label} {:?}\"{style}];",
                node.id, node.shape
            );
            for input in node.inputs() {
                let _ = writeln!(dot, "  n{} -> n{};", input.id, node.id);
            }
        }
        dot.push_str("}\n");
        dot
    }
}
