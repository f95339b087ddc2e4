//! Where a tensor's data lives and where its kernels run.

use std::fmt;

use crate::backend::cuda::CudaDevice;
use crate::error::{Error, Result};

/// A compute device. Every tensor lives on exactly one device, and an op's inputs must share it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// Host memory; kernels run on the rayon thread pool.
    Cpu,
    /// A CUDA device running our kernels from `kernels/*.cu`: a GPU, or the CPU emulator.
    Cuda(CudaDevice),
}

impl Device {
    /// GPU `ordinal`. Without a GPU, a driver or NVRTC this is an error that says which is
    /// missing, never a panic.
    pub fn cuda(ordinal: usize) -> Result<Device> {
        CudaDevice::gpu(ordinal)
            .map(Device::Cuda)
            .map_err(Error::Device)
    }

    /// The CUDA path with its kernels run by the CPU emulator: slow, but it runs the very
    /// launches a GPU would, anywhere.
    pub fn cuda_emulator() -> Device {
        Device::Cuda(CudaDevice::emulator())
    }

    pub fn is_cuda(&self) -> bool {
        matches!(self, Device::Cuda(_))
    }

    /// What the device is, for logs: `cpu (2 threads)`, `cuda:0 (NVIDIA H100 … (sm_90))`.
    pub fn description(&self) -> String {
        match self {
            Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
            Device::Cuda(device) => format!("{} ({})", device.label(), device.description()),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(device) => f.write_str(device.label()),
        }
    }
}
