//! Products in 32 × 32 tiles (`set_small_tiles`: `gemm_small`, `gemm_pair_small`) give the bits of the
//! 64 × 64 tiles: each result is one thread's sum over k in the same order either way, and
//! split-K's chunks are the same. On the emulator, and on the GPU when there is one: products
//! of every layout with ragged edges, split along k, with the bias gradient's row sums; and
//! whole GAN steps, all of whose 64 × 64 products, paired or alone, take the small tiles.

mod common;

use common::{cuda_devices, uniform};
use ferrograd::backend::cpu::CpuStorage;
use ferrograd::backend::cuda::{set_small_tiles, CudaDevice, CudaStorage};
use ferrograd::backend::{BackendStorage, GemmDims, Identity};
use ferrograd::gan::{Gan, IMAGE_DIM};
use ferrograd::nn::Module;
use ferrograd::{manual_seed, Device, Tensor};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The small tiles are a process-wide switch, and the GAN uses the process-wide generator: the
/// tests of this file take turns.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `f` with 64 × 64 tiles, then with 32 × 32 tiles.
fn both_tiles<R>(f: impl Fn() -> R) -> [R; 2] {
    [false, true].map(|small| {
        set_small_tiles(small);
        let result = f();
        set_small_tiles(false);
        result
    })
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// A product and its row sums (for A stored transposed), on `cuda` and on the CPU.
fn product(dims: GemmDims, cuda: &CudaDevice) -> (Vec<f32>, Option<Vec<f32>>, Vec<f32>) {
    let (a, b) = (
        uniform(dims.m * dims.k, -1.0, 1.0, 71),
        uniform(dims.k * dims.n, -1.0, 1.0, 72),
    );
    let cpu = CpuStorage::from_vec(a.clone()).gemm(
        &CpuStorage::from_vec(b.clone()),
        None,
        dims,
        &Identity,
    );
    let (a, b) = (
        CudaStorage::from_vec(a, cuda),
        CudaStorage::from_vec(b, cuda),
    );
    if dims.lhs_transposed {
        let (c, sums) = a.gemm_with_lhs_row_sums(&b, dims, None);
        (c.to_vec(), Some(sums.to_vec()), cpu.to_vec())
    } else {
        (
            a.gemm(&b, None, dims, &Identity).to_vec(),
            None,
            cpu.to_vec(),
        )
    }
}

/// Every layout, edges that are not multiples of 32 (or of 4), k split into chunks (64 × 1000 ·
/// 1000 × 70: split-K's partial tiles and rendezvous in 32 × 32 tiles), and a weight gradient
/// with its row sums summed in the GEMM.
#[test]
fn small_tiles_give_the_bits_of_large_ones() {
    let _turn = one_at_a_time();
    let shapes = [(64, 100, 256), (70, 33, 45), (64, 1000, 70), (9, 130, 3)];
    for cuda in cuda_devices() {
        let Device::Cuda(cuda) = cuda else {
            unreachable!("CUDA devices")
        };
        for (m, k, n) in shapes {
            for (lhs_transposed, rhs_transposed) in [(false, false), (false, true), (true, false)] {
                let dims = GemmDims {
                    m,
                    k,
                    n,
                    lhs_transposed,
                    rhs_transposed,
                };
                let [large, small] = both_tiles(|| product(dims, &cuda));
                let case = format!("{dims:?} on {cuda:?}");
                assert!(bits(&small.0) == bits(&large.0), "{case}: product");
                assert_eq!(small.1, large.1, "{case}: row sums");
                for (i, (got, cpu)) in small.0.iter().zip(&small.2).enumerate() {
                    assert!((got - cpu).abs() <= 1e-4 * (1.0 + cpu.abs()), "{case}[{i}]");
                }
            }
        }
    }
}

/// Two GAN steps (batch 16): the statistics and every weight after them, small tiles or not.
#[test]
fn gan_steps_are_the_same_in_small_tiles() {
    let _turn = one_at_a_time();
    for device in cuda_devices() {
        let train = || {
            manual_seed(21);
            let mut gan = Gan::new(&device, 2e-4);
            let real = Tensor::uniform(&[16, IMAGE_DIM], -1.0, 1.0, &device);
            let stats: Vec<f32> = (0..2)
                .flat_map(|_| {
                    let s = gan.train_step(&real);
                    [s.d_loss, s.g_loss, s.d_real, s.d_fake]
                })
                .collect();
            let weights: Vec<Vec<f32>> = (gan.generator.parameters().iter())
                .chain(&gan.discriminator.parameters())
                .map(Tensor::to_vec)
                .collect();
            (
                bits(&stats),
                weights.iter().map(|w| bits(w)).collect::<Vec<_>>(),
            )
        };
        let [large, small] = both_tiles(train);
        assert!(large == small, "GAN steps on {device:?}");
    }
}
