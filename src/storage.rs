//! One storage type over every backend: the only place that matches on the device.
//!
//! Tensors hold a [`Storage`]; ops call its methods and never look inside. Adding a device means
//! a new variant here and one more arm per method, nothing above.

use crate::backend::cpu::CpuStorage;
use crate::backend::{
    BackendStorage, BinaryKernel, Broadcast, Distribution, GemmDims, OptimizerKernel, UnaryKernel,
};
use crate::device::Device;
use crate::rng::PhiloxStream;

#[derive(Clone, Debug)]
pub(crate) enum Storage {
    Cpu(CpuStorage),
}

impl Storage {
    pub fn from_vec(data: Vec<f32>, device: &Device) -> Self {
        match device {
            Device::Cpu => Storage::Cpu(CpuStorage::from_vec(data)),
        }
    }

    pub fn full(len: usize, value: f32, device: &Device) -> Self {
        match device {
            Device::Cpu => Storage::Cpu(CpuStorage::full(len, value)),
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
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
        }
    }

    pub fn to_vec(&self) -> Vec<f32> {
        match self {
            Storage::Cpu(s) => s.to_vec(),
        }
    }

    pub fn unary<K: UnaryKernel>(&self, kernel: &K) -> Self {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.unary(kernel)),
        }
    }

    pub fn binary<K: BinaryKernel>(&self, rhs: &Self, broadcast: Broadcast, kernel: &K) -> Self {
        match (self, rhs) {
            (Storage::Cpu(a), Storage::Cpu(b)) => Storage::Cpu(a.binary(b, broadcast, kernel)),
        }
    }

    pub fn sum_all(&self) -> Self {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.sum_all()),
        }
    }

    pub fn sum_rows(&self, rows: usize, cols: usize) -> Self {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.sum_rows(rows, cols)),
        }
    }

    pub fn expand_scalar(&self, len: usize, scale: f32) -> Self {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.expand_scalar(len, scale)),
        }
    }

    pub fn gemm(&self, rhs: &Self, bias: Option<&Self>, dims: GemmDims) -> Self {
        match (self, rhs, bias) {
            (Storage::Cpu(a), Storage::Cpu(b), None) => Storage::Cpu(a.gemm(b, None, dims)),
            (Storage::Cpu(a), Storage::Cpu(b), Some(Storage::Cpu(bias))) => {
                Storage::Cpu(a.gemm(b, Some(bias), dims))
            }
        }
    }

    pub fn update_in_place<K: OptimizerKernel>(
        &mut self,
        grad: &Self,
        state_a: &mut Self,
        state_b: &mut Self,
        kernel: &K,
    ) {
        match (self, grad, state_a, state_b) {
            (Storage::Cpu(p), Storage::Cpu(g), Storage::Cpu(a), Storage::Cpu(b)) => {
                p.update_in_place(g, a, b, kernel)
            }
        }
    }
}
