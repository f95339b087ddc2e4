//! One storage type over every backend: the only place that matches on the device.
//!
//! Tensors hold a [`Storage`]; ops call its methods and never look inside. Adding a device means
//! a new variant here and one more arm per method, nothing above. Ops check that their operands
//! share a device before they get here, so mixed arms cannot occur.

use crate::backend::cpu::CpuStorage;
use crate::backend::cuda::{CudaPendingRead, CudaStorage};
use crate::backend::{
    BackendStorage, BinaryKernel, Broadcast, Distribution, GemmDims, LhsRule, OptimizerKernel,
    TernaryKernel, UnaryKernel,
};
use crate::device::Device;
use crate::rng::PhiloxStream;

#[derive(Debug)]
pub(crate) enum Storage {
    Cpu(CpuStorage),
    Cuda(CudaStorage),
}

/// The message of the arms that the op layer's device checks rule out.
const MIXED: &str = "operands on different devices reached the storage layer";

/// The backend storages inside a slice of `Storage`s, all of variant `$variant` (the op
/// layer's device checks make sure): `unwrap_all!(Cpu, parts)` is a `Vec<&CpuStorage>`, and
/// `unwrap_all!(mut Cpu, parts)` a `Vec<&mut CpuStorage>` from `&mut [&mut Storage]`.
macro_rules! unwrap_all {
    (mut $variant:ident, $storages:expr) => {
        $storages
            .iter_mut()
            .map(|s| match &mut **s {
                Storage::$variant(s) => s,
                _ => unreachable!("{MIXED}"),
            })
            .collect::<Vec<_>>()
    };
    ($variant:ident, $storages:expr) => {
        $storages
            .iter()
            .map(|s| match s {
                Storage::$variant(s) => s,
                _ => unreachable!("{MIXED}"),
            })
            .collect::<Vec<_>>()
    };
}

impl Storage {
    pub fn from_vec(data: Vec<f32>, device: &Device) -> Self {
        match device {
            Device::Cpu => Storage::Cpu(CpuStorage::from_vec(data)),
            Device::Cuda(d) => Storage::Cuda(CudaStorage::from_vec(data, d)),
        }
    }

    pub fn full(len: usize, value: f32, device: &Device) -> Self {
        match device {
            Device::Cpu => Storage::Cpu(CpuStorage::full(len, value)),
            Device::Cuda(d) => Storage::Cuda(CudaStorage::full(len, value, d)),
        }
    }

    pub fn random(
        len: usize,
        distribution: Distribution,
        stream: PhiloxStream,
        device: &Device,
    ) -> Self {
        match device {
            Device::Cpu => Storage::Cpu(CpuStorage::random(len, distribution, stream)),
            Device::Cuda(d) => Storage::Cuda(CudaStorage::random(len, distribution, stream, d)),
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(s) => Device::Cuda(s.device().clone()),
        }
    }

    pub fn to_vec(&self) -> Vec<f32> {
        match self {
            Storage::Cpu(s) => s.to_vec(),
            Storage::Cuda(s) => s.to_vec(),
        }
    }

    /// The values of several storages; those on one GPU are read back with one wait.
    pub fn read_all(storages: &[&Storage]) -> Vec<Vec<f32>> {
        match on_one_gpu(storages) {
            Some(cuda) => CudaStorage::read_all(&cuda),
            None => storages.iter().map(|s| s.to_vec()).collect(),
        }
    }

    /// [`Storage::read_all`] without waiting where the device allows: storages on one GPU
    /// start their copy back behind the work launched so far, and [`PendingValues::wait`]
    /// waits for that copy alone; elsewhere the values are read now.
    pub fn read_all_later(storages: &[&Storage]) -> PendingValues {
        PendingValues(match on_one_gpu(storages) {
            Some(cuda) => Pending::Cuda(CudaStorage::read_all_later(&cuda)),
            None => Pending::Ready(storages.iter().map(|s| s.to_vec()).collect()),
        })
    }

    pub fn write(&mut self, values: &[f32]) {
        match self {
            Storage::Cpu(s) => s.write(values),
            Storage::Cuda(s) => s.write(values),
        }
    }

