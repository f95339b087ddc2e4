//! The teaching GEMM kernels of `kernels/gemm_steps.cu`: each step computes `A · B` within f32
//! rounding of an f64 reference on shapes with ragged edges (smaller than a tile, between
//! tiles, k not a multiple of a slice), on the emulator and on a GPU if there is one; and
//! gives the same bits whatever order a block's threads run in between barriers, as it must
//! on a GPU (without `gemm_step_shared`'s second `__syncthreads()`, the reversed order reads a
//! slice that is already being overwritten).

mod common;

use common::{assert_close, cuda_devices, reference, to_f64, uniform};
use ferrograd::backend::cuda::emulator::{set_thread_order, ThreadOrder};
use ferrograd::backend::cuda::gemm_steps::{gemm_step, GemmStep};
use ferrograd::backend::cuda::CudaStorage;
use ferrograd::backend::BackendStorage;
use ferrograd::Device;

/// (m, k, n): one element; under one tile; ragged tiles and slices both ways; several tiles of
/// the 64 × 64 step with a k that ends mid-slice.
const SHAPES: [(usize, usize, usize); 4] = [(1, 1, 1), (5, 7, 3), (37, 53, 29), (130, 35, 70)];

fn product(device: &Device, step: GemmStep, (m, k, n): (usize, usize, usize)) -> Vec<f32> {
    let Device::Cuda(cuda) = device else {
        unreachable!("a CUDA device")
    };
    let a = CudaStorage::from_vec(uniform(m * k, -1.0, 1.0, 3), cuda);
    let b = CudaStorage::from_vec(uniform(k * n, -1.0, 1.0, 4), cuda);
    gemm_step(step, &a, &b, m, k, n).to_vec()
}

#[test]
fn every_step_computes_the_product() {
    for device in cuda_devices() {
        for step in GemmStep::ALL {
            for (m, k, n) in SHAPES {
                let a = to_f64(&uniform(m * k, -1.0, 1.0, 3));
                let b = to_f64(&uniform(k * n, -1.0, 1.0, 4));
                let expected = reference::matmul(&a, &b, m, k, n);
                let what = format!("{step:?} {m}x{k}x{n} on {device:?}");
                // Terms of magnitude ≤ 1: f32 sums of k of them err by ~k · 2⁻²⁴ at most.
                let atol = k as f64 * 1e-7;
                assert_close(
                    &what,
                    &product(&device, step, (m, k, n)),
                    &expected,
                    1e-6,
                    atol,
                );
            }
        }
    }
}

#[test]
fn no_step_depends_on_the_order_a_blocks_threads_run_in() {
    let Some(emulator) = common::emulator() else {
        return;
    };
    for step in GemmStep::ALL {
        let shape = (70, 40, 90);
        set_thread_order(ThreadOrder::Index);
        let in_order = product(&emulator, step, shape);
        for order in [ThreadOrder::Reversed, ThreadOrder::Shuffled(7)] {
            set_thread_order(order);
            let reordered = product(&emulator, step, shape);
            set_thread_order(ThreadOrder::Index);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert!(
                bits(&reordered) == bits(&in_order),
                "{step:?}: threads in {order:?} order give other results"
            );
        }
    }
}

#[test]
#[cfg(ferrograd_emulator)] // its panic is the emulator's: none in a build without it
#[should_panic(expected = "gemm_step: A holds 6 values and B 6, not 2 × 3 and 3 × 3")]
fn operands_of_the_wrong_size_panic_naming_the_shapes() {
    let Device::Cuda(cuda) = Device::cuda_emulator().expect("the emulator is built") else {
        unreachable!()
    };
    let a = CudaStorage::from_vec(vec![1.0; 6], &cuda);
    let b = CudaStorage::from_vec(vec![1.0; 6], &cuda);
    gemm_step(GemmStep::Naive, &a, &b, 2, 3, 3);
}
