//! The GPU runtime: the CUDA driver API through cudarc, loaded at run time. Every kernel file is
//! compiled by NVRTC to a cubin for the device's compute capability (or read from the kernel
//! cache) and loaded when the GPU is opened, so that kernels the GPU cannot load are an error
//! there rather than a panic at some op's first launch.
//!
//! Work goes to one non-blocking stream of our own, so launches and copies run in order and a
//! copy to the host waits for them (or, through page-locked memory, for an event recorded
//! behind it: `pinned.rs`). Graph capture records on a second stream that never runs
//! anything itself (so other threads' work on the first stream cannot leak into a capture);
//! replays go to the first stream, in order with everything else.

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cudarc::driver::{result, sys};

use super::kernel_cache::{self, KernelsLoaded};
use super::kernels::{KernelModule, MODULES};
use super::launch::LaunchConfig;
use super::pinned::{PinnedBuffer, PinnedPool};
use super::runtime::{CopiedAlready, GraphExec, KernelTime, PendingHostCopy, Runtime, Target};

pub(crate) struct DriverRuntime {
    context: sys::CUcontext,
    compute_capability: (u32, u32),
    /// Where launches and copies run (non-blocking: capture cannot use the legacy stream).
    stream: sys::CUstream,
    /// Where captured launches are recorded.
    capture_stream: sys::CUstream,
    /// Loaded kernels by name (their module stays loaded for the life of the process).
    functions: Mutex<HashMap<String, sys::CUfunction>>,
    /// Page-locked buffers for copies that do not wait (shared with copies still in flight).
    pinned: Arc<PinnedPool>,
    /// While kernel timing is on: each kernel run since the last `take_kernel_times`, between
    /// its two events.
    timed: Mutex<Option<Vec<TimedLaunch>>>,
    /// Whether kernels are launched with programmatic dependent launch.
    programmatic: AtomicBool,
}

/// A kernel bracketed by two events recorded on the stream around its launch.
struct TimedLaunch {
    name: String,
    config: LaunchConfig,
    start: sys::CUevent,
    end: sys::CUevent,
}

/// The largest copy to the GPU that goes through a page-locked buffer without waiting (a
/// batch of MNIST is 200 KB): larger ones, rare and slow anyway, wait rather than pin more.
const MAX_STAGED_UPLOAD: usize = 4 << 20;

// SAFETY: a CUcontext and the CUfunctions of its modules may be used from any thread once the
// context is made current there, which every method does first; the function table is behind
// a mutex.
unsafe impl Send for DriverRuntime {}
// SAFETY: as above; no method hands out references to mutable state.
unsafe impl Sync for DriverRuntime {}

impl DriverRuntime {
    /// Opens GPU `ordinal`: its primary context, compute capability and name.
    pub fn new(ordinal: usize) -> Result<(DriverRuntime, String), String> {
        let err = |what: &str, e: result::DriverError| format!("cuda:{ordinal}: {what}: {e:?}");
        result::init().map_err(|e| err("cuInit failed", e))?;
        let count = result::device::get_count().map_err(|e| err("cannot count devices", e))?;
        if ordinal >= count as usize {
            return Err(format!(
                "cuda:{ordinal}: the machine has {count} CUDA device(s)"
            ));
        }
        let device = result::device::get(ordinal as i32).map_err(|e| err("no such device", e))?;
        let attribute = |a| {
            // SAFETY: `device` came from cuDeviceGet.
            unsafe { result::device::get_attribute(device, a) }.map(|v| v as u32)
        };
        let major =
            attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
                .map_err(|e| err("no compute capability", e))?;
        let minor =
            attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
                .map_err(|e| err("no compute capability", e))?;
        let name = result::device::get_name(device).map_err(|e| err("no name", e))?;
        // SAFETY: `device` is valid; the primary context is retained for the process's life.
        let context =
            unsafe { result::primary_ctx::retain(device) }.map_err(|e| err("no context", e))?;
        // SAFETY: `context` is a retained primary context.
        unsafe { result::ctx::set_current(context) }.map_err(|e| err("cuCtxSetCurrent", e))?;
        let new_stream = || {
            result::stream::create(result::stream::StreamKind::NonBlocking)
                .map_err(|e| err("cannot create a stream", e))
        };
        let runtime = DriverRuntime {
            context,
            compute_capability: (major, minor),
            stream: new_stream()?,
            capture_stream: new_stream()?,
            functions: Mutex::new(HashMap::new()),
            pinned: Arc::default(),
            timed: Mutex::new(None),
            programmatic: AtomicBool::new(false),
        };
        Ok((runtime, format!("{name} (sm_{major}{minor})")))
    }

