//! A cache-blocked, packed matrix multiply (the BLIS loop structure) with SIMD microkernels.
//!
//! `C[m, n] = epilogue(op(A)[m, k] · op(B)[k, n]  (+ bias[n] on every row))`
//!
//! Packing first: all of `op(A)` is packed once into micro-panels of `MR` rows, `k`-major, so
//! the microkernel reads memory strictly in order. Packing reads each operand in whichever
//! layout it is stored: that is how `X·Wᵀ` and `dYᵀ·X` run without copying a transpose.
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
//! Small batches of the forward `X·Wᵀ` take another route (see `direct`); with BF16 allowed
//! on a processor with AMX, every product goes to the tile units instead (`amx`).

use super::microkernel::{APanel, BlockOut, Microkernel, MAX_BLOCK};
use super::product::{finish_tile, run_chunk_tasks, run_tasks, Layout, OutputMatrix, Tile};
use crate::backend::{GemmDims, Identity, UnaryKernel};

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
/// more than it saves (a 64 × 100 × 256 layer is 1.6 M).
const MIN_PARALLEL_MACS: usize = 1 << 22;

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

/// The most rows of `C` for which a product runs as `Cᵀ = op(B)ᵀ·op(A)ᵀ`, the large operand
/// read in place (see `direct`).
const MAX_DIRECT_ROWS: usize = 128;
/// The least `k` for which it does: `direct` writes its blocks of C transposed, element by
/// element, which a long enough sum over `k` must pay for (at k ≤ 512 packing W costs less).
const MIN_DIRECT_K: usize = 768;

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
            return;
        }
        let (mr, nr) = (kernel.mr(), kernel.nr());
        if dims.rhs_transposed && m <= MAX_DIRECT_ROWS && n >= m && k >= MIN_DIRECT_K {
            direct::multiply(kernel, a, b, bias, dims, epilogue, c, parallel);
            return;
        }
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
        super::pool::give_back(packed_a);
        if let Some(packed_b) = packed_b {
            super::pool::give_back(packed_b);
        }
    });
}

