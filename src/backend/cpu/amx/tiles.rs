//! The tile registers: the permission to use them, their configuration, one block's product.
//!
//! Rust has no stable AMX intrinsics, so the instructions are written in inline assembly. The
//! compiler never uses the tile registers itself, so a value left in one by an `asm!` block is
//! still there for the next.

use super::pack::Packed;
use super::{BLOCK, TILE_K, TILE_ROWS};
use crate::backend::cpu::processor::cpuid;
use std::arch::asm;

/// A 32 × 32 block of FP32 results, as the four accumulator tiles store it.
#[repr(C, align(64))]
pub struct Block(pub [[f32; BLOCK]; BLOCK]);

impl Default for Block {
    fn default() -> Self {
        Block([[0.0; BLOCK]; BLOCK])
    }
}

/// Bytes in a tile's row: 32 BF16, or 16 pairs of them.
const TILE_ROW_BYTES: usize = TILE_K * 2;

/// `LDTILECFG`'s 64-byte operand: palette 1, then each tile's bytes per row and rows.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

/// All eight tiles are 16 rows of 64 bytes: tiles 0–3 hold the 2 × 2 FP32 accumulators, 4–5
/// the two tiles of the left operand, 6–7 the two of the right one.
const CONFIG: TileConfig = {
    let mut config = TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        bytes_per_row: [0; 16],
        rows: [0; 16],
    };
    let mut tile = 0;
    while tile < 8 {
        config.bytes_per_row[tile] = TILE_ROW_BYTES as u16;
        config.rows[tile] = TILE_ROWS as u8;
        tile += 1;
    }
    config
};

/// Checks the processor for AMX-TILE and AMX-BF16 and asks Linux for the tiles' state.
pub fn request() -> Result<(), &'static str> {
    // CPUID leaf 7, sub-leaf 0 (if the processor has that leaf): EDX bit 22 is AMX-BF16,
    // bit 24 AMX-TILE.
    let has_leaf7 = cpuid(0, 0).eax >= 7;
    let edx = if has_leaf7 { cpuid(7, 0).edx } else { 0 };
    if edx & (1 << 22) == 0 || edx & (1 << 24) == 0 {
        return Err("this processor has no AMX-BF16 (Intel Xeon 4th generation or later has)");
    }
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let status: i64;
    // SAFETY: the arch_prctl system call with two integer arguments; it reads and writes
    // no memory of ours and clobbers only rcx and r11 (the syscall ABI).
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => status,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if status != 0 {
        return Err("Linux did not grant the AMX tile state (it needs kernel 5.16 or later)");
    }
    Ok(())
}

/// The tile registers, configured for this thread's use ([`CONFIG`]) while it lives;
/// released (back to their initial state, which a thread switch need not save) when
/// dropped.
pub struct Tiles(());

impl Tiles {
    /// # Safety
    /// AMX must be supported and granted ([`request`] returned `Ok`).
    pub unsafe fn configure() -> Tiles {
        // SAFETY: AMX is granted (the caller's contract); the configuration is a valid
        // 64-byte palette-1 operand.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly)) };
        Tiles(())
    }

    /// `sums` = rows `row..row + 32` of the packed left operand times columns
    /// `column..column + 32` of the packed right one (`left = (packed, row)`, `right =
    /// (packed, column)`), over all of `k`, one chunk (a tile of each of the two groups of
    /// each side) at a time.
    ///
    /// # Safety
    /// `sums` must point to 32 rows of 32 writable floats, `row_stride` floats apart.
    pub unsafe fn multiply_block(
        &mut self,
        (left, row): (&Packed, usize),
        (right, column): (&Packed, usize),
        sums: *mut f32,
        row_stride: usize,
    ) {
        let chunks = left.chunks();
        assert_eq!(chunks, right.chunks());
        // Each group's first tile and the distance to its next (`block_tiles` asserts that
        // both groups of each side are inside the operand).
        let ([top, bottom], left_step) = left.block_tiles(row);
        let ([first, second], right_step) = right.block_tiles(column);
        let (left_values, right_values) = (left.values().as_ptr(), right.values().as_ptr());
        // SAFETY: the tiles are configured (`self`). Each load reads one whole tile, 16 rows
        // of 64 bytes in a row (`TILE_ROW_BYTES` apart): tile `chunk` of a group, inside its
        // operand since `chunk < chunks` (`Packed::block_tiles`). The stores write the four
        // 16 × 16 quarters of `sums` (the caller's contract).
        unsafe {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
            for chunk in 0..chunks {
                let (l, r) = (chunk * left_step, chunk * right_step);
                asm!(
                    "tileloadd tmm4, [{top} + {stride}]",
                    "tileloadd tmm5, [{bottom} + {stride}]",
                    "tileloadd tmm6, [{first} + {stride}]",
                    "tileloadd tmm7, [{second} + {stride}]",
                    // tmm(2·row + column) += left(row) · right(column)
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    top = in(reg) left_values.add(top + l),
                    bottom = in(reg) left_values.add(bottom + l),
                    first = in(reg) right_values.add(first + r),
                    second = in(reg) right_values.add(second + r),
                    stride = in(reg) TILE_ROW_BYTES,
                    options(nostack, readonly),
                );
            }
            asm!(
                "tilestored [{q0} + {stride}], tmm0",
                "tilestored [{q1} + {stride}], tmm1",
                "tilestored [{q2} + {stride}], tmm2",
                "tilestored [{q3} + {stride}], tmm3",
                q0 = in(reg) sums,
                q1 = in(reg) sums.add(TILE_ROWS),
                q2 = in(reg) sums.add(TILE_ROWS * row_stride),
                q3 = in(reg) sums.add(TILE_ROWS * row_stride + TILE_ROWS),
                stride = in(reg) row_stride * 4,
                options(nostack),
            );
        }
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: the tiles were configured (`configure`); releasing them has no operand.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}
