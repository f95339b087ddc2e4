//! The operands in BF16, laid out as the tiles load them.

use super::convert::Converter;
use super::{BLOCK, TILE_K, TILE_ROWS};
use crate::backend::cpu::pool::LineAligned;
use crate::backend::cpu::product::{run_chunk_tasks, Layout};
use crate::math::to_bf16;

/// One operand as the tiles see it: `count` rows of the left operand or columns of the
/// right one, each `k` long, stored as `layout` says.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub src: &'a [f32],
    pub layout: Layout,
    pub count: usize,
}

impl<'a> Operand<'a> {
    /// Rows (or columns) `32 · block..` of this operand, up to 32 of them.
    pub fn block(&self, block: usize) -> Operand<'a> {
        let x0 = block * BLOCK;
        let offset = match self.layout {
            Layout::AlongK { stride } => x0 * stride,
            Layout::AcrossK { .. } => x0,
        };
        Operand {
            src: &self.src[offset..],
            layout: self.layout,
            count: BLOCK.min(self.count - x0),
        }
    }
}

/// The product's two operands, as the tiles see them.
#[derive(Clone, Copy)]
pub enum Side {
    Left,
    Right,
}

/// An operand in BF16, as the tiles load it, in a buffer of the pool that starts on a cache
/// line (two BF16 a float; back to the pool when dropped), zero past the operand: `k` padded
/// to whole tiles, rows or columns to whole blocks.
///
/// Each tile the product loads — a *group* of 16 rows (or columns) over one *chunk* of 32
/// steps of `k` — is stored whole, 1 KiB in a row, so a tile load reads 16 consecutive cache
/// lines of one page. Rows of the operand as it lies would put a tile's 16 lines `2 · k` (or
/// `4 · columns`) bytes apart: at k = 1024, in 2 of the L1 cache's 64 sets, where the 32 lines
/// of a block's two tiles evict each other (a set holds 12). Packed whole, 2048³ runs 2.2×
/// as fast, the GAN's forward products up to 1.2× (`benches/RESULTS.md`).
/// - A left operand's tile holds 16 rows of 32 steps; a group's tiles follow each other,
///   chunk after chunk.
/// - A right operand's tile holds 16 pair rows of 16 columns, pair `(q, y)` holding steps
///   `2q` and `2q + 1` of column `y`: the layout `TDPBF16PS` takes its right operand in
///   (Intel's "VNNI"). A chunk's tiles follow each other, group after group.
///
/// Either way the part one packing task writes — a group on the left, a chunk on the right —
/// is one run of the buffer.
pub struct Packed {
    buffer: LineAligned,
    convert: Converter,
    side: Side,
    k: usize,
    /// Rows of a left operand or columns of a right one, padded to whole blocks.
    pub count: usize,
}

/// BF16 values in a tile (16 rows of 64 bytes).
const TILE_VALUES: usize = TILE_ROWS * TILE_K;

impl Packed {
    /// `op` (each of its rows or columns `k` long) packed as the `side` operand.
    pub fn new(side: Side, op: Operand<'_>, k: usize, parallel: bool) -> Self {
        let count = op.count.next_multiple_of(BLOCK);
        let mut packed = Packed {
            buffer: LineAligned::take(count * k.next_multiple_of(TILE_K) / 2),
            convert: Converter::detect().expect("BF16 products where bf16_support() is Ok"),
            side,
            k,
            count,
        };
        packed.repack(op, parallel);
        packed
    }

    /// Packs `op` over this operand, which must have been made for as many padded rows or
    /// columns, and the same `k`.
    pub fn repack(&mut self, op: Operand<'_>, parallel: bool) {
        assert_eq!(self.count, op.count.next_multiple_of(BLOCK));
        let (k, convert) = (self.k, self.convert);
        // A task per group of 16 rows on the left; per chunk of 32 steps on the right.
        match self.side {
            Side::Left => {
                let group_values = self.chunks() * TILE_VALUES; // a group's tiles
                let tiles: &mut [u16] = bytemuck::cast_slice_mut(&mut self.buffer);
                run_chunk_tasks(tiles, group_values, parallel, |group, tiles| {
                    pack_left(convert, op, k, group * TILE_ROWS, tiles)
                });
            }
            Side::Right => {
                let tiles: &mut [u32] = bytemuck::cast_slice_mut(&mut self.buffer);
                run_chunk_tasks(tiles, TILE_ROWS * self.count, parallel, |chunk, tiles| {
                    pack_right(convert, op, k, chunk * TILE_K, tiles)
                });
            }
        }
    }

    /// Chunks of 32 steps of `k` (the last padded with zeros): the tiles one group spans.
    pub fn chunks(&self) -> usize {
        self.k.div_ceil(TILE_K)
    }

    /// For the block of 32 rows (or columns) from `first`: where each of its two groups'
    /// tiles of chunk 0 start in [`Packed::values`], and how far apart a group's successive
    /// chunks are, in BF16 values. Both groups are inside the operand (asserted).
    pub fn block_tiles(&self, first: usize) -> ([usize; 2], usize) {
        let group = first / TILE_ROWS;
        let (one, step) = self.tiles_of(group);
        let (two, _) = self.tiles_of(group + 1);
        ([one, two], step)
    }

