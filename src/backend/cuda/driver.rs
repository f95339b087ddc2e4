//! The GPU runtime: the CUDA driver API through cudarc, loaded at run time. Each kernel file is
//! compiled by NVRTC once per process, on first use, to a cubin for the device's compute
//! capability.
//!
//! Work goes to the legacy default stream, so launches run in order and a copy to the host
//! waits for them. (CUDA graphs and a non-blocking stream come with the GPU speed work.)

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::Mutex;

use cudarc::driver::{result, sys};

use super::kernels::module_of;
use super::launch::LaunchConfig;
use super::nvrtc::{self, Output};
use super::runtime::Runtime;

pub(crate) struct DriverRuntime {
    context: sys::CUcontext,
    compute_capability: (u32, u32),
    /// Loaded kernels by name (their module stays loaded for the life of the process).
    functions: Mutex<HashMap<String, sys::CUfunction>>,
}

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
        let runtime = DriverRuntime {
            context,
            compute_capability: (major, minor),
            functions: Mutex::new(HashMap::new()),
        };
        runtime.make_current()?;
        Ok((runtime, format!("{name} (sm_{major}{minor})")))
    }

    fn make_current(&self) -> Result<(), String> {
        // SAFETY: `context` is a retained primary context.
        unsafe { result::ctx::set_current(self.context) }
            .map_err(|e| format!("cuCtxSetCurrent: {e:?}"))
    }

    /// The kernel `name`, compiling and loading its module on first use.
    fn function(&self, name: &str) -> Result<sys::CUfunction, String> {
        let mut functions = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&function) = functions.get(name) {
            return Ok(function);
        }
        let module =
            module_of(name).ok_or_else(|| format!("no kernel named {name} in kernels/"))?;
        let (major, minor) = self.compute_capability;
        let cubin = nvrtc::compile(module, major, minor, Output::Cubin { report: false })?;
        // SAFETY: `cubin.image` is a complete cubin from NVRTC, alive during the call.
        let loaded = unsafe { result::module::load_data(cubin.image.as_ptr() as *const c_void) }
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
        Ok(functions[name])
    }
}

impl Runtime for DriverRuntime {
    fn alloc(&self, bytes: usize) -> Result<u64, String> {
        self.make_current()?;
        // SAFETY: the context is current; the memory is kept for the process's life.
        unsafe { result::malloc_sync(bytes) }
            .map_err(|e| format!("out of GPU memory allocating {bytes} bytes: {e:?}"))
    }

    fn copy_to_device(&self, dst: u64, src: &[u8]) -> Result<(), String> {
        self.make_current()?;
        // SAFETY: `dst` is an allocation of this context with room for `src`.
        unsafe { result::memcpy_htod_sync(dst, src) }
            .map_err(|e| format!("copy to the GPU failed: {e:?}"))
    }

    fn copy_to_host(&self, src: u64, dst: &mut [u8]) -> Result<(), String> {
        self.make_current()?;
        // SAFETY: `src` is an allocation of this context holding `dst.len()` bytes. The copy
        // synchronises with the legacy default stream, so every earlier kernel has finished.
        unsafe { result::memcpy_dtoh_sync(dst, src) }
            .map_err(|e| format!("copy from the GPU failed (a kernel may have failed): {e:?}"))
    }

    unsafe fn launch(
        &self,
        name: &str,
        config: LaunchConfig,
        args: *mut c_void,
    ) -> Result<(), String> {
        self.make_current()?;
        let function = self.function(name)?;
        let (grid, block) = (config.grid, config.block);
        let mut params = [args];
        // SAFETY: `function` is a loaded kernel taking one argument struct; `args` points to
        // one with its layout and valid device pointers (the caller's contract). The launch
        // reads the struct before returning.
        unsafe {
            result::launch_kernel(
                function,
                (grid.x, grid.y, grid.z),
                (block.x, block.y, block.z),
                0,
                std::ptr::null_mut(), // the legacy default stream
                &mut params,
            )
        }
        .map_err(|e| format!("launching {name} failed: {e:?}"))
    }
}