    /// A new timing event, recorded on the stream now.
    fn record_event(&self) -> Result<sys::CUevent, String> {
        let event = result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT)
            .map_err(|e| format!("cuEventCreate failed: {e:?}"))?;
        // SAFETY: `event` was just created in the current context; the stream is ours.
        unsafe { result::event::record(event, self.stream) }
            .map_err(|e| format!("cuEventRecord failed: {e:?}"))?;
        Ok(event)
    }

    fn make_current(&self) -> Result<(), String> {
        // SAFETY: `context` is a retained primary context.
        unsafe { result::ctx::set_current(self.context) }
            .map_err(|e| format!("cuCtxSetCurrent: {e:?}"))
    }

    /// The GPU's compute capability, `(major, minor)`: `(9, 0)` for sm_90.
    pub fn compute_capability(&self) -> (u32, u32) {
        self.compute_capability
    }

    /// Compiles (or reads from the kernel cache) and loads every kernel file: once, when the
    /// GPU is opened (`CudaDevice::gpu`), so that no launch or capture ever loads a module.
    pub fn load_kernels(&self) -> Result<KernelsLoaded, String> {
        let started = Instant::now();
        let mut loaded = KernelsLoaded::default();
        let mut functions = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        for module in MODULES {
            loaded.count(self.load_module(&mut functions, module)?);
        }
        loaded.seconds = started.elapsed().as_secs_f64();
        Ok(loaded)
    }

    /// The kernel `name`, loaded with every other when the GPU was opened.
    fn function(&self, name: &str) -> Result<sys::CUfunction, String> {
        let functions = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        functions
            .get(name)
            .copied()
            .ok_or_else(|| format!("no kernel named {name} in kernels/"))
    }

    /// Loads `module`'s cubin, compiled now or read from the cache, and adds its kernels to
    /// `functions`; says which of the two it was.
    fn load_module(
        &self,
        functions: &mut HashMap<String, sys::CUfunction>,
        module: &KernelModule,
    ) -> Result<kernel_cache::Source, String> {
        self.make_current()?;
        let (major, minor) = self.compute_capability;
        let (cubin, source) =
            kernel_cache::cubin(kernel_cache::cache_dir().as_deref(), module, major, minor)?;
        // SAFETY: `cubin` is a complete cubin (from NVRTC, or a cache entry compiled from this
        // very source, options and NVRTC), alive during the call.
        let loaded = unsafe { result::module::load_data(cubin.as_ptr() as *const c_void) }
            .map_err(|e| {
                format!(
                    "kernels/{}: the driver rejected the cubin: {e:?}",
                    module.file
                )
            })?;
        for &kernel in module.kernels {
            let c_name = CString::new(kernel).expect("kernel names have no NUL");
            // SAFETY: `loaded` is a live module that defines `kernel` (build.rs listed it).
            let function = unsafe { result::module::get_function(loaded, c_name) }
                .map_err(|e| format!("kernels/{}: no function {kernel}: {e:?}", module.file))?;
            functions.insert(kernel.to_string(), function);
        }
        Ok(source)
    }
}

impl Runtime for DriverRuntime {
    fn alloc(&self, bytes: usize) -> Result<u64, String> {
        self.make_current()?;
        // SAFETY: the context is current; the memory is kept for the process's life.
        unsafe { result::malloc_sync(bytes) }
            .map_err(|e| format!("out of GPU memory allocating {bytes} bytes: {e:?}"))
    }

