//! Reverse-mode automatic differentiation: the backward pass.
//!
//! While the forward pass runs, every op that sees an input requiring a gradient hangs a node
//! on its result (see [`crate::ops`]): the graph is built as the code runs ("define by run").
//! `loss.backward()` then needs only two ideas:
//!
//! 1. **Order.** Sort the nodes reachable from the loss so that every node comes after all the
//!    nodes it was computed from (a topological order), and walk it backwards, from the loss to
//!    the leaves. When the walk reaches a node, every use of it has already been visited.
//! 2. **Local rules.** Each node turns the gradient of its output, `∂L/∂y`, into gradients for
//!    its inputs with its own derivative (its `GradFn`, written next to the op's forward code).
//!    A node used by several others receives the *sum* of their contributions (the multivariate
//!    chain rule sums over paths); a leaf adds what it receives to its `.grad`, and so does an
//!    op's result that asked to keep it (`retain_grad`); every other gradient is dropped once
//!    passed on.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use crate::grad_mode::no_grad;
use crate::ops::assert_same_device;
use crate::tensor::{Node, NodeKind, Tensor};

impl Tensor {
    /// Computes the gradient of this one-element tensor with respect to every leaf tensor that
    /// requires a gradient, adding it to that leaf's [`Tensor::grad`].
    ///
    /// The graph outlives the call, as under PyTorch's `retain_graph=True`: a second `backward`
    /// through it adds the same gradients again (PyTorch's default frees it and raises). It is
    /// freed with the last tensor that leads to it.
    ///
    /// # Panics
    /// If the tensor has more than one element, or does not require a gradient (as PyTorch).
    pub fn backward(&self) {
        assert_eq!(
            self.numel(),
            1,
            "backward: a gradient can be implicitly created only for a one-element output, \
             not shape {:?}",
            self.shape()
        );
        self.backward_with(&Tensor::ones(self.shape(), self.device()));
    }

    /// [`Tensor::backward`] from a given `∂L/∂self` (PyTorch's `backward(gradient)`), of this
    /// tensor's shape: for a non-scalar output, or to pass a seed of ones made once instead of
    /// at every call (on a GPU, a kernel launch less per backward pass). The gradient may end
    /// up as a leaf's [`Tensor::grad`] as it is: do not write into it afterwards.
    ///
    /// # Panics
    /// If the shapes differ, or the tensor does not require a gradient.
    pub fn backward_with(&self, gradient: &Tensor) {
        assert!(
            gradient.shape() == self.shape(),
            "backward: gradient of shape {:?} for an output of shape {:?}",
            gradient.shape(),
            self.shape()
        );
        assert_same_device("backward", self, gradient);
        let root = self.node().unwrap_or_else(|| {
            panic!("backward: the tensor does not require grad and has no graph behind it")
        });
        backpropagate(&root, gradient.detach());
    }
}

/// Sends `seed` (`∂L/∂root`) back through the graph behind `root`.
fn backpropagate(root: &Arc<Node>, seed: Tensor) {
    let _recording_off = no_grad(); // the backward pass itself builds no graph
    let mut grads: HashMap<u64, Tensor> = HashMap::from([(root.id, seed)]);
    for node in topological_order(root).iter().rev() {
        // Every user of `node` was visited already, so its gradient is complete.
        let Some(grad) = grads.remove(&node.id) else {
            continue; // no path from the loss carries a gradient here
        };
        debug_assert_eq!(grad.shape(), node.shape.as_slice());
        if node.keeps_grad() {
            accumulate(&node.grad, grad.clone()); // a leaf, or a result asked to keep it
        }
        let NodeKind::Op { grad_fn, inputs } = &node.kind else {
            continue; // a leaf: where the gradient stops
        };
        let needs_grad: Vec<bool> = inputs.iter().map(Option::is_some).collect();
        let input_grads = grad_fn.backward(&grad, &needs_grad);
        for (input, input_grad) in inputs.iter().zip(input_grads) {
            let (Some(input), Some(input_grad)) = (input, input_grad) else {
                continue;
            };
            match grads.entry(input.id) {
                Entry::Vacant(slot) => {
                    slot.insert(input_grad);
                }
                // Fan-out: the input feeds several ops, so its gradient is the sum.
                Entry::Occupied(mut sum) => {
                    let total = sum.get().add(&input_grad);
                    sum.insert(total);
                }
            }
        }
    }
}

/// Nodes reachable from `root`, each after all of its inputs (iterative depth-first search,
/// so deep graphs cannot overflow the stack).
pub(crate) fn topological_order(root: &Arc<Node>) -> Vec<Arc<Node>> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    // `(node, true)` means "all inputs of `node` are done: emit it".
    let mut stack = vec![(Arc::clone(root), false)];
    while let Some((node, inputs_done)) = stack.pop() {
        if inputs_done {
            order.push(node);
            continue;
        }
        if !visited.insert(node.id) {
            continue;
        }
        stack.push((Arc::clone(&node), true));
        for input in node.inputs() {
            if !visited.contains(&input.id) {
                stack.push((Arc::clone(input), false));
            }
        }
    }
    order
}

/// `node.grad += grad`, as repeated `backward` calls accumulate in PyTorch.
fn accumulate(slot: &Mutex<Option<Tensor>>, grad: Tensor) {
    let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
    *slot = Some(match slot.take() {
        Some(previous) => previous.add(&grad),
        None => grad,
    });
}
