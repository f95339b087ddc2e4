//! The matrix product in three steps (`kernels/gemm_steps.cu`), for learning how a GEMM kernel
//! gets fast and for measuring what each idea buys: one thread per element of C; tiles staged
//! in shared memory; a 4 × 4 patch of C per thread, in registers. The engine's own products
//! run `kernels/gemm.cu`, which builds on the third step; `cargo bench --bench cuda --
//! gemm_steps` times the steps beside it on a GPU.

use super::args::GemmStepArgs;
use super::launch::{Dim3, LaunchConfig};
use super::storage::CudaStorage;

/// One step of the way from the simplest GEMM kernel to `gemm.cu`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmStep {
    /// One thread per element of C, every operand read from global memory.
    Naive,
    /// 16 × 16 tiles of A and B staged in shared memory: each element fetched from global
    /// memory serves 16 threads.
    SharedTiles,
    /// 64 × 64 tiles, a 4 × 4 patch of C per thread accumulated in registers: 8 shared-memory
    /// reads per 16 multiply-adds instead of 32.
    RegisterTiles,
}

impl GemmStep {
    /// The steps, in the order to read them.
    pub const ALL: [GemmStep; 3] = [
        GemmStep::Naive,
        GemmStep::SharedTiles,
        GemmStep::RegisterTiles,
    ];

    /// The kernel in `gemm_steps.cu`.
    fn kernel(self) -> &'static str {
        match self {
            GemmStep::Naive => "gemm_step_naive",
            GemmStep::SharedTiles => "gemm_step_shared",
            GemmStep::RegisterTiles => "gemm_step_registers",
        }
    }

    /// The launch for an `m × n` C: a block per 16 × 16 tile of 16 × 16 threads (steps 1 and
    /// 2), or per 64 × 64 tile of 256 threads (step 3).
    fn launch_config(self, m: usize, n: usize) -> LaunchConfig {
        let (tile, block) = match self {
            GemmStep::Naive | GemmStep::SharedTiles => (16, Dim3 { x: 16, y: 16, z: 1 }),
            GemmStep::RegisterTiles => (64, Dim3::x(256)),
        };
        LaunchConfig {
            grid: Dim3 {
                x: n.div_ceil(tile) as u32,
                y: m.div_ceil(tile) as u32,
                z: 1,
            },
            block,
        }
    }
}

/// `C = A · B` with the kernel of `step`: `a` holds A `[m, k]` and `b` holds B `[k, n]`, both
/// row-major, and C comes back `[m, n]`.
///
/// # Panics
/// If `a` or `b` does not hold `m · k` or `k · n` values, if they are on different devices, or
/// if a dimension is 0 or past `i32::MAX`.
pub fn gemm_step(
    step: GemmStep,
    a: &CudaStorage,
    b: &CudaStorage,
    m: usize,
    k: usize,
    n: usize,
) -> CudaStorage {
    assert!(
        a.len() == (m * k) as u64 && b.len() == (k * n) as u64,
        "gemm_step: A holds {} values and B {}, not {m} × {k} and {k} × {n}",
        a.len(),
        b.len()
    );
    assert!(
        a.device().label() == b.device().label(),
        "gemm_step: A on {}, B on {}",
        a.device().label(),
        b.device().label()
    );
    let dim = |d: usize| match i32::try_from(d) {
        Ok(d) if d > 0 => d,
        _ => panic!("gemm_step: dimension {d} of {m} × {k} × {n} is 0 or too large"),
    };
    let c = CudaStorage::uninit(m * n, a.device());
    let args = GemmStepArgs {
        a: a.pointer(),
        b: b.pointer(),
        c: c.pointer(),
        m: dim(m),
        k: dim(k),
        n: dim(n),
    };
    a.device()
        .launch(step.kernel(), step.launch_config(m, n), args);
    c
}
