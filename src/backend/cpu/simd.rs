//! Elementwise loops compiled twice, for the baseline x86-64 (SSE2) and for AVX-512, and
//! picked at run time: the crate is built for any x86-64, yet a map over a buffer runs 16
//! lanes wide where the processor allows. The kernels' arithmetic is plain `+ − × ÷` and
//! comparisons (see `crate::math`), so both builds compute the same bits.

use crate::backend::Distribution;
use crate::rng::{PhiloxStream, WIDE_BLOCKS};

/// Runs `body` compiled for AVX-512 when the processor has it, else for the baseline.
/// `body` must be `#[inline(always)]`-friendly code over slices: the point is that it is
/// inlined into (and so vectorised for) each build.
macro_rules! dispatch {
    ($name:ident, ($($arg:ident: $ty:ty),*), $body:expr) => {
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx512f") {
                /// # Safety
                /// The processor must support AVX-512F.
                #[target_feature(enable = "avx512f")]
                unsafe fn wide($($arg: $ty),*) {
                    $body
                }
                // SAFETY: the processor supports AVX-512F (checked just above).
                return unsafe { wide($($arg),*) };
            }
            $body
        }
    };
}

dispatch!(map, (x: &[f32], y: &mut [f32], f: impl Fn(f32) -> f32), {
    // y[i] = f(x[i])
    for (y, &x) in y.iter_mut().zip(x) {
        *y = f(x);
    }
});

dispatch!(zip_map, (a: &[f32], b: &[f32], y: &mut [f32], f: impl Fn(f32, f32) -> f32), {
    // y[i] = f(a[i], b[i])
    for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
        *y = f(a, b);
    }
});

dispatch!(map_in_place, (y: &mut [f32], f: impl Fn(f32) -> f32), {
    // y[i] = f(y[i])
    for y in y.iter_mut() {
        *y = f(*y);
    }
});

dispatch!(zip_map_in_place, (y: &mut [f32], b: &[f32], f: impl Fn(f32, f32) -> f32), {
    // y[i] = f(y[i], b[i])
    for (y, &b) in y.iter_mut().zip(b) {
        *y = f(*y, b);
    }
});

dispatch!(
    update,
    (
        param: &mut [f32],
        grad: &[f32],
        state_a: &mut [f32],
        state_b: &mut [f32],
        f: impl Fn(&mut f32, f32, &mut f32, &mut f32)
    ),
    {
        // f(param[i], grad[i], state_a[i], state_b[i]): an optimiser's update, in place.
        let len = param.len();
        let (grad, state_a, state_b) = (&grad[..len], &mut state_a[..len], &mut state_b[..len]);
        for i in 0..len {
            f(&mut param[i], grad[i], &mut state_a[i], &mut state_b[i]);
        }
    }
);

dispatch!(
    fill_random,
    (out: &mut [f32], stream: PhiloxStream, first_block: u64, distribution: Distribution),
    {
        // out[i] = value 4 · first_block + i of the draw, WIDE_BLOCKS Philox blocks at a time.
        const LANES: usize = WIDE_BLOCKS;
        for (group, values) in out.chunks_mut(4 * LANES).enumerate() {
            let words = stream.wide_blocks(first_block + (group * LANES) as u64);
            let lanes = distribution.sample_lanes(words);
            // Value 4l + w of the group is value w of block l.
            let blocks: [[f32; 4]; LANES] =
                std::array::from_fn(|l| [lanes[0][l], lanes[1][l], lanes[2][l], lanes[3][l]]);
            let blocks = blocks.as_flattened();
            match <&mut [f32; 4 * LANES]>::try_from(&mut *values) {
                // A whole group: a copy of known length, inlined (a call to `memcpy` otherwise).
                Ok(whole) => whole.copy_from_slice(blocks),
                Err(_) => values.copy_from_slice(&blocks[..values.len()]),
            }
        }
    }
);
