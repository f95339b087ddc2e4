//! The Philox generator: published known answers, distributions, resumable state, and values
//! independent of the thread count.

mod common;

use common::{panic_message, process_wide_generator, CPU};
use ferrograd::backend::Distribution;
use ferrograd::nn::functional::dropout_with;
use ferrograd::rng::{philox4x32_10, Generator, WIDE_BLOCKS};
use ferrograd::{manual_seed, Tensor};

/// Random123's known-answer vectors for Philox4x32-10 (counter, key, output).
#[test]
fn philox_matches_random123_known_answers() {
    let cases = [
        (
            [0u32; 4],
            [0u32; 2],
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
        ),
        (
            [u32::MAX; 4],
            [u32::MAX; 2],
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
        ),
        (
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0],
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
        ),
    ];
    for (counter, key, expected) in cases {
        assert_eq!(philox4x32_10(counter, key), expected);
    }
}

fn mean_and_std(values: &[f32]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

#[test]
fn wide_blocks_give_the_scalar_blocks() {
    let stream = Generator::from_state(0xDEAD_BEEF_0123_4567, (1 << 32) - 5).draw(1 << 10);
    let wide = stream.wide_blocks(3);
    // Word w of block 3 + l is wide[w][l]; the counter crosses 2³² between lanes, so the
    // high word must carry.
    let scalar: Vec<[u32; 4]> = (0..WIDE_BLOCKS as u64)
        .map(|l| stream.block(3 + l))
        .collect();
    for (w, words) in wide.iter().enumerate() {
        let expected: Vec<u32> = scalar.iter().map(|block| block[w]).collect();
        assert_eq!(words.to_vec(), expected, "word {w}");
    }
}

#[test]
fn every_value_comes_from_its_own_philox_block() {
    // Value i is value i % 4 of block i / 4, however the CPU splits a fill into tasks (1,024
    // normal values, 8,192 uniform ones or mask values apiece) and whichever thread runs each.
    let n = 20_003;
    let (seed, offset) = (11, 5);
    let expected = |distribution: Distribution| {
        let stream = Generator::from_state(seed, offset).draw(n);
        (0..n)
            .map(|i| distribution.sample_block(stream.block((i / 4) as u64))[i % 4])
            .collect::<Vec<f32>>()
    };
    let check = |what: &str, got: Vec<f32>, distribution: Distribution| {
        let first_wrong = got
            .iter()
            .zip(expected(distribution))
            .position(|(&got, want)| got.to_bits() != want.to_bits());
        assert_eq!(first_wrong, None, "{what}: the first value off its block");
    };
    let generator = || Generator::from_state(seed, offset);
    let standard = Distribution::Normal {
        mean: 0.0,
        std: 1.0,
    };
    check(
        "normal",
        Tensor::randn_with(&[n], &CPU, &mut generator()).to_vec(),
        standard,
    );
    let interval = Distribution::Uniform {
        low: -2.0,
        high: 3.0,
    };
    check(
        "uniform",
        Tensor::uniform_with(&[n], -2.0, 3.0, &CPU, &mut generator()).to_vec(),
        interval,
    );
    let ones = Tensor::ones(&[n], &CPU);
    check(
        "mask",
        dropout_with(&ones, 0.3, true, &mut generator()).to_vec(),
        Distribution::DropoutMask { p: 0.3 },
    );
}

#[test]
fn normal_samples_have_mean_zero_and_unit_variance() {
    let n = 400_000;
    let x = Tensor::randn_with(&[n], &CPU, &mut Generator::new(1)).to_vec();
    let (mean, std) = mean_and_std(&x);
    // Standard errors: 1/√n = 0.0016 for the mean, 1/√(2n) = 0.0011 for the std.
    assert!(
        mean.abs() < 0.008 && (std - 1.0).abs() < 0.006,
        "mean {mean}, std {std}"
    );
    let beyond_3_sigma = x.iter().filter(|v| v.abs() > 3.0).count() as f64 / n as f64;
    assert!(
        (beyond_3_sigma - 0.0027).abs() < 0.0006,
        "tail mass {beyond_3_sigma}"
    );
}

#[test]
fn uniform_samples_fill_the_interval() {
    let n = 400_000;
    let x = Tensor::uniform_with(&[n], -2.0, 3.0, &CPU, &mut Generator::new(2)).to_vec();
    assert!(x.iter().all(|&v| (-2.0..3.0).contains(&v)));
    let (mean, std) = mean_and_std(&x);
    // U(a, b): mean (a + b)/2 = 0.5, std (b − a)/√12 = 1.4434.
    assert!(
        (mean - 0.5).abs() < 0.015 && (std - 1.4434).abs() < 0.01,
        "mean {mean}, std {std}"
    );
}

#[test]
fn uniform_refuses_the_ranges_pytorch_refuses() {
    let cases = [
        (1.0, 0.0, "found low=1 > high=0"),
        (f32::NAN, 1.0, "low=NaN is out of bounds"),
        (0.0, f32::INFINITY, "high=inf is out of bounds"),
        (-3e38, 3e38, "high - low exceed the limit"),
    ];
    for (low, high, expected) in cases {
        let drawn = panic_message(|| {
            Tensor::uniform_with(&[4], low, high, &CPU, &mut Generator::new(0));
        });
        assert!(drawn.contains(expected), "[{low}, {high}): {drawn}");
        // The process-wide generator is not advanced by a call that panics.
        let _turn = process_wide_generator();
        manual_seed(5);
        let from_default = panic_message(|| {
            Tensor::uniform(&[4], low, high, &CPU);
        });
        assert_eq!(from_default, drawn);
        let next = Tensor::randn(&[4], &CPU).to_vec();
        assert_eq!(
            next,
            Tensor::randn_with(&[4], &CPU, &mut Generator::new(5)).to_vec()
        );
    }
    // An empty range is allowed, as in PyTorch: every sample is its one value.
    let point = Tensor::uniform_with(&[5], 0.25, 0.25, &CPU, &mut Generator::new(0));
    assert_eq!(point.to_vec(), [0.25; 5]);
}

#[test]
fn saved_state_resumes_the_stream() {
    let mut generator = Generator::new(3);
    Tensor::randn_with(&[10], &CPU, &mut generator);
    assert_eq!(generator.offset(), 3, "10 values use ceil(10 / 4) blocks");
    let mut resumed = Generator::from_state(generator.seed(), generator.offset());
    let next = Tensor::randn_with(&[7], &CPU, &mut generator).to_vec();
    assert_eq!(next, Tensor::randn_with(&[7], &CPU, &mut resumed).to_vec());
}

#[test]
fn manual_seed_restarts_the_process_wide_stream() {
    let _turn = process_wide_generator();
    manual_seed(42);
    let a = Tensor::randn(&[100], &CPU).to_vec();
    let b = Tensor::randn(&[100], &CPU).to_vec();
    manual_seed(42);
    assert_eq!(a, Tensor::randn(&[100], &CPU).to_vec());
    assert_ne!(a, b);
}

#[test]
fn values_do_not_depend_on_the_thread_count() {
    let draw = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| Tensor::randn_with(&[100_003], &CPU, &mut Generator::new(4)).to_vec())
    };
    assert_eq!(draw(1), draw(2));
}