    /// Overwrites every element with `src`'s, in place; `src` may be on another device.
    pub fn copy_from(&mut self, src: &Storage) {
        match (self, src) {
            (Storage::Cpu(dst), Storage::Cpu(src)) => dst.copy_from(src),
            (Storage::Cuda(dst), Storage::Cuda(src)) if dst.device() == src.device() => {
                dst.copy_from(src)
            }
            (dst, src) => dst.write(&src.to_vec()),
        }
    }

    /// The parts one after another (all on one device).
    pub fn concat(parts: &[&Storage]) -> Self {
        match parts.first() {
            Some(Storage::Cuda(_)) => Storage::Cuda(CudaStorage::concat(&unwrap_all!(Cuda, parts))),
            _ => Storage::Cpu(CpuStorage::concat(&unwrap_all!(Cpu, parts))),
        }
    }

    pub fn slice(&self, start: usize, len: usize) -> Self {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.slice(start, len)),
            Storage::Cuda(s) => Storage::Cuda(s.slice(start, len)),
        }
    }

    pub fn unary<K: UnaryKernel>(&self, kernel: &K) -> Self {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.unary(kernel)),
            Storage::Cuda(s) => Storage::Cuda(s.unary(kernel)),
        }
    }

    pub fn binary<K: BinaryKernel>(&self, rhs: &Self, broadcast: Broadcast, kernel: &K) -> Self {
        match (self, rhs) {
            (Storage::Cpu(a), Storage::Cpu(b)) => Storage::Cpu(a.binary(b, broadcast, kernel)),
            (Storage::Cuda(a), Storage::Cuda(b)) => Storage::Cuda(a.binary(b, broadcast, kernel)),
            _ => unreachable!("{MIXED}"),
        }
    }

    pub fn ternary<K: TernaryKernel>(&self, b: &Self, c: &Self, kernel: &K) -> Self {
        match (self, b, c) {
            (Storage::Cpu(a), Storage::Cpu(b), Storage::Cpu(c)) => {
                Storage::Cpu(a.ternary(b, c, kernel))
            }
            (Storage::Cuda(a), Storage::Cuda(b), Storage::Cuda(c)) => {
                Storage::Cuda(a.ternary(b, c, kernel))
            }
            _ => unreachable!("{MIXED}"),
        }
    }

    pub fn map_sum_all<K: BinaryKernel>(&self, rhs: &Self, kernel: &K, scale: f32) -> Self {
        match (self, rhs) {
            (Storage::Cpu(a), Storage::Cpu(b)) => Storage::Cpu(a.map_sum_all(b, kernel, scale)),
            (Storage::Cuda(a), Storage::Cuda(b)) => Storage::Cuda(a.map_sum_all(b, kernel, scale)),
            _ => unreachable!("{MIXED}"),
        }
    }

    pub fn sum_all(&self, scale: f32) -> Self {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.sum_all(scale)),
            Storage::Cuda(s) => Storage::Cuda(s.sum_all(scale)),
        }
    }

    pub fn sum_rows(&self, rows: usize, cols: usize) -> Self {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.sum_rows(rows, cols)),
            Storage::Cuda(s) => Storage::Cuda(s.sum_rows(rows, cols)),
        }
    }

    pub fn expand_scalar(&self, len: usize, scale: f32) -> Self {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.expand_scalar(len, scale)),
            Storage::Cuda(s) => Storage::Cuda(s.expand_scalar(len, scale)),
        }
    }

    pub fn gemm<E: UnaryKernel>(
        &self,
        rhs: &Self,
        bias: Option<&Self>,
        dims: GemmDims,
        epilogue: &E,
    ) -> Self {
        match (self, rhs, bias) {
            (Storage::Cpu(a), Storage::Cpu(b), None) => {
                Storage::Cpu(a.gemm(b, None, dims, epilogue))
            }
            (Storage::Cpu(a), Storage::Cpu(b), Some(Storage::Cpu(bias))) => {
                Storage::Cpu(a.gemm(b, Some(bias), dims, epilogue))
            }
            (Storage::Cuda(a), Storage::Cuda(b), None) => {
                Storage::Cuda(a.gemm(b, None, dims, epilogue))
            }
            (Storage::Cuda(a), Storage::Cuda(b), Some(Storage::Cuda(bias))) => {
                Storage::Cuda(a.gemm(b, Some(bias), dims, epilogue))
            }
            _ => unreachable!("{MIXED}"),
        }
    }

    pub fn through_rule(&self, rule: LhsRule<'_, Self>) -> Self {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.through_rule(rule_on(rule, Storage::as_cpu))),
            Storage::Cuda(s) => Storage::Cuda(s.through_rule(rule_on(rule, Storage::as_cuda))),
        }
    }

    pub fn gemm_through_rule(
        &self,
        rhs: &Self,
        dims: GemmDims,
        rule: Option<LhsRule<'_, Self>>,
    ) -> Self {
        match (self, rhs) {
            (Storage::Cpu(a), Storage::Cpu(b)) => Storage::Cpu(a.gemm_through_rule(
                b,
                dims,
                rule.map(|r| rule_on(r, Storage::as_cpu)),
            )),
            (Storage::Cuda(a), Storage::Cuda(b)) => Storage::Cuda(a.gemm_through_rule(
                b,
                dims,
                rule.map(|r| rule_on(r, Storage::as_cuda)),
            )),
            _ => unreachable!("{MIXED}"),
        }
    }

    pub fn gemm_with_lhs_row_sums(
        &self,
        rhs: &Self,
        dims: GemmDims,
        rule: Option<LhsRule<'_, Self>>,
    ) -> (Self, Self) {
        match (self, rhs) {
            (Storage::Cpu(a), Storage::Cpu(b)) => {
                let rule = rule.map(|r| rule_on(r, Storage::as_cpu));
                let (product, sums) = a.gemm_with_lhs_row_sums(b, dims, rule);
                (Storage::Cpu(product), Storage::Cpu(sums))
            }
            (Storage::Cuda(a), Storage::Cuda(b)) => {
                let rule = rule.map(|r| rule_on(r, Storage::as_cuda));
                let (product, sums) = a.gemm_with_lhs_row_sums(b, dims, rule);
                (Storage::Cuda(product), Storage::Cuda(sums))
            }
            _ => unreachable!("{MIXED}"),
        }
    }

    pub fn gemm_pair_with_lhs_row_sums(
        &self,
        rule: Option<LhsRule<'_, Self>>,
        (rhs, dims): (&Self, GemmDims),
        (rhs2, dims2): (&Self, GemmDims),
    ) -> (Self, (Self, Self)) {
        match (self, rhs, rhs2) {
            (Storage::Cpu(a), Storage::Cpu(b), Storage::Cpu(d)) => {
                let rule = rule.map(|r| rule_on(r, Storage::as_cpu));
                let (first, (second, sums)) =
                    a.gemm_pair_with_lhs_row_sums(rule, (b, dims), (d, dims2));
                let cpu = Storage::Cpu;
                (cpu(first), (cpu(second), cpu(sums)))
            }
            (Storage::Cuda(a), Storage::Cuda(b), Storage::Cuda(d)) => {
                let rule = rule.map(|r| rule_on(r, Storage::as_cuda));
                let (first, (second, sums)) =
                    a.gemm_pair_with_lhs_row_sums(rule, (b, dims), (d, dims2));
                let cuda = Storage::Cuda;
                (cuda(first), (cuda(second), cuda(sums)))
            }
            _ => unreachable!("{MIXED}"),
        }
    }

    fn as_cpu(&self) -> Option<&CpuStorage> {
        match self {
            Storage::Cpu(s) => Some(s),
            Storage::Cuda(_) => None,
        }
    }

    fn as_cuda(&self) -> Option<&CudaStorage> {
        match self {
            Storage::Cuda(s) => Some(s),
            Storage::Cpu(_) => None,
        }
    }

    #[allow(clippy::too_many_arguments)] // as BackendStorage::gemm_dropout
    pub fn gemm_dropout<E: UnaryKernel>(
        &self,
        rhs: &Self,
        bias: Option<&Self>,
        dims: GemmDims,
        epilogue: &E,
        p: f32,
        stream: PhiloxStream,
    ) -> (Self, Self) {
        match (self, rhs, bias) {
            (Storage::Cpu(a), Storage::Cpu(b), None) => {
                let (out, mask) = a.gemm_dropout(b, None, dims, epilogue, p, stream);
                (Storage::Cpu(out), Storage::Cpu(mask))
            }
            (Storage::Cpu(a), Storage::Cpu(b), Some(Storage::Cpu(bias))) => {
                let (out, mask) = a.gemm_dropout(b, Some(bias), dims, epilogue, p, stream);
                (Storage::Cpu(out), Storage::Cpu(mask))
            }
            (Storage::Cuda(a), Storage::Cuda(b), None) => {
                let (out, mask) = a.gemm_dropout(b, None, dims, epilogue, p, stream);
                (Storage::Cuda(out), Storage::Cuda(mask))
            }
            (Storage::Cuda(a), Storage::Cuda(b), Some(Storage::Cuda(bias))) => {
                let (out, mask) = a.gemm_dropout(b, Some(bias), dims, epilogue, p, stream);
                (Storage::Cuda(out), Storage::Cuda(mask))
            }
            _ => unreachable!("{MIXED}"),
        }
    }

    /// One fused optimiser step over all `params` (all on the device of `scalars`).
    pub fn optimizer_step<K: OptimizerKernel>(
        params: &mut [&mut Storage],
        grads: &[&Storage],
        state_a: &mut [&mut Storage],
        state_b: &mut [&mut Storage],
        scalars: &mut Storage,
        kernel: &K,
    ) {
        // Each backend takes its own storages: unwrap every operand to the variant of `scalars`.
        match scalars {
            Storage::Cpu(scalars) => CpuStorage::optimizer_step(
                &mut unwrap_all!(mut Cpu, params),
                &unwrap_all!(Cpu, grads),
                &mut unwrap_all!(mut Cpu, state_a),
                &mut unwrap_all!(mut Cpu, state_b),
                scalars,
                kernel,
            ),
            Storage::Cuda(scalars) => CudaStorage::optimizer_step(
                &mut unwrap_all!(mut Cuda, params),
                &unwrap_all!(Cuda, grads),
                &mut unwrap_all!(mut Cuda, state_a),
                &mut unwrap_all!(mut Cuda, state_b),
                scalars,
                kernel,
            ),
        }
    }
}

