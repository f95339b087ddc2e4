//! The matrix product on a CPU in four steps, for learning how a GEMM gets fast and for
//! measuring what each idea buys: the CPU's counterpart of `kernels/gemm_steps.cu`. Each step
//! computes `C = A · B` (A `[m, k]`, B `[k, n]`, C `[m, n]`, all row-major) on the calling
//! thread, keeps what the step before it does and adds one idea. The engine's own products
//! never run them; `cargo bench --bench ops -- gemm_steps` times them beside the engine's
//! product (`gemm/`), which starts from the fourth.
//!
//! ```
//! use ferrograd::backend::cpu::gemm_steps::{gemm_step, GemmStep};
//! let a = [1.0, 2.0, 3.0, 4.0]; // [[1, 2], [3, 4]]
//! let b = [5.0, 6.0, 7.0, 8.0]; // [[5, 6], [7, 8]]
//! for step in GemmStep::ALL {
//!     assert_eq!(gemm_step(step, &a, &b, 2, 2, 2), [19.0, 22.0, 43.0, 50.0]);
//! }
//! ```
//!
//! What decides the speed, in the order the steps meet it:
//! 1. A sum is a chain: each `sum += a · b` of step 1 waits for the one before it (~3 cycles
//!    for an addition), and the compiler may not reorder float additions to break the chain, as
//!    that would change the result's rounding. So even with everything in cache, step 1 does
//!    one multiply-add every ~3 cycles. And memory moves in 64-byte lines (16 floats): walking
//!    down a column of B, every multiply-add reads a new line, `4n` bytes past the last, and
//!    uses 4 of its 64 bytes; once B outgrows the caches, that is slower still.
//! 2. Step 2 reorders the loops so that B and C are read along their rows, and the innermost
//!    loop, `C[i, j..] += A[i, p] · B[p, j..]`, updates many independent sums: every byte of a
//!    line is used, and the compiler makes one vector instruction of 4 columns (SSE2, which
//!    every x86-64 has; 16 with AVX-512). But with every multiply-add it loads and stores an
//!    element of C again: more of its instructions move C than compute.
//! 3. Step 3 keeps a block of `MR × NR` results in registers for the whole of `k`: per step of
//!    `k` it loads `MR` values of A and `NR` of B for `MR · NR` multiply-adds, and stores C once
//!    at the end. That pays while A and B are in cache; once they are not, waiting for them
//!    takes what the registers saved.
//! 4. Step 3 reads its `NR` columns of B from `k` rows `4n` bytes apart, a line (and often a
//!    page) per step of `k`, and reads all of B again for every `MR` rows of C: from L2 while
//!    B fits there, from farther once it does not. Step 4 copies ("packs") a block of B, `KC`
//!    rows by `NC` columns, into panels of `NR` columns, and a block of A, `MC` rows by `KC`,
//!    into panels of `MR` rows: each panel one run of memory, in the order the register block
//!    reads it. The block of B stays in L2 while every block of A passes it, and each panel of
//!    B in L1 while the panels of A stream past it. The same register block as step 3 then
//!    reads both in order, from cache. This is the loop structure of BLIS, and of `gemm/`.
//!
//! The engine's product adds what no portable code can say: a microkernel written for the
//! processor's widest vectors (an 8 × 32 block in 16 AVX-512 registers, fused multiply-adds,
//! chosen at run time: `microkernel.rs`), every core (tiles of C split between the threads),
//! packing that reads each operand in the layout it is stored in (so `X·Wᵀ` needs no
//! transposed copy) into buffers that start on a cache line (a 64-byte load that straddles two
//! lines costs two: 2–12 % of a product), and the layer's bias and activation applied while C
//! is in cache.

use std::array;
use std::ops::Range;

/// Rows of C in a register block: 4 rows × 8 columns are 8 SSE2 registers of 4 floats, half of
/// what x86-64 has, leaving room for the operands (the engine's portable microkernel's size).
const MR: usize = 4;
/// Columns of C in a register block.
const NR: usize = 8;
/// Steps of `k` per packed block (step 4): a panel of B, `KC × NR` floats (8 KiB), stays in L1.
const KC: usize = 256;
/// Rows of A per packed block (step 4): `MC × KC` floats, 96 KiB, stay in L2.
const MC: usize = 96;
/// Columns of B per packed block (step 4): `KC × NC` floats, 512 KiB, packed once and used by
/// every block of rows of A.
const NC: usize = 512;

