//! The GEMM autotuner (`backend::cuda::tuning`), on the emulator and on the GPU when there is one:
//! it records the products a step plans, times them, and makes later plans use its choice.
//! Tuned tiles give the untuned step's bits; tuned splits stay within float tolerance of the
//! CPU. (On the emulator the times are the host's emulation times, so the choices are arbitrary:
//! what is checked is that whatever is chosen is applied and computes the same values.)

mod common;

use common::{cuda_devices, uniform};
use ferrograd::backend::cpu::CpuStorage;
use ferrograd::backend::cuda::launch::{small_tiles_for, GemmPlan};
use ferrograd::backend::cuda::{
    clear_product_settings, record_products, CudaDevice, CudaStorage, TuneOptions, Tuning,
};
use ferrograd::backend::{BackendStorage, GemmDims, Identity};
use ferrograd::gan::{Gan, IMAGE_DIM};
use ferrograd::nn::Module;
use ferrograd::{manual_seed, Device, Tensor};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Tuning changes process-wide plans, and the GAN uses the process-wide generator: the tests of
/// this file take turns, and each forgets what it tuned.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The least tuning there is: one timed call per candidate.
const QUICK: TuneOptions = TuneOptions {
    rounds: 1,
    calls: 1,
};

fn cuda(device: &Device) -> &CudaDevice {
    let Device::Cuda(cuda) = device else {
        unreachable!("CUDA devices")
    };
    cuda
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

fn dims(m: usize, k: usize, n: usize, lhs_transposed: bool) -> GemmDims {
    GemmDims {
        m,
        k,
        n,
        lhs_transposed,
        rhs_transposed: !lhs_transposed,
    }
}

/// Only the products `gemm`'s tiles compute are recorded, each once, a weight gradient's with
/// its row sums; nothing is recorded outside `record_products`.
#[test]
fn recording_lists_each_tiled_product_once() {
    let _turn = one_at_a_time();
    let Some(device) = common::emulator() else {
        return;
    };
    let device = cuda(&device);
    let full = |len| CudaStorage::full(len, 0.5, device);
    let forward = dims(24, 40, 16, false);
    let weight_grad = dims(16, 24, 40, true);
    let ((), products) = record_products(|| {
        for _ in 0..2 {
            full(24 * 40).gemm(&full(40 * 16), None, forward, &Identity);
        }
        full(24 * 16).gemm_with_lhs_row_sums(&full(24 * 40), weight_grad, None);
        // One column: gemv, not tiled.
        full(24 * 40).gemm(&full(40), None, dims(24, 40, 1, false), &Identity);
    });
    let listed: Vec<(GemmDims, bool)> = products.iter().map(|p| (p.dims, p.row_sums)).collect();
    assert_eq!(listed, [(forward, false), (weight_grad, true)]);
    let ((), none) = record_products(|| ());
    assert!(none.is_empty());
}

/// Tuning a product applies its choice to later plans of that product, and the product then
/// computes what the CPU does (splits change the order of the sums: float tolerance).
#[test]
fn a_tuned_product_runs_as_chosen_and_computes_the_product() {
    let _turn = one_at_a_time();
    for device in cuda_devices() {
        let device = cuda(&device);
        // A long k over few tiles (split-K's case) and a weight gradient with row sums.
        for (product, row_sums) in [
            (dims(40, 700, 24, false), false),
            (dims(24, 300, 40, true), true),
        ] {
            let a = uniform(product.m * product.k, -1.0, 1.0, 5);
            let b = uniform(product.k * product.n, -1.0, 1.0, 6);
            let (a_gpu, b_gpu) = (
                CudaStorage::from_vec(a.clone(), device),
                CudaStorage::from_vec(b.clone(), device),
            );
            let ((), recorded) = record_products(|| {
                if row_sums {
                    a_gpu.gemm_with_lhs_row_sums(&b_gpu, product, None);
                } else {
                    a_gpu.gemm(&b_gpu, None, product, &Identity);
                }
            });
            let tuned = device.tune_products(&recorded, Tuning::TilesAndSplits, QUICK);
            assert_eq!(tuned.len(), 1);
            let (planned, chosen) = (tuned[0].planned, tuned[0].chosen);
            match GemmPlan::for_product(product) {
                GemmPlan::Tiled { splits, .. } => assert_eq!(splits, chosen.choice.splits),
                GemmPlan::Large => panic!("{product:?}: a tiled product"),
            }
            // The tiles: a setting of the product's own where the choice is not the plan's.
            let small = chosen.choice.small_tiles;
            let own = (small != planned.choice.small_tiles).then_some(small);
            assert_eq!(small_tiles_for(product), own, "{tuned:?}");
            let cpu_a = CpuStorage::from_vec(a);
            let cpu_b = CpuStorage::from_vec(b);
            let case = format!("{product:?} as {:?} on {device:?}", chosen.choice);
            let (got, expected) = if row_sums {
                let (c, sums) = a_gpu.gemm_with_lhs_row_sums(&b_gpu, product, None);
                let (cpu_c, cpu_sums) = cpu_a.gemm_with_lhs_row_sums(&cpu_b, product, None);
                (
                    [c.to_vec(), sums.to_vec()].concat(),
                    [cpu_c.to_vec(), cpu_sums.to_vec()].concat(),
                )
            } else {
                let c = a_gpu.gemm(&b_gpu, None, product, &Identity);
                (
                    c.to_vec(),
                    cpu_a.gemm(&cpu_b, None, product, &Identity).to_vec(),
                )
            };
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert!(
                    (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                    "{case}[{i}]: {g} vs {e}"
                );
            }
            clear_product_settings();
        }
    }
}

/// Two captured GAN steps (batch 8) after tuning the tiles of the step's products: the
/// statistics and every weight are the bits of the untuned steps.
#[test]
fn gan_steps_tuned_in_tiles_are_the_untuned_bits() {
    let _turn = one_at_a_time();
    for device in cuda_devices() {
        let train = |tune: bool| {
            manual_seed(33);
            let mut gan = Gan::new(&device, 2e-4);
            let real = Tensor::uniform(&[8, IMAGE_DIM], -1.0, 1.0, &device);
            if tune {
                let tuned = gan.tune_products(8, Tuning::Tiles, QUICK).unwrap();
                // G's and D's layers forward, their weight and input gradients (the one-column
                // products of D's last layer are gemv's).
                assert!(tuned.len() >= 15, "{} products tuned", tuned.len());
                assert!(tuned
                    .iter()
                    .all(|t| t.chosen.choice.splits == t.planned.choice.splits));
            }
            gan.capture_train_step(8).unwrap();
            let stats: Vec<f32> = (0..2)
                .flat_map(|_| {
                    let s = gan.train_step(&real);
                    [s.d_loss, s.g_loss, s.d_real, s.d_fake]
                })
                .collect();
            let weights: Vec<u32> = (gan.generator.parameters().iter())
                .chain(&gan.discriminator.parameters())
                .flat_map(|w| bits(&w.to_vec()))
                .collect();
            clear_product_settings();
            (bits(&stats), weights)
        };
        let untuned = train(false);
        assert!(train(true) == untuned, "GAN steps on {device:?}");
    }
}

#[test]
fn the_cpu_has_nothing_to_tune() {
    let _turn = one_at_a_time();
    let mut gan = Gan::new(&Device::Cpu, 2e-4);
    let err = gan.tune_products(8, Tuning::Tiles, QUICK).unwrap_err();
    assert!(err.to_string().contains("CUDA"), "{err}");
}
