//! Runs the CUDA kernels on the CPU: `kernels/*.cu` compiled by the host C++ compiler against
//! `kernels/emulator/emulator.h` (see there for how blocks, threads, `__shared__` and
//! `__syncthreads` are emulated).
//!
//! Graph capture is what a CUDA graph is, without the driver: the captured launches are
//! recorded (kernel, geometry, a copy of the argument struct) and a replay runs them again in
//! order. Replaying equal to running eagerly is then a property CI can test on any machine.
//!
//! The emulator also counts what a GPU cannot show without a profiler: the shared-memory bank
//! conflicts of every load and store a kernel makes ([`SharedMemoryTraffic`], from the
//! kernels compiled once more to report their accesses: `kernels/emulator/shared_trace.cpp`).

use std::alloc::{alloc_zeroed, Layout};
use std::ffi::{c_char, c_int, c_void, CString};
use std::mem::MaybeUninit;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use super::args::KernelArgs;
use super::launch::{Dim3, LaunchConfig};
use super::runtime::{
    CopiedAlready, GraphExec, KernelTime, PendingHostCopy, Runtime, SharedMemoryTraffic, Target,
    TracedLaunch,
};

#[cfg(ferrograd_emulator)]
extern "C" {
    fn ferrograd_emu_launch(
        name: *const c_char,
        grid: Dim3,
        block: Dim3,
        args: *mut *mut c_void,
    ) -> c_int;
    fn ferrograd_emu_args_size(name: *const c_char) -> usize;
    fn ferrograd_emu_set_block_order(seed: u32, interleave: c_int);
    fn ferrograd_emu_set_thread_order(seed: u32);
    fn ferrograd_emu_set_kernel_defines(defines: *const c_char) -> c_int;
    fn ferrograd_emu_can_trace_shared_memory() -> c_int;
    fn ferrograd_emu_launch_traced(
        name: *const c_char,
        grid: Dim3,
        block: Dim3,
        args: *mut *mut c_void,
        traffic: *mut SharedMemoryTraffic,
    ) -> c_int;
}

/// Why this build has no emulator, if it has none: build.rs could not compile it for the
/// target (it needs Linux with glibc, and a C++17 compiler).
pub fn missing() -> Option<&'static str> {
    option_env!("FERROGRAD_EMULATOR_MISSING")
}

/// The error for whatever needs the emulator, in a build without it.
pub(crate) fn not_built_error() -> Option<String> {
    missing().map(|reason| format!("this build of ferrograd has no CUDA emulator: {reason}"))
}

/// The emulator's entry points in a build without it: every launch is refused with
/// [`missing`]'s reason, the settings change nothing (there is nothing to launch on:
/// `Device::cuda_emulator()` is an error).
#[cfg(not(ferrograd_emulator))]
mod not_built {
    use super::{c_char, c_int, c_void, Dim3, SharedMemoryTraffic};

    /// The launch status that reads "this build has no emulator".
    pub const NOT_BUILT: c_int = 6;

    pub unsafe fn ferrograd_emu_launch(
        _name: *const c_char,
        _grid: Dim3,
        _block: Dim3,
        _args: *mut *mut c_void,
    ) -> c_int {
        NOT_BUILT
    }

    pub unsafe fn ferrograd_emu_args_size(_name: *const c_char) -> usize {
        0
    }

    pub unsafe fn ferrograd_emu_set_block_order(_seed: u32, _interleave: c_int) {}

    pub unsafe fn ferrograd_emu_set_thread_order(_seed: u32) {}

    pub unsafe fn ferrograd_emu_set_kernel_defines(_defines: *const c_char) -> c_int {
        1
    }

    pub unsafe fn ferrograd_emu_can_trace_shared_memory() -> c_int {
        0
    }

    pub unsafe fn ferrograd_emu_launch_traced(
        _name: *const c_char,
        _grid: Dim3,
        _block: Dim3,
        _args: *mut *mut c_void,
        _traffic: *mut SharedMemoryTraffic,
    ) -> c_int {
        NOT_BUILT
    }
}
#[cfg(not(ferrograd_emulator))]
use not_built::*;

