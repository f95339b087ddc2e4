//! Whether ops record the graph: on by default, off inside a [`no_grad`] scope.
//!
//! The flag is per thread, as in PyTorch: a scope on one thread does not affect another.

use std::cell::Cell;
use std::marker::PhantomData;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops on this thread currently record the graph.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(Cell::get)
}

/// Turns graph recording off until the returned guard is dropped (PyTorch's `torch.no_grad()`).
///
/// ```
/// use ferrograd::{no_grad, Device, Tensor};
/// let w = Tensor::ones(&[2], &Device::Cpu);
/// w.set_requires_grad(true);
/// let y = {
///     let _guard = no_grad();
///     w.relu()
/// };
/// assert!(!y.requires_grad());
/// ```
#[must_use = "recording resumes as soon as the guard is dropped"]
pub fn no_grad() -> NoGradGuard {
    NoGradGuard {
        previous: GRAD_ENABLED.with(|enabled| enabled.replace(false)),
        _same_thread: PhantomData,
    }
}

/// Restores the previous recording state when dropped. It is tied to its thread, whose flag it
/// restores, so it is neither `Send` nor `Sync`.
#[derive(Debug)]
pub struct NoGradGuard {
    previous: bool,
    _same_thread: PhantomData<*const ()>,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|enabled| enabled.set(self.previous));
    }
}
