//! A CUDA device: a runtime (GPU or emulator), a caching allocator, kernel launches, and
//! graph capture.
//!
//! **Capture.** While a thread captures (see [`CudaDevice::capture`]), its launches are recorded
//! instead of run, its allocations come from a memory pool of the graph's own, and copies
//! between host and device are refused (a replay could not repeat them). The pool is what makes
//! replays safe: every buffer the captured launches touch that was allocated during the capture
//! stays the graph's, even after the tensor holding it is dropped, so no later allocation can be
//! handed an address a replay writes to. Random draws are rebased on a counter in device
//! memory (the generator's offset and key, written before a replay when they changed), which
//! each replay advances, so replays draw fresh numbers — the very ones eager steps would have
//! drawn.

use std::any::Any;
use std::collections::HashMap;
use std::ffi::c_void;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, ThreadId};

use super::args::{KernelArgs, PhiloxAdvanceArgs, PhiloxDraw};
use super::driver::DriverRuntime;
use super::emulator::EmulatorRuntime;
use super::kernel_cache::KernelsLoaded;
use super::launch::{LaunchConfig, SPLIT_K_MAX_TILES};
use super::nvrtc;
use super::runtime::{GraphExec, KernelTime, PendingHostCopy, Runtime, Target, TracedLaunch};
use crate::rng::PhiloxStream;

/// A handle on a CUDA device (cheap to clone; clones are the same device).
#[derive(Clone)]
pub struct CudaDevice {
    inner: Arc<DeviceInner>,
}

struct DeviceInner {
    label: String,
    description: String,
    runtime: Box<dyn Runtime>,
    /// Free buffers for everything but captures: after warm-up, training allocates nothing new.
    general: Arc<Pool>,
    /// The capture in progress, if any.
    capture: Mutex<Option<Capture>>,
    /// Allocations made through the runtime (cudaMalloc calls), for tests and diagnostics.
    raw_allocations: AtomicU64,
    /// Split-K's tile counters (`SPLIT_K_MAX_TILES` u32s, 4 KiB, zero between launches): all
    /// launches run in order on one stream, so every split GEMM can use the same ones.
    split_k_counters: u64,
    /// How the kernels were loaded when the device was opened (the emulator's are built in).
    kernels_loaded: KernelsLoaded,
    /// Whether `gemm_tf32` can run: sm_80 or later, or the emulator (which emulates it) but
    /// for its Turing GPU.
    tf32_tensor_cores: bool,
}

/// Free buffers by size class.
#[derive(Default)]
pub(crate) struct Pool {
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    free: HashMap<usize, Vec<u64>>,
    /// A graph's pool after the graph is gone: buffers returned to it go to the general pool.
    retired: bool,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self, bytes: usize) -> Option<u64> {
        self.lock().free.get_mut(&bytes).and_then(Vec::pop)
    }

    fn give_back(&self, bytes: usize, pointer: u64, general: &Pool) {
        let mut state = self.lock();
        if state.retired {
            drop(state);
            general.give_back(bytes, pointer, general);
        } else {
            state.free.entry(bytes).or_default().push(pointer);
        }
    }

    /// Hands every free buffer, and every buffer returned from now on, to `general`.
    pub(crate) fn retire_into(&self, general: &Pool) {
        let free = {
            let mut state = self.lock();
            state.retired = true;
            std::mem::take(&mut state.free)
        };
        let mut general = general.lock();
        for (bytes, pointers) in free {
            general.free.entry(bytes).or_default().extend(pointers);
        }
    }
}

/// The capture in progress on a device.
struct Capture {
    thread: ThreadId,
    pool: Arc<Pool>,
    /// The generator state `{offset, key}` random draws are rebased on (see
    /// [`CudaDevice::philox_draw`]).
    rng_state: DeviceBuffer,
    rng: Option<CapturedDraws>,
}

/// What a capture recorded, for `graph.rs` to replay.
pub(crate) struct CapturedLaunches {
    pub exec: Box<dyn GraphExec>,
    /// The buffers allocated during the capture: the graph's for as long as it lives.
    pub pool: Arc<Pool>,
    /// The counter blocks of random numbers a replay draws, and the buffer holding the
    /// generator state `{offset, key}` they are rebased on; `None` if the launches draw none.
    pub draws: Option<(u64, DeviceBuffer)>,
}