/// The order the emulator runs a launch's blocks in. A GPU promises none, and runs many
/// blocks at once, so no kernel's results may depend on it — split-K's and Adam's "last block
/// to arrive" included; tests shuffle and interleave the blocks to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockOrder {
    /// The grid's order, x fastest, one block after another (the default).
    Grid,
    /// A shuffle of the grid's order drawn from the seed (not 0), one block after another.
    Shuffled(u32),
    /// Blocks started in a shuffled order two at a time, each with its own shared memory,
    /// and at every atomic arrival at a rendezvous (`arrive_acq_rel`) the seed's sequence
    /// picks which of the two runs on: a block can then count itself in and another finish
    /// the tile before its other threads go on, as on a GPU — which shows a block that
    /// arrives before all it must publish is written.
    Interleaved(u32),
}

/// Sets the order every later launch runs its blocks in, process-wide (after the launch in
/// progress, if any).
pub fn set_block_order(order: BlockOrder) {
    let (seed, interleave) = match order {
        BlockOrder::Grid => (0, 0),
        BlockOrder::Shuffled(seed) => (seed.max(1), 0),
        BlockOrder::Interleaved(seed) => (seed.max(1), 1),
    };
    // SAFETY: stores numbers the launch loop reads, under its lock.
    unsafe { ferrograd_emu_set_block_order(seed, interleave) }
}

/// The order the emulator runs a block's threads in, each from one barrier to its next. A GPU
/// interleaves its warps in no promised order, so no kernel's results may depend on this one:
/// two threads that touch one `__shared__` word between the same two barriers, one writing,
/// meet it in different states under [`ThreadOrder::Index`] and [`ThreadOrder::Reversed`]
/// (which swaps every pair), so a missing `__syncthreads()` changes the results in one of
/// them, whichever thread it leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadOrder {
    /// Thread index order (the default).
    Index,
    /// Highest index first.
    Reversed,
    /// A fresh shuffle for every stretch between barriers, drawn from the seed (restarted
    /// when set).
    Shuffled(u32),
}

/// Sets the order every later launch runs its threads in, process-wide (after the launch in
/// progress, if any).
pub fn set_thread_order(order: ThreadOrder) {
    let seed = match order {
        ThreadOrder::Index => 0,
        ThreadOrder::Reversed => 1,
        ThreadOrder::Shuffled(seed) => seed.max(2),
    };
    // SAFETY: stores two numbers under the emulator's launch lock.
    unsafe { ferrograd_emu_set_thread_order(seed) }
}

/// Makes every later launch, process-wide, run `gemm.cu` as compiled with `defines`: one of
/// the sweep's variants ([`SWEEP_VARIANTS`](super::kernels::SWEEP_VARIANTS), from
/// `kernels/sweep.txt`, which build.rs compiles for the emulator too), or the defaults for "".
/// What `FERROGRAD_KERNEL_DEFINES` does on a GPU, for the variants the GPU benchmark sweeps.
/// The emulated Turing GPU ([`CudaDevice::emulator_sm75`](super::CudaDevice::emulator_sm75))
/// runs its own `gemm.cu` whatever this says.
///
/// # Errors
/// If no variant was compiled with these definitions (nothing changes then), or the build
/// has no emulator.
pub fn set_kernel_defines(defines: &str) -> Result<(), String> {
    let normalised = defines.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(err) = not_built_error() {
        return Err(err);
    }
    let c_defines = CString::new(normalised.as_str())
        .map_err(|_| format!("kernel definitions {defines:?} hold a NUL"))?;
    // SAFETY: `c_defines` is a NUL-terminated string alive during the call; the emulator
    // compares it and stores an index.
    match unsafe { ferrograd_emu_set_kernel_defines(c_defines.as_ptr()) } {
        0 => Ok(()),
        _ => Err(format!(
            "the emulator has no kernels compiled with {normalised:?}; it has the defaults and \
             kernels/sweep.txt's variants: {:?}",
            super::kernels::SWEEP_VARIANTS
        )),
    }
}

