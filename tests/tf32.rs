//! The optional TF32 tensor-core path (`set_allow_tf32`), through the whole engine on the CUDA
//! emulator (and a GPU when there is one): a linear layer's forward and gradients within TF32's
//! precision of the CPU's FP32, and a GAN step close to it and captured in as many launches as in
//! FP32. In a test binary of its own: the switch is process-wide (and its tests take turns).

mod common;

use common::{assert_within_scale, uniform, CPU};
use ferrograd::backend::cuda::set_allow_tf32;
use ferrograd::gan::{Gan, IMAGE_DIM};
use ferrograd::nn::functional::linear;
use ferrograd::{manual_seed, Device, Tensor};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// TF32 is a process-wide switch: the tests of this file take turns.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

fn devices() -> Vec<Device> {
    let mut devices: Vec<Device> = common::emulator().into_iter().collect();
    devices.extend(Device::cuda(0).ok());
    devices
}

#[test]
fn tf32_linear_layers_and_gan_steps_stay_close_to_fp32() {
    let _turn = one_at_a_time();
    set_allow_tf32(true);
    for device in devices() {
        // A linear layer, forward and backward (all three products, and the bias gradient).
        let run = |device: &Device| {
            let leaf = |values: Vec<f32>, shape: &[usize]| {
                let t = Tensor::from_vec(values, shape, device);
                t.set_requires_grad(true);
                t
            };
            let x = leaf(uniform(48 * 200, -1.0, 1.0, 1), &[48, 200]);
            let w = leaf(uniform(70 * 200, -0.1, 0.1, 2), &[70, 200]);
            let b = leaf(uniform(70, -0.1, 0.1, 3), &[70]);
            let y = linear(&x, &w, Some(&b));
            (y.tanh() * 3.0).sum().backward();
            [
                y.to_vec(),
                x.grad().unwrap().to_vec(),
                w.grad().unwrap().to_vec(),
                b.grad().unwrap().to_vec(),
            ]
        };
        let (tf32, fp32) = (run(&device), run(&CPU));
        let what = [
            "output",
            "input gradient",
            "weight gradient",
            "bias gradient",
        ];
        for (what, (got, want)) in what.iter().zip(tf32.iter().zip(&fp32)) {
            assert_within_scale(what, got, want, 4e-3);
            assert_ne!(got, want, "{what}: TF32 rounding should show");
        }

        // A GAN step at batch 8.
        let train = |device: &Device| {
            manual_seed(21);
            let mut gan = Gan::new(device, 2e-4);
            let real = Tensor::uniform(&[8, IMAGE_DIM], -1.0, 1.0, device);
            let s = gan.train_step(&real);
            [s.d_loss, s.g_loss, s.d_real, s.d_fake]
        };
        assert_within_scale("GAN statistics", &train(&device), &train(&CPU), 1e-2);
    }
}

/// A GAN step at `mnist_gan`'s batch, captured, takes as many launches with TF32 as without: the
/// tensor-core kernel sums a weight gradient's bias gradient as it goes and runs a layer's two
/// gradient products in one launch (`gemm_pair_tf32`), as `gemm` does. (It took 64 launches to
/// FP32's 39 when it did neither.)
#[test]
fn a_tf32_step_takes_as_many_launches_as_an_fp32_one() {
    let _turn = one_at_a_time();
    for device in devices() {
        let launches = |tf32| {
            set_allow_tf32(tf32);
            manual_seed(5);
            let mut gan = Gan::new(&device, 2e-4);
            gan.capture_train_step(64).expect("capture");
            gan.captured_launches().expect("captured")
        };
        let (fp32, tf32) = (launches(false), launches(true));
        assert_eq!(tf32, fp32, "launches with TF32 and without, on {device}");
    }
}
