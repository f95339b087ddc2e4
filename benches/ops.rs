//! Benchmarks of the CPU backend: the GEMM at the GAN's shapes in the three layouts a linear
//! layer uses, and at the discriminator step's 128 rows (ours with each microkernel called
//! from the main thread, and with the selected one as a training step calls it, from a worker
//! of the pool, and so in BF16 where the processor has AMX or AVX512-BF16; beside the
//! `matrixmultiply` crate in the same run, built with its `threading` feature: it uses one
//! thread per physical core, at most 4, or `MATMUL_NUM_THREADS`, and ferrograd one per
//! physical core too (`start_thread_pool`), or `RAYON_NUM_THREADS`: set the two alike), the
//! four teaching steps of `backend::cpu::gemm_steps` beside the engine's product on one core,
//! each op's forward and backward, Adam over the GAN's parameters, one full GAN training
//! iteration, and a training step written with the public API, with and without
//! `Device::run`. Run with `cargo bench`; figures go to `benches/RESULTS.md`.

mod common;

use common::{gemm_cases, untransposed, Product};
use criterion::{black_box, criterion_group, BatchSize, BenchmarkId, Criterion, Throughput};
use ferrograd::backend::cpu::gemm_steps::{gemm_step, GemmStep};
use ferrograd::backend::cpu::{
    bf16_support, gemm_into, set_allow_bf16, start_thread_pool, Microkernel,
};
use ferrograd::backend::GemmDims;
use ferrograd::gan::{discriminator, Gan, IMAGE_DIM};
use ferrograd::nn::functional::{binary_cross_entropy, dropout, linear};
use ferrograd::nn::Module;
use ferrograd::optim::Adam;
use ferrograd::{manual_seed, Device, Tensor};
use std::time::{Duration, Instant};

/// The largest products of the discriminator's step, which runs the real and the fake images
/// as one batch of 128 rows (`Gan::train_step`).
fn discriminator_step_cases() -> [(Product, usize, usize, usize); 3] {
    [
        (Product::Forward, 128, 784, 1024),
        (Product::InputGradient, 128, 512, 1024),
        (Product::WeightGradient, 1024, 128, 784),
    ]
}

fn bench_gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm");
    // Up to 102 timings (17 shapes, 6 ways each): with criterion's defaults (3 s of warm-up,
    // 5 s measured) they spent 15 minutes warming up and measuring alone, in a `cargo bench` of
    // 30 on the 2-core VM. As for `gemm_steps`, 1 s and 3 s (benches/RESULTS.md, twenty-seventh
    // session).
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (product, m, k, n) in gemm_cases([1024, 2048])
        .into_iter()
        .chain(discriminator_step_cases())
    {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let dims = product.dims(m, k, n);
        if m * k * n >= 1 << 30 {
            group.sample_size(10);
        }
        group.throughput(Throughput::Elements((2 * m * k * n) as u64)); // flops
        let shape = format!("{product:?}/{m}x{k}x{n}");
        // Both write into a buffer made once, so neither pays for fresh pages per call.
        let mut ours = vec![0.0f32; m * n];
        let selected = Microkernel::selected();
        // The two compute the same product (timing a wrong reference would compare nothing).
        let mut reference = vec![0.0f32; m * n];
        matrixmultiply_product(&a, &b, dims, &mut reference);
        gemm_into(selected, &a, &b, None, dims, &mut ours);
        let worst = ours
            .iter()
            .zip(&reference)
            .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-4,
            "gemm {shape}: ours and matrixmultiply differ by {worst}"
        );
        for kernel in Microkernel::supported() {
            let id = BenchmarkId::new(format!("ferrograd-{kernel:?}"), &shape);
            group.bench_function(id, |bench| {
                bench.iter(|| {
                    gemm_into(kernel, black_box(&a), black_box(&b), None, dims, &mut ours);
                    black_box(&ours);
                })
            });
        }
        // The selected kernel as a training step runs it: called on a worker of the pool, the
        // other workers awake (`Device::run`), so no call pays for handing itself to the pool.
        // Then, on a processor with AMX or AVX512-BF16, the same with BF16 products
        // (`set_allow_bf16`).
        let bf16_units = bf16_support().is_ok();
        for (series, bf16) in [
            ("ferrograd-in-step", false),
            ("ferrograd-bf16-in-step", true),
        ] {
            if bf16 && !bf16_units {
                continue;
            }
            group.bench_function(BenchmarkId::new(series, &shape), |bench| {
                bench.iter_custom(|iters| {
                    set_allow_bf16(bf16);
                    let elapsed = Device::Cpu.run(|| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            gemm_into(
                                selected,
                                black_box(&a),
                                black_box(&b),
                                None,
                                dims,
                                &mut ours,
                            );
                            black_box(&ours);
                        }
                        start.elapsed()
                    });
                    set_allow_bf16(false);
                    elapsed
                })
            });
        }
        group.bench_function(BenchmarkId::new("matrixmultiply", &shape), |bench| {
            let mut out = vec![0.0f32; m * n];
            bench.iter(|| {
                matrixmultiply_product(black_box(&a), black_box(&b), dims, &mut out);
                black_box(&out);
            })
        });
    }
    group.finish();
}