/// A rule over storages as one over the backend storages `unwrap` finds in them (the op
/// layer's device checks make sure they are all there).
fn rule_on<'a, S>(
    rule: LhsRule<'a, Storage>,
    unwrap: fn(&Storage) -> Option<&S>,
) -> LhsRule<'a, S> {
    let unwrap = |s: &'a Storage| unwrap(s).unwrap_or_else(|| unreachable!("{MIXED}"));
    LhsRule {
        saved: unwrap(rule.saved),
        mask: rule.mask.map(unwrap),
        rule: rule.rule,
    }
}

/// The storages as CUDA storages, if there is at least one and all are on the same CUDA
/// device (so one read can serve them all).
fn on_one_gpu<'a>(storages: &[&'a Storage]) -> Option<Vec<&'a CudaStorage>> {
    let Some(Storage::Cuda(first)) = storages.first() else {
        return None;
    };
    storages
        .iter()
        .map(|s| match s {
            Storage::Cuda(c) if c.device() == first.device() => Some(c),
            _ => None,
        })
        .collect()
}

/// Values on their way back to the host, from [`Tensor::to_vecs_later`](crate::Tensor::to_vecs_later).
#[must_use = "the values come with wait()"]
#[derive(Debug)]
pub struct PendingValues(Pending);

#[derive(Debug)]
enum Pending {
    Ready(Vec<Vec<f32>>),
    Cuda(CudaPendingRead),
}

impl PendingValues {
    /// Waits for the values (on a GPU, for the copy alone, not for work queued after it) and
    /// returns them, one vector per tensor read.
    pub fn wait(self) -> Vec<Vec<f32>> {
        match self.0 {
            Pending::Ready(values) => values,
            Pending::Cuda(read) => read.wait(),
        }
    }
}
