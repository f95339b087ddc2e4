//! Runs the CUDA kernels on the CPU: `kernels/*.cu` compiled by the host C++ compiler against
//! `kernels/emulator/emulator.h` (see there for how blocks, threads, `__shared__` and
//! `__syncthreads` are emulated).

use std::alloc::{alloc_zeroed, Layout};
use std::ffi::{c_char, c_int, c_void, CString};

use super::args::KernelArgs;
use super::launch::{Dim3, LaunchConfig};
use super::runtime::Runtime;

extern "C" {
    fn ferrograd_emu_launch(
        name: *const c_char,
        grid: Dim3,
        block: Dim3,
        args: *mut *mut c_void,
    ) -> c_int;
    fn ferrograd_emu_args_size(name: *const c_char) -> usize;
}

/// "Device" memory in host RAM, kernels run by the emulator.
pub(crate) struct EmulatorRuntime;

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

    fn copy_to_device(&self, dst: u64, src: &[u8]) -> Result<(), String> {
        // SAFETY: `dst` is one of our allocations with room for `src` (the storage's contract).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
        Ok(())
    }

    fn copy_to_host(&self, src: u64, dst: &mut [u8]) -> Result<(), String> {
        // SAFETY: `src` is one of our allocations holding `dst.len()` bytes.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    unsafe fn launch(
        &self,
        name: &str,
        config: LaunchConfig,
        args: *mut c_void,
    ) -> Result<(), String> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { launch_raw(name, config, args) }
    }
}

/// # Safety
/// As for [`launch`], with `args` pointing to the argument struct.
unsafe fn launch_raw(name: &str, config: LaunchConfig, args: *mut c_void) -> Result<(), String> {
    let c_name = CString::new(name).map_err(|_| format!("kernel name {name:?} contains NUL"))?;
    let mut arg_pointers = [args];
    // SAFETY: the name is a valid C string and the argument array holds one pointer to a
    // struct with the kernel's layout, whose pointers the caller vouches for.
    let status = unsafe {
        ferrograd_emu_launch(
            c_name.as_ptr(),
            config.grid,
            config.block,
            arg_pointers.as_mut_ptr(),
        )
    };
    match status {
        0 => Ok(()),
        1 => Err(format!("the emulator has no kernel named {name}")),
        _ => Err(format!(
            "{name}: threads deadlocked at barriers (some at __syncthreads, some elsewhere)"
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
    unsafe { launch_raw(name, config, args as *const A as *mut c_void) }
}

/// The C compiler's `sizeof` of the argument struct `A` mirrors (0 if it knows no such struct).
pub fn c_args_size<A: KernelArgs>() -> usize {
    let name = CString::new(A::C_NAME).expect("struct names have no NUL");
    // SAFETY: a pure lookup taking a valid C string.
    unsafe { ferrograd_emu_args_size(name.as_ptr()) }
}