/// `out = op(A) · op(B)` by the `matrixmultiply` crate, the reference beside ours: it reads
/// a transposed operand in place through its strides, as ours does.
fn matrixmultiply_product(a: &[f32], b: &[f32], dims: GemmDims, out: &mut [f32]) {
    let GemmDims { m, k, n, .. } = dims;
    assert!(a.len() == m * k && b.len() == k * n && out.len() == m * n);
    // Row and column strides of op(A) and op(B) in their storage.
    let (a_rs, a_cs) = if dims.lhs_transposed {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let (b_rs, b_cs) = if dims.rhs_transposed {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    // SAFETY: the strides describe op(A) (m×k) and op(B) (k×n) inside `a` and `b`, whose
    // lengths are checked above, and `out` is m×n row-major; all live for the call.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            a_rs,
            a_cs,
            b.as_ptr(),
            b_rs,
            b_cs,
            0.0,
            out.as_mut_ptr(),
            n as isize,
            1,
        )
    };
}

/// The steps of `backend::cpu::gemm_steps` (the loops as written on paper; reordered along
/// rows; blocks of C in registers; those fed from packed copies), each on one thread, then the
/// engine's product in a pool of one thread, with the portable microkernel (step 4's, plus the
/// engine's packing and edges) and with the processor's own: what each idea buys on one core.
/// At 128³ the operands fit in L2; at 512³ B alone fills a Zen 4 core's (1 MiB); at 1024³ it
/// is read from L3 (and step 1 would take seconds: left out).
fn bench_gemm_steps(c: &mut Criterion) {
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a pool of one thread");
    let mut group = c.benchmark_group("gemm_steps");
    // Seventeen products, the slowest 0.2 s a call: a shorter warm-up and measurement than
    // criterion's defaults keep the group near a minute and a half, the medians within 5 % of
    // theirs (benches/RESULTS.md, twenty-second session).
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for size in [128, 512, 1024] {
        let a: Vec<f32> = (0..size * size).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..size * size).map(|i| (i % 5) as f32 * 0.1).collect();
        group.throughput(Throughput::Elements(2 * (size as u64).pow(3))); // flops
        let shape = format!("{size}x{size}x{size}");
        for step in GemmStep::ALL {
            if step == GemmStep::Naive && size > 512 {
                continue;
            }
            group.bench_function(BenchmarkId::new(format!("{step:?}"), &shape), |bench| {
                bench.iter(|| gemm_step(step, black_box(&a), black_box(&b), size, size, size))
            });
        }
        let dims = untransposed(size, size, size);
        let mut ours = vec![0.0f32; size * size];
        let mut kernels = vec![Microkernel::Portable, Microkernel::selected()];
        kernels.dedup(); // a processor without AVX2 or NEON runs the portable kernel
        for kernel in kernels {
            let id = BenchmarkId::new(format!("Engine-{kernel:?}-1-thread"), &shape);
            // All of a sample's calls inside the pool: no call pays for the hand-off to it.
            group.bench_function(id, |bench| {
                bench.iter_custom(|iters| {
                    one_thread.install(|| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            gemm_into(kernel, black_box(&a), black_box(&b), None, dims, &mut ours);
                            black_box(&ours);
                        }
                        start.elapsed()
                    })
                })
            });
        }
    }
    group.finish();
}

