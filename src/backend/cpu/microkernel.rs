//! The GEMM's innermost loop: an `MR × NR` block of `C` kept in registers while `k` runs over
//! one packed block. One kernel per instruction set, chosen at run time:
//!
//! | kernel | block | registers for `C` | per step of `k` |
//! | --- | --- | --- | --- |
//! | AVX-512 | 8 × 32 | 16 zmm | 2 loads of `B`, 8 broadcasts of `A`, 16 FMAs |
//! | AVX2 + FMA | 6 × 16 | 12 ymm | 2 loads of `B`, 6 broadcasts of `A`, 12 FMAs |
//! | NEON (aarch64) | 8 × 12 | 24 q | 3 loads of `B`, 8 loads of `A`, 24 FMAs (by lane 0) |
//! | portable | 4 × 8 | what the compiler makes of it | |
//!
//! `FERROGRAD_GEMM_KERNEL=avx512|avx2|neon|portable` forces one (tests call each directly).
//! (The portable kernel on aarch64 compiles to NEON multiplies and adds, unfused: Rust never
//! fuses them itself, so `neon` does it explicitly. It is tested under qemu; its speed has not
//! been measured on an ARM machine.)

use std::sync::OnceLock;

/// The environment variable that forces a microkernel.
pub const KERNEL_ENV: &str = "FERROGRAD_GEMM_KERNEL";
/// The largest `MR × NR` block of any kernel.
pub const MAX_BLOCK: usize = 8 * 32;

/// An instruction set's microkernel (the table above).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Microkernel {
    /// Plain Rust, 4 × 8: any processor.
    Portable,
    /// AVX2 and FMA, 6 × 16 (x86-64 since Haswell and Zen).
    Avx2,
    /// AVX-512F, 8 × 32.
    Avx512,
    /// NEON fused multiply-adds, 8 × 12 (aarch64).
    Neon,
}

impl Microkernel {
    /// Rows of `C` per block.
    pub fn mr(self) -> usize {
        match self {
            Microkernel::Portable => 4,
            Microkernel::Avx2 => 6,
            Microkernel::Avx512 | Microkernel::Neon => 8,
        }
    }

    /// Columns of `C` per block.
    pub fn nr(self) -> usize {
        match self {
            Microkernel::Portable => 8,
            Microkernel::Neon => 12,
            Microkernel::Avx2 => 16,
            Microkernel::Avx512 => 32,
        }
    }

