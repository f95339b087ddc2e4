//! The [`Tensor`]: a shaped buffer of `f32` on a device, plus its place in the autograd graph.
//!
//! A tensor that requires a gradient owns a graph [`Node`]: a *leaf* node for tensors the user
//! made (parameters), where gradients accumulate, or an *op* node for results of ops, holding
//! the op's backward rule ([`GradFn`]) and the nodes of its inputs. Nodes point only backwards,
//! to their inputs, and hold only what their backward rule needs; values an op saves are kept as
//! detached tensors, so a node never keeps its own output alive through the graph.
//!
//! The backward pass itself lives in [`crate::autograd`]; how a tensor prints, in `print`.

mod print;

pub use print::{print_options, set_print_options, PrintOptions};

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::backend::Distribution;
use crate::device::Device;
use crate::rng::{reserve_default, Generator};
use crate::storage::{PendingValues, Storage};

/// An n-dimensional array of `f32`, contiguous and row-major, that records the ops applied to
/// it so that [`Tensor::backward`] can compute gradients.
///
/// Cloning is cheap: clones share the data, the gradient and the graph node.
#[derive(Clone)]
pub struct Tensor {
    inner: Arc<TensorInner>,
}

struct TensorInner {
    /// Shared with detached copies ([`Tensor::detach`]); written in place only by optimisers.
    storage: Arc<RwLock<Storage>>,
    shape: Vec<usize>,
    device: Device,
    /// `Some` exactly when the tensor requires a gradient.
    node: RwLock<Option<Arc<Node>>>,
}

/// An op's local derivative: PyTorch's `grad_fn`.
pub(crate) trait GradFn: Send + Sync {
    /// The op's name, shown by [`Tensor::to_dot`].
    fn name(&self) -> &'static str;
    /// Given `∂L/∂output`, returns `∂L/∂input` for each input in order. An entry may be `None`
    /// where `needs_grad` says that input wants no gradient.
    fn backward(&self, grad_output: &Tensor, needs_grad: &[bool]) -> Vec<Option<Tensor>>;
}

/// A vertex of the autograd graph.
pub(crate) struct Node {
    /// Unique for the life of the process; orders and names nodes.
    pub id: u64,
    /// The shape of the tensor this node stands for (the shape of its gradient).
    pub shape: Vec<usize>,
    pub kind: NodeKind,
    /// `∂L/∂` this tensor, summed over backward passes ([`Node::keeps_grad`]).
    pub grad: Mutex<Option<Tensor>>,
    /// Set by [`Tensor::retain_grad`] on an op's result.
    pub retains_grad: AtomicBool,
}

pub(crate) enum NodeKind {
    /// A tensor the user made and asked gradients for: they accumulate in the node's `grad`.
    Leaf,
    /// The result of an op. `inputs[i]` is `None` where input `i` needs no gradient.
    Op {
        grad_fn: Box<dyn GradFn>,
        inputs: Vec<Option<Arc<Node>>>,
    },
}

impl Node {
    pub fn new(shape: Vec<usize>, kind: NodeKind) -> Arc<Node> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Arc::new(Node {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shape,
            kind,
            grad: Mutex::new(None),
            retains_grad: AtomicBool::new(false),
        })
    }

    /// Whether the backward pass keeps this node's gradient in `grad`: a leaf's always, an
    /// op's result's only when asked ([`Tensor::retain_grad`]). Other gradients are passed on
    /// to the inputs and dropped, as in PyTorch, so a step holds no more of them than it needs.
    pub fn keeps_grad(&self) -> bool {
        matches!(self.kind, NodeKind::Leaf) || self.retains_grad.load(Ordering::Relaxed)
    }

    /// The nodes this one's gradient flows into (none for a leaf).
    pub fn inputs(&self) -> impl Iterator<Item = &Arc<Node>> {
        let inputs: &[Option<Arc<Node>>] = match &self.kind {
            NodeKind::Leaf => &[],
            NodeKind::Op { inputs, .. } => inputs,
        };
        inputs.iter().flatten()
    }
}

