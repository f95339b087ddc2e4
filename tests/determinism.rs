//! The same seed gives bit-identical losses: run to run, and for 1 or 2 threads. Uses the
//! GAN's real model and batch, so every parallel kernel splits its work.

use ferrograd::gan::{Gan, IMAGE_DIM};
use ferrograd::{manual_seed, Device, Tensor};

/// Three iterations of the MLP GAN on random "images"; every loss and mean output, as bits.
fn train(seed: u64) -> Vec<u32> {
    let dev = Device::Cpu;
    manual_seed(seed);
    let mut gan = Gan::new(&dev, 2e-4);
    (0..3)
        .flat_map(|_| {
            let stats = gan.train_step(&Tensor::uniform(&[64, IMAGE_DIM], -1.0, 1.0, &dev));
            [stats.d_loss, stats.g_loss, stats.d_real, stats.d_fake].map(f32::to_bits)
        })
        .collect()
}

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// One test, so no other test touches the process-wide generator meanwhile.
#[test]
fn same_seed_gives_bit_identical_losses_for_any_thread_count() {
    let two_threads = in_pool(2, || train(1));
    assert_eq!(two_threads, in_pool(2, || train(1)), "run to run");
    assert_eq!(two_threads, in_pool(1, || train(1)), "1 thread vs 2");
    assert_ne!(
        two_threads,
        in_pool(2, || train(2)),
        "another seed trains differently"
    );
    let values: Vec<f32> = two_threads.iter().map(|&b| f32::from_bits(b)).collect();
    assert!(
        values.iter().all(|v| v.is_finite() && *v > 0.0),
        "{values:?}"
    );
}
