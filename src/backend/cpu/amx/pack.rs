//! The operands in BF16, laid out as the tiles load them.

use super::{BLOCK, TILE_K, TILE_ROWS};
use crate::backend::cpu::product::{run_chunk_tasks, Layout};
use crate::backend::cpu::{pool, simd};
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

/// An operand in BF16, as the tiles load it, in a buffer of the pool (two BF16 a float; back
/// to the pool when dropped), zero past the operand: `k` padded to whole tiles, rows or
/// columns to whole blocks. A tile is then 16 rows of one and the same stride.
/// - A left operand is row-major, `rows × k_padded`.
/// - A right operand is `k_padded / 2` rows of `columns` pairs, pair `(q, y)` holding steps
///   `2q` and `2q + 1` of column `y`: the layout `TDPBF16PS` takes its right operand in
///   (Intel's "VNNI").
pub struct Packed {
    buffer: Vec<f32>,
    side: Side,
    k: usize,
    pub k_padded: usize,
    /// Rows of a left operand or columns of a right one, padded to whole blocks.
    pub count: usize,
}

impl Packed {
    /// `op` (each of its rows or columns `k` long) packed as the `side` operand.
    pub fn new(side: Side, op: Operand<'_>, k: usize, parallel: bool) -> Self {
        let k_padded = k.next_multiple_of(TILE_K);
        let count = op.count.next_multiple_of(BLOCK);
        let mut packed = Packed {
            buffer: pool::take(count * k_padded / 2),
            side,
            k,
            k_padded,
            count,
        };
        packed.repack(op, parallel);
        packed
    }

    /// Packs `op` over this operand, which must have been made for as many padded rows or
    /// columns, and the same `k`.
    pub fn repack(&mut self, op: Operand<'_>, parallel: bool) {
        assert_eq!(self.count, op.count.next_multiple_of(BLOCK));
        let k = self.k;
        // Tasks of 16 rows on the left; of 16 pair rows (32 steps of k) on the right.
        match self.side {
            Side::Left => {
                let rows: &mut [u16] = bytemuck::cast_slice_mut(&mut self.buffer);
                run_chunk_tasks(rows, TILE_ROWS * self.k_padded, parallel, |t, rows| {
                    pack_left(op, k, t * TILE_ROWS, rows)
                });
            }
            Side::Right => {
                let pairs: &mut [u32] = bytemuck::cast_slice_mut(&mut self.buffer);
                run_chunk_tasks(pairs, TILE_ROWS * self.count, parallel, |t, pairs| {
                    pack_right(op, k, t * TILE_ROWS, pairs)
                });
            }
        }
    }

    pub fn rows(&self) -> &[u16] {
        bytemuck::cast_slice(&self.buffer)
    }

    pub fn pairs(&self) -> &[u32] {
        bytemuck::cast_slice(&self.buffer)
    }
}

impl Drop for Packed {
    fn drop(&mut self) {
        pool::give_back(std::mem::take(&mut self.buffer));
    }
}

/// Rows `x0..` of the left operand in BF16 into `rows` (whole rows of `k_padded`), zero past
/// the operand.
fn pack_left(op: Operand<'_>, k: usize, x0: usize, rows: &mut [u16]) {
    let k_padded = k.next_multiple_of(TILE_K);
    let valid = (rows.len() / k_padded).min(op.count.saturating_sub(x0));
    let (rows, padding) = rows.split_at_mut(valid * k_padded);
    padding.fill(0);
    if valid == 0 {
        return;
    }
    match op.layout {
        Layout::AlongK { stride } => {
            for (r, row) in rows.chunks_exact_mut(k_padded).enumerate() {
                simd::round_to_bf16(&op.src[(x0 + r) * stride..][..k], &mut row[..k]);
                row[k..].fill(0);
            }
        }
        Layout::AcrossK { stride } => {
            // A transpose, 32 steps at a time: each step's run of the rows in BF16, then each
            // row's 32 steps written whole.
            let mut steps = [[0u16; TILE_ROWS]; TILE_K]; // [step][row]
            for p0 in (0..k).step_by(TILE_K) {
                let count = TILE_K.min(k - p0);
                for (p, step) in steps.iter_mut().take(count).enumerate() {
                    simd::round_to_bf16(
                        &op.src[(p0 + p) * stride + x0..][..valid],
                        &mut step[..valid],
                    );
                }
                for (r, row) in rows.chunks_exact_mut(k_padded).enumerate() {
                    for (value, step) in row[p0..p0 + count].iter_mut().zip(&steps) {
                        *value = step[r];
                    }
                }
            }
            for row in rows.chunks_exact_mut(k_padded) {
                row[k..].fill(0);
            }
        }
    }
}

/// Pair rows `q0..` of the right operand in BF16 into `pairs` (whole rows of the padded
/// column count): pair `(q, y)` holds steps `2q` and `2q + 1` of column `y`, zero past the
/// operand.
fn pack_right(op: Operand<'_>, k: usize, q0: usize, pairs: &mut [u32]) {
    let columns = op.count.next_multiple_of(BLOCK);
    let count = op.count;
    // The steps these pair rows hold, 2 · q0.. (32 of them in a task of 16 pair rows).
    let first_step = 2 * q0;
    let steps = (2 * pairs.len() / columns).min(k.saturating_sub(first_step));
    for row in pairs.chunks_exact_mut(columns) {
        row[count..].fill(0);
    }
    if steps < 2 * pairs.len() / columns {
        pairs[steps.div_ceil(2) * columns..].fill(0); // pair rows past k
        if steps % 2 == 1 {
            pairs[steps / 2 * columns..][..count].fill(0); // its odd step is padding
        }
    }
    match op.layout {
        Layout::AcrossK { stride } => {
            for (i, row) in pairs.chunks_exact_mut(columns).take(steps / 2).enumerate() {
                let even = &op.src[(first_step + 2 * i) * stride..][..count];
                let odd = &op.src[(first_step + 2 * i + 1) * stride..][..count];
                simd::pairs_to_bf16(even, odd, &mut row[..count]);
            }
            if steps % 2 == 1 {
                let even = &op.src[(first_step + steps - 1) * stride..][..count];
                let row = &mut pairs[steps / 2 * columns..][..count];
                let row: &mut [u16] = bytemuck::cast_slice_mut(row);
                for (pair, &value) in row.chunks_exact_mut(2).zip(even) {
                    pair[0] = to_bf16(value);
                }
            }
        }
        Layout::AlongK { stride } => {
            // A transpose, 16 columns at a time: each column's steps in BF16 pairs, then each
            // pair row's 16 columns written whole.
            let mut block = [[0u32; TILE_ROWS]; TILE_ROWS]; // [column][pair]
            for y0 in (0..count).step_by(TILE_ROWS) {
                let width = TILE_ROWS.min(count - y0);
                for (y, column) in block.iter_mut().take(width).enumerate() {
                    let column: &mut [u16] = bytemuck::cast_slice_mut(column);
                    let run = &op.src[(y0 + y) * stride + first_step..][..steps];
                    simd::round_to_bf16(run, &mut column[..steps]);
                    column[steps..].fill(0);
                }
                for (i, row) in pairs
                    .chunks_exact_mut(columns)
                    .take(steps.div_ceil(2))
                    .enumerate()
                {
                    for (value, column) in row[y0..y0 + width].iter_mut().zip(&block) {
                        *value = column[i];
                    }
                }
            }
        }
    }
}
