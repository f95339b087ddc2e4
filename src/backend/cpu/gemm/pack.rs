//! Packing: copying an operand into the micro-panels the microkernel reads strictly in order
//! (`width` rows of `A` or columns of `B` side by side, step of `k` after step of `k`), reading
//! each layout along its contiguous direction.

use crate::backend::cpu::pool::LineAligned;
use crate::backend::cpu::product::{run_chunk_tasks, Layout};

/// Packs all of an operand (`count` rows of `A` or columns of `B`, the full `k`) into
/// `width`-wide micro-panels, a few panels per task, into a buffer of the pool that starts on
/// a cache line.
pub(super) fn pack_all(
    src: &[f32],
    layout: Layout,
    count: usize,
    k: usize,
    width: usize,
    parallel: bool,
) -> LineAligned {
    const MAX_PANELS_PER_TASK: usize = 4;
    let panels = count.div_ceil(width);
    // Up to four panels a task, fewer where that would leave a thread without work: `direct`
    // packs 64 rows of X, two panels.
    let panels_per_task = panels
        .div_ceil(rayon::current_num_threads())
        .clamp(1, MAX_PANELS_PER_TASK);
    // Every element is written by `pack`, padding included.
    let mut packed = LineAligned::take(panels * width * k);
    if k > 0 {
        run_chunk_tasks(
            &mut packed,
            panels_per_task * width * k,
            parallel,
            |task, chunk| {
                let x0 = task * panels_per_task * width;
                let len = (panels_per_task * width).min(count - x0);
                pack(src, layout, (x0, len), (0, k), width, chunk);
            },
        );
    }
    packed
}

/// Packs `x` in `x0..x0 + count` × `p` in `k0..k0 + kc` into `width`-wide micro-panels,
/// `packed[(panel · kc + p) · width + t] = src(x0 + panel · width + t, k0 + p)`, zero past
/// `count`. Each layout is read along its contiguous direction.
pub(super) fn pack(
    src: &[f32],
    layout: Layout,
    (x0, count): (usize, usize),
    (k0, kc): (usize, usize),
    width: usize,
    packed: &mut [f32],
) {
    for panel in 0..count.div_ceil(width) {
        let dst = &mut packed[panel * width * kc..(panel + 1) * width * kc];
        let first = x0 + panel * width;
        let valid = width.min(count - panel * width);
        match layout {
            #[cfg(target_arch = "x86_64")]
            Layout::AlongK { stride } if valid == width && transpose::fits(width) => {
                let start = first * stride + k0;
                // The transposes read src[start + t·stride + p] for t < width, p < kc: the
                // panel's rows, inside `src` as for the scalar path below.
                assert!(
                    start + (width - 1) * stride + kc <= src.len(),
                    "pack: short operand"
                );
                // SAFETY: the CPU supports AVX-512F (`fits`), the reads are inside `src`
                // (asserted above), and `dst` holds `width · kc` floats.
                unsafe { transpose::pack_panel(src.as_ptr().add(start), stride, width, kc, dst) };
            }
            Layout::AlongK { stride } => {
                for t in 0..valid {
                    let run = &src[(first + t) * stride + k0..][..kc];
                    for (p, &v) in run.iter().enumerate() {
                        dst[p * width + t] = v;
                    }
                }
            }
            Layout::AcrossK { stride } => {
                for (p, step) in dst.chunks_exact_mut(width).enumerate() {
                    let start = (k0 + p) * stride + first;
                    step[..valid].copy_from_slice(&src[start..start + valid]);
                }
            }
        }
        if valid < width {
            for step in dst.chunks_exact_mut(width) {
                step[valid..].fill(0.0);
            }
        }
    }
}

