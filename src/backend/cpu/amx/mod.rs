//! Matrix products in BF16 on Intel AMX, or with AVX512-BF16 where there is no AMX, when
//! asked for ([`set_allow_bf16`]; [`bf16_support`] says which).
//!
//! AMX (Advanced Matrix Extensions: Xeon "Sapphire Rapids" and later) gives each core eight
//! tile registers of 16 rows × 64 bytes and one instruction, `TDPBF16PS`, that adds the
//! product of a 16 × 32 BF16 tile and a 32 × 16 one to a 16 × 16 FP32 tile: 8,192
//! multiply-adds in one instruction. On the development VM one core runs them at up to 470
//! G multiply-adds/s with its operands in L1, 4.4 times the FP32 microkernel's peak
//! (`benches/RESULTS.md`). The price is the operands' precision: BF16 keeps 8 of FP32's 24
//! significant bits, so each product is accurate to about 4e-3 relative; the sums stay FP32.
//! That is what PyTorch does on the CPU under `torch.autocast("cpu", dtype=torch.bfloat16)`
//! or `torch.set_float32_matmul_precision("medium")`. Off by default, as there.
//!
//! The product, `C = op(A) · op(B)`, in blocks of 32 × 32:
//! 1. The tiles want `k` contiguous in both operands ([`pack`]): a tile of the left
//!    operand holds 16 rows of 32 steps, one of the right operand 16 columns of 32 steps,
//!    as pairs of steps side by side. Each tile is packed whole, 1 KiB in a row. Rounding
//!    an operand whose runs go along `k` that way is a streaming conversion ([`convert`]:
//!    32 values an instruction); any other layout is a transpose. So the product is
//!    computed as `C` or as `Cᵀ = op(B)ᵀ · op(A)ᵀ`, whichever transposes less: a linear
//!    layer's forward `X·Wᵀ` as `Cᵀ = W·Xᵀ`, which converts `W` as it lies.
//! 2. The smaller operand is packed once for all tasks; the larger one a block (32 rows or
//!    columns) at a time, by the task that then multiplies it by every block of the other,
//!    while it is in that core's cache.
//! 3. A block's four accumulator tiles (2 × 2 of 16 × 16) stay in registers across all of
//!    `k`, fed by two tiles of each operand per 32 steps ([`tiles`]); then they are stored
//!    into `C` (or transposed into it), and the bias and activation applied. Without AMX,
//!    `VDPBF16PS` computes the block from the same packed tiles, eight rows of 32 sums in
//!    vector registers at a time ([`dot`]: 32 multiply-adds an instruction, twice an FP32
//!    FMA's). That is faster than FP32 where the instruction issues as often as an FMA (AMD
//!    Zen 4), and slower where it issues a quarter as often (a 5th-generation Xeon):
//!    [`avx512_bf16_rate`] measures which.
//!
//! `k` is padded with zeros to a multiple of 32, rows and columns to multiples of 32, so every
//! tile is whole. Subnormal values (below 2⁻¹²⁶) count as zero, in the operands and in the
//! results, as `TDPBF16PS` and `VDPBF16PS` treat them. Each block sums over `k` in one fixed
//! order, whichever thread runs it: the results do not depend on the number of threads.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::{GemmDims, UnaryKernel};

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod convert;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod dot;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod pack;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod tiles;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
use pack::{Operand, Packed, Side};

static ALLOW_BF16: AtomicBool = AtomicBool::new(false);

/// Lets CPU matrix products round their operands to BF16 and multiply them on Intel AMX tiles
/// or with AVX512-BF16's dot products (sums stay FP32), where the processor has either
/// ([`bf16_support`]); elsewhere products stay FP32. Off by default: products are then
/// accurate to about 4e-3 of the terms' magnitude instead of 1e-7, which trains this GAN as
/// well but is not FP32. Process-wide, like
/// [`set_allow_tf32`](crate::backend::cuda::set_allow_tf32) on a GPU.
pub fn set_allow_bf16(allow: bool) {
    ALLOW_BF16.store(allow, Ordering::Relaxed);
}