impl Drop for Node {
    /// Dropping a node drops its inputs, and theirs: done recursively, a graph 100 000 ops deep
    /// would overflow the stack. Instead, inputs this node owned alone are unlinked into a work
    /// list and dismantled one at a time.
    fn drop(&mut self) {
        let NodeKind::Op { inputs, .. } = &mut self.kind else {
            return;
        };
        let mut pending: Vec<Arc<Node>> = inputs.drain(..).flatten().collect();
        while let Some(node) = pending.pop() {
            if let Ok(mut node) = Arc::try_unwrap(node) {
                if let NodeKind::Op { inputs, .. } = &mut node.kind {
                    pending.extend(inputs.drain(..).flatten());
                }
            }
        }
    }
}

/// The number of elements of a shape (1 for the empty shape of a scalar).
///
/// # Panics
/// If it does not count in a `usize` ([`checked_numel`]).
pub(crate) fn numel(shape: &[usize]) -> usize {
    checked_numel(shape)
        .unwrap_or_else(|| panic!("shape {shape:?} has more elements than a usize can count"))
}

/// The number of elements of a shape, or `None` if the product of its non-zero dimensions does
/// not fit in a `usize`: wrapped, `[2³², 2³²]` would count 0 elements, and every kernel sized
/// by the shape would reach past its buffers. A zero dimension does not excuse the others
/// (`[0, 2⁴⁰, 2⁴⁰]`'s rows would not fit either), as PyTorch refuses such a shape's strides.
pub(crate) fn checked_numel(shape: &[usize]) -> Option<usize> {
    let nonzero = shape
        .iter()
        .filter(|&&dim| dim != 0)
        .try_fold(1usize, |count, &dim| count.checked_mul(dim))?;
    Some(if shape.contains(&0) { 0 } else { nonzero })
}

/// PyTorch's checks of `uniform_`'s range, with its messages: a NaN or infinite bound, or a
/// width `high - low` beyond `f32::MAX`, would make every sample NaN or infinite, and
/// `low > high` would draw from `(high, low]`.
fn check_uniform_range(low: f32, high: f32) {
    for (name, bound) in [("low", low), ("high", high)] {
        assert!(
            bound.is_finite(),
            "uniform: {name}={bound} is out of bounds for f32"
        );
    }
    assert!(
        low <= high,
        "uniform: expects to return a [low, high) range, but found low={low} > high={high}"
    );
    assert!(
        (high - low).is_finite(),
        "uniform: expects high - low <= f32::MAX, but found high={high} and low={low}, \
         which make high - low exceed the limit"
    );
}

/// Constructors.
impl Tensor {
    /// A tensor holding `data` in row-major order.
    ///
    /// # Panics
    /// If `data.len()` is not the number of elements of `shape`.
    pub fn from_vec(data: Vec<f32>, shape: &[usize], device: &Device) -> Tensor {
        assert_eq!(
            data.len(),
            numel(shape),
            "from_vec: {} values cannot fill shape {shape:?} ({} elements)",
            data.len(),
            numel(shape)
        );
        Tensor::from_storage(Storage::from_vec(data, device), shape.to_vec())
    }

    /// A zero-dimensional tensor holding one value.
    pub fn scalar(value: f32, device: &Device) -> Tensor {
        Tensor::full(&[], value, device)
    }

    /// A tensor of `shape` with every element `value` (`torch.full`).
    pub fn full(shape: &[usize], value: f32, device: &Device) -> Tensor {
        Tensor::from_storage(Storage::full(numel(shape), value, device), shape.to_vec())
    }

    /// A tensor of `shape` filled with zeros (`torch.zeros`).
    pub fn zeros(shape: &[usize], device: &Device) -> Tensor {
        Tensor::full(shape, 0.0, device)
    }

    /// A tensor of `shape` filled with ones (`torch.ones`).
    pub fn ones(shape: &[usize], device: &Device) -> Tensor {
        Tensor::full(shape, 1.0, device)
    }

