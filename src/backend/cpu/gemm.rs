//! A cache-blocked, packed matrix multiply in portable Rust (the BLIS loop structure).
//!
//! `C[m, n] = epilogue(op(A)[m, k] · op(B)[k, n]  (+ bias[n] on every row))`
//!
//! Loops, outermost first:
//! 1. The output is cut into `MC × NC` tiles, one rayon task each. A tile owns its elements and
//!    sums each over `k` in a fixed order, so the result does not depend on the thread count.
//! 2. `k` is cut into blocks of `KC`. For each block the task packs `A`'s `MC × KC` slice into
//!    micro-panels of `MR` rows and `B`'s `KC × NC` slice into micro-panels of `NR` columns, both
//!    `k`-major, so the inner loop reads memory strictly in order from L1/L2. Packing reads `A`
//!    and `B` in whichever layout they are stored: that is how `X·Wᵀ` and `dYᵀ·X` run without
//!    copying a transpose.
//! 3. The microkernel keeps an `MR × NR` block of `C` in registers across the whole `KC` block:
//!    per step of `k` it loads `MR + NR` values and does `MR · NR` multiply-adds.
//!
//! The explicit-SIMD microkernels come in the CPU speed issue; this one is written so the
//! compiler can vectorise it for the baseline target.

use rayon::prelude::*;

use crate::backend::{GemmDims, Identity, UnaryKernel};

const MR: usize = 4;
const NR: usize = 8;
const MC: usize = 64;
const NC: usize = 256;
const KC: usize = 256;

/// `C = op(A) · op(B) (+ bias)`, row-major. `a` is `[m, k]` (or `[k, m]` if
/// `dims.lhs_transposed`), `b` is `[k, n]` (or `[n, k]` if `dims.rhs_transposed`), `bias` is `[n]`.
///
/// # Panics
/// If a buffer's length does not match `dims`.
pub fn gemm(a: &[f32], b: &[f32], bias: Option<&[f32]>, dims: GemmDims) -> Vec<f32> {
    gemm_with_epilogue(a, b, bias, dims, &Identity)
}

/// [`gemm`], then `epilogue` on every element while its tile is still in cache (a linear
/// layer's activation, fused).
///
/// # Panics
/// If a buffer's length does not match `dims`.
pub fn gemm_with_epilogue<E: UnaryKernel>(
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    dims: GemmDims,
    epilogue: &E,
) -> Vec<f32> {
    let GemmDims { m, k, n, .. } = dims;
    assert_eq!(
        a.len(),
        m * k,
        "gemm: lhs has {} elements, dims {dims:?}",
        a.len()
    );
    assert_eq!(
        b.len(),
        k * n,
        "gemm: rhs has {} elements, dims {dims:?}",
        b.len()
    );
    if let Some(bias) = bias {
        assert_eq!(
            bias.len(),
            n,
            "gemm: bias has {} elements, n = {n}",
            bias.len()
        );
    }
    let mut c = vec![0.0; m * n];
    if m == 0 || n == 0 {
        return c;
    }
    let col_tiles = n.div_ceil(NC);
    let tiles: Vec<Vec<f32>> = (0..m.div_ceil(MC) * col_tiles)
        .into_par_iter()
        .map(|t| {
            let tile = Tile::new(t / col_tiles, t % col_tiles, m, n);
            compute_tile(a, b, bias, dims, tile, epilogue)
        })
        .collect();
    for (t, values) in tiles.iter().enumerate() {
        let tile = Tile::new(t / col_tiles, t % col_tiles, m, n);
        for (row, tile_row) in values.chunks_exact(tile.cols).enumerate() {
            let start = (tile.row0 + row) * n + tile.col0;
            c[start..start + tile.cols].copy_from_slice(tile_row);
        }
    }
    c
}

/// One `MC × NC` block of the output (smaller at the edges).
#[derive(Clone, Copy)]
struct Tile {
    row0: usize,
    rows: usize,
    col0: usize,
    cols: usize,
}

impl Tile {
    fn new(tile_row: usize, tile_col: usize, m: usize, n: usize) -> Self {
        let (row0, col0) = (tile_row * MC, tile_col * NC);
        Tile {
            row0,
            rows: MC.min(m - row0),
            col0,
            cols: NC.min(n - col0),
        }
    }
}

