//! The GEMM's innermost loop: an `MR × NR` block of `C` kept in registers while `k` runs over
//! one packed block. One kernel per instruction set, chosen at run time:
//!
//! | kernel | block | registers for `C` | per step of `k` |
//! | --- | --- | --- | --- |
//! | AVX-512 | 8 × 32 | 16 zmm | 2 loads of `B`, 8 broadcasts of `A`, 16 FMAs |
//! | AVX2 + FMA | 6 × 16 | 12 ymm | 2 loads of `B`, 6 broadcasts of `A`, 12 FMAs |
//! | portable | 4 × 8 | what the compiler makes of it | |
//!
//! `FERROGRAD_GEMM_KERNEL=avx512|avx2|portable` forces one (tests call each directly).

use std::sync::OnceLock;

/// The environment variable that forces a microkernel.
pub const KERNEL_ENV: &str = "FERROGRAD_GEMM_KERNEL";
/// The largest `MR × NR` block of any kernel.
pub const MAX_BLOCK: usize = 8 * 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Microkernel {
    Portable,
    Avx2,
    Avx512,
}

impl Microkernel {
    /// Rows of `C` per block.
    pub fn mr(self) -> usize {
        match self {
            Microkernel::Portable => 4,
            Microkernel::Avx2 => 6,
            Microkernel::Avx512 => 8,
        }
    }

    /// Columns of `C` per block.
    pub fn nr(self) -> usize {
        match self {
            Microkernel::Portable => 8,
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
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every kernel this processor can run.
    pub fn supported() -> Vec<Microkernel> {
        [
            Microkernel::Avx512,
            Microkernel::Avx2,
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
            let kernel = match requested.as_str() {
                "avx512" => Some(Microkernel::Avx512),
                "avx2" => Some(Microkernel::Avx2),
                "portable" => Some(Microkernel::Portable),
                _ => None,
            };
            match kernel {
                Some(kernel) if kernel.is_supported() => kernel,
                _ => {
                    eprintln!("ferrograd: {KERNEL_ENV}={requested} is not a supported kernel here; using {best:?}");
                    best
                }
            }
        })
    }

    /// `C[i, j] (+)= Σ_p a[p · MR + i] · b[p · NR + j]` over `kc` steps of packed panels, for
    /// the `MR × NR` block of C at `c` (`C[i, j]` at `c + i · ldc + j`), added to what is
    /// there when `accumulate`, else overwriting it.
    ///
    /// # Panics
    /// If the kernel is not supported here, or a panel is shorter than `kc` steps.
    ///
    /// # Safety
    /// `c + i · ldc + j` must be valid for reads and writes for every `i < MR`, `j < NR`, and
    /// no other thread may access those elements during the call.
    pub unsafe fn run(
        self,
        kc: usize,
        a: &[f32],
        b: &[f32],
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let (mr, nr) = (self.mr(), self.nr());
        assert!(
            a.len() >= kc * mr && b.len() >= kc * nr,
            "microkernel: short panels"
        );
        assert!(
            self.is_supported(),
            "microkernel {self:?} is not supported here"
        );
        let (a, b) = (a.as_ptr(), b.as_ptr());
        // SAFETY (all arms): the panels hold `kc` steps (asserted above), the block at `c` is
        // ours (the caller's contract), and the CPU supports the kernel (asserted above).
        match self {
            Microkernel::Portable => unsafe { portable::<4, 8>(kc, a, b, c, ldc, accumulate) },
            #[cfg(target_arch = "x86_64")]
            Microkernel::Avx2 => unsafe { x86::avx2_6x16(kc, a, b, c, ldc, accumulate) },
            #[cfg(target_arch = "x86_64")]
            Microkernel::Avx512 => unsafe { x86::avx512_8x32(kc, a, b, c, ldc, accumulate) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("only the portable kernel is supported off x86-64"),
        }
    }
}

/// Plain Rust, shaped so that the compiler can vectorise it for any target.
///
/// # Safety
/// As [`Microkernel::run`], with `a` holding `MR·kc` floats and `b` `NR·kc`.
unsafe fn portable<const MR: usize, const NR: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: the panels' lengths are the caller's contract.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, kc * MR),
            std::slice::from_raw_parts(b, kc * NR),
        )
    };
    let mut acc = [[0.0f32; NR]; MR];
    for (a, b) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] += a[i] * b[j];
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

    /// # Safety
    /// The CPU must support AVX2 and FMA; `a` must hold `6·kc` floats, `b` `16·kc`; the
    /// 6 × 16 block at `c` (row stride `ldc`) must be valid and ours.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2_6x16(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let mut acc = [_mm256_setzero_ps(); 12];
        for p in 0..kc {
            // SAFETY: step `p` reads b[16p..16p + 16] and a[6p..6p + 6], inside the panels.
            unsafe {
                let b0 = _mm256_loadu_ps(b.add(16 * p));
                let b1 = _mm256_loadu_ps(b.add(16 * p + 8));
                for i in 0..6 {
                    let a_i = _mm256_set1_ps(*a.add(6 * p + i));
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
    /// The CPU must support AVX-512F; `a` must hold `8·kc` floats, `b` `32·kc`; the 8 × 32
    /// block at `c` (row stride `ldc`) must be valid and ours.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512_8x32(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let mut acc = [_mm512_setzero_ps(); 16];
        for p in 0..kc {
            // SAFETY: step `p` reads b[32p..32p + 32] and a[8p..8p + 8], inside the panels.
            unsafe {
                let b0 = _mm512_loadu_ps(b.add(32 * p));
                let b1 = _mm512_loadu_ps(b.add(32 * p + 16));
                for i in 0..8 {
                    let a_i = _mm512_set1_ps(*a.add(8 * p + i));
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