/// One step of the way from the simplest matrix product to the engine's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmStep {
    /// Each element of C a dot product of a row of A and a column of B.
    Naive,
    /// The loops reordered so that B and C are read along their rows, in vectors.
    RowOrder,
    /// 4 × 8 blocks of C summed in registers over the whole of `k`.
    RegisterBlocks,
    /// The register blocks fed from copies of A and B packed in the order they are read,
    /// blocked to stay in the caches.
    PackedBlocks,
}

impl GemmStep {
    /// The steps, in the order to read them.
    pub const ALL: [GemmStep; 4] = [
        GemmStep::Naive,
        GemmStep::RowOrder,
        GemmStep::RegisterBlocks,
        GemmStep::PackedBlocks,
    ];
}

/// `C = A · B` by the method of `step`, on the calling thread: `a` holds A `[m, k]` and `b`
/// holds B `[k, n]`, both row-major, and C comes back `[m, n]`.
///
/// # Panics
/// If `a` or `b` does not hold `m · k` or `k · n` values.
pub fn gemm_step(step: GemmStep, a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    assert!(
        a.len() == m * k && b.len() == k * n,
        "gemm_step: A holds {} values and B {}, not {m} × {k} and {k} × {n}",
        a.len(),
        b.len()
    );
    let mut c = vec![0.0; m * n];
    let operands = Operands { a, b, m, k, n };
    match step {
        GemmStep::Naive => naive(operands, &mut c),
        GemmStep::RowOrder => row_order(operands, &mut c, 0..m, 0..n),
        GemmStep::RegisterBlocks => register_blocks(operands, &mut c),
        GemmStep::PackedBlocks => packed_blocks(operands, &mut c),
    }
    c
}

/// A and B with their shapes.
#[derive(Clone, Copy)]
struct Operands<'a> {
    a: &'a [f32],
    b: &'a [f32],
    m: usize,
    k: usize,
    n: usize,
}

/// Step 1: `C[i, j] = Σ_p A[i, p] · B[p, j]`, as written on paper: one chain of dependent
/// additions per result. A is read along its rows, but B down its columns, `n` floats between
/// one read and the next.
fn naive(Operands { a, b, m, k, n }: Operands, c: &mut [f32]) {
    for i in 0..m {
        for j in 0..n {
            let mut sum = 0.0;
            for p in 0..k {
                sum += a[i * k + p] * b[p * n + j];
            }
            c[i * n + j] = sum;
        }
    }
}

/// Step 2: the same sums with the loops over `j` and `p` swapped, for the rows `rows` and
/// columns `cols` of C (step 3 hands it the edges its blocks leave). Row `i` of C gathers
/// `A[i, p] · (row p of B)` for each `p` in turn; the innermost loop runs along rows of B and C,
/// which the compiler turns into vector instructions. Each result is still summed over `p` in
/// order, as in step 1, so the two give the same bits.
fn row_order(
    Operands { a, b, k, n, .. }: Operands,
    c: &mut [f32],
    rows: Range<usize>,
    cols: Range<usize>,
) {
    for i in rows {
        let c_row = &mut c[i * n..][cols.clone()];
        for p in 0..k {
            let a_ip = a[i * k + p];
            let b_row = &b[p * n..][cols.clone()];
            for (c_ij, b_pj) in c_row.iter_mut().zip(b_row) {
                *c_ij += a_ip * b_pj;
            }
        }
    }
}

/// The register block of steps 3 and 4: `Σ_p A(:, p) ⊗ B(p, :)`, an `MR × NR` block of sums
/// that lives in registers (the arrays have sizes the compiler knows, and every loop over them
/// is unrolled). `a_columns` yields the block's `MR` values of A in each column `p` in turn,
/// `b_rows` its `NR` values of B in each row `p`: where they come from is the only difference
/// between the two steps.
#[inline(always)]
fn register_block(
    a_columns: impl Iterator<Item = [f32; MR]>,
    b_rows: impl Iterator<Item = [f32; NR]>,
) -> [[f32; NR]; MR] {
    let mut sums = [[0.0; NR]; MR];
    for (a_p, b_p) in a_columns.zip(b_rows) {
        for (sums_row, a_rp) in sums.iter_mut().zip(a_p) {
            for (sum, b_pc) in sums_row.iter_mut().zip(b_p) {
                *sum += a_rp * b_pc;
            }
        }
    }
    sums
}

/// `values` as an array of its length.
fn to_array<const N: usize>(values: &[f32]) -> [f32; N] {
    values.try_into().expect("a slice of the array's length")
}

