//! Where a tensor's data lives and where its kernels run.

use std::fmt;

/// A compute device. Every tensor lives on exactly one device, and an op's inputs must share it.
///
/// Only the CPU exists today; the CUDA backend adds a variant here and a backend behind
/// [`crate::storage`], without touching the op or autograd layers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// Host memory; kernels run on the rayon thread pool.
    Cpu,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
        }
    }
}
