//! The CPU backend: buffers in host memory, kernels mapped over them on the rayon pool.
//!
//! Every result is independent of the number of threads: elementwise kernels compute each
//! element alone, and reductions split their input at fixed boundaries and combine the partial
//! sums in a fixed order. The same seed therefore gives bit-identical losses run to run.

mod amx;
mod gemm;
pub mod gemm_steps;
pub mod hot_pool;
mod microkernel;
mod pool;
mod processor;
mod product;
mod simd;
#[cfg(target_os = "macos")]
mod sysctl;
mod threads;

pub use amx::{
    amx_support, avx512_bf16_rate, bf16_allowed, bf16_support, enable_bf16, set_allow_bf16,
    Bf16Units, BF16_UNITS_ENV,
};
pub use gemm::{gemm, gemm_into, gemm_with_epilogue, gemm_with_kernel};
pub use microkernel::{Microkernel, KERNEL_ENV};
pub use pool::fresh_buffers;
pub use processor::{describe_processor, processor_name};
pub use threads::{physical_cores, rayon_threads_env_warning, start_thread_pool};

use rayon::prelude::*;

use super::{
    BackendStorage, BinaryKernel, Broadcast, Distribution, GemmDims, LhsRule, OptimizerKernel,
    TernaryKernel, UnaryKernel,
};
use crate::rng::PhiloxStream;

/// Below this many elements per task the pool's overhead outweighs the work.
const MIN_ELEMENTS_PER_TASK: usize = 8192;
/// The fixed chunk of a full reduction; partial sums are combined in chunk order.
const SUM_CHUNK: usize = 4096;
/// Elements per task of an optimiser update.
const OPTIMIZER_CHUNK: usize = 16384;
/// Elements per task of a random fill, 5–10 µs of work each: a uniform value or a dropout
/// mask's element costs 0.6–1 ns, a normal value 7–9 (a logarithm, a sine and a cosine per
/// pair; AMD Zen 4, 2026-12-06), so even a GAN step's batch of noise (6,400 values) is split.
/// A multiple of 4, so a task starts on a Philox block.
fn random_chunk(distribution: Distribution) -> usize {
    match distribution {
        Distribution::Normal { .. } => 1024,
        Distribution::Uniform { .. } | Distribution::DropoutMask { .. } => 8192,
    }
}

/// A tensor's elements in host memory, row-major. The buffer goes back to the backend's cache
/// when the storage is dropped (see `pool.rs`).
#[derive(Clone, Debug, PartialEq)]
pub struct CpuStorage(Vec<f32>);

impl Drop for CpuStorage {
    fn drop(&mut self) {
        pool::give_back(std::mem::take(&mut self.0));
    }
}

impl CpuStorage {
    /// Storage that owns `data`.
    pub fn from_vec(data: Vec<f32>) -> Self {
        CpuStorage(data)
    }

    /// `len` copies of `value`, in a buffer from the cache of freed ones where one fits.
    pub fn full(len: usize, value: f32) -> Self {
        let mut data = pool::take(len);
        data.fill(value);
        CpuStorage(data)
    }

    /// Values `0..len` of the draw `stream`; value `i` comes from Philox block `i / 4`.
    pub fn random(len: usize, distribution: Distribution, stream: PhiloxStream) -> Self {
        let mut data = pool::take(len);
        let chunk_len = random_chunk(distribution);
        data.par_chunks_mut(chunk_len)
            .enumerate()
            .for_each(|(chunk, out)| {
                let first_block = (chunk * chunk_len / 4) as u64;
                simd::fill_random(out, stream, first_block, distribution);
            });
        CpuStorage(data)
    }
}

impl BackendStorage for CpuStorage {
    fn to_vec(&self) -> Vec<f32> {
        self.0.clone()
    }

    fn write(&mut self, values: &[f32]) {
        self.0.copy_from_slice(values);
    }

    fn copy_from(&mut self, src: &Self) {
        self.0.copy_from_slice(&src.0);
    }

    fn concat(parts: &[&Self]) -> Self {
        let mut out = pool::take(parts.iter().map(|part| part.0.len()).sum());
        let mut rest = out.as_mut_slice();
        for part in parts {
            let (head, tail) = rest.split_at_mut(part.0.len());
            head.copy_from_slice(&part.0);
            rest = tail;
        }
        CpuStorage(out)
    }

    fn slice(&self, start: usize, len: usize) -> Self {
        let mut out = pool::take(len);
        out.copy_from_slice(&self.0[start..start + len]);
        CpuStorage(out)
    }