/// The process-wide generator is never locked while a fill runs on the rayon pool: a pool
/// thread that needs it (a training step's dropout) would wait for ever. Two threads, one
/// drawing tensors, one training, must both finish (with the lock held through fills, this
/// hung in two runs out of three).
#[test]
fn drawing_and_training_from_two_threads_cannot_deadlock() {
    use ferrograd::gan::{Gan, IMAGE_DIM};
    use std::sync::mpsc;
    use std::time::Duration;
    let _turn = process_wide_generator(); // it draws from two threads at once
    let (done, finished) = mpsc::channel();
    let drawing = done.clone();
    std::thread::spawn(move || {
        for _ in 0..400 {
            std::hint::black_box(Tensor::randn(&[1 << 16], &CPU));
        }
        drawing.send("drawing").unwrap();
    });
    std::thread::spawn(move || {
        let mut gan = Gan::new(&CPU, 2e-4);
        let real = Tensor::uniform(&[16, IMAGE_DIM], -1.0, 1.0, &CPU);
        for _ in 0..40 {
            gan.train_step(&real);
        }
        done.send("training").unwrap();
    });
    for _ in 0..2 {
        // Generous: both sides together take about half a second.
        let who = finished.recv_timeout(Duration::from_secs(120));
        assert!(who.is_ok(), "a thread is stuck: deadlock");
    }
}
