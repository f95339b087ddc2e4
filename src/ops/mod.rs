//! The op layer: one file per op (or small family), each with its forward computation, its
//! backward rule written as a formula beside the code, and the kernels both use.
//!
//! Every op follows the same three steps:
//! 1. check shapes and devices (a mismatch panics naming the op and both shapes, as PyTorch
//!    raises);
//! 2. compute the result through [`crate::storage::Storage`], which runs it on the tensors'
//!    device;
//! 3. [`record`] a [`GradFn`] on the result, holding only what that op's backward needs.

mod arith;
mod bce;
mod cat;
mod dropout;
mod leaky_relu;
mod linear;
mod linear_dropout;
mod matmul;
mod reduce;
mod relu;
mod reshape;
mod sigmoid;
mod tanh;

pub use bce::binary_cross_entropy;
pub(crate) use bce::binary_cross_entropy_scaled;
pub use dropout::{dropout, dropout_with};
pub use linear::{linear, linear_activation, Activation};
pub use linear_dropout::linear_activation_dropout;

use crate::backend::{BinaryKernel, Broadcast, TernaryKernel, UnaryKernel};
use crate::grad_mode::is_grad_enabled;
use crate::tensor::{numel, with_storages, GradFn, Node, NodeKind, Tensor};

/// Hangs `output` in the graph when recording is on and some input requires a gradient.
/// `make_grad_fn` runs only then, so an op saves nothing when no gradient is wanted.
pub(crate) fn record<G: GradFn + 'static>(
    output: &Tensor,
    inputs: &[&Tensor],
    make_grad_fn: impl FnOnce() -> G,
) {
    if !is_grad_enabled() {
        return;
    }
    let input_nodes: Vec<_> = inputs.iter().map(|input| input.node()).collect();
    if input_nodes.iter().all(Option::is_none) {
        return;
    }
    let kind = NodeKind::Op {
        grad_fn: Box::new(make_grad_fn()),
        inputs: input_nodes,
    };
    output.set_node(Node::new(output.shape().to_vec(), kind));
}

/// Panics unless both tensors live on the same device.
pub(crate) fn assert_same_device(op: &str, a: &Tensor, b: &Tensor) {
    assert!(
        a.device() == b.device(),
        "{op}: tensors are on different devices ({} and {})",
        a.device(),
        b.device()
    );
}

/// Kernel launches outside the graph: the building blocks of forward and backward code.
impl Tensor {
    /// `kernel` applied to every element.
    pub(crate) fn map<K: UnaryKernel>(&self, kernel: &K) -> Tensor {
        Tensor::from_storage(self.storage().unary(kernel), self.shape().to_vec())
    }

    /// `kernel(self[i], rhs[j])` with `rhs` lined up by `broadcast`; the result has `self`'s shape.
    pub(crate) fn zip_map<K: BinaryKernel>(
        &self,
        rhs: &Tensor,
        broadcast: Broadcast,
        kernel: &K,
    ) -> Tensor {
        let storage = with_storages([self, rhs], |[a, b]| a.binary(b, broadcast, kernel));
        Tensor::from_storage(storage, self.shape().to_vec())
    }
}

impl Tensor {
    /// `kernel(self[i], b[i], c)`, `self` and `b` of one shape, `c` a one-element tensor (a
    /// backward rule times an incoming scalar gradient, read where it lies: on a GPU, by the
    /// kernel).
    pub(crate) fn zip3_map<K: TernaryKernel>(&self, b: &Tensor, c: &Tensor, kernel: &K) -> Tensor {
        debug_assert!(b.numel() == self.numel() && c.numel() == 1);
        let storage = with_storages([self, b, c], |[a, b, c]| a.ternary(b, c, kernel));
        Tensor::from_storage(storage, self.shape().to_vec())
    }
}

/// Which value an elementwise op's backward rule reads: its input `x` or its output `y`.
/// Sigmoid and tanh save `y`, whose derivative is cheapest written in terms of it.
pub(crate) enum Saved {
    Input,
    Output,
}

/// Runs the elementwise op `forward` and records a backward rule
/// `∂L/∂x = grad_kernel(saved, ∂L/∂y)`.
pub(crate) fn unary_op<F, G>(x: &Tensor, forward: &F, saved: Saved, grad_kernel: G) -> Tensor
where
    F: UnaryKernel,
    G: BinaryKernel + Send + 'static,
{
    let y = x.map(forward);
    record(&y, &[x], || ElementwiseBackward {
        name: F::NAME,
        saved: match saved {
            Saved::Input => x.detach(),
            Saved::Output => y.detach(),
        },
        grad_kernel,
    });
    y
}

struct ElementwiseBackward<G> {
    name: &'static str,
    saved: Tensor,
    grad_kernel: G,
}

impl<G: BinaryKernel + Send> GradFn for ElementwiseBackward<G> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn backward(&self, grad_output: &Tensor, _needs_grad: &[bool]) -> Vec<Option<Tensor>> {
        let grad = self
            .saved
            .zip_map(grad_output, Broadcast::None, &self.grad_kernel);
        vec![Some(grad)]
    }
}

/// How `rhs` lines up with `lhs` in an elementwise binary op, if it can: the shapes are equal,
/// `rhs` is one value, or `lhs` is `[m, n]` and `rhs` is `[n]` or `[1, n]`.
pub(crate) fn try_broadcast(lhs: &[usize], rhs: &[usize]) -> Option<Broadcast> {
    if lhs == rhs {
        Some(Broadcast::None)
    } else if numel(rhs) == 1 && rhs.len() <= lhs.len() {
        Some(Broadcast::Scalar)
    } else if lhs.len() == 2 && (rhs == [lhs[1]] || rhs == [1, lhs[1]]) {
        Some(Broadcast::Rows)
    } else {
        None
    }
}

/// [`try_broadcast`], or a panic naming the op and both shapes.
pub(crate) fn broadcast_of(op: &str, lhs: &[usize], rhs: &[usize]) -> Broadcast {
    try_broadcast(lhs, rhs).unwrap_or_else(|| {
        panic!(
            "{op}: shapes {lhs:?} and {rhs:?} cannot be broadcast together \
             (supported: equal shapes, a single value, or a [n] / [1, n] row over [m, n])"
        )
    })
}

/// The gradient of a broadcast operand: the full-shape gradient summed over the copies.
pub(crate) fn sum_to_broadcast(grad: Tensor, broadcast: Broadcast, shape: &[usize]) -> Tensor {
    match broadcast {
        Broadcast::None => grad,
        Broadcast::Rows => grad.sum_over_rows().reshape(shape),
        Broadcast::Scalar => grad.sum().reshape(shape),
    }
}
