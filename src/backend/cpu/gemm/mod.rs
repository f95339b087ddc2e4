//! A cache-blocked, packed matrix multiply (the BLIS loop structure) with SIMD microkernels.
//!
//! `C[m, n] = epilogue(op(A)[m, k] · op(B)[k, n]  (+ bias[n] on every row))`
//!
//! Packing first: all of `op(A)` is packed once into micro-panels of `MR` rows, `k`-major, so
//! the microkernel reads memory strictly in order; the buffers start on a cache line, so that
//! its 64-byte loads from a `B` panel never straddle two lines (which costs two loads).
//! Packing reads each operand in whichever layout it is stored: that is how `X·Wᵀ` and
//! `dYᵀ·X` run without copying a transpose.
//! `op(B)` goes into micro-panels of `NR` columns: all at once too when several rows of tiles
//! share it, else by each tile just before use (see [`BPanels`]).
//!
//! Then the loops, outermost first:
//! 1. The output is cut into tiles of `MC` rows (or all its rows, up to 128) and `nc` columns,
//!    one rayon task each; `nc` is chosen so that even the GAN's 64-row products give every
//!    thread work. A tile owns its elements and sums each over `k` in a fixed order, so the
//!    result does not depend on the thread count or the tiling.
//! 2. `k` is cut into blocks of `KC`; within a block, each `B` micro-panel (`KC × NR`) stays
//!    in L1 while the tile's `A` micro-panels stream past it from L2.
//! 3. The microkernel ([`Microkernel`]) keeps an `MR × NR` block of `C` in registers across the
//!    whole `KC` block, with AVX-512 or AVX2 FMAs where the processor has them. In the first
//!    block of `k`, which writes C, the next block's lines of C are prefetched meanwhile.
//!
//! Packing lives in `pack.rs`. Small batches of the forward `X·Wᵀ` take another route
//! (`direct.rs`); with BF16 allowed on a processor with AMX, every product goes to the tile
//! units instead (`amx`).

mod direct;
mod pack;

use super::microkernel::{APanel, BlockOut, Microkernel, MAX_BLOCK};
use super::product::{finish_tile, run_tasks, Layout, OutputMatrix, Tile};
use crate::backend::{GemmDims, Identity, UnaryKernel};
use pack::{pack, pack_all};

/// Rows per tile of a product taller than [`MAX_SINGLE_TILE_ROWS`]: a multiple of every
/// kernel's `MR` (4, 6, 8).
const MC: usize = 96;
/// The most rows a product keeps in one row of tiles, each tile packing its own slice of `B`.
/// The discriminator's step multiplies 128 rows (the real and the fake images together): cut
/// at `MC`, into tiles of 96 and 32 rows sharing a `B` packed once, its products took 1.4–1.6×
/// as long inside a training step (benches/RESULTS.md, seventeenth session).
const MAX_SINGLE_TILE_ROWS: usize = 128;
/// Steps of `k` per packed block: the `A` and `B` panels of one block stay in L1/L2.
const KC: usize = 256;
/// The widest tile: `KC × NC` floats of packed `B` (512 KiB) still fit in L2.
const MAX_NC: usize = 512;
/// Products smaller than this (multiply-adds) run on the calling thread: waking another costs
/// more than it saves (a 64 × 100 × 256 layer is 1.6 M). Under Miri every product is shared
/// out, so that it checks the threads' writes into one output on shapes small enough to
/// interpret (README, "Undefined behaviour").
const MIN_PARALLEL_MACS: usize = if cfg!(miri) { 0 } else { 1 << 22 };

/// Runs `f` on the rayon pool if `parallel`: called from outside the pool, a product then
/// moves into it once, rather than handing each of its parallel loops over and sleeping until
/// each is done (in a VM, a thread wake-up costs tens of microseconds).
fn on_pool_if(parallel: bool, f: impl FnOnce() + Send) {
    if parallel {
        rayon::scope(|_| f());
    } else {
        f();
    }
}

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
    let mut c = super::pool::take(dims.m * dims.n);
    gemm_impl(Microkernel::selected(), a, b, bias, dims, epilogue, &mut c);
    c
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
    let mut c = super::pool::take(dims.m * dims.n);
    gemm_into(kernel, a, b, bias, dims, &mut c);
    c
}