/// Turns BF16 products on ([`set_allow_bf16`]) where this processor has units for them, and
/// says which; elsewhere leaves the products in FP32 and says why ([`bf16_support`]).
pub fn enable_bf16() -> Result<Bf16Units, &'static str> {
    let units = bf16_support()?;
    set_allow_bf16(true);
    Ok(units)
}

/// Whether [`set_allow_bf16`] is on.
pub fn bf16_allowed() -> bool {
    ALLOW_BF16.load(Ordering::Relaxed)
}

/// Whether products run in BF16 now: allowed, and supported here.
pub(super) fn in_use() -> bool {
    bf16_allowed() && bf16_support().is_ok()
}

/// What multiplies BF16 operands on this processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Units {
    /// Intel AMX's tile units (`TDPBF16PS`, 8,192 multiply-adds an instruction).
    Amx,
    /// AVX512-BF16's dot products (`VDPBF16PS`, 32 multiply-adds an instruction), where there
    /// is no AMX: AMD Zen 4 and later, Intel Cooper Lake, a Xeon whose VM hides AMX. Faster
    /// than FP32 only where the instruction runs more than half as often as an FMA
    /// ([`Bf16Units::faster_than_fp32`]).
    Avx512Bf16,
}

impl Bf16Units {
    /// The units' name as [`BF16_UNITS_ENV`] takes it: `amx`, `avx512bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Bf16Units::Amx => "amx",
            Bf16Units::Avx512Bf16 => "avx512bf16",
        }
    }

    /// The units' name, and for the dot products how their multiply-adds compare with FP32's
    /// here ([`avx512_bf16_rate`]): `AMX`, `AVX512-BF16 at 2.0× FP32's multiply-add rate`.
    pub fn description(self) -> String {
        match self {
            Bf16Units::Amx => "AMX".into(),
            Bf16Units::Avx512Bf16 => match avx512_bf16_rate() {
                Some(rate) => format!("AVX512-BF16 at {rate:.1}× FP32's multiply-add rate"),
                None => "AVX512-BF16".into(),
            },
        }
    }

    /// Whether these units can make products faster than FP32 here: AMX can; the dot products
    /// only where they do more multiply-adds a second than FP32 FMAs ([`avx512_bf16_rate`]).
    pub fn faster_than_fp32(self) -> bool {
        match self {
            Bf16Units::Amx => true,
            Bf16Units::Avx512Bf16 => avx512_bf16_rate().is_some_and(|rate| rate > 1.0),
        }
    }
}

/// The environment variable that picks the BF16 units on a processor with both:
/// `FERROGRAD_BF16_UNITS=avx512bf16` runs the dot-product path on an AMX machine (to test or
/// time it there; CI runs the BF16 tests that way too); `amx` is the default where AMX works.
/// Read once per process.
pub const BF16_UNITS_ENV: &str = "FERROGRAD_BF16_UNITS";

/// The units BF16 products run on here ([`set_allow_bf16`]), or why there are none: AMX where
/// the processor and system have it ([`amx_support`]), else AVX512-BF16's dot products, unless
/// [`BF16_UNITS_ENV`] asks for the dot products. Decided once per process.
pub fn bf16_support() -> Result<Bf16Units, &'static str> {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        static SUPPORT: std::sync::OnceLock<Result<Bf16Units, &'static str>> =
            std::sync::OnceLock::new();
        *SUPPORT.get_or_init(|| {
            let available = if amx_support().is_ok() {
                Ok(Bf16Units::Amx)
            } else if convert::Converter::detect().is_some() {
                Ok(Bf16Units::Avx512Bf16)
            } else {
                Err(
                    "this processor has neither AMX-BF16 nor AVX512-BF16 (Intel Xeon 4th \
                     generation and AMD Zen 4 and later have them)",
                )
            };
            let Ok(requested) = std::env::var(BF16_UNITS_ENV) else {
                return available;
            };
            let named = [Bf16Units::Amx, Bf16Units::Avx512Bf16]
                .into_iter()
                .find(|units| units.name() == requested);
            match (named, available) {
                // Every processor with BF16 units has AVX512-BF16 (`amx_support` checks it).
                (Some(Bf16Units::Avx512Bf16), Ok(_)) => Ok(Bf16Units::Avx512Bf16),
                (Some(Bf16Units::Amx), Ok(Bf16Units::Amx)) | (_, Err(_)) => available,
                (_, Ok(units)) => {
                    eprintln!(
                        "ferrograd: {BF16_UNITS_ENV}={requested} is not supported here; \
                         using {}",
                        units.name()
                    );
                    available
                }
            }
        })
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        Err("BF16 products run on x86-64 Linux only")
    }
}