/// "Device" memory in host RAM, kernels run by the emulator.
#[derive(Default)]
pub(crate) struct EmulatorRuntime {
    /// The definitions of the `gemm.cu` this device runs whatever [`set_kernel_defines`]
    /// says: [`EMULATED_SM75_DEFINES`](super::kernels::EMULATED_SM75_DEFINES) for the
    /// emulated Turing GPU. `None` for the emulator of sm_80 and later, which runs the
    /// defaults or the variant `set_kernel_defines` chose.
    kernel_variant: Option<&'static str>,
    /// The launches of the capture in progress, if any.
    recording: Mutex<Option<Vec<RecordedLaunch>>>,
    /// The kernels timed since the last `take_kernel_times`, while timing is on.
    timed: Mutex<Option<Vec<KernelTime>>>,
    /// The launches traced since the last `take_shared_memory_traffic`, while tracing is on.
    traced: Mutex<Option<Vec<TracedLaunch>>>,
}

/// One captured launch. The argument struct is copied as it was at capture time, as
/// `cuLaunchKernel` copies it into the graph's kernel node.
struct RecordedLaunch {
    name: String,
    config: LaunchConfig,
    /// The struct's bytes (`MaybeUninit`: its padding is never read), 8-aligned like it.
    args: Vec<MaybeUninit<u64>>,
}

/// The recorded launches of one capture, and the variant they run (as their runtime's).
struct EmulatedGraph {
    launches: Vec<RecordedLaunch>,
    kernel_variant: Option<&'static str>,
}

impl EmulatorRuntime {
    /// The emulator as a Turing GPU (sm_75) runs our kernels: `gemm.cu` compiled for it, its
    /// copies into shared memory plain loads and stores, its TF32 helpers traps.
    pub(crate) fn sm75() -> EmulatorRuntime {
        EmulatorRuntime {
            kernel_variant: Some(super::kernels::EMULATED_SM75_DEFINES),
            ..EmulatorRuntime::default()
        }
    }
}

impl GraphExec for EmulatedGraph {
    fn replay(&self) -> Result<(), String> {
        for launch in &self.launches {
            // SAFETY: the bytes are the argument struct as captured, which the kernel only
            // reads (it takes `const Args`); its buffers belong to the graph's memory pool or
            // to tensors the graph's owner keeps alive (see graph.rs).
            unsafe {
                launch_raw(
                    &launch.name,
                    self.kernel_variant,
                    launch.config,
                    launch.args.as_ptr() as *mut c_void,
                )
            }?;
        }
        Ok(())
    }

    fn launches(&self) -> usize {
        self.launches.len()
    }
}

/// Device allocations are aligned like `cudaMalloc`'s.
const ALIGNMENT: usize = 256;

impl Runtime for EmulatorRuntime {
    fn alloc(&self, bytes: usize) -> Result<u64, String> {
        let layout = Layout::from_size_align(bytes, ALIGNMENT).map_err(|err| err.to_string())?;
        // SAFETY: `bytes` > 0 (the allocator's contract). The memory is never freed: like
        // device memory, it stays with the caching allocator for the life of the process.
        let pointer = unsafe { alloc_zeroed(layout) };
        if pointer.is_null() {
            Err(format!("out of host memory allocating {bytes} bytes"))
        } else {
            Ok(pointer as u64)
        }
    }

    fn hand_out(&self, pointer: u64, bytes: usize) {
        // SAFETY: the allocator hands out `bytes` bytes at `pointer`, 16-byte aligned (a whole
        // number of floats), which nothing else uses until it is given back.
        let floats = unsafe { std::slice::from_raw_parts_mut(pointer as *mut f32, bytes / 4) };
        floats.fill(f32::NAN);
    }

    fn copy_to_device(&self, dst: u64, src: &[u8]) -> Result<(), String> {
        // SAFETY: `dst` is one of our allocations with room for `src` (the storage's contract).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
        Ok(())
    }

