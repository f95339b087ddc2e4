//! FP32 to BF16, as the packing converts its operands: AVX512-BF16's `VCVTNE2PS2BF16` rounds
//! 32 values to nearest even in one instruction, where portable code takes about ten per 16
//! values (`math::to_bf16`'s bit arithmetic, NaN kept quiet). Every processor with AMX-BF16
//! has AVX512-BF16, and [`amx_support`](super::amx_support) requires it. The instruction
//! reads a subnormal value (below 2⁻¹²⁶) as zero, as `TDPBF16PS` would read its BF16 anyway
//! (on the development VM a product `1 · 1e-39` in BF16, its right operand rounded by
//! `math::to_bf16`, gives 0); every other value gets `math::to_bf16`'s bits.

use std::arch::x86_64::*;

/// Values a run converts: two registers of 16 floats in, one of 32 BF16 out (a tile row's
/// 64 bytes).
const RUN: usize = 32;
/// Pairs of BF16 in a run.
const PAIRS: usize = RUN / 2;

/// The conversions, on a processor that has them (AVX512-BF16, and AVX512-BW for the masked
/// 16-bit stores and the interleave): holding one is the proof.
#[derive(Clone, Copy)]
pub struct Converter(());

impl Converter {
    /// `Some` where this processor has the instructions.
    pub fn detect() -> Option<Converter> {
        let supported =
            is_x86_feature_detected!("avx512bf16") && is_x86_feature_detected!("avx512bw");
        supported.then_some(Converter(()))
    }

    /// `y[i] = bf16(x[i])`.
    pub fn round(self, x: &[f32], y: &mut [u16]) {
        self.round_to_tiles(x, y, RUN);
    }

    /// `y[j·stride + i] = bf16(x[j·32 + i])`, `i < 32`: `x` in runs of 32, each to its place
    /// in `y`, `stride` apart (a row of an operand into its tiles, a tile row each).
    pub fn round_to_tiles(self, x: &[f32], y: &mut [u16], stride: usize) {
        // SAFETY: the processor has the features (`self`).
        unsafe { round_to_tiles(x, y, stride) }
    }

    /// `y[j·stride + i]` = the pair `(bf16(even[j·16 + i]), bf16(odd[j·16 + i]))` (the first
    /// in the low half: first in memory), `i < 16`: runs of 16 pairs, each to its place in
    /// `y`, `stride` apart (a tile row of the right operand each).
    pub fn pairs_to_tiles(self, even: &[f32], odd: &[f32], y: &mut [u32], stride: usize) {
        // SAFETY: as above.
        unsafe { pairs_to_tiles(even, odd, y, stride) }
    }
}

/// # Safety
/// The processor must have AVX-512F, AVX512-BW and AVX512-BF16 ([`Converter`]).
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn round_to_tiles(x: &[f32], y: &mut [u16], stride: usize) {
    for (j, run) in x.chunks(RUN).enumerate() {
        let row = &mut y[j * stride..][..run.len()];
        // SAFETY: the features are there (this function's contract).
        unsafe { round_run(run, row) };
    }
}

/// # Safety
/// As [`round_to_tiles`].
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pairs_to_tiles(even: &[f32], odd: &[f32], y: &mut [u32], stride: usize) {
    assert_eq!(even.len(), odd.len());
    for (j, (even, odd)) in even.chunks(PAIRS).zip(odd.chunks(PAIRS)).enumerate() {
        let row = &mut y[j * stride..][..even.len()];
        // SAFETY: as above.
        unsafe { pairs_run(even, odd, row) };
    }
}

/// The mask of the first `n` of 16 lanes (all 16 for `n ≥ 16`).
fn first_16(n: usize) -> __mmask16 {
    (1u32 << n.min(16)).wrapping_sub(1) as __mmask16
}

/// The mask of the first `n` of 32 lanes (all 32 for `n ≥ 32`).
fn first_32(n: usize) -> __mmask32 {
    (1u64 << n.min(32)).wrapping_sub(1) as __mmask32
}

/// `y = bf16(x)`, `x.len() == y.len() ≤ 32`. A whole run is loaded and stored whole; only a
/// shorter one is masked.
///
/// # Safety
/// As [`round_to_tiles`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn round_run(x: &[f32], y: &mut [u16]) {
    let n = x.len();
    assert!(n <= RUN && y.len() == n);
    // SAFETY: the loads read the first n floats of x (16 lanes from x[0], the others from
    // x[16]; masked-off lanes are not read, and wrapping_add does not claim that x[16] is
    // inside x); the stores write the first n values of y. Both vector types are 64 bytes
    // of plain bits.
    unsafe {
        let (low, high) = if n == RUN {
            (
                _mm512_loadu_ps(x.as_ptr()),
                _mm512_loadu_ps(x.as_ptr().add(16)),
            )
        } else {
            let rest = x.as_ptr().wrapping_add(16);
            (
                _mm512_maskz_loadu_ps(first_16(n), x.as_ptr()),
                _mm512_maskz_loadu_ps(first_16(n.saturating_sub(16)), rest),
            )
        };
        // Lanes 0–15 from `low`, 16–31 from `high`.
        let bf16: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(high, low));
        if n == RUN {
            _mm512_storeu_si512(y.as_mut_ptr().cast(), bf16);
        } else {
            _mm512_mask_storeu_epi16(y.as_mut_ptr().cast(), first_32(n), bf16);
        }
    }
}

