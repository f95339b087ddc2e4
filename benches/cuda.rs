//! Benchmarks of the CUDA backend, run by `cargo bench` beside the CPU's (`benches/ops.rs`) when
//! there is a GPU: our SGEMM at the GAN's shapes (each layer's forward at batch 64, the backward
//! layouts of the largest) and at 1024³ and 4096³; tanh over 16 M floats (bytes read and
//! written per second: compare with a device copy, `benches/cuda_reference.py`); one Adam step
//! over the discriminator; the GAN's training iteration, captured as a CUDA graph and eager;
//! and the three teaching GEMM kernels of `kernels/gemm_steps.cu` beside the engine's own
//! product at 2048³ (`cargo bench --bench cuda -- gemm_steps`: what each idea buys).
//!
//! A kernel's figure is the time per call of many calls captured in one CUDA graph and replayed
//! (so the host's launch cost stays out of it, as in `gan_bench`); criterion samples replays.
//! The operands stay in L2 from call to call, as a training step's do (`gan_bench`, which
//! compares with cuBLAS, rotates them through 128 MiB instead).
//! Without a GPU the benches say so and measure nothing. `FERROGRAD_BENCH_CUDA=emulator` runs
//! them on the CPU emulator of the kernels instead: slow, and only to check the benches
//! themselves (e.g. `cargo bench --bench cuda -- --quick gemm/Forward/64x100x256`).

mod common;

use std::time::{Duration, Instant};

use common::{gemm_cases, untransposed};
use criterion::{criterion_group, criterion_main, Bencher, BenchmarkId, Criterion, Throughput};
use ferrograd::backend::cuda::gemm_steps::{gemm_step, GemmStep};
use ferrograd::backend::cuda::CudaStorage;
use ferrograd::backend::{BackendStorage, Identity};
use ferrograd::gan::{discriminator, Gan, IMAGE_DIM};
use ferrograd::graph;
use ferrograd::nn::Module;
use ferrograd::optim::Adam;
use ferrograd::{manual_seed, Device, Tensor};

/// Whether `FERROGRAD_BENCH_CUDA=emulator` asks for the emulator instead of a GPU.
fn on_emulator() -> bool {
    std::env::var("FERROGRAD_BENCH_CUDA").as_deref() == Ok("emulator")
}

/// The GPU, or the emulator when `FERROGRAD_BENCH_CUDA=emulator`; `None` (and why, on stderr)
/// when there is neither.
fn cuda_device() -> Option<Device> {
    let device = if on_emulator() {
        Device::cuda_emulator()
    } else {
        Device::cuda(0)
    };
    device
        .map_err(|err| eprintln!("CUDA benches skipped: {err}"))
        .ok()
}

/// Waits for everything launched on `device` (a copy back to the host waits for it all).
fn fence(device: &Device) {
    Tensor::zeros(&[1], device).item();
}

/// Criterion's time per iteration = the time per call of `f`, from replays of `calls` calls
/// captured in one graph (the first call, outside it, compiles the kernels and fills the
/// allocator's cache).
fn bench_captured(bencher: &mut Bencher, device: &Device, calls: u64, f: impl Fn()) {
    f();
    let (graph, ()) = graph::capture(device, || (0..calls).for_each(|_| f())).expect("capture");
    bencher.iter_custom(|iters| {
        let replays = iters.div_ceil(calls);
        let start = Instant::now();
        for _ in 0..replays {
            graph.replay().expect("replay");
        }
        fence(device);
        start
            .elapsed()
            .mul_f64(iters as f64 / (replays * calls) as f64)
    });
}

fn bench_gemm(c: &mut Criterion, device: &Device) {
    let Device::Cuda(cuda) = device else {
        unreachable!("a CUDA device")
    };
    let mut group = c.benchmark_group("cuda_gemm");
    for (product, m, k, n) in gemm_cases([1024, 4096]) {
        let dims = product.dims(m, k, n);
        let flops = 2 * m * k * n;
        let values = |len: usize, seed: usize| (0..len).map(move |i| ((i + seed) % 7) as f32 * 0.1);
        let a = CudaStorage::from_vec(values(m * k, 0).collect(), cuda);
        let b = CudaStorage::from_vec(values(k * n, 3).collect(), cuda);
        // About 2 GFLOP per replay: 100 small products, one 4096³.
        let calls = (2_000_000_000 / flops).clamp(1, 100) as u64;
        if flops >= 1 << 30 {
            group.sample_size(10);
        }
        group.throughput(Throughput::Elements(flops as u64)); // flops
        let id = BenchmarkId::new(format!("{product:?}"), format!("{m}x{k}x{n}"));
        group.bench_function(id, |bencher| {
            bench_captured(bencher, device, calls, || {
                a.gemm(&b, None, dims, &Identity);
            })
        });
    }
    group.finish();
}