/// [`gemm_with_kernel`] into a buffer of the caller's: what a benchmark times beside another
/// library that writes into a buffer it was given, with no allocation in either.
///
/// # Panics
/// If a buffer's length does not match `dims`, or the kernel is not supported here.
pub fn gemm_into(
    kernel: Microkernel,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    dims: GemmDims,
    c: &mut [f32],
) {
    gemm_impl(kernel, a, b, bias, dims, &Identity, c);
}

/// The product's way, chosen by its shape: BF16 on AMX when asked for, `direct` (`X·Wᵀ`
/// reading W in place) where it suits, else both operands packed ([`multiply_packed`]).
fn gemm_impl<E: UnaryKernel>(
    kernel: Microkernel,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    dims: GemmDims,
    epilogue: &E,
    c: &mut [f32],
) {
    let parallel = dims.m * dims.k * dims.n >= MIN_PARALLEL_MACS;
    on_pool_if(parallel, || {
        assert_lengths(a, b, bias, dims, c);
        let GemmDims { m, k, n, .. } = dims;
        // Every element is written: by the first block of k, or, for k = 0, right here.
        if k == 0 {
            c.fill(0.0);
        }
        if m == 0 || n == 0 {
            return;
        }
        // BF16 on AMX when asked for (`amx`); a product over k = 0 stays here.
        if k > 0 && super::amx::in_use() {
            super::amx::multiply(a, b, bias, dims, epilogue, c, parallel);
        } else if direct::suits(dims) {
            direct::multiply(kernel, a, b, bias, dims, epilogue, c, parallel);
        } else {
            multiply_packed(kernel, a, b, bias, dims, epilogue, c, parallel);
        }
    });
}

/// Panics, naming the operand, if a buffer's length does not match `dims`.
fn assert_lengths(a: &[f32], b: &[f32], bias: Option<&[f32]>, dims: GemmDims, c: &[f32]) {
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
    assert_eq!(
        c.len(),
        m * n,
        "gemm: output has {} elements, dims {dims:?}",
        c.len()
    );
    if let Some(bias) = bias {
        assert_eq!(
            bias.len(),
            n,
            "gemm: bias has {} elements, n = {n}",
            bias.len()
        );
    }
}

/// The general path: op(A) packed whole, op(B) packed whole or tile by tile, and C cut into
/// tiles that the pool's threads multiply and finish (bias, epilogue) one at a time.
#[allow(clippy::too_many_arguments)] // the product's seven, and whether to use the pool
fn multiply_packed<E: UnaryKernel>(
    kernel: Microkernel,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    dims: GemmDims,
    epilogue: &E,
    c: &mut [f32],
    parallel: bool,
) {
    let GemmDims { m, k, n, .. } = dims;
    let (mr, nr) = (kernel.mr(), kernel.nr());
    // All of op(A) and all of op(B), each packed once and shared by every tile:
    // packed_a[(panel · k + p) · MR + i] = op(A)[panel · MR + i, p],
    // packed_b[(panel · k + p) · NR + j] = op(B)[p, panel · NR + j], zero-padded.
    let a_layout = Layout::of_lhs(dims);
    // `op(B)`'s columns are the packed panels' `x`; see [`Layout`].
    let b_layout = Layout::of_rhs(dims);
    let packed_a = pack_all(a, a_layout, m, k, mr, parallel);
    let mc = tile_height(kernel, m);
    let nc = tile_width(kernel, m.div_ceil(mc), n);
    let col_tiles = n.div_ceil(nc);
    // With one row of tiles, each element of op(B) feeds one tile only: the tile packs its
    // slice just before using it, while it is hot in L2. With several, B is packed once and
    // shared (each tile packing its own would repeat the work once per row of tiles).
    let packed_b = (m > mc).then(|| pack_all(b, b_layout, n, k, nr, parallel));
    let b_panels = match &packed_b {
        Some(packed) => BPanels::Shared(packed),
        None => BPanels::PerTile {
            src: b,
            layout: b_layout,
        },
    };
    let out = OutputMatrix::new(c, n);
    let operands = Operands {
        a: &packed_a,
        b: b_panels,
        k,
    };
    run_tasks(m.div_ceil(mc) * col_tiles, parallel, |t| {
        let tile = tile(t / col_tiles, t % col_tiles, (mc, nc), m, n);
        // SAFETY: the tiles partition C, so this task alone touches `tile`'s elements.
        unsafe {
            multiply_tile(kernel, operands, tile, out);
            finish_tile(out, tile, bias, epilogue);
        }
    });
}

