//! Launch geometry, shared by every runtime so the emulator runs what the GPU would.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::backend::GemmDims;

/// Grid and block sizes of a launch (CUDA's `dim3`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // x, y, z: as in CUDA
pub struct Dim3 {
    pub x: u32,
    pub y: u32,
    pub z: u32,
}

impl Dim3 {
    /// `x` along the first dimension, 1 along the others.
    pub const fn x(x: u32) -> Dim3 {
        Dim3 { x, y: 1, z: 1 }
    }
}

/// A kernel launch's shape: blocks in the grid, threads in a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    /// Blocks in the grid.
    pub grid: Dim3,
    /// Threads in a block.
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

    /// `gemm.cu`'s `gemm`: a 64 × 64 tile of C per block of 256 threads (4 × 4 results
    /// each), `splits` blocks along k.
    pub fn gemm(m: usize, n: usize, splits: usize) -> LaunchConfig {
        LaunchConfig::square_tiles(64, 256, m, n, splits)
    }

    /// `gemm.cu`'s `gemm_small`: `gemm` in 32 × 32 tiles of 128 threads (2 × 4 results each).
    pub fn gemm_small(m: usize, n: usize, splits: usize) -> LaunchConfig {
        LaunchConfig::square_tiles(32, 128, m, n, splits)
    }

    /// A `tile` × `tile` tile of C per block of `threads`, `splits` blocks along k.
    fn square_tiles(tile: usize, threads: u32, m: usize, n: usize, splits: usize) -> LaunchConfig {
        LaunchConfig {
            grid: Dim3 {
                x: n.div_ceil(tile).max(1) as u32,
                y: m.div_ceil(tile).max(1) as u32,
                z: splits as u32,
            },
            block: Dim3::x(threads),
        }
    }

    /// `gemm.cu`'s `gemm_pair`: the blocks of two `gemm` launches in one grid.
    pub fn gemm_pair(first: LaunchConfig, second: LaunchConfig) -> LaunchConfig {
        let blocks = |config: LaunchConfig| config.grid.x * config.grid.y * config.grid.z;
        LaunchConfig {
            grid: Dim3::x(blocks(first) + blocks(second)),
            block: first.block,
        }
    }

    /// `gemm.cu`'s `gemm_tf32`: `gemm`'s tiles, 128 threads (4 warps driving tensor cores).
    pub fn gemm_tf32(m: usize, n: usize, splits: usize) -> LaunchConfig {
        LaunchConfig {
            block: Dim3::x(128),
            ..LaunchConfig::gemm(m, n, splits)
        }
    }

    /// `gemm.cu`'s `gemv`: a warp per row of an `[m, k] · [k, 1]` product, 8 per block.
    pub fn gemv(m: usize) -> LaunchConfig {
        LaunchConfig {
            grid: Dim3::x(m.div_ceil(8).max(1) as u32),
            block: Dim3::x(256),
        }
    }

    /// `gemm.cu`'s `gemm_large`: a 128 × 128 tile of C per block of 256 threads.
    pub fn gemm_large(m: usize, n: usize) -> LaunchConfig {
        LaunchConfig {
            grid: Dim3 {
                x: n.div_ceil(128).max(1) as u32,
                y: m.div_ceil(128).max(1) as u32,
                z: 1,
            },
            block: Dim3::x(256),
        }
    }
}

/// Which of `gemm.cu`'s kernels computes an `[m, k] · [k, n]` product, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmPlan {
    /// `gemm_large`: enough 128 × 128 tiles to give every SM of a large GPU one.
    Large,
    /// `gemm` with 64 × 64 tiles; with `splits > 1`, k is cut into `splits` chunks of
    /// `k_chunk`, whose partial products the last block of each tile adds.
    #[allow(missing_docs)] // splits, k_chunk: in the variant's doc
    Tiled { splits: usize, k_chunk: usize },
}

/// 128 × 128 tiles it takes to occupy a large GPU (an H100 has 132 SMs) with `gemm_large`.
const LARGE_TILES_TO_FILL: usize = 128;
/// The blocks split-K aims for by default: about one per SM of an H100.
pub const DEFAULT_SPLIT_K_BLOCKS: usize = 128;
/// The most tiles a split-K product has (the plan splits only products of fewer tiles than
/// the blocks it aims for, at most this many): the length of each device's buffer of tile
/// counters (`gemm.cu`'s `split_k_last_arrival`).
pub const SPLIT_K_MAX_TILES: usize = 1024;
/// The least k one split-K block sums by default.
pub const DEFAULT_MIN_SPLIT_K: usize = 128;

