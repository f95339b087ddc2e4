//! Inverted dropout: keep rate, exact scaling, identity in evaluation, reproducible masks.

mod common;

use common::{uniform, CPU};
use ferrograd::nn::functional::dropout_with;
use ferrograd::nn::{Dropout, Linear, Module, Sequential};
use ferrograd::rng::Generator;
use ferrograd::Tensor;

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(f)
}

#[test]
fn keep_rate_is_within_statistical_bounds() {
    let n = 100_000;
    for p in [0.1f32, 0.3, 0.5, 0.9] {
        let y = dropout_with(&Tensor::ones(&[n], &CPU), p, true, &mut Generator::new(7));
        let kept = y.to_vec().iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
        // The kept count is Binomial(n, 1 − p): allow 6 standard deviations.
        let sigma = (f64::from(p) * f64::from(1.0 - p) / n as f64).sqrt();
        let expected = 1.0 - f64::from(p);
        assert!(
            (kept - expected).abs() < 6.0 * sigma,
            "p = {p}: kept {kept}, expected {expected} ± {}",
            6.0 * sigma
        );
    }
}

#[test]
fn kept_values_are_scaled_exactly() {
    let p = 0.3f32;
    let scale = 1.0 / (1.0 - p);
    let x = uniform(10_000, -3.0, 3.0, 1);
    let y = dropout_with(
        &Tensor::from_vec(x.clone(), &[10_000], &CPU),
        p,
        true,
        &mut Generator::new(2),
    );
    let y = y.to_vec();
    assert!(y.contains(&0.0) && y.iter().any(|&v| v != 0.0));
    for (&yi, &xi) in y.iter().zip(&x) {
        assert!(
            yi == 0.0 || yi == xi * scale,
            "{yi} is neither 0 nor {xi} · {scale}"
        );
    }
}

#[test]
fn gradient_is_zero_where_dropped_and_scaled_where_kept() {
    let x = Tensor::from_vec(uniform(1000, -1.0, 1.0, 3), &[1000], &CPU);
    x.set_requires_grad(true);
    let y = dropout_with(&x, 0.4, true, &mut Generator::new(4));
    y.sum().backward();
    let scale = 1.0 / (1.0 - 0.4f32);
    for (g, y) in x.grad().unwrap().to_vec().iter().zip(y.to_vec()) {
        assert_eq!(*g, if y == 0.0 { 0.0 } else { scale });
    }
}

#[test]
fn evaluation_mode_is_the_identity() {
    let x = Tensor::from_vec(uniform(100, -1.0, 1.0, 5), &[100], &CPU);
    let y = dropout_with(&x, 0.3, false, &mut Generator::new(6));
    assert!(y.shares_storage(&x));
    let mut module = Dropout::new(0.3);
    assert!(module.is_training(), "modules start in training mode");
    module.eval();
    assert_eq!(module.forward(&x).to_vec(), x.to_vec());
    module.train();
    assert_ne!(module.forward(&x).to_vec(), x.to_vec());
}

#[test]
fn sequential_switches_its_dropout_layers() {
    let mut net = Sequential::new()
        .add(Linear::new(4, 64, &CPU))
        .add(Dropout::new(0.5));
    let x = Tensor::ones(&[2, 4], &CPU);
    net.eval();
    assert_eq!(net.forward(&x).to_vec(), net.forward(&x).to_vec());
    net.train();
    assert_ne!(net.forward(&x).to_vec(), net.forward(&x).to_vec());
}

#[test]
fn p_zero_keeps_everything_and_p_one_drops_everything() {
    let x = Tensor::from_vec(uniform(50, -1.0, 1.0, 8), &[50], &CPU);
    let mut generator = Generator::new(9);
    assert_eq!(
        dropout_with(&x, 0.0, true, &mut generator).to_vec(),
        x.to_vec()
    );
    assert!(dropout_with(&x, 1.0, true, &mut generator)
        .to_vec()
        .iter()
        .all(|&v| v == 0.0));
}

#[test]
fn same_seed_same_mask_and_draws_advance() {
    let x = Tensor::ones(&[64, 1024], &CPU);
    let mask = |generator: &mut Generator| dropout_with(&x, 0.3, true, generator).to_vec();
    let (mut a, mut b) = (Generator::new(10), Generator::new(10));
    let first = mask(&mut a);
    assert_eq!(first, mask(&mut b), "same seed, same mask");
    assert_ne!(first, mask(&mut a), "the next draw is a new mask");
    assert_ne!(
        first,
        mask(&mut Generator::new(11)),
        "another seed, another mask"
    );
}

#[test]
fn mask_does_not_depend_on_the_thread_count() {
    let x = Tensor::ones(&[64, 1024], &CPU);
    let mask = |threads| {
        in_pool(threads, || {
            dropout_with(&x, 0.3, true, &mut Generator::new(12)).to_vec()
        })
    };
    assert_eq!(mask(1), mask(2));
}

#[test]
#[should_panic(expected = "dropout: probability has to be between 0 and 1, but got 1.5")]
fn probability_out_of_range_panics() {
    dropout_with(&Tensor::ones(&[2], &CPU), 1.5, true, &mut Generator::new(0));
}
