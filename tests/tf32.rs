//! The optional TF32 tensor-core path (`set_allow_tf32`), through the whole engine on the CUDA
//! emulator (and a GPU when there is one): a linear layer's forward and gradients within TF32's
//! precision of the CPU's FP32, and a GAN step close to it. In a test binary of its own: the
//! switch is process-wide.

mod common;

use common::{assert_within_scale, uniform, CPU};
use ferrograd::backend::cuda::set_allow_tf32;
use ferrograd::gan::{Gan, IMAGE_DIM};
use ferrograd::nn::functional::linear;
use ferrograd::{manual_seed, Device, Tensor};

fn devices() -> Vec<Device> {
    let mut devices: Vec<Device> = common::emulator().into_iter().collect();
    devices.extend(Device::cuda(0).ok());
    devices
}

#[test]
fn tf32_linear_layers_and_gan_steps_stay_close_to_fp32() {
    set_allow_tf32(true);
    for device in devices() {
        // A linear layer, forward and backward (all three products).
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
            ]
        };
        let (tf32, fp32) = (run(&device), run(&CPU));
        for (what, (got, want)) in ["output", "input gradient", "weight gradient"]
            .iter()
            .zip(tf32.iter().zip(&fp32))
        {
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