    /// Samples from N(0, 1), drawn from the process-wide generator ([`crate::manual_seed`]).
    pub fn randn(shape: &[usize], device: &Device) -> Tensor {
        Tensor::randn_with(shape, device, &mut reserve_default(&[numel(shape)]))
    }

    /// Samples from N(0, 1), drawn from `generator`.
    pub fn randn_with(shape: &[usize], device: &Device, generator: &mut Generator) -> Tensor {
        let normal = Distribution::Normal {
            mean: 0.0,
            std: 1.0,
        };
        Tensor::random(shape, normal, device, generator)
    }

    /// Samples from U(low, high), drawn from the process-wide generator.
    ///
    /// # Panics
    /// As [`Tensor::uniform_with`].
    pub fn uniform(shape: &[usize], low: f32, high: f32, device: &Device) -> Tensor {
        check_uniform_range(low, high); // before the process-wide generator advances
        let mut generator = reserve_default(&[numel(shape)]);
        Tensor::uniform_with(shape, low, high, device, &mut generator)
    }

    /// Samples from U(low, high), drawn from `generator`.
    ///
    /// # Panics
    /// Unless `low ≤ high`, both finite, with `high - low` finite too: PyTorch's `uniform_`
    /// raises there, where the samples would be NaN, infinite or outside the range.
    pub fn uniform_with(
        shape: &[usize],
        low: f32,
        high: f32,
        device: &Device,
        generator: &mut Generator,
    ) -> Tensor {
        check_uniform_range(low, high);
        Tensor::random(
            shape,
            Distribution::Uniform { low, high },
            device,
            generator,
        )
    }

    pub(crate) fn random(
        shape: &[usize],
        distribution: Distribution,
        device: &Device,
        generator: &mut Generator,
    ) -> Tensor {
        let len = numel(shape);
        let storage = Storage::random(len, distribution, generator.draw(len), device);
        Tensor::from_storage(storage, shape.to_vec())
    }

    /// A copy on `device`, outside the graph (gradients do not flow back through it). Moving
    /// parameters is done by creating them there: `Linear::new(.., &device)`.
    pub fn to_device(&self, device: &Device) -> Tensor {
        Tensor::from_vec(self.to_vec(), self.shape(), device)
    }

    /// A new tensor, outside the graph, over freshly computed storage.
    pub(crate) fn from_storage(storage: Storage, shape: Vec<usize>) -> Tensor {
        Tensor {
            inner: Arc::new(TensorInner {
                device: storage.device(),
                storage: Arc::new(RwLock::new(storage)),
                shape,
                node: RwLock::new(None),
            }),
        }
    }
}

/// Shape, device and values.
impl Tensor {
    /// The size of each dimension, outermost first (`[]` for a scalar).
    pub fn shape(&self) -> &[usize] {
        &self.inner.shape
    }