/// The steps of `kernels/gemm_steps.cu` (one thread per element of C; tiles in shared memory;
/// a 4 × 4 patch per thread in registers) and the engine's own product (`gemm.cu`'s
/// `gemm_large` at this size) on one 2048³ product (128³ on the emulator).
fn bench_gemm_steps(c: &mut Criterion, device: &Device) {
    let Device::Cuda(cuda) = device else {
        unreachable!("a CUDA device")
    };
    let size = if on_emulator() { 128 } else { 2048 };
    let a = CudaStorage::from_vec(vec![0.5; size * size], cuda);
    let b = CudaStorage::from_vec(vec![0.25; size * size], cuda);
    let mut group = c.benchmark_group("cuda_gemm_steps");
    group.sample_size(10);
    group.throughput(Throughput::Elements(2 * (size as u64).pow(3))); // flops
    let shape = format!("{size}x{size}x{size}");
    for step in GemmStep::ALL {
        let id = BenchmarkId::new(format!("{step:?}"), &shape);
        group.bench_function(id, |bencher| {
            bench_captured(bencher, device, 1, || {
                gemm_step(step, &a, &b, size, size, size);
            })
        });
    }
    let dims = untransposed(size, size, size);
    group.bench_function(BenchmarkId::new("Engine", &shape), |bencher| {
        bench_captured(bencher, device, 1, || {
            a.gemm(&b, None, dims, &Identity);
        })
    });
    group.finish();
}

/// tanh over 16 M floats (64 MiB each way, far past L2): its bandwidth.
fn bench_elementwise(c: &mut Criterion, device: &Device) {
    let x = Tensor::uniform(&[1 << 24], -2.0, 2.0, device);
    let mut group = c.benchmark_group("cuda_elementwise");
    group.throughput(Throughput::Bytes(2 * 4 * x.numel() as u64));
    group.bench_function("tanh_16M", |bencher| {
        bench_captured(bencher, device, 10, || {
            x.tanh();
        })
    });
    group.finish();
}

/// One Adam step over the discriminator's 1.46 M parameters (28 bytes each: θ, g, m, v read,
/// θ, m, v written), one launch.
fn bench_adam(c: &mut Criterion, device: &Device) {
    manual_seed(1);
    let net = discriminator(device);
    let params = net.parameters();
    let count: usize = params.iter().map(Tensor::numel).sum();
    net.forward(&Tensor::randn(&[64, IMAGE_DIM], device))
        .sum()
        .backward();
    let mut adam = Adam::new(params, ferrograd::gan::adam_config(2e-4));
    let mut group = c.benchmark_group("cuda_adam");
    group.throughput(Throughput::Bytes((28 * count) as u64));
    group.bench_function("step_discriminator", |bencher| {
        adam.step(); // compiles the kernel
        bencher.iter_custom(|iters| {
            let start = Instant::now();
            (0..iters).for_each(|_| adam.step());
            fence(device);
            start.elapsed()
        })
    });
    group.finish();
}

/// The GAN's training iteration at batch 64 (a D step, then a G step, both Adam updates), its
/// statistics left on the device: as one captured graph replayed per step (what `mnist_gan`
/// runs), and launched kernel by kernel.
fn bench_gan_iteration(c: &mut Criterion, device: &Device) {
    let mut group = c.benchmark_group("cuda_gan");
    group.throughput(Throughput::Elements(64)); // images
    let real = Tensor::uniform(&[64, IMAGE_DIM], -1.0, 1.0, device);
    for captured in [true, false] {
        manual_seed(1);
        let mut gan = Gan::new(device, 2e-4);
        if captured {
            gan.capture_train_step(64).expect("capture");
        }
        let name = if captured { "graph" } else { "eager" };
        group.bench_function(BenchmarkId::new("iteration_batch64", name), |bencher| {
            gan.train_step_async(&real); // compiles the kernels
            bencher.iter_custom(|iters| {
                let start = Instant::now();
                (0..iters).for_each(|_| gan.train_step_async(&real));
                fence(device);
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn cuda_benches(c: &mut Criterion) {
    let Some(device) = cuda_device() else {
        return;
    };
    bench_gemm(c, &device);
    bench_elementwise(c, &device);
    bench_adam(c, &device);
    bench_gan_iteration(c, &device);
    bench_gemm_steps(c, &device);
}

criterion_group! {
    name = benches;
    // The GPU's figures are steady: fewer seconds per bench than criterion's default.
    config = Criterion::default().measurement_time(Duration::from_secs(2));
    targets = cuda_benches
}
criterion_main!(benches);