/// Packing a panel whose rows run along `k` is a transpose: element `(t, p)` goes to
/// `dst[p · width + t]`. Element by element, that is a strided load and a store each. With
/// AVX-512, blocks of 16 rows × 16 steps are transposed in registers instead: 16 loads along
/// the rows, 64 shuffles, 16 stores across them. (Gathering 16 rows at one step with
/// `VGATHERDPS` was tried first: AMD's Zen 4 runs those gathers as microcode, and the packing
/// of W then took as long as the multiplication; `benches/RESULTS.md`, 2026-12-05.)
#[cfg(target_arch = "x86_64")]
mod transpose {
    use std::arch::x86_64::*;

    /// Whether [`pack_panel`] handles panels `width` rows wide on this CPU.
    pub fn fits(width: usize) -> bool {
        (width == 8 || width.is_multiple_of(16)) && is_x86_feature_detected!("avx512f")
    }

    /// `dst[p · width + t] = src[t · stride + p]` for `t < width`, `p < kc`.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and [`fits`] must hold; every `src[t · stride + p]` must
    /// be readable, and `dst` must hold `width · kc` floats.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn pack_panel(
        src: *const f32,
        stride: usize,
        width: usize,
        kc: usize,
        dst: &mut [f32],
    ) {
        assert!(dst.len() >= width * kc, "pack: short panel");
        let dst = dst.as_mut_ptr();
        let mut rows = [_mm512_setzero_ps(); 16];
        if width == 8 {
            // Eight rows fill half a block: the other half takes the same rows 16 steps
            // further, so that output j holds step p + j in its low half and step p + 16 + j
            // in its high half.
            for p in (0..kc).step_by(32) {
                for t in 0..8 {
                    // SAFETY: row t, readable up to step kc (the caller's contract).
                    unsafe {
                        rows[t] = load_steps(src.add(t * stride), p, kc);
                        rows[8 + t] = load_steps(src.add(t * stride), p + 16, kc);
                    }
                }
                for (j, steps) in transpose_16x16(rows).into_iter().enumerate() {
                    let halves = _mm512_castps_pd(steps);
                    let low = _mm256_castpd_ps(_mm512_castpd512_pd256(halves));
                    let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(halves));
                    // SAFETY: dst[8·step..][..8] for a step < kc, inside `dst`.
                    unsafe {
                        if p + j < kc {
                            _mm256_storeu_ps(dst.add(8 * (p + j)), low);
                        }
                        if p + 16 + j < kc {
                            _mm256_storeu_ps(dst.add(8 * (p + 16 + j)), high);
                        }
                    }
                }
            }
            return;
        }
        for group in 0..width / 16 {
            for p in (0..kc).step_by(16) {
                for (t, row) in rows.iter_mut().enumerate() {
                    // SAFETY: row 16·group + t, readable up to step kc (the caller's contract).
                    *row = unsafe { load_steps(src.add((16 * group + t) * stride), p, kc) };
                }
                for (j, steps) in transpose_16x16(rows).into_iter().enumerate().take(kc - p) {
                    // SAFETY: dst[(p + j)·width + 16·group..][..16], p + j < kc: inside `dst`.
                    unsafe { _mm512_storeu_ps(dst.add((p + j) * width + 16 * group), steps) };
                }
            }
        }
    }

    /// `row[first..first + 16]`, the steps at or past `kc` read as zero (masked: not read).
    ///
    /// # Safety
    /// The CPU must support AVX-512F, and `row[..kc]` must be readable.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load_steps(row: *const f32, first: usize, kc: usize) -> __m512 {
        if first >= kc {
            return _mm512_setzero_ps();
        }
        let valid = (kc - first).min(16);
        let mask = ((1u32 << valid) - 1) as __mmask16;
        // SAFETY: the lanes the mask keeps are row[first..kc], readable (the contract).
        unsafe { _mm512_maskz_loadu_ps(mask, row.add(first)) }
    }

    /// `out[j][i] = rows[i][j]`: a 16 × 16 block transposed in three rounds of shuffles.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn transpose_16x16(rows: [__m512; 16]) -> [__m512; 16] {
        // 1. Interleave pairs of rows within each 128-bit lane L (columns 4L..4L + 4):
        //    pairs[2i] = (r₂ᵢ[4L], r₂ᵢ₊₁[4L], r₂ᵢ[4L+1], r₂ᵢ₊₁[4L+1]), pairs[2i + 1] the next two.
        let mut pairs = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            pairs[2 * i] = _mm512_unpacklo_ps(rows[2 * i], rows[2 * i + 1]);
            pairs[2 * i + 1] = _mm512_unpackhi_ps(rows[2 * i], rows[2 * i + 1]);
        }
        // 2. Pairs of pairs, as 64-bit elements: lane L of quads[4q + s] holds rows 4q..4q + 4
        //    at column 4L + s.
        let mut quads = [_mm512_setzero_ps(); 16];
        for q in 0..4 {
            let [p0, p1, p2, p3] = [0, 1, 2, 3].map(|i| _mm512_castps_pd(pairs[4 * q + i]));
            quads[4 * q] = _mm512_castpd_ps(_mm512_unpacklo_pd(p0, p2));
            quads[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(p0, p2));
            quads[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(p1, p3));
            quads[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(p1, p3));
        }
        // 3. Column 4L + s is lane L of quads[s], quads[4 + s], quads[8 + s], quads[12 + s]
        //    (call them A, B, C, D): two rounds of moving whole lanes. 0x88 takes lanes 0 and 2
        //    of each source, 0xDD lanes 1 and 3.
        let mut out = [_mm512_setzero_ps(); 16];
        for s in 0..4 {
            let (a, b, c, d) = (quads[s], quads[4 + s], quads[8 + s], quads[12 + s]);
            let ab_even = _mm512_shuffle_f32x4::<0x88>(a, b); // A₀ A₂ B₀ B₂
            let ab_odd = _mm512_shuffle_f32x4::<0xDD>(a, b); // A₁ A₃ B₁ B₃
            let cd_even = _mm512_shuffle_f32x4::<0x88>(c, d);
            let cd_odd = _mm512_shuffle_f32x4::<0xDD>(c, d);
            out[s] = _mm512_shuffle_f32x4::<0x88>(ab_even, cd_even); // A₀ B₀ C₀ D₀
            out[8 + s] = _mm512_shuffle_f32x4::<0xDD>(ab_even, cd_even); // A₂ B₂ C₂ D₂
            out[4 + s] = _mm512_shuffle_f32x4::<0x88>(ab_odd, cd_odd); // A₁ B₁ C₁ D₁
            out[12 + s] = _mm512_shuffle_f32x4::<0xDD>(ab_odd, cd_odd); // A₃ B₃ C₃ D₃
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pack` against its definition, for panels the transposes take (8 rows or a multiple of
    /// 16, every step of `k` in place, on a processor with AVX-512) and those they leave to the
    /// scalar loop: a part of a panel, or other widths. Lengths of `k` around the transposes'
    /// 16 and 32 steps, and an operand entered at row 1 and step 3.
    #[test]
    fn packed_panels_hold_each_element_at_its_place() {
        let (x0, k0) = (1, 3);
        for width in [4usize, 6, 8, 16, 32, 48] {
            for kc in [1, 7, 15, 16, 17, 31, 32, 33, 48, 100] {
                let stride = k0 + kc + 5;
                for count in [width, width - 1, 2 * width + 3] {
                    let rows = x0 + count;
                    let src: Vec<f32> = (0..rows * stride).map(|i| i as f32).collect();
                    let panels = count.div_ceil(width);
                    let mut packed = vec![f32::NAN; panels * width * kc];
                    let layout = Layout::AlongK { stride };
                    pack(&src, layout, (x0, count), (k0, kc), width, &mut packed);
                    for panel in 0..panels {
                        for p in 0..kc {
                            for t in 0..width {
                                let x = panel * width + t;
                                let expected = if x < count {
                                    src[(x0 + x) * stride + k0 + p]
                                } else {
                                    0.0
                                };
                                let got = packed[(panel * kc + p) * width + t];
                                assert_eq!(
                                    got, expected,
                                    "width {width}, kc {kc}, count {count}: panel {panel}, \
                                     step {p}, row {t}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