    fn unary<K: UnaryKernel>(&self, kernel: &K) -> Self {
        let mut out = pool::take(self.0.len());
        out.par_chunks_mut(MIN_ELEMENTS_PER_TASK)
            .zip(self.0.par_chunks(MIN_ELEMENTS_PER_TASK))
            .for_each(|(y, x)| simd::map(x, y, |x| kernel.apply(x)));
        CpuStorage(out)
    }

    fn binary<K: BinaryKernel>(&self, rhs: &Self, broadcast: Broadcast, kernel: &K) -> Self {
        let (lhs, rhs) = (&self.0, &rhs.0);
        let mut out = pool::take(lhs.len());
        match broadcast {
            Broadcast::None => out
                .par_chunks_mut(MIN_ELEMENTS_PER_TASK)
                .zip(lhs.par_chunks(MIN_ELEMENTS_PER_TASK))
                .zip(rhs.par_chunks(MIN_ELEMENTS_PER_TASK))
                .for_each(|((y, a), b)| simd::zip_map(a, b, y, |a, b| kernel.apply(a, b))),
            Broadcast::Rows => {
                let cols = rhs.len();
                out.par_chunks_mut(cols)
                    .zip(lhs.par_chunks(cols))
                    .with_min_len(MIN_ELEMENTS_PER_TASK.div_ceil(cols))
                    .for_each(|(out_row, lhs_row)| {
                        simd::zip_map(lhs_row, rhs, out_row, |a, b| kernel.apply(a, b))
                    });
            }
            Broadcast::Scalar => {
                let b = rhs[0];
                out.par_chunks_mut(MIN_ELEMENTS_PER_TASK)
                    .zip(lhs.par_chunks(MIN_ELEMENTS_PER_TASK))
                    .for_each(|(y, a)| simd::map(a, y, |a| kernel.apply(a, b)));
            }
        }
        CpuStorage(out)
    }

    fn ternary<K: TernaryKernel>(&self, b: &Self, c: &Self, kernel: &K) -> Self {
        let mut out = pool::take(self.0.len());
        let c = c.0[0];
        out.par_chunks_mut(MIN_ELEMENTS_PER_TASK)
            .zip(self.0.par_chunks(MIN_ELEMENTS_PER_TASK))
            .zip(b.0.par_chunks(MIN_ELEMENTS_PER_TASK))
            .for_each(|((y, a), b)| simd::zip_map(a, b, y, |a, b| kernel.apply(a, b, c)));
        CpuStorage(out)
    }

    fn sum_all(&self, scale: f32) -> Self {
        // Each chunk is summed in f64, then the partial sums in chunk order: the same bits for
        // any number of threads, and no loss of precision over long buffers.
        let partials: Vec<f64> = self
            .0
            .par_chunks(SUM_CHUNK)
            .map(|chunk| chunk.iter().map(|&x| f64::from(x)).sum())
            .collect();
        CpuStorage(vec![partials.iter().sum::<f64>() as f32 * scale])
    }