    fn copy_to_host(&self, copies: &mut [(u64, &mut [u8])]) -> Result<(), String> {
        for (src, dst) in copies.iter_mut() {
            // SAFETY: `src` is one of our allocations holding `dst.len()` bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(*src as *const u8, dst.as_mut_ptr(), dst.len())
            };
        }
        Ok(())
    }

    /// Kernels run as they are launched, so the bytes are ready now.
    fn copy_to_host_later(
        &self,
        copies: &[(u64, usize)],
    ) -> Result<Box<dyn PendingHostCopy>, String> {
        CopiedAlready::read(self, copies)
    }

    unsafe fn launch(
        &self,
        name: &str,
        config: LaunchConfig,
        args: *mut c_void,
        args_size: usize,
        target: Target,
    ) -> Result<(), String> {
        if target == Target::Run {
            let started = Instant::now();
            let mut traced = self.traced.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(launches) = traced.as_mut() {
                // SAFETY: forwarded from the caller's contract.
                let traffic = unsafe { launch_traced_raw(name, config, args) }?;
                launches.push(TracedLaunch {
                    name: name.to_string(),
                    config,
                    traffic,
                });
            } else {
                // SAFETY: forwarded from the caller's contract.
                unsafe { launch_raw(name, self.kernel_variant, config, args) }?;
            }
            drop(traced);
            let mut timed = self.timed.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(times) = timed.as_mut() {
                times.push(KernelTime {
                    name: name.to_string(),
                    config,
                    micros: started.elapsed().as_secs_f64() * 1e6,
                });
            }
            return Ok(());
        }
        let mut bytes = vec![MaybeUninit::<u64>::uninit(); args_size.div_ceil(8)];
        // SAFETY: `args` points to `args_size` readable bytes (the caller's contract), and
        // `bytes` has room for them; MaybeUninit may hold any bytes, padding included.
        unsafe {
            std::ptr::copy_nonoverlapping(
                args as *const u8,
                bytes.as_mut_ptr() as *mut u8,
                args_size,
            )
        };
        let mut recording = self
            .recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let launches = recording
            .as_mut()
            .ok_or_else(|| format!("{name}: captured launch outside a capture"))?;
        launches.push(RecordedLaunch {
            name: name.to_string(),
            config,
            args: bytes,
        });
        Ok(())
    }

    fn set_programmatic_launch(&self, _on: bool) -> Result<(), String> {
        Ok(()) // kernels run one after another here whatever their launch allows
    }

    fn set_kernel_timing(&self, on: bool) {
        let mut timed = self.timed.lock().unwrap_or_else(PoisonError::into_inner);
        *timed = on.then(|| timed.take().unwrap_or_default());
    }

    fn take_kernel_times(&self) -> Result<Vec<KernelTime>, String> {
        let mut timed = self.timed.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(timed.as_mut().map(std::mem::take).unwrap_or_default())
    }

    fn set_shared_memory_trace(&self, on: bool) -> Result<(), String> {
        if on {
            if let Some(defines) = self.kernel_variant {
                return Err(format!(
                    "the emulator counts bank conflicts of the default kernels, not of those \
                     compiled with {defines}"
                ));
            }
            if let Some(err) = not_built_error() {
                return Err(err);
            }
            // SAFETY: a pure lookup.
            if unsafe { ferrograd_emu_can_trace_shared_memory() } == 0 {
                return Err(
                    "this build's emulator cannot count bank conflicts: its kernels \
                            were not compiled to trace their accesses (built with \
                            FERROGRAD_EMULATOR_ASAN, or the C++ compiler has no \
                            -fsanitize=thread; see build.rs)"
                        .into(),
                );
            }
        }
        let mut traced = self.traced.lock().unwrap_or_else(PoisonError::into_inner);
        *traced = on.then(|| traced.take().unwrap_or_default());
        Ok(())
    }

    fn take_shared_memory_traffic(&self) -> Vec<TracedLaunch> {
        let mut traced = self.traced.lock().unwrap_or_else(PoisonError::into_inner);
        traced.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn begin_capture(&self) -> Result<(), String> {
        let mut recording = self
            .recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if recording.is_some() {
            return Err("a capture is already in progress".into());
        }
        *recording = Some(Vec::new());
        Ok(())
    }

    fn end_capture(&self) -> Result<Box<dyn GraphExec>, String> {
        let launches = self
            .recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or("no capture in progress")?;
        Ok(Box::new(EmulatedGraph {
            launches,
            kernel_variant: self.kernel_variant,
        }))
    }
}