    /// Where tile (`group`, chunk 0) starts in [`Packed::values`], and how far apart a
    /// group's successive chunks are, in BF16 values.
    fn tiles_of(&self, group: usize) -> (usize, usize) {
        assert!(group < self.count / TILE_ROWS);
        match self.side {
            Side::Left => (group * self.chunks() * TILE_VALUES, TILE_VALUES),
            Side::Right => (group * TILE_VALUES, self.count / TILE_ROWS * TILE_VALUES),
        }
    }

    /// The packed values, tile after tile.
    pub fn values(&self) -> &[u16] {
        bytemuck::cast_slice(&self.buffer)
    }
}

/// Group `x0 / 16` of the left operand — rows `x0..x0 + 16` — in BF16 into `tiles` (its tiles,
/// chunk after chunk), zero past the operand.
fn pack_left(convert: Converter, op: Operand<'_>, k: usize, x0: usize, tiles: &mut [u16]) {
    let valid = TILE_ROWS.min(op.count.saturating_sub(x0));
    // Row r's 32 steps of chunk c.
    let piece = |r: usize, c: usize| {
        let start = c * TILE_VALUES + r * TILE_K;
        start..start + TILE_K
    };
    for r in valid..TILE_ROWS {
        for c in 0..tiles.len() / TILE_VALUES {
            tiles[piece(r, c)].fill(0);
        }
    }
    if valid == 0 {
        return;
    }
    match op.layout {
        Layout::AlongK { stride } => {
            // Row r's pieces start at tile 0's row r.
            let last = (k - 1) / TILE_K; // the chunk holding step k − 1
            for r in 0..valid {
                let row = &op.src[(x0 + r) * stride..][..k];
                convert.round_to_tiles(row, &mut tiles[r * TILE_K..], TILE_VALUES);
                tiles[piece(r, last)][k - last * TILE_K..].fill(0);
            }
        }
        Layout::AcrossK { stride } => {
            // A transpose, a chunk at a time: each step's run of the rows in BF16, then each
            // row's 32 steps written whole.
            let mut steps = [[0u16; TILE_ROWS]; TILE_K]; // [step][row]
            for c in 0..k.div_ceil(TILE_K) {
                let p0 = c * TILE_K;
                let count = TILE_K.min(k - p0);
                for (p, step) in steps.iter_mut().take(count).enumerate() {
                    convert.round(
                        &op.src[(p0 + p) * stride + x0..][..valid],
                        &mut step[..valid],
                    );
                }
                for r in 0..valid {
                    let piece = &mut tiles[piece(r, c)];
                    for (value, step) in piece[..count].iter_mut().zip(&steps) {
                        *value = step[r];
                    }
                    piece[count..].fill(0);
                }
            }
        }
    }
}

/// Chunk `first_step / 32` of the right operand — steps `first_step..first_step + 32` — in
/// BF16 pairs into `tiles` (its tiles, group after group: each 16 pair rows of 16 columns),
/// zero past the operand.
fn pack_right(convert: Converter, op: Operand<'_>, k: usize, first_step: usize, tiles: &mut [u32]) {
    const PAIRS: usize = TILE_K / 2; // pair rows in a tile
    let count = op.count;
    let steps = TILE_K.min(k.saturating_sub(first_step));
    // Pair (i, y) of this chunk, y a column of the operand.
    let pair =
        |i: usize, y: usize| y / TILE_ROWS * (PAIRS * TILE_ROWS) + i * TILE_ROWS + y % TILE_ROWS;
    // Zeros first where the operand does not reach: whole tiles of columns past it, whole
    // pair rows past k.
    let first_padded_group = count / TILE_ROWS;
    tiles[first_padded_group * PAIRS * TILE_ROWS..].fill(0);
    if steps < TILE_K {
        for group in tiles.chunks_exact_mut(PAIRS * TILE_ROWS) {
            group[steps / 2 * TILE_ROWS..].fill(0);
        }
    }
    match op.layout {
        Layout::AcrossK { stride } => {
            let step = |p: usize| &op.src[(first_step + p) * stride..][..count];
            for i in 0..steps / 2 {
                let (even, odd) = (step(2 * i), step(2 * i + 1));
                let tile_row = &mut tiles[pair(i, 0)..];
                convert.pairs_to_tiles(even, odd, tile_row, PAIRS * TILE_ROWS);
            }
            if steps % 2 == 1 {
                // The last pair row holds one step; its odd half stays zero.
                let i = steps / 2;
                for (y, &value) in step(steps - 1).iter().enumerate() {
                    tiles[pair(i, y)] = u32::from(to_bf16(value));
                }
            }
        }
        Layout::AlongK { stride } => {
            // A transpose, 16 columns at a time: each column's steps in BF16 pairs, then each
            // pair row's 16 columns written whole.
            let mut block = [[0u32; PAIRS]; TILE_ROWS]; // [column][pair]
            for y0 in (0..count).step_by(TILE_ROWS) {
                let width = TILE_ROWS.min(count - y0);
                for (y, column) in block.iter_mut().take(width).enumerate() {
                    let column: &mut [u16] = bytemuck::cast_slice_mut(column);
                    let run = &op.src[(y0 + y) * stride + first_step..][..steps];
                    convert.round(run, &mut column[..steps]);
                    column[steps..].fill(0);
                }
                for i in 0..steps.div_ceil(2) {
                    let start = pair(i, y0);
                    for (value, column) in tiles[start..start + width].iter_mut().zip(&block) {
                        *value = column[i];
                    }
                }
            }
        }
    }
}