/// Step 3: C in blocks of `MR × NR`, each summed in registers straight from A and B. The rows
/// and columns past the last whole block go through step 2.
fn register_blocks(operands: Operands, c: &mut [f32]) {
    let Operands { a, b, m, k, n } = operands;
    let (whole_rows, whole_cols) = (m - m % MR, n - n % NR);
    for i in (0..whole_rows).step_by(MR) {
        let a_rows: [&[f32]; MR] = array::from_fn(|r| &a[(i + r) * k..][..k]);
        for j in (0..whole_cols).step_by(NR) {
            let sums = register_block(
                (0..k).map(|p| array::from_fn(|r| a_rows[r][p])),
                b.chunks_exact(n).map(|b_row| to_array(&b_row[j..j + NR])),
            );
            for (r, sums_row) in sums.iter().enumerate() {
                c[(i + r) * n + j..][..NR].copy_from_slice(sums_row);
            }
        }
    }
    row_order(operands, c, 0..whole_rows, whole_cols..n);
    row_order(operands, c, whole_rows..m, 0..n);
}

/// Step 4: C block by block of `MC × NC`, `k` in blocks of `KC`. For each block of `k`, the
/// `KC × NC` block of B is packed once into panels of `NR` columns, then each `MC × KC` block of
/// A into panels of `MR` rows, and every pair of panels goes through the register block, whose
/// sums are added to C. Panels are padded with zeros to whole blocks, so the register block
/// never sees an edge; only the sums inside C are kept.
fn packed_blocks(Operands { a, b, m, k, n }: Operands, c: &mut [f32]) {
    let mut b_panels = Vec::new();
    let mut a_panels = Vec::new();
    for col0 in (0..n).step_by(NC) {
        let cols = NC.min(n - col0);
        for p0 in (0..k).step_by(KC) {
            let depth = KC.min(k - p0);
            pack_b(b, n, p0..p0 + depth, col0..col0 + cols, &mut b_panels);
            for row0 in (0..m).step_by(MC) {
                let rows = MC.min(m - row0);
                pack_a(a, k, row0..row0 + rows, p0..p0 + depth, &mut a_panels);
                for (panel_col, b_panel) in b_panels.chunks_exact(depth * NR).enumerate() {
                    for (panel_row, a_panel) in a_panels.chunks_exact(depth * MR).enumerate() {
                        let sums = register_block(
                            a_panel.chunks_exact(MR).map(to_array),
                            b_panel.chunks_exact(NR).map(to_array),
                        );
                        let (i, j) = (row0 + panel_row * MR, col0 + panel_col * NR);
                        add_inside(c, n, &sums, (i, j), (row0 + rows, col0 + cols));
                    }
                }
            }
        }
    }
}

/// Rows `rows`, columns `cols` of A (`[_, k]`) into `panels`: panel after panel of `MR` rows,
/// each stored column by column (`MR` values per step of `k`), rows past the end as zeros.
fn pack_a(a: &[f32], k: usize, rows: Range<usize>, cols: Range<usize>, panels: &mut Vec<f32>) {
    panels.clear();
    for panel_row0 in rows.clone().step_by(MR) {
        for p in cols.clone() {
            let column = (panel_row0..panel_row0 + MR).map(|i| {
                if rows.contains(&i) {
                    a[i * k + p]
                } else {
                    0.0
                }
            });
            panels.extend(column);
        }
    }
}

/// Rows `rows`, columns `cols` of B (`[_, n]`) into `panels`: panel after panel of `NR`
/// columns, each stored row by row (`NR` values per step of `k`), columns past the end as
/// zeros.
fn pack_b(b: &[f32], n: usize, rows: Range<usize>, cols: Range<usize>, panels: &mut Vec<f32>) {
    panels.clear();
    for panel_col0 in cols.clone().step_by(NR) {
        let width = NR.min(cols.end - panel_col0);
        for p in rows.clone() {
            panels.extend_from_slice(&b[p * n + panel_col0..][..width]);
            panels.extend(std::iter::repeat_n(0.0, NR - width));
        }
    }
}

/// `C[i + r, j + col] += sums[r][col]` for the sums that fall before `end` (rows, columns).
fn add_inside(
    c: &mut [f32],
    n: usize,
    sums: &[[f32; NR]; MR],
    (i, j): (usize, usize),
    end: (usize, usize),
) {
    for (r, sums_row) in sums.iter().enumerate().take(end.0 - i) {
        let width = NR.min(end.1 - j);
        for (c_ij, sum) in c[(i + r) * n + j..][..width].iter_mut().zip(sums_row) {
            *c_ij += sum;
        }
    }
}
