//! Inverted dropout: keep rate, exact scaling, identity in evaluation, reproducible masks; and
//! a `Sequential`'s layers, fused with the activation and dropout after them or not.

mod common;

use common::{process_wide_generator, uniform, CPU};
use ferrograd::nn::functional::dropout_with;
use ferrograd::nn::{Dropout, LeakyReLU, Linear, Module, ReLU, Sequential, Sigmoid, Tanh};
use ferrograd::rng::{manual_seed, Generator};
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
    let _turn = process_wide_generator(); // the module's mask in training mode
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
    let _turn = process_wide_generator();
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

/// One layer of [`sequential_equals_its_layers_one_by_one_in_any_order`]'s networks.
#[derive(Clone, Copy, Debug)]
enum Layer {
    Linear(usize, usize),
    ReLU,
    LeakyReLU(f32),
    Tanh,
    Sigmoid,
    Dropout(f32),
}

/// Appends `module` to the network and to the list of layers to run one by one. (A clone of a
/// `Linear` shares its tensors: the same parameters in both.)
fn add_to_both<M: Module + Clone + 'static>(
    module: M,
    (sequential, one_by_one): (Sequential, &mut Vec<Box<dyn Module>>),
) -> Sequential {
    one_by_one.push(Box::new(module.clone()));
    sequential.add(module)
}

/// However its layers are ordered, a `Sequential` computes what they compute one by one: the
/// same values, the same gradients and the same dropout masks, bit for bit, in training and in
/// evaluation mode. It fuses a `Linear` with the activation after it, and with a dropout after
/// both, where it can; these orders take each way through that choice: fused three or two
/// layers at a time, an activation with nothing before it to fuse with, a dropout between the
/// linear layer and its activation, a LeakyReLU whose negative slope the fused backward cannot
/// read (unfused), a tanh then dropout (unfused), two activations in a row, a dropout of 0.
#[test]
fn sequential_equals_its_layers_one_by_one_in_any_order() {
    use Layer as L;
    let networks: [&[Layer]; 7] = [
        &[
            L::Linear(6, 8),
            L::ReLU,
            L::Dropout(0.3),
            L::Linear(8, 4),
            L::Tanh,
        ],
        &[L::ReLU, L::Linear(6, 8), L::LeakyReLU(0.2), L::Dropout(0.5)],
        &[L::Linear(6, 8), L::Dropout(0.3), L::ReLU],
        &[L::Linear(6, 8), L::LeakyReLU(-0.1), L::Dropout(0.3)],
        &[L::Linear(6, 8), L::Tanh, L::Dropout(0.3), L::Sigmoid],
        &[L::Linear(6, 8), L::ReLU, L::ReLU, L::LeakyReLU(0.0)],
        &[
            L::Linear(6, 8),
            L::Sigmoid,
            L::Dropout(0.0),
            L::Linear(8, 3),
        ],
    ];
    let _turn = process_wide_generator();
    for device in [Some(CPU), common::emulator()].into_iter().flatten() {
        for (n, layers) in networks.into_iter().enumerate() {
            let (mut sequential, mut one_by_one) = (Sequential::new(), Vec::new());
            for (i, layer) in layers.iter().enumerate() {
                let seed = (10 * n + i) as u64;
                let both = (sequential, &mut one_by_one);
                sequential = match *layer {
                    L::Linear(inputs, outputs) => add_to_both(
                        Linear::new_with(inputs, outputs, &device, &mut Generator::new(seed)),
                        both,
                    ),
                    L::ReLU => add_to_both(ReLU, both),
                    L::LeakyReLU(slope) => add_to_both(LeakyReLU::new(slope), both),
                    L::Tanh => add_to_both(Tanh, both),
                    L::Sigmoid => add_to_both(Sigmoid, both),
                    L::Dropout(p) => add_to_both(Dropout::new(p), both),
                };
            }
            let x = Tensor::from_vec(uniform(5 * 6, -1.0, 1.0, n as u64), &[5, 6], &device);
            x.set_requires_grad(true);
            let params = sequential.parameters();
            // The output, and the gradients of x and of every parameter, of Σ yᵢ·cᵢ.
            let run = |forward: &dyn Fn(&Tensor) -> Tensor| {
                manual_seed(7);
                for t in params.iter().chain([&x]) {
                    t.zero_grad();
                }
                let y = forward(&x);
                let weights = uniform(y.numel(), -1.0, 1.0, 99);
                let weights = Tensor::from_vec(weights, y.shape(), &device);
                y.mul(&weights).sum().backward();
                let mut values = vec![y.to_vec()];
                values.extend(
                    params
                        .iter()
                        .chain([&x])
                        .map(|t| t.grad().unwrap().to_vec()),
                );
                values
            };
            for training in [true, false] {
                sequential.set_training(training);
                for layer in &mut one_by_one {
                    layer.set_training(training);
                }
                let layer_by_layer =
                    |x: &Tensor| (one_by_one.iter()).fold(x.clone(), |x, layer| layer.forward(&x));
                assert_eq!(
                    run(&|x| sequential.forward(x)),
                    run(&layer_by_layer),
                    "{layers:?} on {device:?}, training {training}"
                );
            }
        }
    }
}

#[test]
#[should_panic(expected = "dropout: probability has to be between 0 and 1, but got 1.5")]
fn probability_out_of_range_panics() {
    dropout_with(&Tensor::ones(&[2], &CPU), 1.5, true, &mut Generator::new(0));
}