    /// The number of dimensions (0 for a scalar).
    pub fn dim(&self) -> usize {
        self.inner.shape.len()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.inner.shape)
    }

    /// The device that holds the values and runs the ops on them.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// The values, in row-major order, copied to the host.
    pub fn to_vec(&self) -> Vec<f32> {
        self.storage().to_vec()
    }

    /// The values of several tensors, as [`Tensor::to_vec`] each; those on one GPU are read
    /// back with one wait for it instead of one per tensor (a training step's statistics).
    pub fn to_vecs(tensors: &[&Tensor]) -> Vec<Vec<f32>> {
        with_storage_slice(tensors, Storage::read_all)
    }

    /// [`Tensor::to_vecs`] without waiting for the device: on a GPU the copies start behind
    /// the work launched so far and [`PendingValues::wait`] waits for them alone, so the
    /// host can queue the next step first and read this one's losses while it runs (on the
    /// CPU the values are read at once). Later writes to the tensors do not change what
    /// `wait` returns.
    pub fn to_vecs_later(tensors: &[&Tensor]) -> PendingValues {
        with_storage_slice(tensors, Storage::read_all_later)
    }

    /// The value of a one-element tensor.
    ///
    /// # Panics
    /// If the tensor has more or fewer than one element.
    pub fn item(&self) -> f32 {
        assert_eq!(
            self.numel(),
            1,
            "item: a tensor of shape {:?} has {} elements, not one",
            self.shape(),
            self.numel()
        );
        self.to_vec()[0]
    }

    /// Read access to the values.
    pub(crate) fn storage(&self) -> RwLockReadGuard<'_, Storage> {
        self.inner
            .storage
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Write access to the values, for in-place updates that sit outside the graph (optimisers).
    pub(crate) fn storage_mut(&self) -> RwLockWriteGuard<'_, Storage> {
        self.inner
            .storage
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the values in place, outside the graph (PyTorch's `with no_grad(): t.copy_(v)`),
    /// for loading saved weights into existing parameters. The values are written into the
    /// existing buffer, so a captured CUDA graph that uses this tensor sees them.
    ///
    /// # Panics
    /// If the number of values differs from the tensor's.
    pub fn assign(&self, values: &[f32]) {
        assert_eq!(
            values.len(),
            self.numel(),
            "assign: {} values for a tensor of shape {:?}",
            values.len(),
            self.shape()
        );
        self.storage_mut().write(values);
    }

    /// Overwrites the values in place with `src`'s, outside the graph (PyTorch's `copy_`):
    /// on one device a device-side copy, across devices a transfer. This is how a captured
    /// step's input buffer is refilled before each replay.
    ///
    /// # Panics
    /// If the shapes differ.
    pub fn copy_from(&self, src: &Tensor) {
        assert_eq!(
            self.shape(),
            src.shape(),
            "copy_from: cannot copy a tensor of shape {:?} into one of shape {:?}",
            src.shape(),
            self.shape()
        );
        if !self.shares_storage(src) {
            self.storage_mut().copy_from(&src.storage());
        }
    }

    /// Whether two tensors share their values (clones and detached copies do).
    pub fn shares_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.inner.storage, &other.inner.storage)
    }
}

/// Runs `f` with read access to the storage of every tensor in `tensors`, taking each distinct
/// storage's lock once (so `x * x` does not lock `x` twice).
pub(crate) fn with_storages<R, const N: usize>(
    tensors: [&Tensor; N],
    f: impl FnOnce([&Storage; N]) -> R,
) -> R {
    with_storage_slice(&tensors, |storages| f(std::array::from_fn(|i| storages[i])))
}

/// [`with_storages`] for any number of tensors.
pub(crate) fn with_storage_slice<R>(tensors: &[&Tensor], f: impl FnOnce(&[&Storage]) -> R) -> R {
    let mut guards = Vec::with_capacity(tensors.len());
    let mut guard_of = Vec::with_capacity(tensors.len());
    for (i, tensor) in tensors.iter().enumerate() {
        guard_of.push(
            match tensors[..i].iter().position(|t| t.shares_storage(tensor)) {
                Some(earlier) => guard_of[earlier],
                None => {
                    guards.push(tensor.storage());
                    guards.len() - 1
                }
            },
        );
    }
    let storages: Vec<&Storage> = guard_of.iter().map(|&g| &*guards[g]).collect();
    f(&storages)
}

/// Gradient bookkeeping (the backward pass is [`Tensor::backward`], in `src/autograd.rs`).
impl Tensor {
    /// Whether gradients flow to this tensor: set on leaves by [`Tensor::set_requires_grad`],
    /// inherited by the results of ops on such tensors.
    pub fn requires_grad(&self) -> bool {
        self.node().is_some()
    }