/// Multiply-adds a second of AVX512-BF16's `VDPBF16PS` over those of FP32 FMAs on this
/// processor, measured once per process (about 0.6 ms); `None` without AVX512-BF16. It says
/// whether [`Bf16Units::Avx512Bf16`] can beat FP32 here: above 1 it can; at 1 or below, BF16
/// products are slower than FP32 ones, as they also round and pack their operands. AMD Zen 4:
/// 2 (one instruction of each a cycle, 32 multiply-adds against 16; a C loop's reading, on
/// 2026-12-05). A 5th-generation Xeon whose VM hides AMX (2026-12-06): 0.5 (one `VDPBF16PS`
/// every two cycles, two FMAs a cycle), and products 1.3–2.0× slower than FP32
/// (`benches/RESULTS.md`).
pub fn avx512_bf16_rate() -> Option<f64> {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        static RATE: std::sync::OnceLock<Option<f64>> = std::sync::OnceLock::new();
        *RATE.get_or_init(|| {
            // SAFETY: `Converter::detect` found AVX512-BF16 (and AVX-512F with it).
            convert::Converter::detect().map(|_| unsafe { dot::multiply_add_rate() })
        })
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        None
    }
}

/// `Ok` if this processor and system run AMX-BF16, else why not. Checked once: the processor
/// must report AMX-TILE, AMX-BF16 and AVX512-BF16, and Linux (5.16 or later) must grant the
/// process the tile registers' state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`).
pub fn amx_support() -> Result<(), &'static str> {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        static SUPPORT: std::sync::OnceLock<Result<(), &'static str>> = std::sync::OnceLock::new();
        *SUPPORT.get_or_init(|| {
            if convert::Converter::detect().is_none() {
                // Not seen in practice: every processor with AMX-BF16 has AVX512-BF16.
                return Err("this processor has no AVX512-BF16, which the BF16 packing uses");
            }
            tiles::request()
        })
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        Err("AMX is used on x86-64 Linux only")
    }
}

/// Rows of a tile, and `k` steps per tile (32 BF16 fill a tile row's 64 bytes).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const TILE_ROWS: usize = 16;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const TILE_K: usize = 32;
/// Rows and columns of the product per block: 2 × 2 accumulator tiles.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const BLOCK: usize = 2 * TILE_ROWS;

