//! The classic MLP GAN on 28 × 28 images, as the PyTorch tutorials have it: the model that the
//! `mnist_gan` example trains and the benchmarks time.
//!
//! - Generator: `100 → 256 → 512 → 1024 → 784`, ReLU between layers, tanh at the end (images
//!   in `[-1, 1]`).
//! - Discriminator: `784 → 1024 → 512 → 256 → 1`, LeakyReLU(0.2) and Dropout(0.3) between
//!   layers, sigmoid at the end (the probability that the input is real).
//! - Both trained by Adam with lr 2e-4 and betas (0.5, 0.999).

use crate::device::Device;
use crate::nn::functional::binary_cross_entropy;
use crate::nn::{Dropout, LeakyReLU, Linear, Module, ReLU, Sequential, Sigmoid, Tanh};
use crate::optim::{Adam, AdamConfig};
use crate::tensor::Tensor;

/// The length of the noise vector `z` the generator maps to an image.
pub const LATENT_DIM: usize = 100;
/// Pixels per image (28 × 28).
pub const IMAGE_DIM: usize = 784;

/// `Linear(100,256) ReLU Linear(256,512) ReLU Linear(512,1024) ReLU Linear(1024,784) Tanh`.
pub fn generator(device: &Device) -> Sequential {
    Sequential::new()
        .add(Linear::new(LATENT_DIM, 256, device))
        .add(ReLU)
        .add(Linear::new(256, 512, device))
        .add(ReLU)
        .add(Linear::new(512, 1024, device))
        .add(ReLU)
        .add(Linear::new(1024, IMAGE_DIM, device))
        .add(Tanh)
}

/// `Linear(784,1024) LeakyReLU(0.2) Dropout(0.3) Linear(1024,512) LeakyReLU(0.2) Dropout(0.3)
/// Linear(512,256) LeakyReLU(0.2) Dropout(0.3) Linear(256,1) Sigmoid`.
pub fn discriminator(device: &Device) -> Sequential {
    Sequential::new()
        .add(Linear::new(IMAGE_DIM, 1024, device))
        .add(LeakyReLU::new(0.2))
        .add(Dropout::new(0.3))
        .add(Linear::new(1024, 512, device))
        .add(LeakyReLU::new(0.2))
        .add(Dropout::new(0.3))
        .add(Linear::new(512, 256, device))
        .add(LeakyReLU::new(0.2))
        .add(Dropout::new(0.3))
        .add(Linear::new(256, 1, device))
        .add(Sigmoid)
}

/// The optimiser settings of the classic GAN: Adam, lr 2e-4, betas (0.5, 0.999).
pub fn adam_config(lr: f32) -> AdamConfig {
    AdamConfig {
        lr,
        betas: (0.5, 0.999),
        ..AdamConfig::default()
    }
}

/// What one training iteration measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// `BCE(D(x), 1) + BCE(D(G(z)), 0)`.
    pub d_loss: f32,
    /// `BCE(D(G(z')), 1)`, with fresh noise `z'`.
    pub g_loss: f32,
    /// Mean `D(x)` over the real batch: how real D finds real images.
    pub d_real: f32,
    /// Mean `D(G(z))` over the fake batch of the D step: how real D finds the fakes.
    pub d_fake: f32,
}

/// A generator, a discriminator and their optimisers.
pub struct Gan {
    pub generator: Sequential,
    pub discriminator: Sequential,
    pub generator_optimizer: Adam,
    pub discriminator_optimizer: Adam,
    device: Device,
}

impl Gan {
    /// A freshly initialised GAN (weights drawn from the process-wide generator).
    pub fn new(device: &Device, lr: f32) -> Self {
        let generator = generator(device);
        let discriminator = discriminator(device);
        Gan {
            generator_optimizer: Adam::new(generator.parameters(), adam_config(lr)),
            discriminator_optimizer: Adam::new(discriminator.parameters(), adam_config(lr)),
            generator,
            discriminator,
            device: device.clone(),
        }
    }

    /// One iteration on a batch of real images `[batch, 784]` in `[-1, 1]`:
    /// 1. D step: minimise `BCE(D(x), 1) + BCE(D(G(z).detach()), 0)`;
    /// 2. G step, with fresh noise: minimise `BCE(D(G(z)), 1)`.
    pub fn train_step(&mut self, real: &Tensor) -> StepStats {
        let batch = real.shape()[0];
        let ones = Tensor::ones(&[batch, 1], &self.device);
        let zeros = Tensor::zeros(&[batch, 1], &self.device);
        let (g, d) = (&self.generator, &self.discriminator);

        self.discriminator_optimizer.zero_grad();
        let d_on_real = d.forward(real);
        let fake = g.forward(&self.noise(batch)).detach();
        let d_on_fake = d.forward(&fake);
        let d_loss =
            binary_cross_entropy(&d_on_real, &ones) + binary_cross_entropy(&d_on_fake, &zeros);
        d_loss.backward();
        self.discriminator_optimizer.step();

        self.generator_optimizer.zero_grad();
        let g_loss = binary_cross_entropy(&d.forward(&g.forward(&self.noise(batch))), &ones);
        g_loss.backward();
        self.generator_optimizer.step();

        StepStats {
            d_loss: d_loss.item(),
            g_loss: g_loss.item(),
            d_real: d_on_real.mean().item(),
            d_fake: d_on_fake.mean().item(),
        }
    }

    /// A batch of `z ~ N(0, 1)^100`.
    pub fn noise(&self, batch: usize) -> Tensor {
        Tensor::randn(&[batch, LATENT_DIM], &self.device)
    }
}
