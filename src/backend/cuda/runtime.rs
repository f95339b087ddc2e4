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

/// A warp's requests to shared memory, and the wavefronts (passes through its 32 banks of 4
/// bytes) they took. A request takes one wavefront per bank's worth of words when its lanes
/// fall in different banks or share words — 1 for 32 lanes' consecutive floats, 4 for their
/// `float4`s (a quarter-warp at a time) — and more where lanes ask one bank for different
/// words: bank conflicts, which make the request wait. `kernels/emulator/shared_trace.cpp`
/// counts them as a GPU meets them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BankTraffic {
    /// Warp-wide loads or stores.
    pub requests: u64,
    /// The passes through the banks they took.
    pub wavefronts: u64,
    /// The passes they would take without bank conflicts.
    pub ideal_wavefronts: u64,
}

impl BankTraffic {
    /// Wavefronts per ideal wavefront: 1 without bank conflicts, 2 where every request waits
    /// for two passes instead of one, … (1 for no requests).
    pub fn conflict_factor(&self) -> f64 {
        if self.ideal_wavefronts == 0 {
            1.0
        } else {
            self.wavefronts as f64 / self.ideal_wavefronts as f64
        }
    }

    /// Both counts together.
    pub fn add(&mut self, other: &BankTraffic) {
        self.requests += other.requests;
        self.wavefronts += other.wavefronts;
        self.ideal_wavefronts += other.ideal_wavefronts;
    }
}

/// A launch's shared-memory loads, stores, and `cp.async` copies' writes, as the CPU emulator
/// counts them (`kernels/emulator/shared_trace.cpp`, whose `SharedTraffic` this mirrors).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SharedMemoryTraffic {
    /// Loads from shared memory (`LDS`).
    pub loads: BankTraffic,
    /// Stores to shared memory (`STS`).
    pub stores: BankTraffic,
    /// The writes of asynchronous copies from global memory (`cp.async`, `LDGSTS`): they
    /// pass through the banks as stores do.
    pub copies: BankTraffic,
}

/// One launch of a device tracing shared memory
/// ([`CudaDevice::trace_shared_memory`](super::CudaDevice::trace_shared_memory)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TracedLaunch {
    /// The kernel's name.
    pub name: String,
    /// Its launch's grid and blocks.
    pub config: LaunchConfig,
    /// Its bank traffic.
    pub traffic: SharedMemoryTraffic,
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

    /// Starts or stops counting the shared-memory bank traffic of each kernel run from now
    /// on, for [`Runtime::take_shared_memory_traffic`]: the emulator's alone.
    fn set_shared_memory_trace(&self, on: bool) -> Result<(), String> {
        let _ = on;
        Err("only the CPU emulator counts bank conflicts (a GPU's are ncu's to count)".into())
    }

    /// The kernels run and traced since the last call, in launch order.
    fn take_shared_memory_traffic(&self) -> Vec<TracedLaunch> {
        Vec::new()
    }

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