/// The random draws of a capture: all from one stream (`key`), counter blocks `base..end`.
#[derive(Clone, Copy)]
struct CapturedDraws {
    key: [u32; 2],
    base: u64,
    end: u64,
}

/// The CUDA driver's library, NVRTC's, and where the system looks for libraries, as this
/// system names them (for the errors that say one is missing).
const DRIVER_LIBRARY: &str = if cfg!(windows) {
    "nvcuda.dll"
} else {
    "libcuda.so.1"
};
const NVRTC_LIBRARY: &str = if cfg!(windows) {
    "nvrtc64_130_0.dll"
} else {
    "libnvrtc.so.13"
};
const LIBRARY_PATH: &str = if cfg!(windows) {
    "PATH"
} else {
    "LD_LIBRARY_PATH"
};

/// The oldest GPU architecture NVRTC 13 compiles for (CUDA 13 dropped Maxwell to Volta), and
/// so the oldest our kernels run on.
const OLDEST_ARCHITECTURE: (u32, u32) = (7, 5);

/// Sizes are rounded up to a multiple of this, so buffers of similar size share a class.
const SIZE_CLASS: usize = 256;

impl CudaDevice {
    fn new(
        label: String,
        description: String,
        runtime: Box<dyn Runtime>,
        kernels_loaded: KernelsLoaded,
        tf32_tensor_cores: bool,
    ) -> Result<CudaDevice, String> {
        let counter_bytes = SPLIT_K_MAX_TILES * std::mem::size_of::<u32>();
        let split_k_counters = runtime.alloc(counter_bytes)?;
        runtime.copy_to_device(split_k_counters, &vec![0; counter_bytes])?;
        Ok(CudaDevice {
            inner: Arc::new(DeviceInner {
                label,
                description,
                runtime,
                general: Arc::default(),
                capture: Mutex::new(None),
                raw_allocations: AtomicU64::new(1),
                split_k_counters,
                kernels_loaded,
                tf32_tensor_cores,
            }),
        })
    }

    /// The process's CPU emulator of the CUDA path; an error that says why in a build without
    /// it (see build.rs).
    pub fn emulator() -> Result<CudaDevice, String> {
        static EMULATOR: OnceLock<CudaDevice> = OnceLock::new();
        CudaDevice::emulated(&EMULATOR, || {
            let runtime = EmulatorRuntime::default();
            (
                "cuda-emulator",
                "our CUDA kernels run by the CPU emulator",
                runtime,
                true,
            )
        })
    }

    /// The CPU emulator as a Turing GPU (sm_75: a T4, an RTX 20-series) runs our kernels:
    /// `gemm.cu` compiled as for sm_75 (plain copies into shared memory instead of
    /// `cp.async`; TF32 helpers that trap) and no TF32 tensor cores, so that products stay
    /// FP32 whatever [`super::set_allow_tf32`] says. What the GPUs before sm_80 run, checked
    /// on any machine. An error that says why in a build without the emulator.
    pub fn emulator_sm75() -> Result<CudaDevice, String> {
        static EMULATOR: OnceLock<CudaDevice> = OnceLock::new();
        CudaDevice::emulated(&EMULATOR, || {
            let description = "our CUDA kernels run by the CPU emulator as a Turing GPU (sm_75) \
                               runs them";
            (
                "cuda-emulator-sm75",
                description,
                EmulatorRuntime::sm75(),
                false,
            )
        })
    }

    /// The emulator device kept in `device`, made at the first call from `parts`: its label,
    /// description, runtime, and whether it has TF32 tensor cores.
    fn emulated(
        device: &OnceLock<CudaDevice>,
        parts: impl FnOnce() -> (&'static str, &'static str, EmulatorRuntime, bool),
    ) -> Result<CudaDevice, String> {
        if let Some(err) = super::emulator::not_built_error() {
            return Err(err);
        }
        let made = device.get_or_init(|| {
            let (label, description, runtime, tf32_tensor_cores) = parts();
            CudaDevice::new(
                label.into(),
                description.into(),
                Box::new(runtime),
                KernelsLoaded::default(),
                tf32_tensor_cores,
            )
            .expect("the emulator's memory is host memory")
        });
        Ok(made.clone())
    }