    /// Up to [`MAX_STAGED_UPLOAD`] bytes go through a page-locked buffer and the call returns
    /// at once (a training loop's batches queue behind the running step); larger copies, and
    /// any where no page-locked memory can be had, wait.
    fn copy_to_device(&self, dst: u64, src: &[u8]) -> Result<(), String> {
        self.make_current()?;
        let failed = |e| format!("copy to the GPU failed (a kernel may have failed): {e:?}");
        let staging = match src.len() {
            0..=MAX_STAGED_UPLOAD => self.pinned.acquire(src.len()).ok(),
            _ => None,
        };
        let Some(mut staging) = staging else {
            // SAFETY: `dst` is an allocation of this context with room for `src`. The copy is
            // ordered after earlier launches on the stream, and the synchronisation keeps
            // `src` borrowed until it has been read.
            return unsafe {
                result::memcpy_htod_async(dst, src, self.stream)
                    .and_then(|()| result::stream::synchronize(self.stream))
            }
            .map_err(failed);
        };
        staging.bytes_mut(src.len()).copy_from_slice(src);
        // SAFETY: `dst` is an allocation of this context with room for `src`; the staging
        // buffer stays untouched until the event recorded behind the copy completes (pinned.rs).
        let queued =
            unsafe { result::memcpy_htod_async(dst, staging.bytes_mut(src.len()), self.stream) }
                .map_err(failed)
                .and_then(|()| staging.record(self.stream));
        self.pinned.release(staging);
        queued
    }

    fn copy_to_host(&self, copies: &mut [(u64, &mut [u8])]) -> Result<(), String> {
        self.make_current()?;
        // SAFETY: each `src` is an allocation of this context holding `dst.len()` bytes; the
        // copies follow every earlier launch on the stream, and every `dst` stays borrowed
        // until the synchronisation says it has been written.
        unsafe {
            copies
                .iter_mut()
                .try_for_each(|(src, dst)| result::memcpy_dtoh_async(dst, *src, self.stream))
                .and_then(|()| result::stream::synchronize(self.stream))
        }
        .map_err(|e| format!("copy from the GPU failed (a kernel may have failed): {e:?}"))
    }

    fn copy_to_host_later(
        &self,
        copies: &[(u64, usize)],
    ) -> Result<Box<dyn PendingHostCopy>, String> {
        self.make_current()?;
        let total = copies.iter().map(|&(_, len)| len).sum();
        let Ok(mut staging) = self.pinned.acquire(total) else {
            return CopiedAlready::read(self, copies); // no page-locked memory: read now
        };
        let mut offset = 0;
        let queued = copies
            .iter()
            .try_for_each(|&(src, len)| {
                let dst = &mut staging.bytes_mut(total)[offset..offset + len];
                offset += len;
                // SAFETY: `src` is an allocation of this context holding `len` bytes; the
                // staging buffer is ours until the copy is waited for (or its event completes).
                unsafe { result::memcpy_dtoh_async(dst, src, self.stream) }.map_err(|e| {
                    format!("copy from the GPU failed (a kernel may have failed): {e:?}")
                })
            })
            .and_then(|()| staging.record(self.stream));
        if let Err(err) = queued {
            self.pinned.release(staging);
            return Err(err);
        }
        Ok(Box::new(DriverPendingCopy {
            context: self.context,
            pool: Arc::clone(&self.pinned),
            staging: Some(staging),
            lengths: copies.iter().map(|&(_, len)| len).collect(),
        }))
    }

