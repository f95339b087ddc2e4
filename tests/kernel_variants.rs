//! The GPU benchmark sweeps `gemm.cu`'s compile-time parameters (`kernels/sweep.txt`: pipeline
//! depths, k-slice depth, how far ahead a backward rule's operands are loaded). None of them
//! changes the order of any sum, so every variant must give the defaults' bits; here each
//! variant, compiled for the emulator by build.rs, runs the kinds of products the benchmark
//! times with it — a training step of a small MLP built as the discriminator is (fused
//! activations forward and backward, dropout, row sums, pairs, a one-column product), with its
//! k split into chunks, in 32 × 32 tiles and with TF32 tensor cores, and `gemm_large` products
//! with ragged edges and a ragged last k-slice — against the defaults, bit for bit. A variant
//! that times well on the GPU is then known to compute the same products before it becomes a
//! default.
//!
//! The same products, with the kernels outside `gemm.cu` the step runs (random fills, the
//! loss's reductions, Adam), must also give the same bits whatever order each block's threads
//! run in between barriers: a GPU promises none,
//! and a missing `__syncthreads()` shows only as a dependence on it (see
//! [`ThreadOrder`](ferrograd::backend::cuda::emulator::ThreadOrder)).

#![cfg(ferrograd_emulator)] // an emulator test: none in a build without it (build.rs)

use ferrograd::backend::cuda::emulator::{set_kernel_defines, set_thread_order, ThreadOrder};
use ferrograd::backend::cuda::kernels::{EMULATED_SM75_DEFINES, SWEEP_VARIANTS};
use ferrograd::backend::cuda::{set_allow_tf32, set_small_tiles, set_split_k_override};
use ferrograd::nn::functional::{binary_cross_entropy, linear};
use ferrograd::nn::{Dropout, LeakyReLU, Linear, Module, ReLU, Sequential, Sigmoid, Tanh};
use ferrograd::optim::{Adam, AdamConfig};
use ferrograd::{manual_seed, no_grad, Device, Tensor};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The variant, the thread order, the split override, the small tiles and TF32 are
/// process-wide switches: the tests of this file take turns.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// A training step of a small MLP in the discriminator's image — every activation's fused
/// forward and backward rule, dropout, the weight gradients' row sums, a one-column product —
/// at batch 100, so that every product's k (100, 72, 40, 36) spans several slices, the last
/// ragged: the loss, every gradient, and the parameters after an Adam step.
fn mlp_step(device: &Device) -> Vec<u32> {
    manual_seed(41);
    let net = Sequential::new()
        .add(Linear::new(100, 72, device))
        .add(LeakyReLU::new(0.2))
        .add(Dropout::new(0.3))
        .add(Linear::new(72, 40, device))
        .add(ReLU)
        .add(Linear::new(40, 36, device))
        .add(Tanh)
        .add(Linear::new(36, 1, device))
        .add(Sigmoid);
    let x = Tensor::uniform(&[100, 100], -1.0, 1.0, device);
    let target = Tensor::uniform(&[100, 1], 0.0, 1.0, device);
    let loss = binary_cross_entropy(&net.forward(&x), &target);
    loss.backward();
    let mut out = loss.to_vec();
    for p in net.parameters() {
        out.extend(p.grad().expect("every parameter has a gradient").to_vec());
    }
    Adam::new(net.parameters(), AdamConfig::default()).step();
    for p in net.parameters() {
        out.extend(p.to_vec());
    }
    bits(&out)
}

/// Products large enough for `gemm_large` (at least 128 tiles of 128 × 128), m and n not
/// multiples of 128 and k (24) not of the 8- or 16-deep slices; B stored [n, k] and [k, n].
fn large_products(device: &Device) -> Vec<u32> {
    let _recording_off = no_grad();
    let (m, k, n) = (1530, 24, 1410);
    let x = Tensor::uniform(&[m, k], -1.0, 1.0, device);
    let w = Tensor::uniform(&[n, k], -1.0, 1.0, device);
    let y = Tensor::uniform(&[k, n], -1.0, 1.0, device);
    let mut out = linear(&x, &w, None).to_vec();
    out.extend(x.matmul(&y).to_vec());
    bits(&out)
}

/// What the sweep times with each variant, in its kinds of products: 64 × 64 tiles, k split
/// into chunks, 32 × 32 tiles, TF32, and gemm_large's 128 × 128 tiles.
fn everything(device: &Device) -> Vec<(&'static str, Vec<u32>)> {
    let tiled = mlp_step(device);
    set_split_k_override(Some(3));
    let split = mlp_step(device);
    set_split_k_override(None);
    set_small_tiles(true);
    let small_tiles = mlp_step(device);
    set_small_tiles(false);
    set_allow_tf32(true);
    let tf32 = mlp_step(device);
    set_allow_tf32(false);
    vec![
        ("an MLP step", tiled),
        ("an MLP step, k in 3 chunks", split),
        ("an MLP step in small tiles", small_tiles),
        ("an MLP step with TF32", tf32),
        ("gemm_large products", large_products(device)),
    ]
}