    /// GPU `ordinal`, opened once per process, its kernels compiled (or read from the kernel
    /// cache) and loaded. Fails with a clear message, never a panic, where there is no driver,
    /// no NVRTC or no such GPU, or where NVRTC or the driver refuses a kernel file.
    pub fn gpu(ordinal: usize) -> Result<CudaDevice, String> {
        static GPUS: Mutex<Vec<(usize, CudaDevice)>> = Mutex::new(Vec::new());
        let mut gpus = GPUS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, device)) = gpus.iter().find(|(o, _)| *o == ordinal) {
            return Ok(device.clone());
        }
        // SAFETY: only tries to open the driver library by its candidate names.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(format!("no CUDA driver ({DRIVER_LIBRARY}) on this machine"));
        }
        if !nvrtc::is_available() {
            return Err(format!(
                "NVRTC ({NVRTC_LIBRARY}) not found: install the CUDA toolkit, or \
                 `pip install nvidia-cuda-nvrtc` and add the folder that holds it to \
                 {LIBRARY_PATH}"
            ));
        }
        // cudarc panics when a symbol is missing (a driver too old for CUDA 13): contain it.
        let opened = catch_unwind(AssertUnwindSafe(|| DriverRuntime::new(ordinal)))
            .map_err(|_| format!("cuda:{ordinal}: the CUDA driver could not be initialised (too old for CUDA 13?)"))??;
        let (runtime, description) = opened;
        let (major, minor) = runtime.compute_capability();
        if (major, minor) < OLDEST_ARCHITECTURE {
            let (oldest_major, oldest_minor) = OLDEST_ARCHITECTURE;
            return Err(format!(
                "cuda:{ordinal}: {description} is too old: NVRTC 13 compiles for compute \
                 capability {oldest_major}.{oldest_minor} (sm_{oldest_major}{oldest_minor}, \
                 Turing) or later"
            ));
        }
        let kernels_loaded = runtime
            .load_kernels()
            .map_err(|err| format!("cuda:{ordinal}: {err}"))?;
        let device = CudaDevice::new(
            format!("cuda:{ordinal}"),
            description,
            Box::new(runtime),
            kernels_loaded,
            major >= 8, // TF32 tensor cores came with Ampere
        )
        .map_err(|err| format!("cuda:{ordinal}: {err}"))?;
        gpus.push((ordinal, device.clone()));
        Ok(device)
    }

    /// `cuda:0`, or `cuda-emulator` (`cuda-emulator-sm75`).
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// The GPU's name and architecture, or what the emulator is.
    pub fn description(&self) -> &str {
        &self.inner.description
    }

    /// How the GPU got its kernels when it was opened: how many files NVRTC compiled and how
    /// many came from the kernel cache ([`super::kernel_cache`]), and how long it took; all
    /// zero on the emulator, whose kernels are built in. A first run compiles them all, a few
    /// seconds that a program may want to explain (`mnist_gan` does).
    pub fn kernels_loaded(&self) -> KernelsLoaded {
        self.inner.kernels_loaded
    }

    /// Whether the device has TF32 tensor cores (sm_80, Ampere, or later; the emulator emulates
    /// them, its Turing GPU not), which [`super::set_allow_tf32`] lets the products use.
    /// Before sm_80 (a T4, an RTX 20-series) they stay FP32 whatever it says, as in PyTorch.
    pub fn has_tf32_tensor_cores(&self) -> bool {
        self.inner.tf32_tensor_cores
    }

    /// How many times device memory was requested from the runtime so far.
    pub fn raw_allocations(&self) -> u64 {
        self.inner.raw_allocations.load(Ordering::Relaxed)
    }

    /// The address of split-K's tile counters (see `gemm.cu`).
    pub(crate) fn split_k_counters(&self) -> u64 {
        self.inner.split_k_counters
    }

    /// A buffer for `len` floats, from the cache when one of its size class is free.
    ///
    /// # Panics
    /// When the device is out of memory (as PyTorch raises).
    pub(crate) fn buffer(&self, len: usize) -> DeviceBuffer {
        self.buffer_of_bytes(len * 4, len)
    }

    /// A buffer holding a copy of `bytes` (its `len` counts floats: `bytes.len() / 4`).
    pub(crate) fn upload(&self, bytes: &[u8]) -> DeviceBuffer {
        let buffer = self.buffer_of_bytes(bytes.len(), bytes.len() / 4);
        self.write(&buffer, bytes);
        buffer
    }

    /// Overwrites the start of `buffer` with `bytes`.
    pub(crate) fn write(&self, buffer: &DeviceBuffer, bytes: &[u8]) {
        assert!(
            bytes.len() <= buffer.bytes,
            "write past the end of {buffer:?}"
        );
        self.refuse_copy_in_capture("a copy from the host");
        self.inner
            .runtime
            .copy_to_device(buffer.pointer, bytes)
            .unwrap_or_else(|err| panic!("{}: {err}", self.label()));
    }

    fn buffer_of_bytes(&self, bytes: usize, len: usize) -> DeviceBuffer {
        let bytes = bytes.max(1).next_multiple_of(SIZE_CLASS);
        let pool = self
            .capture_here(|capture| Arc::clone(&capture.pool))
            .unwrap_or_else(|| Arc::clone(&self.inner.general));
        let pointer = pool.take(bytes).unwrap_or_else(|| {
            self.inner.raw_allocations.fetch_add(1, Ordering::Relaxed);
            self.inner
                .runtime
                .alloc(bytes)
                .unwrap_or_else(|err| panic!("{}: {err}", self.label()))
        });
        self.inner.runtime.hand_out(pointer, bytes);
        DeviceBuffer {
            pointer,
            bytes,
            len,
            pool,
            device: self.clone(),
        }
    }

    /// `f` of the capture in progress, if the calling thread is the one capturing.
    fn capture_here<R>(&self, f: impl FnOnce(&mut Capture) -> R) -> Option<R> {
        let mut capture = self
            .inner
            .capture
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        capture
            .as_mut()
            .filter(|capture| capture.thread == thread::current().id())
            .map(f)
    }

    fn refuse_copy_in_capture(&self, what: &str) {
        if self.capture_here(|_| ()).is_some() {
            panic!(
                "{}: {what} inside a captured step: a graph replays launches only, so the step \
                 must take its inputs from device buffers filled before the replay",
                self.label()
            );
        }
    }

    /// Launches `kernel` with `args`.
    ///
    /// # Panics
    /// When the runtime fails the launch (no such kernel, a driver error), as PyTorch raises.
    pub(crate) fn launch<A: KernelArgs>(&self, kernel: &str, config: LaunchConfig, args: A) {
        let mut args = args;
        let target = match self.capture_here(|_| ()) {
            Some(()) => Target::Capture,
            None => Target::Run,
        };
        // SAFETY: `A` mirrors the kernel's argument struct (KernelArgs), and the storage code
        // that builds it points only at live buffers of this device, sized for the launch.
        // Captured launches point at buffers of the capture's pool (kept by the graph) or at
        // buffers the graph's owner keeps alive (parameters, optimiser state, inputs).
        unsafe {
            self.inner.runtime.launch(
                kernel,
                config,
                &mut args as *mut A as *mut c_void,
                std::mem::size_of::<A>(),
                target,
            )
        }
        .unwrap_or_else(|err| panic!("{}: {err}", self.label()));
    }

    /// Where the random draw `stream` of `blocks` counter blocks comes from, for a kernel
    /// (`PhiloxDraw` in `common.cuh`). Eager draws start where the host's generator says;
    /// captured ones are rebased on the capture's device-side generator state, so that each
    /// replay draws the blocks the next eager step would.
    ///
    /// # Panics
    /// If one capture draws from two generators (a replay advances only one).
    pub(crate) fn philox_draw(&self, stream: PhiloxStream, blocks: u64) -> PhiloxDraw {
        let label = self.label();
        let [key0, key1] = stream.key();
        let (first_block, generator) = self
            .capture_here(|capture| {
                let draws = capture.rng.get_or_insert(CapturedDraws {
                    key: stream.key(),
                    base: stream.first_block(),
                    end: stream.first_block(),
                });
                assert!(
                    draws.key == stream.key() && stream.first_block() >= draws.end,
                    "{label}: a captured step draws random numbers from more than one generator; \
                     a replay can advance only the one it was captured with"
                );
                draws.end = stream.first_block() + blocks;
                (stream.first_block() - draws.base, capture.rng_state.pointer)
            })
            .unwrap_or((stream.first_block(), 0));
        PhiloxDraw {
            first_block,
            generator,
            key0,
            key1,
        }
    }

    /// Records the launches `record` makes, instead of running them, and returns them with
    /// what `record` returned (`graph.rs` makes a replayable [`CudaGraph`] of them). Tensors
    /// made by `record` keep the graph's buffers: after a replay they hold its results.
    ///
    /// What a step needs to be capturable: its inputs in device buffers filled before the
    /// replay (no copies from the host inside), its random draws from one generator, and
    /// per-step scalars (Adam's step count) in device memory. The device runs only one capture
    /// at a time; other threads' work is not recorded.
    ///
    /// [`CudaGraph`]: super::graph::CudaGraph
    pub(crate) fn capture<R>(
        &self,
        record: impl FnOnce() -> R,
    ) -> Result<(CapturedLaunches, R), String> {
        let rng_state = self.buffer(4); // two u64, allocated before the capture begins
        {
            let mut capture = self
                .inner
                .capture
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if capture.is_some() {
                return Err(format!(
                    "{}: a capture is already in progress",
                    self.label()
                ));
            }
            self.inner.runtime.begin_capture()?;
            *capture = Some(Capture {
                thread: thread::current().id(),
                pool: Arc::default(),
                rng_state,
                rng: None,
            });
        }
        let recorded = catch_unwind(AssertUnwindSafe(record));
        let draws = self.capture_here(|capture| capture.rng).flatten();
        if let (Ok(_), Some(draws)) = (&recorded, draws) {
            // The last captured launch moves the offset past this replay's draws.
            let state = self.capture_here(|capture| capture.rng_state.pointer);
            let args = PhiloxAdvanceArgs {
                generator: state.expect("the capture is in progress"),
                blocks: draws.end - draws.base,
            };
            self.launch("philox_advance", LaunchConfig::single_block(), args);
        }
        let capture = self
            .inner
            .capture
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .expect("the capture is in progress");
        let exec = self.inner.runtime.end_capture();
        let recorded = match recorded {
            Ok(recorded) => recorded,
            Err(panic) => {
                capture.pool.retire_into(&self.inner.general);
                return Err(format!(
                    "the captured step failed: {}",
                    panic_message(&*panic)
                ));
            }
        };
        let exec = exec.inspect_err(|_| capture.pool.retire_into(&self.inner.general))?;
        let captured = CapturedLaunches {
            exec,
            pool: capture.pool,
            draws: draws.map(|draws| (draws.end - draws.base, capture.rng_state)),
        };
        Ok((captured, recorded))
    }

    /// The general pool, which a graph's pool retires into.
    pub(crate) fn general_pool(&self) -> &Pool {
        &self.inner.general
    }

    /// The values of `buffers` (of this device), read back with one wait for the device.
    pub(crate) fn copy_to_host(&self, buffers: &[&DeviceBuffer]) -> Vec<Vec<f32>> {
        self.refuse_copy_in_capture("a copy to the host");
        let mut values: Vec<Vec<f32>> = buffers.iter().map(|b| vec![0.0f32; b.len]).collect();
        let mut copies: Vec<(u64, &mut [u8])> = buffers
            .iter()
            .zip(&mut values)
            .map(|(buffer, values)| (buffer.pointer, bytemuck::cast_slice_mut(values)))
            .collect();
        self.inner
            .runtime
            .copy_to_host(&mut copies)
            .unwrap_or_else(|err| panic!("{}: {err}", self.label()));
        values
    }

    /// Launches this device's kernels from now on with programmatic dependent launch (sm_90
    /// and later), or not (the default): each kernel may then be scheduled while the one
    /// before it still runs and waits for it in its first instruction (`common.cuh`), so that
    /// launching it costs nothing between the two; a capture keeps it as the graph's edges.
    /// The same results either way. On the emulator it changes nothing.
    ///
    /// # Errors
    /// On a GPU older than sm_90.
    pub fn set_programmatic_launch(&self, on: bool) -> crate::Result<()> {
        self.inner
            .runtime
            .set_programmatic_launch(on)
            .map_err(crate::Error::Device)
    }

    /// Starts or stops timing every kernel this device runs (eagerly: a graph's replays are
    /// one submission), for [`CudaDevice::take_kernel_times`]. On a GPU each timed launch is
    /// bracketed by two events, which costs the host a few µs per launch.
    pub fn set_kernel_timing(&self, on: bool) {
        self.inner.runtime.set_kernel_timing(on);
    }

    /// The kernels run since timing started or since the last call, in launch order, with
    /// how long each ran; waits for them to finish.
    ///
    /// # Panics
    /// If the GPU failed (a kernel launched before failed), as any read does.
    pub fn take_kernel_times(&self) -> Vec<KernelTime> {
        self.inner
            .runtime
            .take_kernel_times()
            .unwrap_or_else(|err| panic!("{}: {err}", self.label()))
    }

    /// Starts or stops counting, for every kernel this device runs eagerly from now on, the
    /// bank conflicts of its shared-memory loads and stores, for
    /// [`CudaDevice::take_shared_memory_traffic`]. The CPU emulator's alone (it runs the
    /// kernels compiled to report each access: `kernels/emulator/shared_trace.cpp`), and not
    /// the emulated Turing GPU's; on a GPU, ncu counts them.
    ///
    /// # Errors
    /// On a GPU, on the emulated Turing GPU, while a sweep variant of `gemm.cu` is chosen
    /// ([`super::emulator::set_kernel_defines`]), and in a build whose emulator was not
    /// compiled to trace (under AddressSanitizer).
    pub fn trace_shared_memory(&self, on: bool) -> crate::Result<()> {
        self.inner
            .runtime
            .set_shared_memory_trace(on)
            .map_err(|err| crate::Error::Device(format!("{}: {err}", self.label())))
    }

    /// The kernels run since tracing started or since the last call, in launch order, each
    /// with its shared-memory bank traffic.
    pub fn take_shared_memory_traffic(&self) -> Vec<TracedLaunch> {
        self.inner.runtime.take_shared_memory_traffic()
    }

    /// Starts reading `buffers` (of this device) back behind the work launched so far, without
    /// waiting for it: [`CudaPendingRead::wait`] waits for this read alone, so the work
    /// launched meanwhile (the next training step) keeps the GPU busy.
    pub(crate) fn copy_to_host_later(&self, buffers: &[&DeviceBuffer]) -> CudaPendingRead {
        self.refuse_copy_in_capture("a copy to the host");
        let copies: Vec<(u64, usize)> = buffers
            .iter()
            .map(|buffer| (buffer.pointer, buffer.len * 4))
            .collect();
        let pending = self
            .inner
            .runtime
            .copy_to_host_later(&copies)
            .unwrap_or_else(|err| panic!("{}: {err}", self.label()));
        CudaPendingRead {
            pending,
            label: self.label().to_string(),
        }
    }
}

