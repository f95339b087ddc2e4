//! Launch geometry, shared by every runtime so the emulator runs what the GPU would.

/// Grid and block sizes of a launch (CUDA's `dim3`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dim3 {
    pub x: u32,
    pub y: u32,
    pub z: u32,
}

impl Dim3 {
    pub const fn x(x: u32) -> Dim3 {
        Dim3 { x, y: 1, z: 1 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid: Dim3,
    pub block: Dim3,
}

/// Threads per block of the elementwise and reduction kernels (`REDUCE_THREADS` in
/// `reduce.cu`).
pub const BLOCK_THREADS: u32 = 256;
/// Enough blocks to fill a large GPU; grid-stride loops cover any length with them.
const MAX_BLOCKS: u64 = 1024;
/// `SUM_CHUNK` in `reduce.cu`.
pub const SUM_CHUNK: u64 = 4096;

impl LaunchConfig {
    /// One thread per item (up to the block cap), for grid-stride loops over `items`.
    pub fn for_items(items: u64) -> LaunchConfig {
        let blocks = items
            .div_ceil(u64::from(BLOCK_THREADS))
            .clamp(1, MAX_BLOCKS);
        LaunchConfig {
            grid: Dim3::x(blocks as u32),
            block: Dim3::x(BLOCK_THREADS),
        }
    }

    /// The first pass of `sum_all`: one block per `SUM_CHUNK` elements.
    pub fn sum_partials(n: u64) -> LaunchConfig {
        LaunchConfig {
            grid: Dim3::x(n.div_ceil(SUM_CHUNK).max(1) as u32),
            block: Dim3::x(BLOCK_THREADS),
        }
    }

    /// A single block (the second pass of `sum_all`).
    pub fn single_block() -> LaunchConfig {
        LaunchConfig {
            grid: Dim3::x(1),
            block: Dim3::x(BLOCK_THREADS),
        }
    }

    /// `gemm.cu`: a 64 × 64 tile of C per block of 256 threads.
    pub fn gemm(m: usize, n: usize) -> LaunchConfig {
        LaunchConfig {
            grid: Dim3 {
                x: n.div_ceil(64).max(1) as u32,
                y: m.div_ceil(64).max(1) as u32,
                z: 1,
            },
            block: Dim3::x(256),
        }
    }
}
