//! A CUDA device: a runtime (GPU or emulator), a caching allocator, and kernel launches.

use std::collections::HashMap;
use std::ffi::c_void;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::args::KernelArgs;
use super::driver::DriverRuntime;
use super::emulator::EmulatorRuntime;
use super::launch::LaunchConfig;
use super::nvrtc;
use super::runtime::Runtime;

/// A handle on a CUDA device (cheap to clone; clones are the same device).
#[derive(Clone)]
pub struct CudaDevice {
    inner: Arc<DeviceInner>,
}

struct DeviceInner {
    label: String,
    description: String,
    runtime: Box<dyn Runtime>,
    /// Free buffers by size class: after warm-up, training allocates nothing new.
    free: Mutex<HashMap<usize, Vec<u64>>>,
    /// Allocations made through the runtime (cudaMalloc calls), for tests and diagnostics.
    raw_allocations: AtomicU64,
}

/// Sizes are rounded up to a multiple of this, so buffers of similar size share a class.
const SIZE_CLASS: usize = 256;

impl CudaDevice {
    fn new(label: String, description: String, runtime: Box<dyn Runtime>) -> CudaDevice {
        CudaDevice {
            inner: Arc::new(DeviceInner {
                label,
                description,
                runtime,
                free: Mutex::new(HashMap::new()),
                raw_allocations: AtomicU64::new(0),
            }),
        }
    }

    /// The process's CPU emulator of the CUDA path.
    pub fn emulator() -> CudaDevice {
        static EMULATOR: OnceLock<CudaDevice> = OnceLock::new();
        EMULATOR
            .get_or_init(|| {
                let description = "our CUDA kernels run by the CPU emulator".to_string();
                CudaDevice::new(
                    "cuda-emulator".into(),
                    description,
                    Box::new(EmulatorRuntime),
                )
            })
            .clone()
    }

    /// GPU `ordinal`, opened once per process. Fails with a clear message, never a panic,
    /// where there is no driver, no NVRTC or no such GPU.
    pub fn gpu(ordinal: usize) -> Result<CudaDevice, String> {
        static GPUS: Mutex<Vec<(usize, CudaDevice)>> = Mutex::new(Vec::new());
        let mut gpus = GPUS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, device)) = gpus.iter().find(|(o, _)| *o == ordinal) {
            return Ok(device.clone());
        }
        // SAFETY: only tries to open the driver library by its candidate names.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err("no CUDA driver (libcuda.so.1) on this machine".into());
        }
        if !nvrtc::is_available() {
            return Err(
                "NVRTC (libnvrtc.so.13) not found: install the CUDA toolkit, or \
                        `pip install nvidia-cuda-nvrtc` and add its lib/ to LD_LIBRARY_PATH"
                    .into(),
            );
        }
        // cudarc panics when a symbol is missing (a driver too old for CUDA 13): contain it.
        let opened = catch_unwind(AssertUnwindSafe(|| DriverRuntime::new(ordinal)))
            .map_err(|_| format!("cuda:{ordinal}: the CUDA driver could not be initialised (too old for CUDA 13?)"))??;
        let (runtime, description) = opened;
        let device = CudaDevice::new(format!("cuda:{ordinal}"), description, Box::new(runtime));
        gpus.push((ordinal, device.clone()));
        Ok(device)
    }

    /// `cuda:0`, or `cuda-emulator`.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// The GPU's name and architecture, or what the emulator is.
    pub fn description(&self) -> &str {
        &self.inner.description
    }

    /// How many times device memory was requested from the runtime so far.
    pub fn raw_allocations(&self) -> u64 {
        self.inner.raw_allocations.load(Ordering::Relaxed)
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
        self.inner
            .runtime
            .copy_to_device(buffer.pointer, bytes)
            .unwrap_or_else(|err| panic!("{}: {err}", self.label()));
        buffer
    }

    fn buffer_of_bytes(&self, bytes: usize, len: usize) -> DeviceBuffer {
        let bytes = bytes.max(1).next_multiple_of(SIZE_CLASS);
        let cached = self
            .inner
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&bytes)
            .and_then(Vec::pop);
        let pointer = cached.unwrap_or_else(|| {
            self.inner.raw_allocations.fetch_add(1, Ordering::Relaxed);
            self.inner
                .runtime
                .alloc(bytes)
                .unwrap_or_else(|err| panic!("{}: {err}", self.label()))
        });
        DeviceBuffer {
            pointer,
            bytes,
            len,
            device: self.clone(),
        }
    }

    /// Launches `kernel` with `args`.
    ///
    /// # Panics
    /// When the runtime fails the launch (no such kernel, a driver error), as PyTorch raises.
    pub(crate) fn launch<A: KernelArgs>(&self, kernel: &str, config: LaunchConfig, args: A) {
        let mut args = args;
        // SAFETY: `A` mirrors the kernel's argument struct (KernelArgs), and the storage code
        // that builds it points only at live buffers of this device, sized for the launch.
        unsafe {
            self.inner
                .runtime
                .launch(kernel, config, &mut args as *mut A as *mut c_void)
        }
        .unwrap_or_else(|err| panic!("{}: {err}", self.label()));
    }

    pub(crate) fn copy_to_host(&self, buffer: &DeviceBuffer) -> Vec<f32> {
        let mut values = vec![0.0f32; buffer.len];
        self.inner
            .runtime
            .copy_to_host(buffer.pointer, bytemuck::cast_slice_mut(&mut values))
            .unwrap_or_else(|err| panic!("{}: {err}", self.label()));
        values
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

/// Device memory for `len` floats; returned to its device's cache when dropped.
pub(crate) struct DeviceBuffer {
    pub pointer: u64,
    bytes: usize,
    pub len: usize,
    pub device: CudaDevice,
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        let mut free = self
            .device
            .inner
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        free.entry(self.bytes).or_default().push(self.pointer);
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