/// A product's operands as the tiles read them.
#[derive(Clone, Copy)]
struct Operands<'a> {
    /// All of op(A), packed by [`pack_all`].
    a: &'a [f32],
    b: BPanels<'a>,
    k: usize,
}

/// Where the tiles find op(B)'s micro-panels.
#[derive(Clone, Copy)]
enum BPanels<'a> {
    /// All of op(B), packed by [`pack_all`].
    Shared(&'a [f32]),
    /// op(B) as stored: each tile packs its columns, one block of `k` at a time.
    PerTile { src: &'a [f32], layout: Layout },
}

impl Operands<'_> {
    /// Steps `k0..k0 + kc` of the `A` micro-panel that holds row `row` (a multiple of `mr`).
    fn a_panel(&self, mr: usize, row: usize, (k0, kc): (usize, usize)) -> &[f32] {
        &self.a[(row / mr * self.k + k0) * mr..][..kc * mr]
    }
}

thread_local! {
    /// Each worker thread's buffer for the `B` panels of [`BPanels::PerTile`] tiles.
    static PACKED_B: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Rows per tile: all of them up to [`MAX_SINGLE_TILE_ROWS`] (rounded up to whole
/// micro-panels), else [`MC`].
fn tile_height(kernel: Microkernel, m: usize) -> usize {
    if m <= MAX_SINGLE_TILE_ROWS {
        m.next_multiple_of(kernel.mr())
    } else {
        MC
    }
}

/// Columns per tile: enough tiles for two per thread when the rows alone do not provide them,
/// a multiple of the kernel's `NR` (tiles start on a `B` micro-panel), at most [`MAX_NC`].
fn tile_width(kernel: Microkernel, row_tiles: usize, n: usize) -> usize {
    let nr = kernel.nr();
    let wanted_col_tiles = (2 * rayon::current_num_threads()).div_ceil(row_tiles);
    n.div_ceil(wanted_col_tiles)
        .next_multiple_of(nr)
        .clamp(nr, MAX_NC - MAX_NC % nr)
}

/// One `mc × nc` tile of the output (smaller at the edges).
fn tile(tile_row: usize, tile_col: usize, (mc, nc): (usize, usize), m: usize, n: usize) -> Tile {
    let (row0, col0) = (tile_row * mc, tile_col * nc);
    Tile::at(row0, mc.min(m - row0), col0, nc.min(n - col0))
}

/// `C = op(A) · op(B)` over one tile, `KC` steps of `k` at a time: the first block overwrites
/// the tile, the others add to it. Within a block, each `B` micro-panel (`KC × NR`) stays in
/// L1 while the tile's `A` micro-panels stream past it from L2 (the BLIS order).
///
/// # Safety
/// `tile` must be inside C and touched by no other thread during the call.
unsafe fn multiply_tile(
    kernel: Microkernel,
    operands: Operands<'_>,
    tile: Tile,
    out: OutputMatrix,
) {
    let nr = kernel.nr();
    let k = operands.k;
    match operands.b {
        BPanels::Shared(packed_b) => {
            for k0 in (0..k).step_by(KC) {
                let steps = (k0, KC.min(k - k0));
                // Column panel `panel` of the whole of op(B), from step k0.
                let b_panel = |col: usize| &packed_b[(col / nr * k + k0) * nr..][..steps.1 * nr];
                // SAFETY: the caller's contract.
                unsafe { multiply_block(kernel, operands, steps, b_panel, tile, out) };
            }
        }
        BPanels::PerTile { src, layout } => PACKED_B.with_borrow_mut(|packed_b| {
            // The buffer lives on with its thread: no allocation (and no fresh pages to fault
            // in) per call.
            let len = tile.cols.div_ceil(nr) * nr * KC.min(k);
            let packed_b = super::pool::line_aligned(packed_b, len);
            for k0 in (0..k).step_by(KC) {
                let steps = (k0, KC.min(k - k0));
                // packed_b[(panel · kc + p) · nr + j] = op(B)[k0 + p, col0 + panel · nr + j].
                pack(src, layout, (tile.col0, tile.cols), steps, nr, packed_b);
                let b_panel = |col: usize| {
                    let panel = (col - tile.col0) / nr;
                    &packed_b[panel * steps.1 * nr..][..steps.1 * nr]
                };
                // SAFETY: the caller's contract.
                unsafe { multiply_block(kernel, operands, steps, b_panel, tile, out) };
            }
        }),
    }
}

/// One block of `k` (`steps`: first step and count) of a tile's product, `b_panel(col)` being
/// the `B` micro-panel of the columns from `col`.
///
/// # Safety
/// As [`multiply_tile`].
unsafe fn multiply_block<'b>(
    kernel: Microkernel,
    operands: Operands<'_>,
    steps: (usize, usize),
    b_panel: impl Fn(usize) -> &'b [f32],
    tile: Tile,
    out: OutputMatrix,
) {
    let (mr, nr) = (kernel.mr(), kernel.nr());
    let accumulate = steps.0 > 0;
    let mut edge = [0.0f32; MAX_BLOCK];
    for col in (tile.col0..tile.col0 + tile.cols).step_by(nr) {
        let b_panel = b_panel(col);
        let cols = nr.min(tile.col0 + tile.cols - col);
        // The tile's rows start on a panel boundary (row 0, or a multiple of MC, itself a
        // multiple of every MR).
        for row in (tile.row0..tile.row0 + tile.rows).step_by(mr) {
            let a_panel = APanel::Packed(operands.a_panel(mr, row, steps));
            let rows = mr.min(tile.row0 + tile.rows - row);
            if !accumulate {
                // C's lines for the next block, on their way in while this one is computed:
                // the first block of k writes C, for a weight gradient megabytes of a buffer
                // last touched a step ago and out of the caches, and a store that misses
                // stalls the microkernel until its line is in.
                if let Some(next) = next_block(tile, (row, col), (mr, nr)) {
                    out.prefetch(next);
                }
            }
            if rows == mr && cols == nr {
                // SAFETY: a whole block inside the tile (the caller's contract).
                let c = unsafe { out.element(row, col) };
                let block = BlockOut {
                    c,
                    ldc: out.ldc(),
                    accumulate,
                };
                // SAFETY: as above.
                unsafe { kernel.run(steps.1, a_panel, b_panel, block) };
                continue;
            }
            // An edge block: computed aside, its valid part written into the tile.
            let block = BlockOut {
                c: edge.as_mut_ptr(),
                ldc: nr,
                accumulate: false,
            };
            // SAFETY: `edge` holds the MR × NR block with row stride NR.
            unsafe { kernel.run(steps.1, a_panel, b_panel, block) };
            for (i, block_row) in edge.chunks_exact(nr).take(rows).enumerate() {
                // SAFETY: row `row + i`, columns `col..col + cols` are inside the tile.
                let c = unsafe { out.row(row + i, col, cols) };
                for (c, &v) in c.iter_mut().zip(block_row) {
                    *c = if accumulate { *c + v } else { v };
                }
            }
        }
    }
}

/// The block after the one at `(row, col)` in [`multiply_block`]'s order (down the tile's
/// rows, then the next column of blocks), if the tile has one.
fn next_block(tile: Tile, (row, col): (usize, usize), (mr, nr): (usize, usize)) -> Option<Tile> {
    let (row, col) = if row + mr < tile.row0 + tile.rows {
        (row + mr, col)
    } else if col + nr < tile.col0 + tile.cols {
        (tile.row0, col + nr)
    } else {
        return None;
    };
    Some(Tile::at(
        row,
        mr.min(tile.row0 + tile.rows - row),
        col,
        nr.min(tile.col0 + tile.cols - col),
    ))
}
