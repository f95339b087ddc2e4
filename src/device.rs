//! Where a tensor's data lives and where its kernels run.

use std::fmt;

use crate::backend::cpu::hot_pool;
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
    /// launches a GPU would, on any Linux machine. The emulator is built with the crate where
    /// it can be, on Linux with glibc and a C++17 compiler; elsewhere this is an error that
    /// says why it is missing.
    pub fn cuda_emulator() -> Result<Device> {
        CudaDevice::emulator()
            .map(Device::Cuda)
            .map_err(Error::Device)
    }

    /// The CUDA path on the CPU emulator as a Turing GPU (sm_75) runs it: `gemm.cu` as
    /// compiled for sm_75, and no TF32 tensor cores ([`CudaDevice::emulator_sm75`]).
    pub fn cuda_emulator_sm75() -> Result<Device> {
        CudaDevice::emulator_sm75()
            .map(Device::Cuda)
            .map_err(Error::Device)
    }

    /// Whether this is a CUDA device (a GPU, or the CPU emulator of our kernels).
    pub fn is_cuda(&self) -> bool {
        matches!(self, Device::Cuda(_))
    }

    /// Runs `f`, a burst of ops on this device such as a whole training step, and returns
    /// what it returns; the ops compute the same values as when called outside `run`.
    ///
    /// On the CPU, `f` runs as one task of the rayon pool while the pool's other workers stay
    /// awake ([`hot_pool::run`]; not where the pool has more threads than CPUs). Called from
    /// outside the pool, each op that splits its work hands it to the pool and sleeps until it
    /// is done: two thread wake-ups per op, tens of microseconds each in a virtual machine, a
    /// hundred times a step. A step of the GAN's discriminator written as in the README runs
    /// about a fifth faster inside `run` (`cargo bench --bench ops -- user_step`). A step of
    /// tiny tensors, whose ops never split, runs fastest where it is: `run` costs it one
    /// hand-off to the pool.
    ///
    /// On a CUDA device, and on a worker of the pool already (a `run` inside a `run`), `f`
    /// simply runs.
    ///
    /// ```
    /// use ferrograd::nn::{functional::binary_cross_entropy, Linear, Module, Sequential, Sigmoid};
    /// use ferrograd::optim::{Adam, AdamConfig};
    /// use ferrograd::{Device, Tensor};
    ///
    /// let dev = Device::Cpu;
    /// let model = Sequential::new().add(Linear::new(784, 1, &dev)).add(Sigmoid);
    /// let mut adam = Adam::new(model.parameters(), AdamConfig::default());
    /// let (x, t) = (Tensor::randn(&[64, 784], &dev), Tensor::ones(&[64, 1], &dev));
    /// let loss = dev.run(|| {
    ///     adam.zero_grad();
    ///     let loss = binary_cross_entropy(&model.forward(&x), &t);
    ///     loss.backward();
    ///     adam.step();
    ///     loss.item()
    /// });
    /// assert!(loss > 0.0);
    /// ```
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match self {
            Device::Cpu if rayon::current_thread_index().is_none() => hot_pool::run(f),
            _ => f(),
        }
    }

    /// What the device is, for logs: `cpu (2 threads)`, `cuda:0 (NVIDIA H100 … (sm_90))`.
    pub fn description(&self) -> String {
        match self {
            Device::Cpu => match rayon::current_num_threads() {
                1 => "cpu (1 thread)".to_string(),
                threads => format!("cpu ({threads} threads)"),
            },
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