    unsafe fn launch(
        &self,
        name: &str,
        config: LaunchConfig,
        args: *mut c_void,
        _args_size: usize,
        target: Target,
    ) -> Result<(), String> {
        self.make_current()?;
        let function = self.function(name)?;
        let (grid, block) = (config.grid, config.block);
        let mut params = [args];
        let stream = match target {
            Target::Run => self.stream,
            Target::Capture => self.capture_stream,
        };
        let timing = target == Target::Run
            && self
                .timed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some();
        let start = if timing {
            Some(self.record_event()?)
        } else {
            None
        };
        let launched = if self.programmatic.load(Ordering::Relaxed) {
            // The attribute lets this kernel be scheduled before the previous one in the
            // stream has finished; it waits for it with griddepcontrol.wait (common.cuh).
            let mut attribute = sys::CUlaunchAttribute {
                id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
                pad: [0; 4],
                value: sys::CUlaunchAttributeValue { pad: [0; 64] },
            };
            attribute.value.programmaticStreamSerializationAllowed = 1;
            let launch = sys::CUlaunchConfig {
                gridDimX: grid.x,
                gridDimY: grid.y,
                gridDimZ: grid.z,
                blockDimX: block.x,
                blockDimY: block.y,
                blockDimZ: block.z,
                sharedMemBytes: 0,
                hStream: stream,
                attrs: &mut attribute,
                numAttrs: 1,
            };
            // SAFETY: as for cuLaunchKernel below; `launch` and `attribute` outlive the call,
            // which copies them.
            unsafe {
                sys::cuLaunchKernelEx(&launch, function, params.as_mut_ptr(), std::ptr::null_mut())
            }
            .result()
        } else {
            // The plain launch, as measured on the H200: the default stays on it until the
            // launch above has been measured too.
            // SAFETY: `function` is a loaded kernel taking one argument struct; `args` points
            // to one with its layout and valid device pointers (the caller's contract). The
            // launch (or the graph node a capture makes of it) copies the struct before
            // returning.
            unsafe {
                result::launch_kernel(
                    function,
                    (grid.x, grid.y, grid.z),
                    (block.x, block.y, block.z),
                    0,
                    stream,
                    &mut params,
                )
            }
        };
        launched.map_err(|e| format!("launching {name} failed: {e:?}"))?;
        if let Some(start) = start {
            let end = self.record_event()?;
            let mut timed = self.timed.lock().unwrap_or_else(|e| e.into_inner());
            let launch = TimedLaunch {
                name: name.to_string(),
                config,
                start,
                end,
            };
            match timed.as_mut() {
                Some(times) => times.push(launch),
                None => destroy_events(&[launch]), // timing stopped meanwhile
            }
        }
        Ok(())
    }

    fn set_programmatic_launch(&self, on: bool) -> Result<(), String> {
        let (major, minor) = self.compute_capability;
        if on && major < 9 {
            return Err(format!(
                "programmatic dependent launch needs sm_90 or later; this GPU is sm_{major}{minor}"
            ));
        }
        self.programmatic.store(on, Ordering::Relaxed);
        Ok(())
    }

    fn set_kernel_timing(&self, on: bool) {
        let mut timed = self.timed.lock().unwrap_or_else(|e| e.into_inner());
        if on {
            timed.get_or_insert_with(Vec::new);
        } else if let Some(launches) = timed.take() {
            destroy_events(&launches);
        }
    }

    fn take_kernel_times(&self) -> Result<Vec<KernelTime>, String> {
        self.make_current()?;
        let launches = {
            let mut timed = self.timed.lock().unwrap_or_else(|e| e.into_inner());
            timed.as_mut().map(std::mem::take).unwrap_or_default()
        };
        // SAFETY: the stream is ours; waiting makes every recorded event complete.
        let waited = unsafe { result::stream::synchronize(self.stream) }
            .map_err(|e| format!("a kernel failed: {e:?}"));
        let times = waited.and_then(|()| {
            launches
                .iter()
                .map(|launch| {
                    // SAFETY: both events were recorded on the stream, which has finished.
                    unsafe { result::event::elapsed(launch.start, launch.end) }
                        .map(|ms| KernelTime {
                            name: launch.name.clone(),
                            config: launch.config,
                            micros: f64::from(ms) * 1e3,
                        })
                        .map_err(|e| format!("cuEventElapsedTime failed: {e:?}"))
                })
                .collect()
        });
        destroy_events(&launches);
        times
    }

    fn begin_capture(&self) -> Result<(), String> {
        self.make_current()?;
        // Relaxed: the caching allocator may call cuMemAlloc while a capture is open; the
        // memory it gets stays the graph's for as long as the graph lives (device.rs).
        // SAFETY: `capture_stream` is a live stream of this context, not capturing yet.
        unsafe {
            result::stream::begin_capture(
                self.capture_stream,
                sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED,
            )
        }
        .map_err(|e| format!("cuStreamBeginCapture failed: {e:?}"))
    }