/// Runs kernel `name`, of `gemm.cu`'s `variant` where it is one of that file's (the
/// process-wide [`set_kernel_defines`] choice where `None`).
///
/// # Safety
/// As for [`launch`], with `args` pointing to the argument struct.
unsafe fn launch_raw(
    name: &str,
    variant: Option<&str>,
    config: LaunchConfig,
    args: *mut c_void,
) -> Result<(), String> {
    let key = match variant {
        Some(defines) => format!("{name}|{defines}"),
        None => name.to_string(),
    };
    let status = call_emulator(&key, name, args, |c_name, arg_pointers| {
        // SAFETY: a valid C string, and an argument array holding one pointer to a struct
        // with the kernel's layout, whose pointers the caller vouches for.
        unsafe { ferrograd_emu_launch(c_name, config.grid, config.block, arg_pointers) }
    })?;
    launch_result(name, config, status)
}

/// Runs kernel `name`'s default build compiled to trace its shared-memory accesses, and
/// returns their bank traffic.
///
/// # Safety
/// As for [`launch_raw`].
unsafe fn launch_traced_raw(
    name: &str,
    config: LaunchConfig,
    args: *mut c_void,
) -> Result<SharedMemoryTraffic, String> {
    let mut traffic = SharedMemoryTraffic::default();
    let status = call_emulator(name, name, args, |c_name, arg_pointers| {
        // SAFETY: as in launch_raw; `traffic` is a struct with the C layout, written during
        // the call only.
        unsafe {
            ferrograd_emu_launch_traced(
                c_name,
                config.grid,
                config.block,
                arg_pointers,
                &mut traffic,
            )
        }
    })?;
    launch_result(name, config, status).map(|()| traffic)
}

/// Calls one of the emulator's launch entries, `entry`, with `key` (the kernel's name, with
/// its variant where one is chosen) as a C string and the kernel's argument array: one
/// pointer, to the argument struct `args`. `name` is the kernel's name for the error.
fn call_emulator(
    key: &str,
    name: &str,
    args: *mut c_void,
    entry: impl FnOnce(*const c_char, *mut *mut c_void) -> c_int,
) -> Result<c_int, String> {
    let c_key = CString::new(key).map_err(|_| format!("kernel name {name:?} contains NUL"))?;
    let mut arg_pointers = [args];
    Ok(entry(c_key.as_ptr(), arg_pointers.as_mut_ptr()))
}

/// What the emulator's launch status means for kernel `name` launched over `config`.
fn launch_result(name: &str, config: LaunchConfig, status: c_int) -> Result<(), String> {
    match status {
        0 => Ok(()),
        1 => Err(format!("the emulator has no kernel named {name}")),
        2 => Err(format!(
            "{name}: threads deadlocked at barriers (some at __syncthreads, some elsewhere)"
        )),
        3 => Err(format!(
            "{name}: misaligned address: a 16-byte copy (cp.async) from or to an address that \
             is not a multiple of 16, which stops the kernel on a GPU"
        )),
        4 => Err(format!(
            "{name}: threads waited at a barrier (__syncthreads or a warp shuffle) that some \
             of the threads it concerns had returned before reaching: a hang or undefined \
             behaviour on a GPU"
        )),
        6 => Err(format!(
            "{name}: {}",
            not_built_error().unwrap_or_else(|| "the emulator was not built".into())
        )),
        7 => Err(format!(
            "{name}: a thread called __trap(), which stops the kernel on a GPU (a TF32 kernel \
             launched where there are no TF32 tensor cores, before sm_80)"
        )),
        8 => Err(format!(
            "{name}: no build of it traces shared memory: the emulator traces the default \
             kernels only, not a sweep variant (set_kernel_defines), and not in a build \
             under AddressSanitizer"
        )),
        _ => Err(format!(
            "{name}: a GPU refuses a launch of {:?} blocks of {:?} threads (at most 2^31 - 1 \
             blocks along x, 65,535 along y and z, none 0; at most 1,024 threads a block, 64 \
             along z, and no more than the kernel's __launch_bounds__)",
            config.grid, config.block
        )),
    }
}

