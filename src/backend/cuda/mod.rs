//! The CUDA backend: our kernels in `kernels/*.cu` behind `Storage` (`src/storage.rs`).
//!
//! - `kernels.rs`: the kernel sources, embedded by `build.rs`, and the kernels each defines;
//! - `args.rs`, `launch.rs`: argument structs and launch geometry, shared by both runtimes;
//! - `runtime.rs`: what a runtime provides (memory, copies, launches); `driver.rs` is the GPU
//!   through cudarc, `emulator.rs` runs the same kernels on the CPU (compiled by the host C++
//!   compiler against `kernels/emulator/emulator.h`; Linux with glibc only, see build.rs), so
//!   CI tests the CUDA path without a GPU;
//!   `pinned.rs`: the driver's page-locked buffers for copies that do not wait;
//! - `device.rs`: a device with its caching allocator and graph capture; `graph.rs`: a captured
//!   graph and its replay; `storage.rs`: the ops as launches;
//! - `recorded_products.rs`: the products a step plans, noted as it plans them; `tuning.rs`:
//!   each of them timed in its configurations, and given the fastest;
//! - `nvrtc.rs`: compilation, and ptxas's resource report;
//! - `gemm_steps.rs`: the matrix product in three steps toward `gemm.cu`'s, to read and to time.

pub mod args;
mod device;
mod driver;
pub mod emulator;
pub mod gemm_steps;
mod graph;
pub mod kernel_cache;
pub mod kernels;
pub mod launch;
pub mod nvrtc;
mod pinned;
mod recorded_products;
mod runtime;
mod storage;
pub mod tuning;

pub use device::{CudaDevice, CudaPendingRead};
pub use graph::CudaGraph;
pub use launch::{
    clear_product_settings, set_small_tiles_for, set_split_k_blocks, set_split_k_for,
    set_split_k_min_k, set_split_k_override, split_k_blocks,
};
pub use recorded_products::{record_products, RecordedProduct};
pub use runtime::{BankTraffic, KernelTime, SharedMemoryTraffic, TracedLaunch};
pub use storage::{
    set_allow_tf32, set_small_tiles, small_tiles_default, tf32_allowed, CudaStorage,
};
pub use tuning::{TuneOptions, TunedProduct, Tuning};
