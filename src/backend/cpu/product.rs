//! What the FP32 GEMM (`gemm/`) and the BF16 products on AMX (`amx/`) share: how a
//! product's work is split into tasks, how an operand's elements lie in memory, and the output
//! as the tasks write it — C by raw rows, a block of it, and the bias and activation applied to
//! a block while it is in cache.

use rayon::prelude::*;

use super::simd;
use crate::backend::{GemmDims, Identity, UnaryKernel};

/// Runs `task(i)` for every `i < count`: split over the rayon pool if `parallel`, else in
/// order on the calling thread, which a small product must not leave (from outside the pool,
/// even a one-task parallel loop is handed to a pool thread and waited for).
pub(super) fn run_tasks(count: usize, parallel: bool, task: impl Fn(usize) + Send + Sync) {
    if parallel {
        (0..count).into_par_iter().for_each(task);
    } else {
        (0..count).for_each(task);
    }
}

/// [`run_tasks`] over the `len`-long chunks of `buffer`: `task(i, chunk i)`.
pub(super) fn run_chunk_tasks<T: Send>(
    buffer: &mut [T],
    len: usize,
    parallel: bool,
    task: impl Fn(usize, &mut [T]) + Send + Sync,
) {
    if parallel {
        buffer
            .par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, chunk)| task(i, chunk));
    } else {
        buffer
            .chunks_mut(len)
            .enumerate()
            .for_each(|(i, chunk)| task(i, chunk));
    }
}

/// How an operand's element `(x, p)` — `x` a row of `A` or a column of `B`, `p` along `k` —
/// sits in memory.
#[derive(Clone, Copy)]
pub(super) enum Layout {
    /// At `x · stride + p`: each `x` is a contiguous run along `k`.
    AlongK { stride: usize },
    /// At `p · stride + x`: each step of `k` is a contiguous run of `x`.
    AcrossK { stride: usize },
}

impl Layout {
    /// How the rows of `op(A)` lie in a product's left operand.
    pub(super) fn of_lhs(dims: GemmDims) -> Layout {
        if dims.lhs_transposed {
            Layout::AcrossK { stride: dims.m }
        } else {
            Layout::AlongK { stride: dims.k }
        }
    }

    /// How the columns of `op(B)` lie in a product's right operand.
    pub(super) fn of_rhs(dims: GemmDims) -> Layout {
        if dims.rhs_transposed {
            Layout::AlongK { stride: dims.k }
        } else {
            Layout::AcrossK { stride: dims.n }
        }
    }
}

/// C as the tiles see it: a raw pointer, since tiles of one row of C (disjoint column ranges)
/// are written by different threads at once.
#[derive(Clone, Copy)]
pub(super) struct OutputMatrix {
    c: *mut f32,
    ldc: usize,
}

// SAFETY: the pointer is only used for the disjoint tiles of one product, while the `Vec` it
// points into is alive and borrowed by nothing else (gemm_impl, amx::multiply).
unsafe impl Send for OutputMatrix {}
// SAFETY: as above.
unsafe impl Sync for OutputMatrix {}

impl OutputMatrix {
    /// `c`, a row-major matrix of `ldc` columns, for tasks that write disjoint parts of it.
    pub(super) fn new(c: &mut [f32], ldc: usize) -> Self {
        OutputMatrix {
            c: c.as_mut_ptr(),
            ldc,
        }
    }

    /// Elements per row of C.
    pub(super) fn ldc(&self) -> usize {
        self.ldc
    }

    /// Where element `(row, col)` of C is.
    ///
    /// # Safety
    /// It must be inside C.
    pub(super) unsafe fn element(&self, row: usize, col: usize) -> *mut f32 {
        // SAFETY: the caller's contract.
        unsafe { self.c.add(row * self.ldc + col) }
    }

    /// Asks for the cache lines of `block` of C ahead of writing them (`prefetcht0` on x86-64,
    /// nothing elsewhere).
    pub(super) fn prefetch(&self, block: Tile) {
        #[cfg(target_arch = "x86_64")]
        for row in block.row0..block.row0 + block.rows {
            let start = self
                .c
                .wrapping_add(row * self.ldc + block.col0)
                .cast::<i8>()
                .cast_const();
            // Every 64-byte line the row touches, from the one holding its first byte.
            let skew = start.addr() % 64;
            for offset in (0..skew + 4 * block.cols).step_by(64) {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                // SAFETY: a prefetch is a hint: it changes no register or memory and never
                // faults, whatever the address (these are the lines that hold the block).
                unsafe {
                    _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset).wrapping_sub(skew))
                };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (self, block); // no prefetch here: the hardware's prefetchers alone
    }

    /// The `cols` elements of row `row` from column `col`.
    ///
    /// # Safety
    /// They must be inside C and touched by no other thread while the slice lives.
    #[allow(clippy::mut_from_ref)] // a window on C, disjoint per caller (the contract)
    pub(super) unsafe fn row(&self, row: usize, col: usize, cols: usize) -> &mut [f32] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.element(row, col), cols) }
    }
}

/// A block of C: rows `row0..row0 + rows` × columns `col0..col0 + cols`.
#[derive(Clone, Copy)]
pub(super) struct Tile {
    pub row0: usize,
    pub rows: usize,
    pub col0: usize,
    pub cols: usize,
}

impl Tile {
    /// Rows `row0..row0 + rows` × columns `col0..col0 + cols`.
    pub(super) fn at(row0: usize, rows: usize, col0: usize, cols: usize) -> Self {
        Tile {
            row0,
            rows,
            col0,
            cols,
        }
    }
}

/// Adds the bias and applies the epilogue over `tile` of C, while it is still in cache.
///
/// # Safety
/// `tile` must be inside C and touched by no other thread during the call.
pub(super) unsafe fn finish_tile<E: UnaryKernel>(
    out: OutputMatrix,
    tile: Tile,
    bias: Option<&[f32]>,
    epilogue: &E,
) {
    if bias.is_none() && E::NAME == Identity::NAME {
        return;
    }
    for row in tile.row0..tile.row0 + tile.rows {
        // SAFETY: a row of the tile (the caller's contract).
        let values = unsafe { out.row(row, tile.col0, tile.cols) };
        if let Some(bias) = bias {
            let bias = &bias[tile.col0..tile.col0 + tile.cols];
            simd::zip_map_in_place(values, bias, |c, b| epilogue.apply(c + b));
        } else {
            simd::map_in_place(values, |c| epilogue.apply(c));
        }
    }
}