static SPLIT_K_BLOCKS: AtomicUsize = AtomicUsize::new(DEFAULT_SPLIT_K_BLOCKS);
static MIN_SPLIT_K: AtomicUsize = AtomicUsize::new(DEFAULT_MIN_SPLIT_K);
/// The splits every tiled product is forced to (0: none forced; see [`set_split_k_override`]).
static SPLITS_OVERRIDE: AtomicUsize = AtomicUsize::new(0);

/// Sets the least k one split-K block sums (at least 16; default [`DEFAULT_MIN_SPLIT_K`]):
/// a tuning knob for benchmarks (`gan_bench --split-k-min-k`). Smaller cuts a long k into
/// more, shorter chains of k-slices, each slice a wait for memory at batch 64.
pub fn set_split_k_min_k(k: usize) {
    MIN_SPLIT_K.store(k.max(16), Ordering::Relaxed);
}

/// Sets how many blocks split-K cuts a small product into, at least (clamped to
/// `1..=SPLIT_K_MAX_TILES`; default [`DEFAULT_SPLIT_K_BLOCKS`]). A tuning knob for benchmarks
/// (`gan_bench --split-k-blocks`): more blocks per SM hide more latency but add partial sums.
/// Process-wide; a captured graph keeps the plans of its capture.
pub fn set_split_k_blocks(blocks: usize) {
    SPLIT_K_BLOCKS.store(blocks.clamp(1, SPLIT_K_MAX_TILES), Ordering::Relaxed);
}

/// Makes every product that `gemm` tiles split k into `splits` chunks (fewer where chunks of
/// whole 16-deep slices cannot make that many), whatever the plan would choose; `None` gives
/// the choice back to the plan. A tuning knob for benchmarks (`gan_bench --gemm-sweep` times
/// each product of the GAN's step at every split). Process-wide; a captured graph keeps the
/// plans of its capture.
pub fn set_split_k_override(splits: Option<usize>) {
    SPLITS_OVERRIDE.store(splits.unwrap_or(0), Ordering::Relaxed);
}

/// Whether an `[m, n]` result's 32 × 32 tiles each have a split-K counter, which `gemm_small`
/// needs to run it (else it keeps its 64 × 64 tiles).
pub fn small_tiles_fit(m: usize, n: usize) -> bool {
    let grid = LaunchConfig::gemm_small(m, n, 1).grid;
    (grid.x * grid.y) as usize <= SPLIT_K_MAX_TILES
}

/// The 64 × 64 tiles of an `[m, n]` result.
fn tiles(m: usize, n: usize) -> usize {
    m.div_ceil(64) * n.div_ceil(64)
}

/// What one product shape and layout has been given of its own, over the process-wide plan:
/// a split ([`set_split_k_for`]) and 32 × 32 tiles or not ([`set_small_tiles_for`]). The
/// autotuner (`tuning.rs`) sets both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ProductSettings {
    splits: Option<usize>,
    small_tiles: Option<bool>,
}

/// Products given settings of their own.
static PRODUCT_SETTINGS: Mutex<Vec<(GemmDims, ProductSettings)>> = Mutex::new(Vec::new());

/// Changes the settings of the products `dims` with `change`, forgetting them once they are all
/// `None` again.
fn change_settings(dims: GemmDims, change: impl FnOnce(&mut ProductSettings)) {
    let mut table = PRODUCT_SETTINGS
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut settings = settings_of(&table, dims);
    change(&mut settings);
    table.retain(|(product, _)| *product != dims);
    if settings != ProductSettings::default() {
        table.push((dims, settings));
    }
}

fn settings_of(table: &[(GemmDims, ProductSettings)], dims: GemmDims) -> ProductSettings {
    table
        .iter()
        .find(|(product, _)| *product == dims)
        .map_or_else(ProductSettings::default, |&(_, settings)| settings)
}

fn product_settings(dims: GemmDims) -> ProductSettings {
    let table = PRODUCT_SETTINGS
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    settings_of(&table, dims)
}

