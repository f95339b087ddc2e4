//! The CUDA backend's caching allocator: once training has warmed up, every buffer comes from
//! the cache and the runtime is asked for no more device memory (no cudaMalloc per step).
//! Alone in its binary, so no other test allocates on the emulator meanwhile.

use ferrograd::nn::functional::binary_cross_entropy;
use ferrograd::nn::{Linear, Module, Sequential, Sigmoid};
use ferrograd::optim::{Adam, AdamConfig};
use ferrograd::rng::Generator;
use ferrograd::{Device, Tensor};

#[test]
fn after_warm_up_training_allocates_no_device_memory() {
    let device = Device::cuda_emulator();
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
