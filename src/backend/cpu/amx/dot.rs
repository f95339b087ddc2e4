//! A block's product with AVX512-BF16's `VDPBF16PS`, for processors that have it but no AMX
//! (AMD's Zen 4 and later, Intel's Cooper Lake): one instruction multiplies 16 pairs of BF16
//! by 16 pairs and adds each pair's two products to one of 16 FP32 sums, 32 multiply-adds
//! where an FP32 FMA does 16, at the same rate on Zen 4 (one a cycle). Not on a 5th-generation
//! Xeon (whose VM hid its AMX): one every two cycles against two FMAs a cycle, half FP32's
//! multiply-adds, and products 1.3–2.0× slower than FP32's ([`multiply_add_rate`] measures
//! the ratio; `mnist_gan --bf16` warns by it). It reads the operands packed as the tiles load
//! them: a tile row of the right operand, 16 columns of one pair of steps, is one register; a
//! row of the left operand's tile gives the pair it is multiplied by, broadcast to every lane.

use std::arch::x86_64::*;
use std::hint::black_box;
use std::time::Instant;

use super::pack::Packed;
use super::{TILE_K, TILE_ROWS};

/// Rows of the block whose sums stay in registers at once: 8 rows of 32 columns, 16 of the 32
/// vector registers, the two registers of right-operand pairs and the broadcast beside them.
const ROWS: usize = 8;
/// Pairs of steps in a chunk of 32.
const PAIRS: usize = TILE_K / 2;

/// `sums` = rows `row..row + 32` of the packed left operand times columns
/// `column..column + 32` of the packed right one, over all of `k`: [`super::tiles::Tiles`]'s
/// product, eight rows at a time.
///
/// # Safety
/// The processor must have AVX-512F and AVX512-BF16, and `sums` must point to 32 rows of 32
/// writable floats, `row_stride` floats apart.
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn multiply_block(
    (left, row): (&Packed, usize),
    (right, column): (&Packed, usize),
    sums: *mut f32,
    row_stride: usize,
) {
    let chunks = left.chunks();
    assert_eq!(chunks, right.chunks());
    // The right operand's two tiles of each chunk: columns 0–15 and 16–31 of the block; the
    // left one's: rows 0–15 and 16–31.
    let ([first, second], right_step) = right.block_tiles(column);
    let (groups, left_step) = left.block_tiles(row);
    let right_values = right.values();
    let left_values = left.values();
    for (group, top) in groups.into_iter().enumerate() {
        for eighth in 0..TILE_ROWS / ROWS {
            let mut block = [[_mm512_setzero_ps(); 2]; ROWS];
            for chunk in 0..chunks {
                // Rows 8·eighth.. of the left tile, each 32 steps (16 pairs) in a row; the
                // right tiles' 16 pair rows, 16 columns each.
                let rows = &left_values[top + chunk * left_step + eighth * ROWS * TILE_K..]
                    [..ROWS * TILE_K];
                // (Written out, not with `[T; 2]::map`: that was not inlined here, and each
                // call saved and restored all 16 sums.)
                let column_tile =
                    |tile: usize| &right_values[tile + chunk * right_step..][..PAIRS * 32];
                let (low_tile, high_tile) = (column_tile(first), column_tile(second));
                for pair in 0..PAIRS {
                    // SAFETY: 64 bytes of each right tile's pair row `pair`, inside the slices.
                    let (low, high) = unsafe {
                        (
                            as_pairs(_mm512_loadu_si512(low_tile[pair * 32..].as_ptr().cast())),
                            as_pairs(_mm512_loadu_si512(high_tile[pair * 32..].as_ptr().cast())),
                        )
                    };
                    for (r, sums) in block.iter_mut().enumerate() {
                        // Steps 2·pair and 2·pair + 1 of row r, the first in the low half.
                        let at = r * TILE_K + 2 * pair;
                        let pair_bits = u32::from(rows[at]) | u32::from(rows[at + 1]) << 16;
                        let broadcast = as_pairs(_mm512_set1_epi32(pair_bits as i32));
                        sums[0] = _mm512_dpbf16_ps(sums[0], low, broadcast);
                        sums[1] = _mm512_dpbf16_ps(sums[1], high, broadcast);
                    }
                }
            }
            for (r, [low, high]) in block.into_iter().enumerate() {
                let first_row = group * TILE_ROWS + eighth * ROWS;
                // SAFETY: row first_row + r < 32 of `sums`, 32 floats (the caller's contract).
                unsafe {
                    let out = sums.add((first_row + r) * row_stride);
                    _mm512_storeu_ps(out, low);
                    _mm512_storeu_ps(out.add(16), high);
                }
            }
        }
    }
}

/// 16 pairs of BF16, as `VDPBF16PS` takes them, from the same 64 bytes.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
fn as_pairs(bits: __m512i) -> __m512bh {
    // SAFETY: both vector types are 64 bytes of plain bits.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(bits) }
}

/// Independent chains of multiply-adds timed at once: enough to keep every unit that can run
/// them busy while each chain waits for its previous result (two FMA units × 4 cycles).
const CHAINS: usize = 16;

/// Multiply-adds a second of `VDPBF16PS` over those of FP32 FMAs (`VFMADD231PS`), both on 512
/// bits, on the core this runs on: each instruction repeated in [`CHAINS`] independent chains,
/// the two timed in turn, the fastest of several trials of each kept (a trial that another
/// thread interrupted is only slower). About 0.6 ms.
///
/// # Safety
/// The processor must have AVX-512F and AVX512-BF16.
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn multiply_add_rate() -> f64 {
    const ROUNDS: u32 = 4_000;
    const TRIALS: usize = 8;
    // Pairs of BF16 1.0 (0x3f80) for the one, FP32 1.0 for the other.
    let pairs_of_ones = as_pairs(_mm512_set1_epi32(0x3f80_3f80));
    let ones = _mm512_set1_ps(1.0);
    let (mut dot, mut fma) = (f64::INFINITY, f64::INFINITY);
    // The first trials also wake the vector units' upper halves, which run slower for some
    // microseconds after a pause; the fastest trial of each comes after that.
    for _ in 0..TRIALS {
        let dot_trial = seconds_per_round(ROUNDS, pairs_of_ones, |sum, pairs| {
            _mm512_dpbf16_ps(sum, pairs, pairs)
        });
        let fma_trial =
            seconds_per_round(ROUNDS, ones, |sum, ones| _mm512_fmadd_ps(ones, ones, sum));
        (dot, fma) = (dot.min(dot_trial), fma.min(fma_trial));
    }
    // One `VDPBF16PS` does 32 multiply-adds, one FMA 16.
    (32.0 / dot) / (16.0 / fma)
}

/// Seconds per round of [`CHAINS`] `multiply_add`s, each adding to its own sums.
#[target_feature(enable = "avx512f,avx512bf16")]
fn seconds_per_round<V: Copy>(
    rounds: u32,
    operand: V,
    multiply_add: impl Fn(__m512, V) -> __m512,
) -> f64 {
    // Opaque, so that nothing is computed ahead of the clock.
    let operand = black_box(operand);
    let mut sums = black_box([_mm512_setzero_ps(); CHAINS]);
    let start = Instant::now();
    for _ in 0..rounds {
        for sum in &mut sums {
            *sum = multiply_add(*sum, operand);
        }
    }
    black_box(sums);
    start.elapsed().as_secs_f64() / f64::from(rounds)
}