/// Makes the products of shape and layout `dims` that `gemm` tiles split k into `splits`
/// chunks (as [`set_split_k_override`] does for all of them); `None` forgets it. A tuning
/// knob (`gan_bench --gemm-sweep` runs the iteration again with each product at its best split;
/// the autotuner sets it). Process-wide; a captured graph keeps the plans of its capture.
pub fn set_split_k_for(dims: GemmDims, splits: Option<usize>) {
    change_settings(dims, |settings| settings.splits = splits);
}

/// Makes the products of shape and layout `dims` that `gemm` tiles run in 32 × 32 tiles, or
/// not, whatever `set_small_tiles` says for the others (the same bits either way); `None`
/// forgets it. Set by the autotuner. Process-wide; a captured graph keeps the plans of its
/// capture.
pub fn set_small_tiles_for(dims: GemmDims, small: Option<bool>) {
    change_settings(dims, |settings| settings.small_tiles = small);
}

/// Whether the products `dims` have been given 32 × 32 tiles or not ([`set_small_tiles_for`]).
pub fn small_tiles_for(dims: GemmDims) -> Option<bool> {
    product_settings(dims).small_tiles
}

/// Forgets every product's own split and tiles ([`set_split_k_for`], [`set_small_tiles_for`]):
/// the plan's defaults again.
pub fn clear_product_settings() {
    PRODUCT_SETTINGS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
}

/// The blocks split-K aims for (see [`set_split_k_blocks`]).
pub fn split_k_blocks() -> usize {
    SPLIT_K_BLOCKS.load(Ordering::Relaxed)
}

impl GemmPlan {
    /// The plan for the product `dims`: [`GemmPlan::choose`], or the split
    /// [`set_split_k_for`] gave it.
    pub fn for_product(dims: GemmDims) -> GemmPlan {
        let GemmDims { m, k, n, .. } = dims;
        match (GemmPlan::choose(m, k, n), product_settings(dims).splits) {
            (GemmPlan::Tiled { .. }, Some(splits)) if tiles(m, n) <= SPLIT_K_MAX_TILES => {
                GemmPlan::with_splits(k, splits)
            }
            (plan, _) => plan,
        }
    }

    /// The plan for `[m, k] · [k, n]` with split-K aiming for [`split_k_blocks`] blocks, or
    /// split as [`set_split_k_override`] forces.
    pub fn choose(m: usize, k: usize, n: usize) -> GemmPlan {
        let plan = GemmPlan::choose_for(m, k, n, split_k_blocks());
        let forced = SPLITS_OVERRIDE.load(Ordering::Relaxed);
        match plan {
            GemmPlan::Tiled { .. } if forced > 0 && tiles(m, n) <= SPLIT_K_MAX_TILES => {
                GemmPlan::with_splits(k, forced)
            }
            plan => plan,
        }
    }

    /// The plan for `[m, k] · [k, n]`, split-K aiming for `target_blocks` (at most
    /// `SPLIT_K_MAX_TILES`) blocks.
    pub fn choose_for(m: usize, k: usize, n: usize, target_blocks: usize) -> GemmPlan {
        let large_tiles = m.div_ceil(128) * n.div_ceil(128);
        if large_tiles >= LARGE_TILES_TO_FILL {
            return GemmPlan::Large;
        }
        // Few tiles and a long k (a batch-64 layer): cut k until the blocks fill the GPU.
        let target_blocks = target_blocks.clamp(1, SPLIT_K_MAX_TILES);
        let min_k = MIN_SPLIT_K.load(Ordering::Relaxed);
        GemmPlan::with_splits(k, target_blocks.div_ceil(tiles(m, n)).min(k / min_k))
    }

    /// `gemm` with k cut into at most `splits` chunks (at least 1), each a whole number of
    /// 16-deep k-slices so that only the last one is ragged (so fewer chunks where rounding
    /// them up to whole slices covers k sooner).
    pub fn with_splits(k: usize, splits: usize) -> GemmPlan {
        let k_chunk = k.div_ceil(splits.max(1)).next_multiple_of(16).max(16);
        GemmPlan::Tiled {
            splits: k.div_ceil(k_chunk).max(1),
            k_chunk,
        }
    }
}