/// Runs kernel `name` with `args` over `config`, on the calling thread's behalf (it blocks
/// until the kernel is done, as a synchronising launch would).
///
/// # Safety
/// Every pointer in `args` must be valid for the reads and writes the kernel makes with the
/// sizes in `args`, as for a real launch.
pub unsafe fn launch<A: KernelArgs>(
    name: &str,
    config: LaunchConfig,
    args: &A,
) -> Result<(), String> {
    // SAFETY: `A` has the kernel's layout (KernelArgs); the caller vouches for its pointers.
    unsafe { launch_raw(name, None, config, args as *const A as *mut c_void) }
}

/// As [`launch`], running the kernel compiled to trace its shared-memory accesses, and
/// returning their bank traffic (see [`SharedMemoryTraffic`]).
///
/// # Errors
/// As [`launch`]'s, and where this build's emulator cannot trace (see
/// [`CudaDevice::trace_shared_memory`](super::CudaDevice::trace_shared_memory)) or a sweep
/// variant is chosen ([`set_kernel_defines`]): only the default kernels are traced.
///
/// # Safety
/// As for [`launch`].
pub unsafe fn launch_traced<A: KernelArgs>(
    name: &str,
    config: LaunchConfig,
    args: &A,
) -> Result<SharedMemoryTraffic, String> {
    // SAFETY: `A` has the kernel's layout (KernelArgs); the caller vouches for its pointers.
    unsafe { launch_traced_raw(name, config, args as *const A as *mut c_void) }
}

/// The C compiler's `sizeof` of the argument struct `A` mirrors (0 if it knows no such struct).
pub fn c_args_size<A: KernelArgs>() -> usize {
    let name = CString::new(A::C_NAME).expect("struct names have no NUL");
    // SAFETY: a pure lookup taking a valid C string.
    unsafe { ferrograd_emu_args_size(name.as_ptr()) }
}

#[cfg(all(test, ferrograd_emulator))]
mod tests {
    use super::*;
    use crate::backend::cuda::args::GemmArgs;
    use crate::backend::GemmDims;

    /// `gemm_tf32` on a 16 × 16 × 16 product of zeros, launched on `runtime`.
    fn launch_tf32_product(runtime: &EmulatorRuntime) -> Result<(), String> {
        let matrix = || runtime.alloc(16 * 16 * 4).expect("host memory");
        let dims = GemmDims {
            m: 16,
            k: 16,
            n: 16,
            lhs_transposed: false,
            rhs_transposed: false,
        };
        let mut args = GemmArgs::product(matrix(), matrix(), matrix(), dims);
        let config = LaunchConfig::gemm_tf32(16, 16, 1);
        let size = std::mem::size_of::<GemmArgs>();
        let args = &mut args as *mut GemmArgs as *mut c_void;
        // SAFETY: GemmArgs mirrors the kernel's struct; A, B and C hold 16 × 16 floats each,
        // and nothing else is read or written (no bias, split, mask, sums or rule).
        unsafe { runtime.launch("gemm_tf32", config, args, size, Target::Run) }
    }

    /// The emulated Turing GPU runs `gemm.cu` as compiled for sm_75 (not the process-wide
    /// variant): its TF32 kernel traps there, and runs on the emulator of sm_80.
    #[test]
    fn the_sm75_runtime_runs_gemm_as_compiled_for_sm75() {
        assert_eq!(launch_tf32_product(&EmulatorRuntime::default()), Ok(()));
        let err = launch_tf32_product(&EmulatorRuntime::sm75()).unwrap_err();
        assert!(
            err.starts_with("gemm_tf32: a thread called __trap()"),
            "{err}"
        );
    }
}