    fn end_capture(&self) -> Result<Box<dyn GraphExec>, String> {
        self.make_current()?;
        // SAFETY: `capture_stream` is capturing (begin_capture succeeded).
        let graph = unsafe { result::stream::end_capture(self.capture_stream) }.map_err(|e| {
            format!("cuStreamEndCapture failed (the capture was invalidated): {e:?}")
        })?;
        // SAFETY: `graph` is the valid graph just captured.
        let exec = unsafe { result::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0)) }
            .map_err(|e| {
            // SAFETY: `graph` is valid and not used again.
            let _ = unsafe { result::graph::destroy(graph) };
            format!("cuGraphInstantiate failed: {e:?}")
        })?;
        let mut nodes = 0usize;
        // SAFETY: `graph` is valid; a null node array asks only for the count.
        unsafe { sys::cuGraphGetNodes(graph, std::ptr::null_mut(), &mut nodes) }
            .result()
            .map_err(|e| format!("cuGraphGetNodes failed: {e:?}"))?;
        Ok(Box::new(DriverGraph {
            context: self.context,
            stream: self.stream,
            graph,
            exec,
            nodes,
        }))
    }
}

/// Destroys the events of timed launches (their kernels may still run: the driver releases
/// an event once it completes).
fn destroy_events(launches: &[TimedLaunch]) {
    for launch in launches {
        // SAFETY: each event is ours and used no more.
        unsafe {
            let _ = result::event::destroy(launch.start);
            let _ = result::event::destroy(launch.end);
        }
    }
}

/// Copies to the host in flight: page-locked memory the GPU writes into, then the bytes.
struct DriverPendingCopy {
    context: sys::CUcontext,
    pool: Arc<PinnedPool>,
    /// Taken by `wait`; back to the pool either way.
    staging: Option<PinnedBuffer>,
    lengths: Vec<usize>,
}

// SAFETY: the context handle is only made current; the buffer is Send.
unsafe impl Send for DriverPendingCopy {}

impl PendingHostCopy for DriverPendingCopy {
    fn wait(mut self: Box<Self>) -> Result<Vec<Vec<u8>>, String> {
        let mut staging = self.staging.take().expect("waited for once");
        // SAFETY: `context` is the retained primary context the copies were queued in.
        let waited = unsafe { result::ctx::set_current(self.context) }
            .map_err(|e| format!("cuCtxSetCurrent: {e:?}"))
            .and_then(|()| staging.wait());
        let total = self.lengths.iter().sum();
        let bytes = staging.bytes_mut(total);
        let mut offset = 0;
        let values = self
            .lengths
            .iter()
            .map(|&len| {
                offset += len;
                bytes[offset - len..offset].to_vec()
            })
            .collect();
        self.pool.release(staging);
        waited.map(|()| values)
    }
}

impl Drop for DriverPendingCopy {
    fn drop(&mut self) {
        if let Some(staging) = self.staging.take() {
            self.pool.release(staging); // its event keeps it from reuse until the copy is done
        }
    }
}

/// An instantiated CUDA graph, replayed on the runtime's stream.
struct DriverGraph {
    context: sys::CUcontext,
    stream: sys::CUstream,
    graph: sys::CUgraph,
    exec: sys::CUgraphExec,
    nodes: usize,
}

// SAFETY: as for DriverRuntime: the handles are used only with their context made current.
unsafe impl Send for DriverGraph {}
// SAFETY: as above; replay only reads the handles.
unsafe impl Sync for DriverGraph {}

impl GraphExec for DriverGraph {
    fn replay(&self) -> Result<(), String> {
        // SAFETY: the context is the retained primary context the graph was captured in; the
        // executable graph and the stream are alive for as long as `self`.
        unsafe {
            result::ctx::set_current(self.context)
                .and_then(|()| result::graph::launch(self.exec, self.stream))
        }
        .map_err(|e| format!("cuGraphLaunch failed: {e:?}"))
    }

    fn launches(&self) -> usize {
        self.nodes
    }
}

impl Drop for DriverGraph {
    fn drop(&mut self) {
        // SAFETY: the handles are ours and not used after this. Destroying an executable graph
        // that is still running is allowed: the driver finishes it first.
        unsafe {
            let _ = result::ctx::set_current(self.context);
            let _ = result::graph::exec_destroy(self.exec);
            let _ = result::graph::destroy(self.graph);
        }
    }
}
