//! CUDA graphs: record a step's kernel launches once, then replay them with one call.
//!
//! At batch 64 the GAN's kernels are tiny, so an eager step spends most of its time launching
//! them (a few microseconds each, over a hundred per step). A graph submits them all at once.
//! What a step must do to be captured:
//!
//! - take its inputs from tensors that exist before the capture and are refilled before each
//!   replay ([`crate::Tensor::copy_from`]), since copies between host and device are not recorded;
//! - keep per-step scalars on the device (Adam's step count already is);
//! - draw its random numbers (noise, dropout masks) from one generator: each replay continues
//!   that generator's stream exactly where an eager step would.
//!
//! Tensors the captured code returns keep the graph's buffers: after each replay they hold that
//! replay's results. With the CPU emulator of the CUDA path, a capture records the launch list
//! and a replay runs it again, so tests check that replaying gives what eager steps give.

use crate::backend::cuda::CudaGraph;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::rng::{with_default_generator, Generator};

/// A captured step (see the module docs).
pub struct Graph {
    inner: CudaGraph,
}

/// Records the launches that `record` makes on `device` into a [`Graph`], and returns it with
/// what `record` returned. Nothing runs during the capture, and the process-wide generator is
/// left where it was: replays advance it.
///
/// # Errors
/// If `device` is the CPU, if `record` panics (a copy from the host inside it, say), or if the
/// CUDA driver rejects the capture.
pub fn capture<R>(device: &Device, record: impl FnOnce() -> R) -> Result<(Graph, R)> {
    let Device::Cuda(cuda) = device else {
        return Err(Error::Device(
            "graph capture needs a CUDA device; on the CPU, run the step eagerly".into(),
        ));
    };
    let generator_before = with_default_generator(|generator| *generator);
    let captured = CudaGraph::capture(cuda, record);
    with_default_generator(|generator| *generator = generator_before);
    let (inner, recorded) = captured.map_err(Error::Device)?;
    Ok((Graph { inner }, recorded))
}

impl Graph {
    /// Replays the step, drawing random numbers from the process-wide generator.
    ///
    /// # Errors
    /// As [`Graph::replay_with`].
    pub fn replay(&self) -> Result<()> {
        with_default_generator(|generator| self.replay_with(generator))
    }

    /// Replays the step, drawing random numbers from `generator` where it stands (its seed
    /// may differ from the capture's: the generator's state is read on the device).
    ///
    /// # Errors
    /// If the GPU fails the replay.
    pub fn replay_with(&self, generator: &mut Generator) -> Result<()> {
        self.inner.replay(generator).map_err(Error::Device)
    }

    /// Kernel launches per replay.
    pub fn launches(&self) -> usize {
        self.inner.launches()
    }

    /// Philox counter blocks (four numbers each) a replay draws.
    pub fn random_blocks(&self) -> u64 {
        self.inner.random_blocks()
    }
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Graph({} launches)", self.launches())
    }
}
