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

    /// `out[i · NR + j] = Σ_p a[p · MR + i] · b[p · NR + j]` over `kc` steps of packed panels.
    ///
    /// # Panics
    /// If the kernel is not supported here, or a slice is shorter than the block needs.
    pub fn run(self, kc: usize, a: &[f32], b: &[f32], out: &mut [f32; MAX_BLOCK]) {
        let (mr, nr) = (self.mr(), self.nr());
        assert!(
            a.len() >= kc * mr && b.len() >= kc * nr,
            "microkernel: short panels"
        );
        assert!(
            self.is_supported(),
            "microkernel {self:?} is not supported here"
        );
        match self {
            Microkernel::Portable => portable::<4, 8>(kc, a, b, out),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX2 and FMA (checked above), and the panels hold
            // `kc` steps of 6 and 16 values (asserted above); `out` holds 96.
            Microkernel::Avx2 => unsafe {
                x86::avx2_6x16(kc, a.as_ptr(), b.as_ptr(), out.as_mut_ptr())
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX-512F (checked above), and the panels hold `kc`
            // steps of 8 and 32 values (asserted above); `out` holds 256.
            Microkernel::Avx512 => unsafe {
                x86::avx512_8x32(kc, a.as_ptr(), b.as_ptr(), out.as_mut_ptr())
            },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("only the portable kernel is supported off x86-64"),
        }
    }
}

/// Plain Rust, shaped so that the compiler can vectorise it for any target.
fn portable<const MR: usize, const NR: usize>(
    kc: usize,
    a: &[f32],
    b: &[f32],
    out: &mut [f32; MAX_BLOCK],
) {
    let mut acc = [[0.0f32; NR]; MR];
    for (a, b) in a[..kc * MR]
        .chunks_exact(MR)
        .zip(b[..kc * NR].chunks_exact(NR))
    {
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] += a[i] * b[j];
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        out[i * NR..(i + 1) * NR].copy_from_slice(row);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2 and FMA; `a` must hold `6·kc` floats, `b` `16·kc`, `out` 96.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2_6x16(kc: usize, a: *const f32, b: *const f32, out: *mut f32) {
        let mut c = [_mm256_setzero_ps(); 12];
        for p in 0..kc {
            // SAFETY: step `p` reads b[16p..16p + 16] and a[6p..6p + 6], inside the panels.
            unsafe {
                let b0 = _mm256_loadu_ps(b.add(16 * p));
                let b1 = _mm256_loadu_ps(b.add(16 * p + 8));
                for i in 0..6 {
                    let a_i = _mm256_set1_ps(*a.add(6 * p + i));
                    c[2 * i] = _mm256_fmadd_ps(a_i, b0, c[2 * i]);
                    c[2 * i + 1] = _mm256_fmadd_ps(a_i, b1, c[2 * i + 1]);
                }
            }
        }
        for (i, v) in c.iter().enumerate() {
            // SAFETY: 12 stores of 8 floats fill exactly the 96 of `out`.
            unsafe { _mm256_storeu_ps(out.add(8 * i), *v) };
        }
    }

    /// # Safety
    /// The CPU must support AVX-512F; `a` must hold `8·kc` floats, `b` `32·kc`, `out` 256.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512_8x32(kc: usize, a: *const f32, b: *const f32, out: *mut f32) {
        let mut c = [_mm512_setzero_ps(); 16];
        for p in 0..kc {
            // SAFETY: step `p` reads b[32p..32p + 32] and a[8p..8p + 8], inside the panels.
            unsafe {
                let b0 = _mm512_loadu_ps(b.add(32 * p));
                let b1 = _mm512_loadu_ps(b.add(32 * p + 16));
                for i in 0..8 {
                    let a_i = _mm512_set1_ps(*a.add(8 * p + i));
                    c[2 * i] = _mm512_fmadd_ps(a_i, b0, c[2 * i]);
                    c[2 * i + 1] = _mm512_fmadd_ps(a_i, b1, c[2 * i + 1]);
                }
            }
        }
        for (i, v) in c.iter().enumerate() {
            // SAFETY: 16 stores of 16 floats fill exactly the 256 of `out`.
            unsafe { _mm512_storeu_ps(out.add(16 * i), *v) };
        }
    }
}