/// `C = epilogue(op(A) · op(B) (+ bias))` with BF16 operands and FP32 sums, every element of
/// `c` written (see the module's documentation). Only when [`in_use`].
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(super) fn multiply<E: UnaryKernel>(
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    dims: GemmDims,
    epilogue: &E,
    c: &mut [f32],
    parallel: bool,
) {
    use super::product::{run_tasks, Layout, OutputMatrix};

    let GemmDims { m, k, n, .. } = dims;
    // op(A)'s rows and op(B)'s columns, each a run of k (as the FP32 GEMM's packing sees them).
    let rows_of_a = Operand {
        src: a,
        layout: Layout::of_lhs(dims),
        count: m,
    };
    let columns_of_b = Operand {
        src: b,
        layout: Layout::of_rhs(dims),
        count: n,
    };
    // Cᵀ = op(B)ᵀ · op(A)ᵀ takes the same operands the other way round. Packing the left
    // operand is a conversion when its rows run along k, the right one's when its steps of k
    // do; the other layouts are transposes. A linear layer's forward, X·Wᵀ, would transpose
    // all of W: Cᵀ = W·Xᵀ transposes only X and C instead.
    let transposes = |left: Operand, right: Operand| {
        let left_cost = matches!(left.layout, Layout::AcrossK { .. }) as usize * left.count;
        let right_cost = matches!(right.layout, Layout::AlongK { .. }) as usize * right.count;
        (left_cost + right_cost) * k
    };
    let transposed =
        transposes(columns_of_b, rows_of_a) + m * n < transposes(rows_of_a, columns_of_b);
    let (left, right) = if transposed {
        (columns_of_b, rows_of_a)
    } else {
        (rows_of_a, columns_of_b)
    };
    let product = Product {
        left,
        right,
        k,
        transposed,
        out: OutputMatrix::new(c, n),
        bias,
        epilogue,
    };
    // The smaller operand is packed once, for every task; the larger one a block (32 rows or
    // columns) at a time, by the task that multiplies it, just before: still in that core's
    // cache when its tiles are loaded.
    let streamed_side = if left.count >= right.count {
        Side::Left
    } else {
        Side::Right
    };
    let shared = match streamed_side {
        Side::Left => Packed::new(Side::Right, right, k, parallel),
        Side::Right => Packed::new(Side::Left, left, k, parallel),
    };
    let streamed_blocks = product.operand(streamed_side).count.div_ceil(BLOCK);
    // A few tasks per thread, each configuring the tiles once for its run of blocks.
    let per_task = streamed_blocks.div_ceil(2 * rayon::current_num_threads());
    run_tasks(streamed_blocks.div_ceil(per_task), parallel, |task| {
        let blocks = task * per_task..((task + 1) * per_task).min(streamed_blocks);
        product.run(streamed_side, blocks, &shared);
    });
}