    fn map_sum_all<K: BinaryKernel>(&self, rhs: &Self, kernel: &K, scale: f32) -> Self {
        debug_assert_eq!(self.0.len(), rhs.0.len());
        // sum_all's chunks and order, each value mapped as it is added.
        let partials: Vec<f64> = self
            .0
            .par_chunks(SUM_CHUNK)
            .zip(rhs.0.par_chunks(SUM_CHUNK))
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .map(|(&a, &b)| f64::from(kernel.apply(a, b)))
                    .sum()
            })
            .collect();
        CpuStorage(vec![partials.iter().sum::<f64>() as f32 * scale])
    }

    fn sum_rows(&self, rows: usize, cols: usize) -> Self {
        debug_assert_eq!(rows * cols, self.0.len());
        // Each task owns a band of columns and walks the rows in order.
        const BAND: usize = 256;
        let mut out = pool::take(cols);
        out.fill(0.0);
        out.par_chunks_mut(BAND)
            .enumerate()
            .for_each(|(band, sums)| {
                let first_col = band * BAND;
                for row in self.0.chunks(cols) {
                    for (sum, &x) in sums.iter_mut().zip(&row[first_col..]) {
                        *sum += x;
                    }
                }
            });
        CpuStorage(out)
    }

    fn expand_scalar(&self, len: usize, scale: f32) -> Self {
        CpuStorage::full(len, self.0[0] * scale)
    }

    fn gemm<E: UnaryKernel>(
        &self,
        rhs: &Self,
        bias: Option<&Self>,
        dims: GemmDims,
        epilogue: &E,
    ) -> Self {
        let bias = bias.map(|b| b.0.as_slice());
        CpuStorage(gemm_with_epilogue(&self.0, &rhs.0, bias, dims, epilogue))
    }

    fn through_rule(&self, rule: LhsRule<'_, Self>) -> Self {
        // Also how the products below take a rule: once, before them (the CPU's GEMM packs
        // its operands anyway).
        let mut out = pool::take(self.0.len());
        out.par_chunks_mut(MIN_ELEMENTS_PER_TASK)
            .enumerate()
            .for_each(|(chunk, out)| {
                let start = chunk * MIN_ELEMENTS_PER_TASK;
                let range = start..start + out.len();
                out.copy_from_slice(&self.0[range.clone()]);
                if let Some(mask) = rule.mask {
                    simd::zip_map_in_place(out, &mask.0[range.clone()], |grad, keep| grad * keep);
                }
                rule.rule.apply_in_place(&rule.saved.0[range], out);
            });
        CpuStorage(out)
    }

    fn gemm_through_rule(
        &self,
        rhs: &Self,
        dims: GemmDims,
        rule: Option<LhsRule<'_, Self>>,
    ) -> Self {
        match rule {
            Some(rule) => self
                .through_rule(rule)
                .gemm(rhs, None, dims, &super::Identity),
            None => self.gemm(rhs, None, dims, &super::Identity),
        }
    }

    fn gemm_with_lhs_row_sums(
        &self,
        rhs: &Self,
        dims: GemmDims,
        rule: Option<LhsRule<'_, Self>>,
    ) -> (Self, Self) {
        assert!(
            dims.lhs_transposed,
            "gemm_with_lhs_row_sums: A is stored [k, m]"
        );
        if let Some(rule) = rule {
            return self
                .through_rule(rule)
                .gemm_with_lhs_row_sums(rhs, dims, None);
        }
        let product = self.gemm(rhs, None, dims, &super::Identity);
        (product, self.sum_rows(dims.k, dims.m))
    }

    fn gemm_pair_with_lhs_row_sums(
        &self,
        rule: Option<LhsRule<'_, Self>>,
        (rhs, dims): (&Self, GemmDims),
        (rhs2, dims2): (&Self, GemmDims),
    ) -> (Self, (Self, Self)) {
        if let Some(rule) = rule {
            let mapped = self.through_rule(rule);
            return mapped.gemm_pair_with_lhs_row_sums(None, (rhs, dims), (rhs2, dims2));
        }
        // One after the other: each product splits its work over the whole pool already.
        let first = self.gemm(rhs, None, dims, &super::Identity);
        (first, self.gemm_with_lhs_row_sums(rhs2, dims2, None))
    }

    fn gemm_dropout<E: UnaryKernel>(
        &self,
        rhs: &Self,
        bias: Option<&Self>,
        dims: GemmDims,
        epilogue: &E,
        p: f32,
        stream: PhiloxStream,
    ) -> (Self, Self) {
        let mut out = self.gemm(rhs, bias, dims, epilogue);
        let mask = CpuStorage::random(out.0.len(), Distribution::DropoutMask { p }, stream);
        out.0
            .par_chunks_mut(MIN_ELEMENTS_PER_TASK)
            .zip(mask.0.par_chunks(MIN_ELEMENTS_PER_TASK))
            .for_each(|(y, keep)| simd::zip_map_in_place(y, keep, |y, keep| y * keep));
        (out, mask)
    }

    fn optimizer_step<K: OptimizerKernel>(
        params: &mut [&mut Self],
        grads: &[&Self],
        state_a: &mut [&mut Self],
        state_b: &mut [&mut Self],
        scalars: &mut Self,
        kernel: &K,
    ) {
        kernel.prepare(&mut scalars.0);
        let scalars = scalars.0.as_slice();
        for (((param, grad), a), b) in params.iter_mut().zip(grads).zip(state_a).zip(state_b) {
            // Chunks, each a loop the compiler vectorises (sqrt and division included): the
            // update is one pass over memory, four streams in, three out.
            param
                .0
                .par_chunks_mut(OPTIMIZER_CHUNK)
                .zip(grad.0.par_chunks(OPTIMIZER_CHUNK))
                .zip(a.0.par_chunks_mut(OPTIMIZER_CHUNK))
                .zip(b.0.par_chunks_mut(OPTIMIZER_CHUNK))
                .for_each(|(((p, g), a), b)| {
                    simd::update(p, g, a, b, |p, g, a, b| kernel.update(scalars, p, g, a, b))
                });
        }
    }
}