#[test]
fn every_swept_kernel_variant_gives_the_defaults_bits() {
    let _turn = one_at_a_time();
    assert!(
        !SWEEP_VARIANTS.is_empty(),
        "kernels/sweep.txt lists variants"
    );
    let device = Device::cuda_emulator().expect("the emulator is built");
    let defaults = everything(&device);
    for &variant in SWEEP_VARIANTS {
        set_kernel_defines(variant).unwrap();
        let results = everything(&device);
        set_kernel_defines("").unwrap();
        for ((what, got), (_, expected)) in results.iter().zip(&defaults) {
            assert!(
                got == expected,
                "{what} with {variant}: not the defaults' bits"
            );
        }
    }
}

#[test]
fn results_do_not_depend_on_the_order_a_blocks_threads_run_in() {
    let _turn = one_at_a_time();
    let device = Device::cuda_emulator().expect("the emulator is built");
    let in_index_order = everything(&device);
    for order in [ThreadOrder::Reversed, ThreadOrder::Shuffled(3)] {
        set_thread_order(order);
        let results = everything(&device);
        set_thread_order(ThreadOrder::Index);
        for ((what, got), (_, expected)) in results.iter().zip(&in_index_order) {
            assert!(got == expected, "{what}, threads run {order:?}");
        }
    }
}

/// The emulated Turing GPU (sm_75) runs `gemm.cu` as sm_75 compiles it, every copy into
/// shared memory a plain load and store, 3 pipeline stages instead of 4, and has no TF32
/// tensor cores: the sweep's products give the defaults' bits there, and with TF32 allowed
/// its products stay FP32 — the bits of the FP32 step, where launching a TF32 kernel would
/// fail (next test).
#[test]
fn the_emulated_turing_gpu_gives_the_fp32_bits_even_with_tf32_allowed() {
    let _turn = one_at_a_time();
    let emulator = Device::cuda_emulator().expect("the emulator is built");
    let turing = Device::cuda_emulator_sm75().expect("the emulator is built");
    let Device::Cuda(gpu) = &turing else {
        unreachable!("a CUDA device")
    };
    assert!(!gpu.has_tf32_tensor_cores());
    let defaults = everything(&emulator);
    let fp32_step = &defaults[0].1;
    for ((what, got), (_, expected)) in everything(&turing).iter().zip(&defaults) {
        let expected = match *what {
            "an MLP step with TF32" => fp32_step,
            _ => expected,
        };
        assert!(got == expected, "{what} on {turing}: not the FP32 bits");
    }
}

/// `gemm.cu` as compiled for sm_75 has no tensor cores to run TF32 on: its TF32 kernels trap,
/// and the launch fails with a message that says so, as a GPU stops the kernel.
#[test]
fn the_tf32_kernels_compiled_for_sm75_trap() {
    let _turn = one_at_a_time();
    let emulator = Device::cuda_emulator().expect("the emulator is built");
    set_kernel_defines(EMULATED_SM75_DEFINES).unwrap();
    set_allow_tf32(true);
    let failed = std::panic::catch_unwind(|| mlp_step(&emulator));
    set_allow_tf32(false);
    set_kernel_defines("").unwrap();
    let panic = failed.expect_err("a TF32 step with sm_75's kernels fails");
    let message = panic.downcast_ref::<String>().map_or("", String::as_str);
    assert!(
        message.starts_with("cuda-emulator: gemm_tf32: a thread called __trap()"),
        "{message}"
    );
}

/// Definitions no variant was compiled with are refused, naming the ones there are, and
/// change nothing.
#[test]
fn unknown_kernel_definitions_are_refused() {
    let _turn = one_at_a_time();
    let err = set_kernel_defines("-DGEMM_STAGES=7").unwrap_err();
    assert!(
        err.contains("-DGEMM_STAGES=7") && err.contains(SWEEP_VARIANTS[0]),
        "{err}"
    );
    // Spacing does not matter: the definitions are compared one space apart.
    let spaced = SWEEP_VARIANTS[0].replace(' ', "   ");
    set_kernel_defines(&spaced).unwrap();
    set_kernel_defines("").unwrap();
}

/// The kernels built to trace shared memory (`CudaDevice::trace_shared_memory`) register
/// under a definition of their own, which is no sweep variant: choosing it is refused as any
/// unknown definitions are.
#[test]
fn the_traced_build_is_no_sweep_variant() {
    let _turn = one_at_a_time();
    let err = set_kernel_defines("-DFG_TRACE_SHARED_MEMORY").unwrap_err();
    assert!(err.contains("no kernels compiled with"), "{err}");
}
