//! Benchmarks of the CPU backend: the GEMM at the GAN's shapes (ours with each microkernel,
//! beside the `matrixmultiply` crate in the same run), elementwise ops, and one full GAN
//! training iteration. Run with `cargo bench`; figures go to `benches/RESULTS.md`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferrograd::backend::cpu::{gemm_with_kernel, Microkernel};
use ferrograd::backend::GemmDims;
use ferrograd::gan::{Gan, IMAGE_DIM, LAYERS};
use ferrograd::{manual_seed, Device, Tensor};

/// (m, k, n): the GAN's forward products at batch 64 (`gan::LAYERS`), two of its weight
/// gradients (dYᵀ·X: `[out, batch] · [batch, in]`), and two squares.
fn gemm_shapes() -> Vec<(usize, usize, usize)> {
    let mut shapes: Vec<_> = LAYERS.iter().map(|&(inp, out)| (64, inp, out)).collect();
    shapes.extend([
        (1024, 64, 784),
        (256, 64, 100),
        (1024, 1024, 1024),
        (2048, 2048, 2048),
    ]);
    shapes
}

fn bench_gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm");
    for (m, k, n) in gemm_shapes() {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        // C = A·B with B stored [n, k]: the linear layer's X·Wᵀ.
        let dims = GemmDims {
            m,
            k,
            n,
            lhs_transposed: false,
            rhs_transposed: true,
        };
        if m * k * n >= 1 << 30 {
            group.sample_size(10);
        }
        group.throughput(Throughput::Elements((2 * m * k * n) as u64)); // flops
        let shape = format!("{m}x{k}x{n}");
        for kernel in Microkernel::supported() {
            let id = BenchmarkId::new(format!("ferrograd-{kernel:?}"), &shape);
            group.bench_function(id, |bench| {
                bench.iter(|| gemm_with_kernel(kernel, black_box(&a), black_box(&b), None, dims))
            });
        }
        group.bench_function(BenchmarkId::new("matrixmultiply", &shape), |bench| {
            let mut out = vec![0.0f32; m * n];
            bench.iter(|| {
                // SAFETY: a is m×k row-major, b is read as the k×n transpose of its n×k
                // row-major storage (strides 1, k), out is m×n; all live for the call.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        k as isize,
                        1,
                        b.as_ptr(),
                        1,
                        k as isize,
                        0.0,
                        out.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                };
                black_box(&out);
            })
        });
    }
    group.finish();
}

fn bench_elementwise(c: &mut Criterion) {
    let dev = Device::Cpu;
    let x = Tensor::randn(&[64, 1024], &dev);
    let mut group = c.benchmark_group("elementwise_64x1024");
    group.throughput(Throughput::Bytes((2 * 4 * x.numel()) as u64));
    group.bench_function("tanh", |b| b.iter(|| black_box(&x).tanh()));
    group.bench_function("leaky_relu", |b| b.iter(|| black_box(&x).leaky_relu(0.2)));
    group.bench_function("sigmoid", |b| b.iter(|| black_box(&x).sigmoid()));
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

criterion_group!(benches, bench_gemm, bench_elementwise, bench_gan_iteration);
criterion_main!(benches);