/// Packs all of an operand (`count` rows of `A` or columns of `B`, the full `k`) into
/// `width`-wide micro-panels, a few panels per task, from a buffer of the pool.
fn pack_all(
    src: &[f32],
    layout: Layout,
    count: usize,
    k: usize,
    width: usize,
    parallel: bool,
) -> Vec<f32> {
    const MAX_PANELS_PER_TASK: usize = 4;
    let panels = count.div_ceil(width);
    // Up to four panels a task, fewer where that would leave a thread without work: `direct`
    // packs 64 rows of X, two panels.
    let panels_per_task = panels
        .div_ceil(rayon::current_num_threads())
        .clamp(1, MAX_PANELS_PER_TASK);
    // Every element is written by `pack`, padding included.
    let mut packed = super::pool::take(panels * width * k);
    if k > 0 {
        run_chunk_tasks(
            &mut packed,
            panels_per_task * width * k,
            parallel,
            |task, chunk| {
                let x0 = task * panels_per_task * width;
                let len = (panels_per_task * width).min(count - x0);
                pack(src, layout, (x0, len), (0, k), width, chunk);
            },
        );
    }
    packed
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
            packed_b.resize(tile.cols.div_ceil(nr) * nr * KC.min(k), 0.0);
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
            #[cfg(target_arch = "x86_64")]
            Layout::AlongK { stride } if valid == width && gather::fits(width, stride) => {
                let start = first * stride + k0;
                // The gathers read src[start + t·stride + p] for t < width, p < kc: the
                // panel's rows, inside `src` as for the scalar path below.
                assert!(
                    start + (width - 1) * stride + kc <= src.len(),
                    "pack: short operand"
                );
                // SAFETY: the CPU supports AVX-512F (`fits`), the reads are inside `src`
                // (asserted above), and `dst` holds `width · kc` floats.
                unsafe { gather::pack_panel(src.as_ptr().add(start), stride, width, kc, dst) };
            }
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

/// Packing a panel whose rows run along `k` is a transpose: element `(t, p)` goes to
/// `dst[p · width + t]`. Scalar, that is a strided load and a store per element; an AVX-512
/// gather fetches 16 of them (16 rows at one `p`, or 8 rows at two) in one instruction.
#[cfg(target_arch = "x86_64")]
mod gather {
    use std::arch::x86_64::*;

    /// Whether [`pack_panel`] handles panels of `width` rows `stride` apart on this CPU.
    pub fn fits(width: usize, stride: usize) -> bool {
        (width == 8 || width.is_multiple_of(16))
            && 16 * stride < i32::MAX as usize
            && is_x86_feature_detected!("avx512f")
    }

    /// `dst[p · width + t] = src[t · stride + p]` for `t < width`, `p < kc`.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and [`fits`] must hold; every `src[t · stride + p]` must
    /// be readable, and `dst` must hold `width · kc` floats.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn pack_panel(
        src: *const f32,
        stride: usize,
        width: usize,
        kc: usize,
        dst: &mut [f32],
    ) {
        assert!(dst.len() >= width * kc, "pack: short panel");
        let dst = dst.as_mut_ptr();
        // Element offsets of the 16 lanes of a gather, from a lane's (row, step).
        let lanes = |lane: fn(i32) -> (i32, i32)| {
            let offsets: [i32; 16] = std::array::from_fn(|l| {
                let (row, step) = lane(l as i32);
                row * stride as i32 + step
            });
            // SAFETY: an unaligned load of the 64 bytes of `offsets`.
            unsafe { _mm512_loadu_si512(offsets.as_ptr().cast()) }
        };
        if width == 8 {
            // Lane l: row l % 8 at step p + l / 8 — two steps of eight rows per gather.
            let rows = lanes(|l| (l % 8, l / 8));
            let mut p = 0;
            while p + 2 <= kc {
                // SAFETY: rows 0..8 at steps p and p + 1, readable (the caller's contract);
                // dst[8p..8p + 16] is inside `dst`.
                unsafe {
                    let v = _mm512_i32gather_ps::<4>(rows, src.add(p));
                    _mm512_storeu_ps(dst.add(8 * p), v);
                }
                p += 2;
            }
            if p < kc {
                for t in 0..8 {
                    // SAFETY: as above, the last step alone.
                    unsafe { *dst.add(8 * p + t) = *src.add(t * stride + p) };
                }
            }
            return;
        }
        // Lane l: row l of a group of 16 rows, at one step.
        let rows = lanes(|l| (l, 0));
        for p in 0..kc {
            for group in 0..width / 16 {
                // SAFETY: rows 16·group.. at step p, readable (the caller's contract);
                // dst[p·width + 16·group..][..16] is inside `dst`.
                unsafe {
                    let base = src.add(16 * group * stride + p);
                    let v = _mm512_i32gather_ps::<4>(rows, base);
                    _mm512_storeu_ps(dst.add(p * width + 16 * group), v);
                }
            }
        }
    }
}

/// `C = X·Wᵀ (+ bias)` for a small batch `X` (at most `MAX_DIRECT_ROWS` rows; `X` may
/// be stored transposed) and a weight `W: [n, k]` — a linear layer's forward. It is computed
/// as `Cᵀ = W·Xᵀ`: W becomes the left operand, whose elements the microkernel broadcasts, and
/// a broadcast reads W's rows where they lie. The usual way, W is the right operand and must
/// be packed by transposing it, which at m = 64 costs a quarter as much as the
/// multiplication. Only `Xᵀ`, at most 128 rows, is packed. (Reading a `[k, n]` W in place for `dY·W`
/// was tried too: the stride between steps of k makes it slower than packing.)
mod direct {
    use super::{pack_all, run_tasks, Layout, OutputMatrix, MAX_BLOCK};
    use crate::backend::cpu::microkernel::{APanel, BlockOut, Microkernel};
    use crate::backend::cpu::simd;
    use crate::backend::{GemmDims, UnaryKernel};

    /// Rows of W per task: enough tasks for every thread, whole blocks of `MR`.
    fn rows_per_task(kernel: Microkernel, n: usize) -> usize {
        n.div_ceil(2 * rayon::current_num_threads())
            .next_multiple_of(kernel.mr())
    }

    #[allow(clippy::too_many_arguments)] // gemm_impl's operands, and whether to split
    pub fn multiply<E: UnaryKernel>(
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
        super::super::pool::give_back(packed_x);
    }
}
