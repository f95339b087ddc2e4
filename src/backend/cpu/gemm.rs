//! A cache-blocked, packed matrix multiply (the BLIS loop structure) with SIMD microkernels.
//!
//! `C[m, n] = epilogue(op(A)[m, k] · op(B)[k, n]  (+ bias[n] on every row))`
//!
//! Loops, outermost first:
//! 1. The output is cut into tiles of `MC` rows and `nc` columns, one rayon task each; `nc` is
//!    chosen so that even the GAN's 64-row products give every thread work. A tile owns its
//!    elements and sums each over `k` in a fixed order, so the result does not depend on the
//!    thread count or the tiling.
//! 2. `k` is cut into blocks of `KC`. For each block the task packs `A`'s slice into
//!    micro-panels of `MR` rows and `B`'s into micro-panels of `NR` columns, both `k`-major, so
//!    the microkernel reads memory strictly in order from L1/L2. Packing reads `A` and `B` in
//!    whichever layout they are stored: that is how `X·Wᵀ` and `dYᵀ·X` run without copying a
//!    transpose.
//! 3. The microkernel ([`Microkernel`]) keeps an `MR × NR` block of `C` in registers across the
//!    whole `KC` block, with AVX-512 or AVX2 FMAs where the processor has them.

use rayon::prelude::*;

use super::microkernel::{Microkernel, MAX_BLOCK};
use crate::backend::{GemmDims, Identity, UnaryKernel};

/// Rows per tile: a multiple of every kernel's `MR` (4, 6, 8).
const MC: usize = 96;
/// Steps of `k` per packed block: the `A` and `B` panels of one block stay in L1/L2.
const KC: usize = 256;
/// The widest tile: `KC × NC` floats of packed `B` (512 KiB) still fit in L2.
const MAX_NC: usize = 512;

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
    gemm_impl(Microkernel::selected(), a, b, bias, dims, epilogue)
}

/// [`gemm`] with a given microkernel (for tests and benchmarks; see [`Microkernel`]).
///
/// # Panics
/// If a buffer's length does not match `dims`, or the kernel is not supported here.
pub fn gemm_with_kernel(
    kernel: Microkernel,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    dims: GemmDims,
) -> Vec<f32> {
    gemm_impl(kernel, a, b, bias, dims, &Identity)
}

fn gemm_impl<E: UnaryKernel>(
    kernel: Microkernel,
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
    let nc = tile_width(kernel, m, n);
    let col_tiles = n.div_ceil(nc);
    let tiles: Vec<Vec<f32>> = (0..m.div_ceil(MC) * col_tiles)
        .into_par_iter()
        .map(|t| {
            let tile = Tile::new(t / col_tiles, t % col_tiles, nc, m, n);
            compute_tile(kernel, a, b, bias, dims, tile, epilogue)
        })
        .collect();
    for (t, values) in tiles.iter().enumerate() {
        let tile = Tile::new(t / col_tiles, t % col_tiles, nc, m, n);
        for (row, tile_row) in values.chunks_exact(tile.cols).enumerate() {
            let start = (tile.row0 + row) * n + tile.col0;
            c[start..start + tile.cols].copy_from_slice(tile_row);
        }
    }
    c
}

/// Columns per tile: enough tiles for two per thread when the rows alone do not provide them,
/// a multiple of the kernel's `NR`, at most [`MAX_NC`].
fn tile_width(kernel: Microkernel, m: usize, n: usize) -> usize {
    let nr = kernel.nr();
    let row_tiles = m.div_ceil(MC);
    let wanted_col_tiles = (2 * rayon::current_num_threads()).div_ceil(row_tiles);
    n.div_ceil(wanted_col_tiles)
        .next_multiple_of(nr)
        .clamp(nr, MAX_NC)
}

/// One `MC × nc` block of the output (smaller at the edges).
#[derive(Clone, Copy)]
struct Tile {
    row0: usize,
    rows: usize,
    col0: usize,
    cols: usize,
}

impl Tile {
    fn new(tile_row: usize, tile_col: usize, nc: usize, m: usize, n: usize) -> Self {
        let (row0, col0) = (tile_row * MC, tile_col * nc);
        Tile {
            row0,
            rows: MC.min(m - row0),
            col0,
            cols: nc.min(n - col0),
        }
    }
}