    /// Whether this processor can run it.
    pub fn is_supported(self) -> bool {
        match self {
            Microkernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Microkernel::Avx2 => {
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Microkernel::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "aarch64")]
            Microkernel::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            _ => false, // another architecture's kernel
        }
    }

    /// The kernel's name, as [`KERNEL_ENV`] takes it: `avx512`, `avx2`, `neon`, `portable`.
    pub fn name(self) -> &'static str {
        match self {
            Microkernel::Portable => "portable",
            Microkernel::Avx2 => "avx2",
            Microkernel::Avx512 => "avx512",
            Microkernel::Neon => "neon",
        }
    }

    /// Every kernel this processor can run.
    pub fn supported() -> Vec<Microkernel> {
        [
            Microkernel::Avx512,
            Microkernel::Avx2,
            Microkernel::Neon,
            Microkernel::Portable,
        ]
        .into_iter()
        .filter(|k| k.is_supported())
        .collect()
    }

    /// The kernel the GEMM uses: `$FERROGRAD_GEMM_KERNEL` if set and supported (a warning
    /// otherwise), else the fastest supported. Decided once per process.
    pub fn selected() -> Microkernel {
        static SELECTED: OnceLock<Microkernel> = OnceLock::new();
        *SELECTED.get_or_init(|| {
            let best = Microkernel::supported()[0];
            let Ok(requested) = std::env::var(KERNEL_ENV) else {
                return best;
            };
            let kernel = Microkernel::supported()
                .into_iter()
                .find(|kernel| kernel.name() == requested);
            kernel.unwrap_or_else(|| {
                eprintln!(
                    "ferrograd: {KERNEL_ENV}={requested} is not a supported kernel here; using {}",
                    best.name()
                );
                best
            })
        })
    }

    /// `C[i, j] (+)= Σ_p A(i, p) · b[p · NR + j]` over `kc` steps, for the `MR × NR` block
    /// of C that `out` describes. `A(i, p)` comes from a packed panel or straight from
    /// the rows of A (see [`APanel`]); `b` is a packed panel.
    ///
    /// # Panics
    /// If the kernel is not supported here, or a packed panel is shorter than `kc` steps.
    ///
    /// # Safety
    /// `out.c + i · out.ldc + j` must be valid for reads and writes for every `i < MR`,
    /// `j < NR`, and
    /// no other thread may access those elements during the call; rows given by
    /// [`APanel::Rows`] must hold `kc` readable floats.
    pub(crate) unsafe fn run(self, kc: usize, a: APanel<'_>, b: &[f32], out: BlockOut) {
        let (mr, nr) = (self.mr(), self.nr());
        assert!(b.len() >= kc * nr, "microkernel: short B panel");
        assert!(
            self.is_supported(),
            "microkernel {self:?} is not supported here"
        );
        match a {
            APanel::Packed(a) => {
                assert!(a.len() >= kc * mr, "microkernel: short A panel");
                let a = Packed { a: a.as_ptr(), mr };
                // SAFETY: the panels hold `kc` steps (asserted above); the rest is the
                // caller's contract.
                unsafe { self.dispatch(kc, a, b.as_ptr(), out) }
            }
            // SAFETY: the rows hold `kc` floats and the block is ours (the caller's contract).
            APanel::Rows(rows) => unsafe { self.dispatch(kc, Rows(rows), b.as_ptr(), out) },
        }
    }

    /// # Safety
    /// As [`Microkernel::run`], for `a` and a `b` panel of `kc` steps.
    unsafe fn dispatch<A: AFetch>(self, kc: usize, a: A, b: *const f32, out: BlockOut) {
        // Each arm: the operands are forwarded from the caller, whose contract is the
        // kernel's; the CPU supports the kernel (`run` asserted it).
        match self {
            // SAFETY: as above (plain Rust: no instruction set to check).
            Microkernel::Portable => unsafe { portable::<4, 8, A>(kc, a, b, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above; AVX2 and FMA are there.
            Microkernel::Avx2 => unsafe { x86::avx2_6x16(kc, a, b, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above; AVX-512F is there.
            Microkernel::Avx512 => unsafe { x86::avx512_8x32(kc, a, b, out) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: as above; NEON is there.
            Microkernel::Neon => unsafe { arm::neon_8x12(kc, a, b, out) },
            _ => unreachable!("{self:?} is not supported here (run asserted it is)"),
        }
    }
}

/// Where a kernel's `MR × NR` block goes: `C[i, j]` at `c + i · ldc + j`, added to what is
/// there when `accumulate`, else overwritten.
#[derive(Clone, Copy)]
pub struct BlockOut {
    pub c: *mut f32,
    pub ldc: usize,
    pub accumulate: bool,
}

/// The most rows any kernel's block has (`MR`).
pub const MAX_MR: usize = 8;

/// Where a microkernel reads `A(i, p)`, row `i < MR` of its block at step `p` of `k`.
#[derive(Clone, Copy)]
pub enum APanel<'a> {
    /// A packed micro-panel: `A(i, p) = panel[p · MR + i]`.
    Packed(&'a [f32]),
    /// The rows of A where they lie, each contiguous along `k`: `A(i, p) = *rows[i].add(p)`.
    /// No packing at all: a broadcast reads any address at the same cost. (Rows past the end
    /// of A may repeat the last one; their results are simply not stored.)
    Rows([*const f32; MAX_MR]),
}

/// `A(i, p)` for a kernel's inner loop, inlined into it.
trait AFetch: Copy {
    /// # Safety
    /// `(i, p)` must lie inside the panel or rows this was made from.
    unsafe fn get(self, i: usize, p: usize) -> f32;
}

/// A packed micro-panel: `A(i, p) = a[p · mr + i]`.
#[derive(Clone, Copy)]
struct Packed {
    a: *const f32,
    mr: usize,
}

impl AFetch for Packed {
    #[inline(always)]
    unsafe fn get(self, i: usize, p: usize) -> f32 {
        // SAFETY: inside the panel (the caller's contract).
        unsafe { *self.a.add(p * self.mr + i) }
    }
}

#[derive(Clone, Copy)]
struct Rows([*const f32; MAX_MR]);

impl AFetch for Rows {
    #[inline(always)]
    unsafe fn get(self, i: usize, p: usize) -> f32 {
        // SAFETY: inside row i (the caller's contract).
        unsafe { *self.0[i].add(p) }
    }
}

/// Plain Rust, shaped so that the compiler can vectorise it for any target.
///
/// # Safety
/// As [`Microkernel::run`], with `b` holding `NR·kc` floats.
unsafe fn portable<const MR: usize, const NR: usize, A: AFetch>(
    kc: usize,
    a: A,
    b: *const f32,
    out: BlockOut,
) {
    let BlockOut { c, ldc, accumulate } = out;
    // SAFETY: the panel's length is the caller's contract.
    let b = unsafe { std::slice::from_raw_parts(b, kc * NR) };
    let mut acc = [[0.0f32; NR]; MR];
    for (p, b) in b.chunks_exact(NR).enumerate() {
        for (i, acc_row) in acc.iter_mut().enumerate() {
            // SAFETY: (i, p) is inside A's panel or rows.
            let a_ip = unsafe { a.get(i, p) };
            for j in 0..NR {
                acc_row[j] += a_ip * b[j];
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            // SAFETY: element (i, j) of the block, valid and ours (the caller's contract).
            unsafe {
                let out = c.add(i * ldc + j);
                *out = if accumulate { *out + v } else { v };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{AFetch, BlockOut};

    /// # Safety
    /// The CPU must support AVX2 and FMA; `a` must reach 6 rows of `kc` steps, `b` must hold
    /// `16·kc` floats; the 6 × 16 block at `c` (row stride `ldc`) must be valid and ours.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2_6x16<A: AFetch>(kc: usize, a: A, b: *const f32, out: BlockOut) {
        let BlockOut { c, ldc, accumulate } = out;
        let mut acc = [_mm256_setzero_ps(); 12];
        for p in 0..kc {
            // SAFETY: step `p` reads b[16p..16p + 16] and A(0..6, p), inside the operands.
            unsafe {
                let b0 = _mm256_loadu_ps(b.add(16 * p));
                let b1 = _mm256_loadu_ps(b.add(16 * p + 8));
                for i in 0..6 {
                    let a_i = _mm256_set1_ps(a.get(i, p));
                    acc[2 * i] = _mm256_fmadd_ps(a_i, b0, acc[2 * i]);
                    acc[2 * i + 1] = _mm256_fmadd_ps(a_i, b1, acc[2 * i + 1]);
                }
            }
        }
        for (half, v) in acc.iter().enumerate() {
            // SAFETY: row half / 2, columns 8 · (half % 2) + 0..8: inside the block.
            unsafe {
                let out = c.add((half / 2) * ldc + 8 * (half % 2));
                let v = if accumulate {
                    _mm256_add_ps(_mm256_loadu_ps(out), *v)
                } else {
                    *v
                };
                _mm256_storeu_ps(out, v);
            }
        }
    }

    /// # Safety
    /// The CPU must support AVX-512F; `a` must reach 8 rows of `kc` steps, `b` must hold
    /// `32·kc` floats; the 8 × 32 block at `c` (row stride `ldc`) must be valid and ours.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512_8x32<A: AFetch>(kc: usize, a: A, b: *const f32, out: BlockOut) {
        let BlockOut { c, ldc, accumulate } = out;
        let mut acc = [_mm512_setzero_ps(); 16];
        for p in 0..kc {
            // SAFETY: step `p` reads b[32p..32p + 32] and A(0..8, p), inside the operands.
            unsafe {
                let b0 = _mm512_loadu_ps(b.add(32 * p));
                let b1 = _mm512_loadu_ps(b.add(32 * p + 16));
                for i in 0..8 {
                    let a_i = _mm512_set1_ps(a.get(i, p));
                    acc[2 * i] = _mm512_fmadd_ps(a_i, b0, acc[2 * i]);
                    acc[2 * i + 1] = _mm512_fmadd_ps(a_i, b1, acc[2 * i + 1]);
                }
            }
        }
        for (half, v) in acc.iter().enumerate() {
            // SAFETY: row half / 2, columns 16 · (half % 2) + 0..16: inside the block.
            unsafe {
                let out = c.add((half / 2) * ldc + 16 * (half % 2));
                let v = if accumulate {
                    _mm512_add_ps(_mm512_loadu_ps(out), *v)
                } else {
                    *v
                };
                _mm512_storeu_ps(out, v);
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    use super::{AFetch, BlockOut};

    /// # Safety
    /// The CPU must support NEON; `a` must reach 8 rows of `kc` steps, `b` must hold `12·kc`
    /// floats; the 8 × 12 block at `c` (row stride `ldc`) must be valid and ours.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn neon_8x12<A: AFetch>(kc: usize, a: A, b: *const f32, out: BlockOut) {
        let BlockOut { c, ldc, accumulate } = out;
        // acc[3·i + j]: row i, columns 4j..4j + 4.
        let mut acc = [vdupq_n_f32(0.0); 24];
        for p in 0..kc {
            // SAFETY: step `p` reads b[12p..12p + 12] and A(0..8, p), inside the operands.
            unsafe {
                let b_row = [
                    vld1q_f32(b.add(12 * p)),
                    vld1q_f32(b.add(12 * p + 4)),
                    vld1q_f32(b.add(12 * p + 8)),
                ];
                for i in 0..8 {
                    let a_i = a.get(i, p);
                    for (j, &b_j) in b_row.iter().enumerate() {
                        // One fused multiply-add: acc += b_j · a_i, rounded once.
                        acc[3 * i + j] = vfmaq_n_f32(acc[3 * i + j], b_j, a_i);
                    }
                }
            }
        }
        for (quad, v) in acc.iter().enumerate() {
            // SAFETY: row quad / 3, columns 4 · (quad % 3) + 0..4: inside the block.
            unsafe {
                let out = c.add((quad / 3) * ldc + 4 * (quad % 3));
                let v = if accumulate {
                    vaddq_f32(vld1q_f32(out), *v)
                } else {
                    *v
                };
                vst1q_f32(out, v);
            }
        }
    }
}
