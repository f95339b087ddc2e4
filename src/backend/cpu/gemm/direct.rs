//! `C = X·Wᵀ (+ bias)` for a small batch `X` (at most 128 rows; `X` may be stored transposed)
//! and a weight `W: [n, k]`: a linear layer's forward. It is computed as `Cᵀ = W·Xᵀ`: W
//! becomes the left operand, whose elements the microkernel broadcasts, and a broadcast reads
//! W's rows where they lie. The usual way, W is the right operand and must be packed by
//! transposing it, which at m = 64 costs a quarter as much as the multiplication. Only `Xᵀ`
//! is packed. (Reading a `[k, n]` W in place for `dY·W` was tried too: the stride between
//! steps of k makes it slower than packing.)

use super::pack::pack_all;
use crate::backend::cpu::microkernel::{APanel, BlockOut, Microkernel, MAX_BLOCK};
use crate::backend::cpu::product::{run_tasks, Layout, OutputMatrix};
use crate::backend::cpu::simd;
use crate::backend::{GemmDims, UnaryKernel};

/// The most rows of `C` for which a product runs here, the large operand read in place.
const MAX_DIRECT_ROWS: usize = 128;
/// The least `k` for which it does: [`multiply`] writes its blocks of C transposed, element by
/// element, which a long enough sum over `k` must pay for (at k ≤ 512 packing W costs less).
/// Under Miri, from k = 8, so that its tests reach this path at a shape it can interpret in
/// seconds (at k = 768 the test ran past 25 minutes; README, "Undefined behaviour").
const MIN_DIRECT_K: usize = if cfg!(miri) { 8 } else { 768 };

/// Whether a product of `dims` runs here: `X·Wᵀ` with at most [`MAX_DIRECT_ROWS`] rows of `X`,
/// at least as many columns as rows, and a long enough `k`.
pub(super) fn suits(dims: GemmDims) -> bool {
    dims.rhs_transposed && dims.m <= MAX_DIRECT_ROWS && dims.n >= dims.m && dims.k >= MIN_DIRECT_K
}

/// Rows of W per task: enough tasks for every thread, whole blocks of `MR`.
fn rows_per_task(kernel: Microkernel, n: usize) -> usize {
    n.div_ceil(2 * rayon::current_num_threads())
        .next_multiple_of(kernel.mr())
}

#[allow(clippy::too_many_arguments)] // gemm_impl's operands, and whether to split
pub(super) fn multiply<E: UnaryKernel>(
    kernel: Microkernel,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    dims: GemmDims,
    epilogue: &E,
    c: &mut [f32],
    parallel: bool,
) {
    let GemmDims { m, k, n, .. } = dims;
    let (mr, nr) = (kernel.mr(), kernel.nr());
    // The right operand Xᵀ: packed_x[(panel · k + p) · nr + t] = X[panel · nr + t, p],
    // zero-padded. Split between the threads too: packed by the calling thread alone, it
    // kept the others waiting for 5–15 % of a product (benches/RESULTS.md, 2026-12-05).
    let packed_x = pack_all(x, Layout::of_lhs(dims), m, k, nr, parallel);
    let out = OutputMatrix::new(c, n);
    let task_rows = rows_per_task(kernel, n);
    run_tasks(n.div_ceil(task_rows), parallel, |task| {
        let mut block = [0.0f32; MAX_BLOCK];
        let end = ((task + 1) * task_rows).min(n);
        for j0 in (task * task_rows..end).step_by(mr) {
            let rows = mr.min(n - j0);
            // Rows j0.. of W where they lie. Rows past W's end repeat its last row; their
            // results are not stored.
            let w_rows = APanel::Rows(std::array::from_fn(|i| {
                w[(j0 + i.min(rows - 1)) * k..].as_ptr()
            }));
            for (panel, i0) in (0..m).step_by(nr).enumerate() {
                let x_panel = &packed_x[panel * nr * k..(panel + 1) * nr * k];
                let out_block = BlockOut {
                    c: block.as_mut_ptr(),
                    ldc: nr,
                    accumulate: false,
                };
                // SAFETY: each row pointer starts a row of W, `k` floats long; `block`
                // holds MR × NR with row stride NR.
                unsafe { kernel.run(k, w_rows, x_panel, out_block) };
                // block[i · nr + t] = C[i0 + t, j0 + i]: finish it (bias, epilogue), then
                // write it transposed.
                for (i, block_row) in block.chunks_exact_mut(nr).take(rows).enumerate() {
                    let b = bias.map_or(0.0, |bias| bias[j0 + i]);
                    simd::map_in_place(block_row, |v| epilogue.apply(v + b));
                }
                let cols = nr.min(m - i0);
                for t in 0..cols {
                    // SAFETY: row i0 + t of C, columns j0..j0 + rows: this task's columns.
                    let c_row = unsafe { out.row(i0 + t, j0, rows) };
                    for (i, c) in c_row.iter_mut().enumerate() {
                        *c = block[i * nr + t];
                    }
                }
            }
        }
    });
}