/// Each op on the shapes the GAN gives it: the forward alone, and the backward alone (the
/// graph is built outside the timing; the backward of `sum`, which seeds it, is included).
fn bench_ops(c: &mut Criterion) {
    let dev = Device::Cpu;
    let leaf = |shape: &[usize]| {
        let t = Tensor::randn(shape, &dev);
        t.set_requires_grad(true);
        t
    };
    let x = leaf(&[64, 1024]);
    let x_in = leaf(&[64, 784]);
    let w = leaf(&[1024, 784]);
    let bias = leaf(&[1024]);
    let probabilities = Tensor::uniform(&[64, 1], 0.01, 0.99, &dev);
    probabilities.set_requires_grad(true);
    let targets = Tensor::ones(&[64, 1], &dev);
    type Op<'a> = Box<dyn Fn() -> Tensor + Send + Sync + 'a>;
    let ops: Vec<(&str, usize, Op)> = vec![
        (
            "linear_64x784x1024",
            64 * 1024,
            Box::new(|| linear(&x_in, &w, Some(&bias))),
        ),
        ("relu_64x1024", x.numel(), Box::new(|| x.relu())),
        (
            "leaky_relu_64x1024",
            x.numel(),
            Box::new(|| x.leaky_relu(0.2)),
        ),
        ("tanh_64x1024", x.numel(), Box::new(|| x.tanh())),
        ("sigmoid_64x1024", x.numel(), Box::new(|| x.sigmoid())),
        (
            "dropout_64x1024",
            x.numel(),
            Box::new(|| dropout(&x, 0.3, true)),
        ),
        (
            "bce_64",
            64,
            Box::new(|| binary_cross_entropy(&probabilities, &targets)),
        ),
    ];
    let mut group = c.benchmark_group("ops");
    for (name, outputs, op) in &ops {
        group.throughput(Throughput::Elements(*outputs as u64));
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| black_box(op()))
        });
        // As a training step calls it: on a worker of the pool, the other workers awake
        // (`Device::run`), so the time is the op's own and not that of handing it to the pool
        // (which, called from the main thread as above, is most of a small op's).
        group.bench_function(BenchmarkId::new("forward_in_step", name), |b| {
            b.iter_custom(|iters| {
                dev.run(|| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(op());
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_function(BenchmarkId::new("backward", name), |b| {
            b.iter_batched(|| op().sum(), |loss| loss.backward(), BatchSize::SmallInput)
        });
    }
    group.finish();
}

/// Random fills of one step's sizes: a dropout layer's uniform draw (the masks are the same
/// Philox words) and the generator's noise, whose Box–Muller transform calls `ln`, `sin` and
/// `cos` per pair.
fn bench_random(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("random");
    group.throughput(Throughput::Elements(128 * 1024));
    group.bench_function("uniform_128x1024", |b| {
        b.iter(|| Tensor::uniform(&[128, 1024], 0.0, 1.0, &dev))
    });
    group.throughput(Throughput::Elements(64 * 100));
    group.bench_function("normal_64x100", |b| {
        b.iter(|| Tensor::randn(&[64, 100], &dev))
    });
    group.finish();
}

/// One Adam step over the discriminator's 1.46 M parameters (the update reads θ, g, m, v and
/// writes θ, m, v: 28 bytes per parameter).
fn bench_adam(c: &mut Criterion) {
    let dev = Device::Cpu;
    manual_seed(1);
    let net = discriminator(&dev);
    let params = net.parameters();
    let count: usize = params.iter().map(Tensor::numel).sum();
    net.forward(&Tensor::randn(&[64, IMAGE_DIM], &dev))
        .sum()
        .backward();
    let mut adam = Adam::new(params, ferrograd::gan::adam_config(2e-4));
    let mut group = c.benchmark_group("adam");
    group.throughput(Throughput::Bytes((28 * count) as u64));
    group.bench_function("step_discriminator", |b| b.iter(|| adam.step()));

    // The same step late in a GAN run, for parameters of units that ReLU has switched off:
    // their gradient is exactly 0, so their v decays by β₂ each step, into the subnormal
    // numbers below 1.2e-38 (after ~70 000 steps from 1e-8), where x86 arithmetic takes a
    // microcode assist per instruction. Here every parameter is in that state.
    let net = discriminator(&dev);
    let params = net.parameters();
    (net.forward(&Tensor::randn(&[64, IMAGE_DIM], &dev)).sum() * 0.0).backward();
    let mut adam = Adam::new(params, ferrograd::gan::adam_config(2e-4));
    for state in adam.states() {
        state
            .exp_avg_sq
            .assign(&vec![1e-38; state.exp_avg_sq.numel()]);
    }
    group.bench_function("step_discriminator_decayed_moments", |b| {
        b.iter(|| adam.step())
    });
    group.finish();
}

/// One iteration of the classic MLP GAN at batch 64: a D step, then a G step.
fn bench_gan_iteration(c: &mut Criterion) {
    let dev = Device::Cpu;
    manual_seed(1);
    let mut gan = Gan::new(&dev, 2e-4);
    let real = Tensor::uniform(&[64, IMAGE_DIM], -1.0, 1.0, &dev);
    let mut group = c.benchmark_group("gan");
    group.throughput(Throughput::Elements(64)); // images
    group.bench_function("iteration_batch64", |b| b.iter(|| gan.train_step(&real)));
    group.finish();
}

/// A training step written as a user writes one (the README's API, the discriminator on a
/// batch of 64), its ops called one by one from the main thread, beside the same step inside
/// [`Device::run`]: what the hand-offs of each op to the rayon pool cost.
fn bench_user_step(c: &mut Criterion) {
    let dev = Device::Cpu;
    manual_seed(1);
    let net = discriminator(&dev);
    let mut adam = Adam::new(net.parameters(), ferrograd::gan::adam_config(2e-4));
    let x = Tensor::uniform(&[64, IMAGE_DIM], -1.0, 1.0, &dev);
    let targets = Tensor::ones(&[64, 1], &dev);
    let mut step = || {
        adam.zero_grad();
        let loss = binary_cross_entropy(&net.forward(&x), &targets);
        loss.backward();
        adam.step();
        loss.item()
    };
    let mut group = c.benchmark_group("user_step");
    group.throughput(Throughput::Elements(64)); // images
    group.bench_function("discriminator_ops_called_directly", |b| b.iter(&mut step));
    group.bench_function("discriminator_in_device_run", |b| {
        b.iter(|| dev.run(&mut step))
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_gemm,
    bench_gemm_steps,
    bench_ops,
    bench_random,
    bench_adam,
    bench_gan_iteration,
    bench_user_step
);
/// `criterion_main!`, with the CPU pool sized first as `mnist_gan` sizes it: one thread per
/// physical core, or `RAYON_NUM_THREADS`.
fn main() {
    if let Err(err) = start_thread_pool(None) {
        eprintln!("{err}");
        std::process::exit(1);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
