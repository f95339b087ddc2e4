//! A captured CUDA graph (see [`CudaDevice::capture`]), replayable any number of times.

use std::sync::{Arc, Mutex, PoisonError};

use super::device::{CudaDevice, DeviceBuffer, Pool};
use super::runtime::GraphExec;
use crate::rng::Generator;

/// A recorded step: its launches, the memory they use, and how it draws random numbers.
pub struct CudaGraph {
    device: CudaDevice,
    exec: Box<dyn GraphExec>,
    /// The buffers allocated during the capture: the graph's for as long as it lives.
    pool: Arc<Pool>,
    rng: Option<GraphRng>,
}

impl std::fmt::Debug for CudaGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaGraph")
            .field("device", &self.device)
            .field("random_blocks", &self.rng.as_ref().map(|rng| rng.blocks))
            .finish_non_exhaustive()
    }
}

/// The random draws of a graph: `blocks` counter blocks of the generator whose `{offset, key}`
/// the device-side `state` holds; the graph's last launch advances the offset by `blocks`.
struct GraphRng {
    blocks: u64,
    state: DeviceBuffer,
    /// What `state` holds after the launches so far (`None`: not yet set), so that a replay
    /// following a replay needs no copy from the host.
    state_value: Mutex<Option<[u64; 2]>>,
}

impl CudaGraph {
    /// Records the launches `record` makes on `device`, instead of running them, into a graph
    /// that [`CudaGraph::replay`] runs again, and returns it with what `record` returned (see
    /// [`CudaDevice::capture`] for what a step needs to be capturable).
    pub(crate) fn capture<R>(
        device: &CudaDevice,
        record: impl FnOnce() -> R,
    ) -> Result<(CudaGraph, R), String> {
        let (captured, recorded) = device.capture(record)?;
        let rng = captured.draws.map(|(blocks, state)| GraphRng {
            blocks,
            state,
            state_value: Mutex::new(None),
        });
        let graph = CudaGraph {
            device: device.clone(),
            exec: captured.exec,
            pool: captured.pool,
            rng,
        };
        Ok((graph, recorded))
    }

    /// Runs the recorded launches again (asynchronously on a GPU: reading a result waits for
    /// them). Random draws continue `generator`'s stream where it stands, exactly as an eager
    /// step would, and advance it past them.
    ///
    /// # Errors
    /// If the runtime fails the replay.
    pub fn replay(&self, generator: &mut Generator) -> Result<(), String> {
        let Some(rng) = &self.rng else {
            return self.exec.replay();
        };
        let state = [generator.offset(), generator.seed()];
        let mut state_value = rng
            .state_value
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *state_value != Some(state) {
            self.device.write(&rng.state, bytemuck::cast_slice(&state));
        }
        self.exec.replay()?;
        let end = state[0] + rng.blocks;
        *state_value = Some([end, state[1]]);
        *generator = Generator::from_state(generator.seed(), end);
        Ok(())
    }

    /// Kernel launches per replay.
    pub fn launches(&self) -> usize {
        self.exec.launches()
    }

    /// Counter blocks of random numbers each replay draws.
    pub fn random_blocks(&self) -> u64 {
        self.rng.as_ref().map_or(0, |rng| rng.blocks)
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        self.pool.retire_into(self.device.general_pool());
    }
}