fn compute_tile<E: UnaryKernel>(
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    dims: GemmDims,
    tile: Tile,
    epilogue: &E,
) -> Vec<f32> {
    let mut out = vec![0.0f32; tile.rows * tile.cols];
    let row_panels = tile.rows.div_ceil(MR);
    let col_panels = tile.cols.div_ceil(NR);
    let mut packed_a = vec![0.0f32; row_panels * MR * KC];
    let mut packed_b = vec![0.0f32; col_panels * NR * KC];
    for k0 in (0..dims.k).step_by(KC) {
        let kc = KC.min(dims.k - k0);
        pack_a(a, dims, tile, k0, kc, &mut packed_a);
        pack_b(b, dims, tile, k0, kc, &mut packed_b);
        for panel_i in 0..row_panels {
            let a_panel = &packed_a[panel_i * MR * kc..(panel_i + 1) * MR * kc];
            for panel_j in 0..col_panels {
                let b_panel = &packed_b[panel_j * NR * kc..(panel_j + 1) * NR * kc];
                let block = microkernel(a_panel, b_panel);
                // Add the register block into the tile, skipping the zero padding at the edges.
                let rows = MR.min(tile.rows - panel_i * MR);
                let cols = NR.min(tile.cols - panel_j * NR);
                for (i, block_row) in block.iter().enumerate().take(rows) {
                    let start = (panel_i * MR + i) * tile.cols + panel_j * NR;
                    for (c, &v) in out[start..start + cols].iter_mut().zip(block_row) {
                        *c += v;
                    }
                }
            }
        }
    }
    if let Some(bias) = bias {
        let bias = &bias[tile.col0..tile.col0 + tile.cols];
        for row in out.chunks_exact_mut(tile.cols) {
            for (c, &b) in row.iter_mut().zip(bias) {
                *c += b;
            }
        }
    }
    if E::NAME != Identity::NAME {
        out.iter_mut().for_each(|c| *c = epilogue.apply(*c));
    }
    out
}

/// `Σ_p a[p, i] · b[p, j]` over one `k` block, for an `MR × NR` block, in registers.
#[inline(always)]
fn microkernel(a_panel: &[f32], b_panel: &[f32]) -> [[f32; NR]; MR] {
    let mut acc = [[0.0f32; NR]; MR];
    for (a, b) in a_panel.chunks_exact(MR).zip(b_panel.chunks_exact(NR)) {
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] += a[i] * b[j];
            }
        }
    }
    acc
}

/// Packs rows `tile.row0..` × columns `k0..k0 + kc` of `op(A)` as `MR`-row micro-panels:
/// `packed[(panel · kc + p) · MR + i] = op(A)[row0 + panel · MR + i, k0 + p]`, zero past the edge.
fn pack_a(a: &[f32], dims: GemmDims, tile: Tile, k0: usize, kc: usize, packed: &mut [f32]) {
    let GemmDims { m, k, .. } = dims;
    for panel in 0..tile.rows.div_ceil(MR) {
        let dst = &mut packed[panel * MR * kc..(panel + 1) * MR * kc];
        for i in 0..MR {
            let row = tile.row0 + panel * MR + i;
            if row >= tile.row0 + tile.rows {
                (0..kc).for_each(|p| dst[p * MR + i] = 0.0);
            } else if dims.lhs_transposed {
                (0..kc).for_each(|p| dst[p * MR + i] = a[(k0 + p) * m + row]);
            } else {
                let src = &a[row * k + k0..row * k + k0 + kc];
                src.iter()
                    .enumerate()
                    .for_each(|(p, &v)| dst[p * MR + i] = v);
            }
        }
    }
}

/// Packs rows `k0..k0 + kc` × columns `tile.col0..` of `op(B)` as `NR`-column micro-panels:
/// `packed[(panel · kc + p) · NR + j] = op(B)[k0 + p, col0 + panel · NR + j]`, zero past the edge.
fn pack_b(b: &[f32], dims: GemmDims, tile: Tile, k0: usize, kc: usize, packed: &mut [f32]) {
    let GemmDims { k, n, .. } = dims;
    for panel in 0..tile.cols.div_ceil(NR) {
        let dst = &mut packed[panel * NR * kc..(panel + 1) * NR * kc];
        for j in 0..NR {
            let col = tile.col0 + panel * NR + j;
            if col >= tile.col0 + tile.cols {
                (0..kc).for_each(|p| dst[p * NR + j] = 0.0);
            } else if dims.rhs_transposed {
                let src = &b[col * k + k0..col * k + k0 + kc];
                src.iter()
                    .enumerate()
                    .for_each(|(p, &v)| dst[p * NR + j] = v);
            } else {
                (0..kc).for_each(|p| dst[p * NR + j] = b[(k0 + p) * n + col]);
            }
        }
    }
}