/// A product as its tasks run it: `left · right`, which is `C`, or `Cᵀ` if `transposed`.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
struct Product<'a, E> {
    left: Operand<'a>,
    right: Operand<'a>,
    k: usize,
    transposed: bool,
    out: super::product::OutputMatrix,
    bias: Option<&'a [f32]>,
    epilogue: &'a E,
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
impl<E: UnaryKernel> Product<'_, E> {
    fn operand(&self, side: Side) -> Operand<'_> {
        match side {
            Side::Left => self.left,
            Side::Right => self.right,
        }
    }

    /// One task: blocks `streamed_blocks` of the `streamed` side, each packed here, times
    /// every block of the other side (`shared`, packed by the caller).
    fn run(&self, streamed: Side, streamed_blocks: std::ops::Range<usize>, shared: &Packed) {
        let shared_blocks = shared.count / BLOCK;
        let mut units = Units::for_this_task();
        let mut sums = tiles::Block::default();
        // One block of the streamed side at a time, packed over the last.
        let mut packed: Option<Packed> = None;
        for streamed_block in streamed_blocks {
            let operand = self.operand(streamed).block(streamed_block);
            let packed = match packed.as_mut() {
                None => packed.insert(Packed::new(streamed, operand, self.k, false)),
                Some(last) => {
                    last.repack(operand, false);
                    last
                }
            };
            for shared_block in 0..shared_blocks {
                let (s0, t0) = (streamed_block * BLOCK, shared_block * BLOCK);
                // Each side's packed operand and where the block starts in it; where the block
                // starts in the product.
                let (left, right, x0, y0) = match streamed {
                    Side::Left => ((&*packed, 0), (shared, t0), s0, t0),
                    Side::Right => ((shared, t0), (&*packed, 0), t0, s0),
                };
                self.block(&mut units, &mut sums, left, right, (x0, y0));
            }
        }
    }

    /// Block `(x0, y0)` of `left · right` on `units`, then into `C` (transposed if the
    /// product is `Cᵀ`), with the bias and activation applied.
    fn block(
        &self,
        units: &mut Units,
        sums: &mut tiles::Block,
        left: (&Packed, usize),
        right: (&Packed, usize),
        (x0, y0): (usize, usize),
    ) {
        use super::product::{finish_tile, Tile};
        let (xs, ys) = (
            BLOCK.min(self.left.count - x0),
            BLOCK.min(self.right.count - y0),
        );
        let (out, bias, epilogue) = (self.out, self.bias, self.epilogue);
        if !self.transposed && xs == BLOCK && ys == BLOCK {
            // A whole block of C: the sums are stored straight into it.
            // SAFETY: rows x0.. and columns y0.. of C, 32 of each, inside C and written by
            // this task only.
            unsafe {
                let first = out.element(x0, y0);
                units.multiply_block(left, right, first, out.ldc());
                finish_tile(out, Tile::at(x0, xs, y0, ys), bias, epilogue);
            }
            return;
        }
        // SAFETY: `sums` holds 32 rows of 32.
        unsafe { units.multiply_block(left, right, sums.0.as_mut_ptr().cast(), BLOCK) };
        let tile = if self.transposed {
            // sums[x][y] is C[y0 + y, x0 + x].
            for y in 0..ys {
                // SAFETY: a row of this block of C, written by this task only.
                let row = unsafe { out.row(y0 + y, x0, xs) };
                for (x, value) in row.iter_mut().enumerate() {
                    *value = sums.0[x][y];
                }
            }
            Tile::at(y0, ys, x0, xs)
        } else {
            for (x, sums) in sums.0.iter().take(xs).enumerate() {
                // SAFETY: as above.
                let row = unsafe { out.row(x0 + x, y0, ys) };
                row.copy_from_slice(&sums[..ys]);
            }
            Tile::at(x0, xs, y0, ys)
        };
        // SAFETY: as above, the block's part of C.
        unsafe { finish_tile(out, tile, bias, epilogue) };
    }
}

/// What one task multiplies its blocks on ([`bf16_support`]).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
enum Units {
    /// The tile registers, configured for this task.
    Tiles(tiles::Tiles),
    /// `VDPBF16PS` on the vector registers.
    Dot,
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
impl Units {
    /// The units of [`bf16_support`], made ready for this thread (which must be supported:
    /// [`multiply`] runs only when [`in_use`]).
    fn for_this_task() -> Units {
        match bf16_support() {
            // SAFETY: AMX is supported and granted (`bf16_support` returned `Amx`).
            Ok(Bf16Units::Amx) => Units::Tiles(unsafe { tiles::Tiles::configure() }),
            Ok(Bf16Units::Avx512Bf16) => Units::Dot,
            Err(why) => unreachable!("BF16 products where they are not supported: {why}"),
        }
    }

    /// [`tiles::Tiles::multiply_block`] on these units.
    ///
    /// # Safety
    /// `sums` must point to 32 rows of 32 writable floats, `row_stride` floats apart.
    unsafe fn multiply_block(
        &mut self,
        left: (&Packed, usize),
        right: (&Packed, usize),
        sums: *mut f32,
        row_stride: usize,
    ) {
        match self {
            // SAFETY: the caller's contract.
            Units::Tiles(tiles) => unsafe { tiles.multiply_block(left, right, sums, row_stride) },
            // SAFETY: `Dot` is made only where the processor has AVX512-BF16 (and with it
            // AVX-512F: `Converter::detect`); the rest is the caller's contract.
            Units::Dot => unsafe { dot::multiply_block(left, right, sums, row_stride) },
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub(super) fn multiply<E: UnaryKernel>(
    _: &[f32],
    _: &[f32],
    _: Option<&[f32]>,
    _: GemmDims,
    _: &E,
    _: &mut [f32],
    _: bool,
) {
    unreachable!("AMX products run only where amx_support() is Ok");
}
