//! Packing: copying an operand into the micro-panels the microkernel reads strictly in order
//! (`width` rows of `A` or columns of `B` side by side, step of `k` after step of `k`), reading
//! each layout along its contiguous direction.

use crate::backend::cpu::pool;
use crate::backend::cpu::product::{run_chunk_tasks, Layout};

/// Packs all of an operand (`count` rows of `A` or columns of `B`, the full `k`) into
/// `width`-wide micro-panels, a few panels per task, from a buffer of the pool.
pub(super) fn pack_all(
    src: &[f32],
    layout: Layout,
    count: usize,
    k: usize,
    width: usize,
    parallel: bool,
) -> Vec<f32> {
    const MAX_PANELS_PER_TASK: usize = 4;
    let panels = count.div_ceil(width);
    // Up to four panels a task, fewer where that would leave a thread without work: `direct`
    // packs 64 rows of X, two panels.
    let panels_per_task = panels
        .div_ceil(rayon::current_num_threads())
        .clamp(1, MAX_PANELS_PER_TASK);
    // Every element is written by `pack`, padding included.
    let mut packed = pool::take(panels * width * k);
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
            Layout::AlongK { stride } if valid == width && gather::fits(width, stride) => {
                let start = first * stride + k0;
                // The gathers read src[start + t·stride + p] for t < width, p < kc: the
                // panel's rows, inside `src` as for the scalar path below.
                assert!(
                    start + (width - 1) * stride + kc <= src.len(),
                    "pack: short operand"
                );
                // SAFETY: the CPU supports AVX-512F (`fits`), the reads are inside `src`
                // (asserted above), and `dst` holds `width · kc` floats.
                unsafe { gather::pack_panel(src.as_ptr().add(start), stride, width, kc, dst) };
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
/// `dst[p · width + t]`. Scalar, that is a strided load and a store per element; an AVX-512
/// gather fetches 16 of them (16 rows at one `p`, or 8 rows at two) in one instruction.
#[cfg(target_arch = "x86_64")]
mod gather {
    use std::arch::x86_64::*;

    /// Whether [`pack_panel`] handles panels of `width` rows `stride` apart on this CPU.
    pub fn fits(width: usize, stride: usize) -> bool {
        (width == 8 || width.is_multiple_of(16))
            && 16 * stride < i32::MAX as usize
            && is_x86_feature_detected!("avx512f")
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
        // Element offsets of the 16 lanes of a gather, from a lane's (row, step).
        let lanes = |lane: fn(i32) -> (i32, i32)| {
            let offsets: [i32; 16] = std::array::from_fn(|l| {
                let (row, step) = lane(l as i32);
                row * stride as i32 + step
            });
            // SAFETY: an unaligned load of the 64 bytes of `offsets`.
            unsafe { _mm512_loadu_si512(offsets.as_ptr().cast()) }
        };
        if width == 8 {
            // Lane l: row l % 8 at step p + l / 8 — two steps of eight rows per gather.
            let rows = lanes(|l| (l % 8, l / 8));
            let mut p = 0;
            while p + 2 <= kc {
                // SAFETY: rows 0..8 at steps p and p + 1, readable (the caller's contract);
                // dst[8p..8p + 16] is inside `dst`.
                unsafe {
                    let v = _mm512_i32gather_ps::<4>(rows, src.add(p));
                    _mm512_storeu_ps(dst.add(8 * p), v);
                }
                p += 2;
            }
            if p < kc {
                for t in 0..8 {
                    // SAFETY: as above, the last step alone.
                    unsafe { *dst.add(8 * p + t) = *src.add(t * stride + p) };
                }
            }
            return;
        }
        // Lane l: row l of a group of 16 rows, at one step.
        let rows = lanes(|l| (l, 0));
        for p in 0..kc {
            for group in 0..width / 16 {
                // SAFETY: rows 16·group.. at step p, readable (the caller's contract);
                // dst[p·width + 16·group..][..16] is inside `dst`.
                unsafe {
                    let base = src.add(16 * group * stride + p);
                    let v = _mm512_i32gather_ps::<4>(rows, base);
                    _mm512_storeu_ps(dst.add(p * width + 16 * group), v);
                }
            }
        }
    }
}
