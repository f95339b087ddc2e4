//! Timing each kernel a device runs (`CudaDevice::set_kernel_timing`), on the emulator: every
//! kernel run while timing is on, in launch order, none before or after. (Its own test binary:
//! the emulator is one device for the whole process, and other tests' kernels would mix in.)

#![cfg(ferrograd_emulator)] // an emulator test: none in a build without it (build.rs)

use std::sync::{Mutex, MutexGuard, PoisonError};

use ferrograd::backend::cuda::{set_allow_tf32, CudaDevice, KernelTime};
use ferrograd::nn::functional::linear;
use ferrograd::{Device, Tensor};

/// The tests here take turns: they count the one emulator's kernels.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The emulator, as a device and as the CUDA device it is.
fn emulator() -> (Device, CudaDevice) {
    let device = Device::cuda_emulator().expect("the emulator is built");
    let Device::Cuda(cuda) = &device else {
        unreachable!("the emulator is a CUDA device")
    };
    let cuda = cuda.clone();
    (device, cuda)
}

/// The kernels `run` launches on `cuda`, in launch order, timed.
fn kernels_of(cuda: &CudaDevice, run: impl FnOnce()) -> Vec<KernelTime> {
    cuda.set_kernel_timing(true);
    run();
    let times = cuda.take_kernel_times();
    cuda.set_kernel_timing(false);
    times
}

fn names(times: &[KernelTime]) -> Vec<&str> {
    times.iter().map(|t| t.name.as_str()).collect()
}

#[test]
fn timing_lists_each_kernel_run_while_it_is_on() {
    let _turn = one_at_a_time();
    let (device, cuda) = emulator();
    let x = Tensor::uniform(&[64, 32], -1.0, 1.0, &device);
    let w = Tensor::uniform(&[16, 32], -1.0, 1.0, &device);
    let _ = x.tanh(); // before timing: not listed
    cuda.set_kernel_timing(true);
    let y = x.tanh();
    let _ = y.matmul(&w.reshape(&[32, 16]));
    let times = cuda.take_kernel_times();
    assert_eq!(names(&times), ["unary_tanh", "gemm"]);
    assert!(times
        .iter()
        .all(|t| t.micros >= 0.0 && t.micros.is_finite()));
    assert_eq!(times[1].config.grid.x, 1, "16 columns: one 64-wide tile");
    assert!(
        cuda.take_kernel_times().is_empty(),
        "taken: the list starts over"
    );
    let _ = x.relu();
    cuda.set_kernel_timing(false);
    let _ = x.sigmoid(); // after timing: not listed
    cuda.set_kernel_timing(true);
    assert!(
        cuda.take_kernel_times().is_empty(),
        "stopping timing drops what it had not handed over"
    );
    cuda.set_kernel_timing(false);
}

/// A one-column product (D's last layer) is one `gemv` launch.
#[test]
fn a_one_column_product_is_a_gemv() {
    let _turn = one_at_a_time();
    let (device, cuda) = emulator();
    let x = Tensor::uniform(&[40, 256], -1.0, 1.0, &device);
    let w = Tensor::uniform(&[1, 256], -1.0, 1.0, &device);
    let b = Tensor::uniform(&[1], -1.0, 1.0, &device);
    let times = kernels_of(&cuda, || {
        let _ = linear(&x, &w, Some(&b));
    });
    assert_eq!(names(&times), ["gemv"]);
    assert_eq!(times[0].config.grid.x, 5, "40 rows, 8 per block");
}

/// The kernels a linear layer's backward pass launches, checked: its loss's own kernel, then
/// `pair` for `∂L/∂x`, `∂L/∂W` and `∂L/∂b`; where the weight gradient splits k, `sum_rows` for
/// the bias gradient (only an unsplit GEMM sums rows as it goes).
fn assert_backward_kernels((device, cuda): (&Device, &CudaDevice), pair: &str) {
    for (batch, inputs, outputs, split) in [(16, 24, 40, false), (512, 8, 512, true)] {
        let x = Tensor::uniform(&[batch, inputs], -1.0, 1.0, device);
        let w = Tensor::uniform(&[outputs, inputs], -1.0, 1.0, device);
        let b = Tensor::uniform(&[outputs], -1.0, 1.0, device);
        for leaf in [&x, &w, &b] {
            leaf.set_requires_grad(true);
        }
        let loss = linear(&x, &w, Some(&b)).sum();
        let one = Tensor::ones(&[], device);
        let times = kernels_of(cuda, || loss.backward_with(&one));
        let expected = ["expand_scalar", pair, "sum_rows"];
        let expected = &expected[..if split { 3 } else { 2 }];
        assert_eq!(names(&times), expected, "{batch}x{inputs}x{outputs}");
        assert!([x.grad(), w.grad(), b.grad()].iter().all(Option::is_some));
    }
}

/// A linear layer's backward pass: `∂L/∂x`, `∂L/∂W` and `∂L/∂b` from one `gemm_pair` launch.
#[test]
fn a_linear_layers_gradients_are_one_launch() {
    let _turn = one_at_a_time();
    let (device, cuda) = emulator();
    assert_backward_kernels((&device, &cuda), "gemm_pair");
}

/// TF32 on until dropped, whatever happens in between.
struct Tf32On;

impl Tf32On {
    fn new() -> Tf32On {
        set_allow_tf32(true);
        Tf32On
    }
}

impl Drop for Tf32On {
    fn drop(&mut self) {
        set_allow_tf32(false);
    }
}

/// With TF32 the same launches, in the tensor-core kernel: a layer's gradients in one
/// `gemm_pair_tf32`, the bias gradient summed in it where k is not split; and a one-column
/// product stays a `gemv`, in FP32 (tensor cores do nothing for a product that reads each
/// element of A once), the bits of the product without TF32.
#[test]
fn with_tf32_the_same_launches_in_the_tensor_core_kernel() {
    let _turn = one_at_a_time();
    let (device, cuda) = emulator();
    let x = Tensor::uniform(&[40, 256], -1.0, 1.0, &device);
    let w = Tensor::uniform(&[1, 256], -1.0, 1.0, &device);
    let fp32 = linear(&x, &w, None).to_vec();
    let _tf32 = Tf32On::new();
    assert_backward_kernels((&device, &cuda), "gemm_pair_tf32");
    let mut one_column = Vec::new();
    let times = kernels_of(&cuda, || one_column = linear(&x, &w, None).to_vec());
    assert_eq!(names(&times), ["gemv"]);
    assert_eq!(one_column, fp32);
}