/// Values on their way back from a GPU: a read that waits for its own copy alone, not for the
/// work launched after it ([`crate::Tensor::to_vecs_later`]).
pub struct CudaPendingRead {
    pending: Box<dyn PendingHostCopy>,
    label: String,
}

impl fmt::Debug for CudaPendingRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaPendingRead")
            .field("device", &self.label)
            .finish_non_exhaustive()
    }
}

impl CudaPendingRead {
    /// Waits for the copies and returns the values, one vector per buffer read.
    ///
    /// # Panics
    /// If the GPU failed (a kernel launched before the read failed), as any read does.
    pub fn wait(self) -> Vec<Vec<f32>> {
        let bytes = self
            .pending
            .wait()
            .unwrap_or_else(|err| panic!("{}: {err}", self.label));
        bytes
            .iter()
            .map(|bytes| {
                let floats = bytes.chunks_exact(4);
                floats
                    .map(|f| f32::from_ne_bytes([f[0], f[1], f[2], f[3]]))
                    .collect()
            })
            .collect()
    }
}

impl PartialEq for CudaDevice {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for CudaDevice {}

impl Hash for CudaDevice {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.inner).hash(state);
    }
}

impl fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CudaDevice({}: {})", self.label(), self.description())
    }
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)")
}

/// Device memory for `len` floats; returned to the pool it came from when dropped.
pub(crate) struct DeviceBuffer {
    pub pointer: u64,
    bytes: usize,
    pub len: usize,
    pool: Arc<Pool>,
    pub device: CudaDevice,
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        self.pool
            .give_back(self.bytes, self.pointer, &self.device.inner.general);
    }
}

impl fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DeviceBuffer({} floats on {})",
            self.len,
            self.device.label()
        )
    }
}