/// `y[i]` = the pair `(bf16(even[i]), bf16(odd[i]))`, all three `≤ 16` long and equal.
///
/// # Safety
/// As [`round_to_tiles`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pairs_run(even: &[f32], odd: &[f32], y: &mut [u32]) {
    let n = even.len();
    assert!(n <= PAIRS && odd.len() == n && y.len() == n);
    // Lane 2i takes lane i (even[i]), lane 2i + 1 lane 16 + i (odd[i]).
    const INTERLEAVE: [u16; RUN] = {
        let mut lanes = [0; RUN];
        let mut i = 0;
        while i < PAIRS {
            lanes[2 * i] = i as u16;
            lanes[2 * i + 1] = (PAIRS + i) as u16;
            i += 1;
        }
        lanes
    };
    // SAFETY: the loads read the first n floats of each run, the stores the first n pairs of
    // y (2n BF16), and the index vector is 64 bytes of constants. As in round_run, the vector
    // types are plain bits.
    unsafe {
        let (evens, odds) = if n == PAIRS {
            (
                _mm512_loadu_ps(even.as_ptr()),
                _mm512_loadu_ps(odd.as_ptr()),
            )
        } else {
            let first = first_16(n);
            (
                _mm512_maskz_loadu_ps(first, even.as_ptr()),
                _mm512_maskz_loadu_ps(first, odd.as_ptr()),
            )
        };
        // Lanes 0–15 the evens, 16–31 the odds; then interleaved.
        let halves: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(odds, evens));
        let interleave = _mm512_loadu_si512(INTERLEAVE.as_ptr().cast());
        let pairs = _mm512_permutexvar_epi16(interleave, halves);
        if n == PAIRS {
            _mm512_storeu_si512(y.as_mut_ptr().cast(), pairs);
        } else {
            _mm512_mask_storeu_epi16(y.as_mut_ptr().cast(), first_32(2 * n), pairs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::to_bf16;

    /// The converter, or `None` (and why, on stderr) on a processor without the instructions,
    /// unless `FERROGRAD_REQUIRE_BF16=1` (as `tests/bf16.rs`).
    fn converter() -> Option<Converter> {
        let found = Converter::detect();
        if found.is_none() {
            let required = std::env::var("FERROGRAD_REQUIRE_BF16").is_ok_and(|v| v == "1");
            assert!(!required, "FERROGRAD_REQUIRE_BF16=1 but no AVX512-BF16");
            eprintln!("skipped: no AVX512-BF16");
        }
        found
    }

    /// Values at every rounding case of `math::to_bf16`, then a subnormal, `len` of them.
    fn cases(len: usize) -> Vec<f32> {
        let one = 1.0f32.to_bits();
        let edges = [
            1.0,
            f32::from_bits(one + 0x8000), // halfway, kept part even: down
            f32::from_bits(one + 0x18000), // halfway, odd: up
            f32::from_bits(one + 0x8001), // past halfway: up
            f32::from_bits(one + 0x7fff), // below halfway: down
            -f32::MAX,                    // to −∞
            -3.0e38,
            f32::INFINITY,
            0.0,
            -0.0,
            1.2e-38, // the smallest normals keep their bits
        ];
        (0..len)
            .map(|i| edges.get(i).copied().unwrap_or(i as f32 * -0.37 + 0.001))
            .collect()
    }

    #[test]
    fn runs_round_as_math_to_bf16_at_every_length_and_place() {
        let Some(convert) = converter() else { return };
        for len in [0, 1, 11, 16, 17, 31, 32, 33, 100] {
            let x = cases(len);
            let stride = 48; // each run of 32 to its place, 48 apart
            let mut y = vec![0xdead_u16; len.div_ceil(32) * stride];
            convert.round_to_tiles(&x, &mut y, stride);
            for (i, &x) in x.iter().enumerate() {
                assert_eq!(y[i / 32 * stride + i % 32], to_bf16(x), "{x:e} of {len}");
            }
            // Nothing written between the runs.
            for (j, row) in y.chunks(stride).enumerate() {
                let written = 32.min(len - 32 * j);
                assert!(row[written..].iter().all(|&v| v == 0xdead), "length {len}");
            }
        }
        let mut y = [0u16; 2];
        convert.round(&[f32::NAN, 1.0e-40], &mut y);
        assert!(crate::math::from_bf16(y[0]).is_nan());
        assert_eq!(
            y[1], 0,
            "a subnormal is read as zero (math::to_bf16 would keep it)"
        );
    }

    #[test]
    fn pairs_interleave_at_every_length_and_place() {
        let Some(convert) = converter() else { return };
        for len in [1, 5, 16, 17, 40] {
            let even = cases(len);
            let odd: Vec<f32> = even.iter().map(|x| -x * 3.0).collect();
            let stride = 20; // each run of 16 pairs to its place, 20 apart
            let mut y = vec![u32::MAX; len.div_ceil(16) * stride];
            convert.pairs_to_tiles(&even, &odd, &mut y, stride);
            for i in 0..len {
                let want = u32::from(to_bf16(even[i])) | (u32::from(to_bf16(odd[i])) << 16);
                assert_eq!(y[i / 16 * stride + i % 16], want, "pair {i} of {len}");
            }
            for (j, row) in y.chunks(stride).enumerate() {
                let written = 16.min(len - 16 * j);
                assert!(
                    row[written..].iter().all(|&v| v == u32::MAX),
                    "length {len}"
                );
            }
        }
    }
}