fn compute_tile<E: UnaryKernel>(
    kernel: Microkernel,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    dims: GemmDims,
    tile: Tile,
    epilogue: &E,
) -> Vec<f32> {
    let (mr, nr) = (kernel.mr(), kernel.nr());
    let mut out = vec![0.0f32; tile.rows * tile.cols];
    let row_panels = tile.rows.div_ceil(mr);
    let col_panels = tile.cols.div_ceil(nr);
    PACKED.with_borrow_mut(|(packed_a, packed_b)| {
        // Packing buffers live on with their thread: no allocation (and no fresh pages to
        // fault in) per call.
        packed_a.resize(row_panels * mr * KC, 0.0);
        packed_b.resize(col_panels * nr * KC, 0.0);
        multiply_tile(kernel, a, b, dims, tile, packed_a, packed_b, &mut out);
    });
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

thread_local! {
    /// Each worker thread's packing buffers for `A` and `B`.
    static PACKED: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// `out += op(A) · op(B)` over one tile, `KC` steps of `k` at a time.
#[allow(clippy::too_many_arguments)] // the loop nest's state, passed down once
fn multiply_tile(
    kernel: Microkernel,
    a: &[f32],
    b: &[f32],
    dims: GemmDims,
    tile: Tile,
    packed_a: &mut [f32],
    packed_b: &mut [f32],
    out: &mut [f32],
) {
    let (mr, nr) = (kernel.mr(), kernel.nr());
    let row_panels = tile.rows.div_ceil(mr);
    let col_panels = tile.cols.div_ceil(nr);
    // `op(A)`'s rows and `op(B)`'s columns are the packed panels' `x`; see [`Layout`].
    let a_layout = if dims.lhs_transposed {
        Layout::AcrossK { stride: dims.m }
    } else {
        Layout::AlongK { stride: dims.k }
    };
    let b_layout = if dims.rhs_transposed {
        Layout::AlongK { stride: dims.k }
    } else {
        Layout::AcrossK { stride: dims.n }
    };
    let mut block = [0.0f32; MAX_BLOCK];
    for k0 in (0..dims.k).step_by(KC) {
        let kc = KC.min(dims.k - k0);
        // packed_a[(panel · kc + p) · mr + i] = op(A)[row0 + panel · mr + i, k0 + p], and
        // packed_b[(panel · kc + p) · nr + j] = op(B)[k0 + p, col0 + panel · nr + j].
        pack(a, a_layout, (tile.row0, tile.rows), (k0, kc), mr, packed_a);
        pack(b, b_layout, (tile.col0, tile.cols), (k0, kc), nr, packed_b);
        for panel_i in 0..row_panels {
            let a_panel = &packed_a[panel_i * mr * kc..(panel_i + 1) * mr * kc];
            for panel_j in 0..col_panels {
                let b_panel = &packed_b[panel_j * nr * kc..(panel_j + 1) * nr * kc];
                kernel.run(kc, a_panel, b_panel, &mut block);
                // Add the register block into the tile, skipping the zero padding at the edges.
                let rows = mr.min(tile.rows - panel_i * mr);
                let cols = nr.min(tile.cols - panel_j * nr);
                for (i, block_row) in block.chunks_exact(nr).enumerate().take(rows) {
                    let start = (panel_i * mr + i) * tile.cols + panel_j * nr;
                    for (c, &v) in out[start..start + cols].iter_mut().zip(block_row) {
                        *c += v;
                    }
                }
            }
        }
    }
}

/// How an operand's element `(x, p)` — `x` a row of `A` or a column of `B`, `p` along `k` —
/// sits in memory.
#[derive(Clone, Copy)]
enum Layout {
    /// At `x · stride + p`: each `x` is a contiguous run along `k`.
    AlongK { stride: usize },
    /// At `p · stride + x`: each step of `k` is a contiguous run of `x`.
    AcrossK { stride: usize },
}

/// Packs `x` in `x0..x0 + count` × `p` in `k0..k0 + kc` into `width`-wide micro-panels,
/// `packed[(panel · kc + p) · width + t] = src(x0 + panel · width + t, k0 + p)`, zero past
/// `count`. Each layout is read along its contiguous direction.
fn pack(
    src: &[f32],
    layout: Layout,
    (x0, count): (usize, usize),
    (k0, kc): (usize, usize),
    width: usize,
    packed: &mut [f32],
) {
    for panel in 0..count.div_ceil(width) {
        let dst = &mut packed[panel * width * kc..(panel + 1) * width * kc];
        let first = x0 + panel * width;
        let valid = width.min(count - panel * width);
        match layout {
            Layout::AlongK { stride } => {
                for t in 0..valid {
                    let run = &src[(first + t) * stride + k0..][..kc];
                    for (p, &v) in run.iter().enumerate() {
                        dst[p * width + t] = v;
                    }
                }
            }
            Layout::AcrossK { stride } => {
                for (p, step) in dst.chunks_exact_mut(width).enumerate() {
                    let start = (k0 + p) * stride + first;
                    step[..valid].copy_from_slice(&src[start..start + valid]);
                }
            }
        }
        if valid < width {
            for step in dst.chunks_exact_mut(width) {
                step[valid..].fill(0.0);
            }
        }
    }
}