    /// Asks for (or stops asking for) gradients of this leaf tensor.
    ///
    /// # Panics
    /// When turning gradients off on the result of an op: use [`Tensor::detach`] instead, as in
    /// PyTorch.
    pub fn set_requires_grad(&self, requires_grad: bool) {
        let mut node = self
            .inner
            .node
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if requires_grad {
            if node.is_none() {
                *node = Some(Node::new(self.inner.shape.clone(), NodeKind::Leaf));
            }
        } else {
            let is_op_result = matches!(
                node.as_deref(),
                Some(Node {
                    kind: NodeKind::Op { .. },
                    ..
                })
            );
            assert!(
                !is_op_result,
                "set_requires_grad: only leaf tensors can stop requiring grad; \
                 use detach() for a copy outside the graph"
            );
            *node = None;
        }
    }

    /// Whether this tensor was made by the user rather than computed by an op that records.
    pub fn is_leaf(&self) -> bool {
        !matches!(
            self.node().as_deref(),
            Some(Node {
                kind: NodeKind::Op { .. },
                ..
            })
        )
    }

    /// The gradient accumulated by [`Tensor::backward`]: kept by leaves that require grad, and
    /// by an op's result that called [`Tensor::retain_grad`] before the backward pass.
    pub fn grad(&self) -> Option<Tensor> {
        let node = self.node()?;
        let grad = node.grad.lock().unwrap_or_else(PoisonError::into_inner);
        grad.clone()
    }

    /// Drops the accumulated gradient (PyTorch's `zero_grad(set_to_none=True)`).
    pub fn zero_grad(&self) {
        if let Some(node) = self.node() {
            *node.grad.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// Keeps this tensor's gradient in [`Tensor::grad`] though it is an op's result, whose
    /// gradient the backward pass otherwise passes on to the op's inputs and drops (PyTorch's
    /// `retain_grad`): to see `∂L/∂h` of a hidden layer, say. Like a leaf's, it accumulates
    /// over backward passes until [`Tensor::zero_grad`]. A leaf keeps its gradient anyway.
    ///
    /// # Panics
    /// If the tensor does not require grad: no gradient reaches it (PyTorch raises too).
    pub fn retain_grad(&self) {
        let node = self.node().unwrap_or_else(|| {
            panic!("retain_grad: can't retain_grad on a tensor that does not require grad")
        });
        if !matches!(node.kind, NodeKind::Leaf) {
            node.retains_grad.store(true, Ordering::Relaxed);
        }
    }

    /// Whether [`Tensor::retain_grad`] was called on this op's result (`false` for a leaf, as
    /// PyTorch's `retains_grad`).
    pub fn retains_grad(&self) -> bool {
        self.node()
            .is_some_and(|node| node.retains_grad.load(Ordering::Relaxed))
    }

    /// The same values, cut from the graph: gradients do not flow through the result.
    pub fn detach(&self) -> Tensor {
        self.share_storage_as(self.shape())
    }

    /// A tensor outside the graph over the same values, seen with another shape of equally
    /// many elements (the caller checks that).
    pub(crate) fn share_storage_as(&self, shape: &[usize]) -> Tensor {
        debug_assert_eq!(numel(shape), self.numel());
        Tensor {
            inner: Arc::new(TensorInner {
                storage: Arc::clone(&self.inner.storage),
                shape: shape.to_vec(),
                device: self.inner.device.clone(),
                node: RwLock::new(None),
            }),
        }
    }

    pub(crate) fn node(&self) -> Option<Arc<Node>> {
        self.inner
            .node
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts a freshly computed tensor into the graph (see [`crate::autograd::record`]).
    pub(crate) fn set_node(&self, node: Arc<Node>) {
        *self
            .inner
            .node
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(node);
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 8;
        let values = self.to_vec();
        write!(
            f,
            "Tensor(shape={:?}, device={}",
            self.shape(),
            self.device()
        )?;
        if let Some(node) = self.node() {
            match &node.kind {
                NodeKind::Leaf => write!(f, ", requires_grad=true")?,
                NodeKind::Op { grad_fn, .. } => write!(f, ", grad_fn={}", grad_fn.name())?,
            }
        }
        write!(f, ", data={:?}", &values[..values.len().min(SHOWN)])?;
        if values.len() > SHOWN {
            write!(f, " … ({} more)", values.len() - SHOWN)?;
        }
        write!(f, ")")
    }
}
