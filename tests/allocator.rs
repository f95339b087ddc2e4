//! The caching allocators: once training has warmed up, every buffer comes from the cache —
//! the CUDA runtime is asked for no more device memory (no cudaMalloc per step), and the CPU
//! backend asks the system allocator for no tensor buffer. In a binary of their own, one test
//! at a time, so that nothing else allocates meanwhile.

mod common;

use std::sync::Mutex;

use ferrograd::backend::cpu::fresh_buffers;
use ferrograd::gan::{Gan, IMAGE_DIM};
use ferrograd::nn::functional::binary_cross_entropy;
use ferrograd::nn::{Linear, Module, Sequential, Sigmoid};
use ferrograd::optim::{Adam, AdamConfig};
use ferrograd::rng::Generator;
use ferrograd::{Device, Tensor};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn after_warm_up_a_cpu_gan_step_takes_every_buffer_from_the_cache() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut gan = Gan::new(&Device::Cpu, 2e-4);
    let real = Tensor::uniform(&[64, IMAGE_DIM], -1.0, 1.0, &Device::Cpu);
    gan.train_step(&real);
    gan.train_step(&real);
    let warm = fresh_buffers();
    for _ in 0..3 {
        gan.train_step(&real);
    }
    assert_eq!(fresh_buffers(), warm, "three steps, no new tensor buffer");
    assert!(warm > 0, "the warm-up steps filled the cache");
}

#[test]
fn after_warm_up_training_allocates_no_device_memory() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(device) = common::emulator() else {
        return;
    };
    let Device::Cuda(cuda) = &device else {
        unreachable!()
    };
    let mut generator = Generator::new(14);
    let net = Sequential::new()
        .add(Linear::new_with(3, 8, &device, &mut generator))
        .add(Sigmoid);
    let mut adam = Adam::new(net.parameters(), AdamConfig::default());
    let x = Tensor::uniform_with(&[4, 3], -1.0, 1.0, &device, &mut generator);
    let t = Tensor::ones(&[4, 8], &device);
    let mut step = || {
        adam.zero_grad();
        binary_cross_entropy(&net.forward(&x), &t).backward();
        adam.step();
    };
    step();
    step();
    let warm = cuda.raw_allocations();
    for _ in 0..5 {
        step();
    }
    assert_eq!(
        cuda.raw_allocations(),
        warm,
        "the caching allocator served every buffer"
    );
}
