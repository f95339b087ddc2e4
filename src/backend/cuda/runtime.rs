//! What the CUDA backend needs from whatever runs its kernels: device memory, copies and
//! launches. Two runtimes implement it: the GPU through the CUDA driver (`driver.rs`) and the
//! CPU emulator (`emulator.rs`). Everything above — storage, allocator, launch geometry and
//! argument structs — is shared, so the emulator runs exactly the launches the GPU would.

use std::ffi::c_void;

use super::launch::LaunchConfig;

pub(crate) trait Runtime: Send + Sync {
    /// Allocates `bytes` (> 0) of device memory; the caching allocator never frees it.
    fn alloc(&self, bytes: usize) -> Result<u64, String>;

    fn copy_to_device(&self, dst: u64, src: &[u8]) -> Result<(), String>;

    /// Copies back to the host, after all kernels launched so far have finished.
    fn copy_to_host(&self, src: u64, dst: &mut [u8]) -> Result<(), String>;

    /// Launches kernel `name` with its argument struct at `args`.
    ///
    /// # Safety
    /// `args` must point to a struct with the kernel's argument layout, whose pointers are
    /// device buffers of this runtime large enough for the launch.
    unsafe fn launch(
        &self,
        name: &str,
        config: LaunchConfig,
        args: *mut c_void,
    ) -> Result<(), String>;
}
