//! What the CUDA backend needs from whatever runs its kernels: device memory, copies, launches
//! and graph capture. Two runtimes implement it: the GPU through the CUDA driver (`driver.rs`)
//! and the CPU emulator (`emulator.rs`). Everything above — storage, allocator, launch geometry,
//! argument structs, what a capture records — is shared, so the emulator runs exactly the
//! launches the GPU would.

use std::ffi::c_void;
use std::panic::RefUnwindSafe;

use super::launch::LaunchConfig;

/// How long one kernel ran (on a GPU: between events recorded around it on the stream; on
/// the emulator: the host's time to emulate it).
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    /// The kernel's name.
    pub name: String,
    /// Its launch's grid and blocks.
    pub config: LaunchConfig,
    /// How long it ran, in µs.
    pub micros: f64,
}

/// Where a launch goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// Runs (in order with everything launched before it).
    Run,
    /// Is recorded into the graph being captured, and does not run now.
    Capture,
}

pub(crate) trait Runtime: Send + Sync + RefUnwindSafe {
    /// Allocates `bytes` (> 0) of device memory; the caching allocator never frees it.
    fn alloc(&self, bytes: usize) -> Result<u64, String>;

    /// The caching allocator hands out the `bytes` at `pointer` (new or reused). The emulator
    /// fills them with NaN, so that a kernel reading what nothing wrote (a race, a store it
    /// missed) shows NaN rather than a stale value that happens to be right, as the last user
    /// of a reused buffer often left; on a GPU it does nothing.
    fn hand_out(&self, _pointer: u64, _bytes: usize) {}

    /// Copies to the device, in order with the kernels launched so far. It may return before
    /// the copy is done (`src` is free to change once it returns).
    fn copy_to_device(&self, dst: u64, src: &[u8]) -> Result<(), String>;

    /// Copies each `(src, dst)` back to the host, after all kernels launched so far have
    /// finished: one wait for all of them.
    fn copy_to_host(&self, copies: &mut [(u64, &mut [u8])]) -> Result<(), String>;

    /// Starts copying `bytes` bytes from each `src` back to the host, behind the kernels
    /// launched so far, and returns without waiting: [`PendingHostCopy::wait`] then waits for
    /// these copies alone, not for what was launched after them.
    fn copy_to_host_later(
        &self,
        copies: &[(u64, usize)],
    ) -> Result<Box<dyn PendingHostCopy>, String>;

    /// Launches kernel `name` with the `args_size` bytes of its argument struct at `args`.
    ///
    /// # Safety
    /// `args` must point to a struct with the kernel's argument layout, `args_size` bytes long,
    /// whose pointers are device buffers of this runtime large enough for the launch (and stay
    /// so for every replay, when the launch is captured).
    unsafe fn launch(
        &self,
        name: &str,
        config: LaunchConfig,
        args: *mut c_void,
        args_size: usize,
        target: Target,
    ) -> Result<(), String>;

    /// Launches the kernels from now on with programmatic dependent launch, or not (see
    /// [`super::CudaDevice::set_programmatic_launch`]).
    fn set_programmatic_launch(&self, on: bool) -> Result<(), String>;

    /// Starts or stops timing each kernel run from now on (captured launches are not run, so
    /// not timed), for [`Runtime::take_kernel_times`].
    fn set_kernel_timing(&self, on: bool);

    /// The kernels run and timed since the last call, in launch order, once they are done.
    fn take_kernel_times(&self) -> Result<Vec<KernelTime>, String>;

    /// Starts recording launches made with [`Target::Capture`] into a graph.
    fn begin_capture(&self) -> Result<(), String>;

    /// Stops recording and returns what was recorded, ready to replay.
    fn end_capture(&self) -> Result<Box<dyn GraphExec>, String>;
}

/// A recorded sequence of launches (a CUDA graph, instantiated).
pub(crate) trait GraphExec: Send + Sync {
    /// Runs the recorded launches again, in order with everything launched before.
    fn replay(&self) -> Result<(), String>;

    /// How many kernel launches one replay makes.
    fn launches(&self) -> usize;
}

/// Bytes on their way back from the device ([`Runtime::copy_to_host_later`]).
pub(crate) trait PendingHostCopy: Send {
    /// Waits for the copies and returns their bytes, one vector per copy.
    fn wait(self: Box<Self>) -> Result<Vec<Vec<u8>>, String>;
}

/// A copy to the host done when it was asked for: the emulator's, and the GPU's where no
/// page-locked memory could be had.
pub(crate) struct CopiedAlready(Vec<Vec<u8>>);

impl CopiedAlready {
    /// Reads `copies` with `runtime`'s waiting copy.
    pub fn read(
        runtime: &dyn Runtime,
        copies: &[(u64, usize)],
    ) -> Result<Box<dyn PendingHostCopy>, String> {
        let mut bytes: Vec<Vec<u8>> = copies.iter().map(|&(_, len)| vec![0; len]).collect();
        let mut targets: Vec<(u64, &mut [u8])> = copies
            .iter()
            .zip(&mut bytes)
            .map(|(&(src, _), dst)| (src, dst.as_mut_slice()))
            .collect();
        runtime.copy_to_host(&mut targets)?;
        Ok(Box::new(CopiedAlready(bytes)))
    }
}

impl PendingHostCopy for CopiedAlready {
    fn wait(self: Box<Self>) -> Result<Vec<Vec<u8>>, String> {
        Ok(self.0)
    }
}
