//! Layers and the optimiser: PyTorch's initialisation, parameter names, Adam's behaviour.

mod common;

use common::{panic_message, CPU};
use ferrograd::nn::{LeakyReLU, Linear, Module, ReLU, Sequential, Sigmoid, Tanh};
use ferrograd::optim::{Adam, AdamConfig};
use ferrograd::rng::Generator;
use ferrograd::Tensor;

/// weight and bias ~ U(−1/√in, 1/√in): inside the bound, with the uniform's mean and variance.
#[test]
fn linear_uses_pytorch_default_init() {
    let layer = Linear::new_with(784, 1024, &CPU, &mut Generator::new(1));
    let bound = 1.0 / 784f32.sqrt();
    assert_eq!(layer.weight.shape(), [1024, 784]);
    let w = layer.weight.to_vec();
    let b = layer.bias.as_ref().unwrap().to_vec();
    assert!(w.iter().chain(&b).all(|v| v.abs() <= bound));
    let n = w.len() as f64;
    let mean = w.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = w.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n - mean * mean;
    let expected_var = f64::from(bound).powi(2) / 3.0;
    assert!(mean.abs() < 0.01 * f64::from(bound), "mean {mean}");
    assert!(
        (var / expected_var - 1.0).abs() < 0.01,
        "variance {var} vs {expected_var}"
    );
    assert!(layer.weight.requires_grad() && layer.bias.unwrap().requires_grad());
}

/// A layer with no inputs (`nn.Linear(0, 3)`): PyTorch gives its bias a bound of 0 rather than
/// 1/√0, so the layer outputs zeros (an empty sum plus a zero bias), on every device.
#[test]
fn a_linear_layer_without_inputs_outputs_zeros() {
    for device in [Some(CPU), common::emulator()].into_iter().flatten() {
        let layer = Linear::new_with(0, 3, &device, &mut Generator::new(1));
        assert_eq!(layer.bias.as_ref().unwrap().to_vec(), [0.0; 3]);
        let y = layer.forward(&Tensor::zeros(&[2, 0], &device));
        assert_eq!(
            (y.shape(), y.to_vec()),
            (&[2, 3][..], vec![0.0; 6]),
            "{device}"
        );
    }
}

#[test]
fn sequential_names_parameters_like_pytorch() {
    let net = Sequential::new()
        .add(Linear::new(3, 4, &CPU))
        .add(ReLU)
        .add(Linear::new(4, 2, &CPU))
        .add(LeakyReLU::new(0.2))
        .add(Sequential::new().add(Linear::new(2, 1, &CPU)).add(Tanh))
        .add(Sigmoid);
    let names: Vec<String> = net
        .named_parameters()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        names,
        [
            "0.weight",
            "0.bias",
            "2.weight",
            "2.bias",
            "4.0.weight",
            "4.0.bias"
        ]
    );
    assert_eq!(net.parameters().len(), 6);
    assert_eq!(net.forward(&Tensor::ones(&[5, 3], &CPU)).shape(), [5, 1]);
}

/// On its first step Adam moves every parameter by almost exactly `lr` against the sign of its
/// gradient (m̂ = g and v̂ = g², so the step is lr·g/(|g| + ε)).
#[test]
fn adam_first_step_moves_each_parameter_by_lr() {
    let x = Tensor::from_vec(vec![1.0, -2.0, 0.5, 3.0], &[4], &CPU);
    x.set_requires_grad(true);
    let mut adam = Adam::new(
        vec![x.clone()],
        AdamConfig {
            lr: 0.1,
            ..Default::default()
        },
    );
    let before = x.to_vec();
    (&x * &x).sum().backward(); // gradient 2x
    adam.step();
    for (after, before) in x.to_vec().iter().zip(before) {
        let expected = before - 0.1 * before.signum();
        assert!((after - expected).abs() < 1e-6, "{after} vs {expected}");
    }
}

/// `{:?}` shows what the optimiser is: its hyper-parameters, its parameters' shapes and the
/// steps taken (not its buffers, whose step count is an integer held in a float's bits).
#[test]
fn adam_debug_shows_its_settings_shapes_and_steps() {
    let w = Tensor::ones(&[2, 3], &CPU);
    let b = Tensor::ones(&[2], &CPU);
    w.set_requires_grad(true);
    b.set_requires_grad(true);
    let mut adam = Adam::new(vec![w.clone(), b.clone()], AdamConfig::default());
    for _ in 0..3 {
        (&w.sum() + &b.sum()).backward();
        adam.step();
    }
    assert_eq!(
        format!("{adam:?}"),
        "Adam { config: AdamConfig { lr: 0.001, betas: (0.9, 0.999), eps: 1e-8, \
         weight_decay: 0.0 }, params: [[2, 3], [2]], step_count: 3 }"
    );
}

/// A parameter given twice (its clone shares its values) is stepped once a step, as if given
/// once. Each run is on a thread of its own, so that a step that locks the same values twice
/// (and so waits forever) fails the test instead of hanging it.
#[test]
fn adam_steps_a_repeated_parameter_once() {
    let train = |repeat: bool| {
        let run = move || {
            let w = Tensor::from_vec(vec![1.0, -2.0, 0.5], &[3], &CPU);
            w.set_requires_grad(true);
            let params = if repeat {
                vec![w.clone(), w.clone(), w.clone()]
            } else {
                vec![w.clone()]
            };
            let mut adam = Adam::new(params, AdamConfig::default());
            for _ in 0..3 {
                adam.zero_grad();
                (&w * &w).sum().backward();
                adam.step();
            }
            (w.to_vec(), adam.states().len())
        };
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || sender.send(run()));
        receiver
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("Adam's step (repeat: {repeat}) did not return"))
    };
    let (once, repeated) = (train(false), train(true));
    assert_eq!(repeated, once);
    assert_eq!(once.1, 1);
}

#[test]
fn adam_skips_parameters_without_gradient_and_zero_grad_clears() {
    let used = Tensor::ones(&[2], &CPU);
    let unused = Tensor::ones(&[2], &CPU);
    used.set_requires_grad(true);
    unused.set_requires_grad(true);
    let mut adam = Adam::new(vec![used.clone(), unused.clone()], AdamConfig::default());
    used.sum().backward();
    adam.step();
    assert_ne!(used.to_vec(), [1.0, 1.0]);
    assert_eq!(unused.to_vec(), [1.0, 1.0]);
    adam.zero_grad();
    assert!(used.grad().is_none());
}

/// Adam descends: a least-squares fit converges to the exact solution.
#[test]
fn adam_fits_a_linear_model() {
    let layer = Linear::new_with(2, 1, &CPU, &mut Generator::new(2));
    let x = Tensor::from_vec(
        vec![1.0, 2.0, -1.0, 0.5, 3.0, -2.0, 0.0, 1.0],
        &[4, 2],
        &CPU,
    );
    // Targets from y = 2·x₀ − 3·x₁ + 0.5.
    let y = Tensor::from_vec(vec![-3.5, -3.0, 12.5, -2.5], &[4, 1], &CPU);
    let mut adam = Adam::new(
        layer.parameters(),
        AdamConfig {
            lr: 0.05,
            ..Default::default()
        },
    );
    for _ in 0..2000 {
        adam.zero_grad();
        let err = layer.forward(&x) - &y;
        (&err * &err).mean().backward();
        adam.step();
    }
    let w = layer.weight.to_vec();
    let b = layer.bias.unwrap().item();
    assert!(
        (w[0] - 2.0).abs() < 1e-3 && (w[1] + 3.0).abs() < 1e-3 && (b - 0.5).abs() < 1e-3,
        "{w:?} {b}"
    );
}

/// The GAN's G step freezes D's weights: after a step D keeps requiring gradients but holds
/// none from the G step (their products were skipped), while G's were computed and applied.
/// Adam refuses the hyper-parameters PyTorch's refuses (NaN included), with its messages, and
/// takes the edges it takes.
#[test]
fn adam_refuses_what_pytorch_refuses() {
    let params = || vec![Tensor::zeros(&[2], &CPU)];
    let base = AdamConfig::default();
    for (config, message) in [
        (
            AdamConfig { lr: -1e-3, ..base },
            "Invalid learning rate: -0.001",
        ),
        (
            AdamConfig {
                lr: f32::NAN,
                ..base
            },
            "Invalid learning rate: NaN",
        ),
        (
            AdamConfig { eps: -1.0, ..base },
            "Invalid epsilon value: -1",
        ),
        (
            AdamConfig {
                betas: (1.0, 0.999),
                ..base
            },
            "Invalid beta parameter at index 0: 1",
        ),
        (
            AdamConfig {
                betas: (0.5, -0.1),
                ..base
            },
            "Invalid beta parameter at index 1: -0.1",
        ),
        (
            AdamConfig {
                weight_decay: -0.5,
                ..base
            },
            "Invalid weight_decay value: -0.5",
        ),
    ] {
        assert_eq!(
            panic_message(|| Adam::new(params(), config)),
            format!("Adam: {message}")
        );
    }
    let edges = AdamConfig {
        lr: 0.0,
        betas: (0.0, 0.0),
        eps: 0.0,
        weight_decay: 0.0,
    };
    Adam::new(params(), edges).step();
}

#[test]
fn the_g_step_computes_no_gradients_for_d() {
    let mut gan = ferrograd::gan::Gan::new(&CPU, 2e-4);
    let real = Tensor::uniform_with(&[8, 784], -1.0, 1.0, &CPU, &mut Generator::new(3));
    gan.train_step(&real);
    for p in gan.discriminator.parameters() {
        assert!(p.requires_grad() && p.grad().is_none());
    }
    assert!(gan
        .generator
        .parameters()
        .iter()
        .all(|p| p.grad().is_some()));
}

/// `gan::LAYERS`, which the benchmarks time, is what the model builders build.
#[test]
fn the_gan_layers_table_matches_the_models() {
    let linear_shapes = |net: &Sequential| -> Vec<(usize, usize)> {
        net.named_parameters()
            .into_iter()
            .filter(|(name, _)| name.ends_with("weight"))
            .map(|(_, w)| (w.shape()[1], w.shape()[0]))
            .collect()
    };
    let mut built = linear_shapes(&ferrograd::gan::generator(&CPU));
    built.extend(linear_shapes(&ferrograd::gan::discriminator(&CPU)));
    assert_eq!(built, ferrograd::gan::LAYERS);
}

/// The models print as PyTorch prints them: these texts are `print(G)`, `print(D)` and the
/// nested and empty cases from PyTorch 2.15. A module of the user's own prints its type's name.
#[test]
fn models_print_as_pytorch_prints_them() {
    let generator = "\
Sequential(
  (0): Linear(in_features=100, out_features=256, bias=True)
  (1): ReLU()
  (2): Linear(in_features=256, out_features=512, bias=True)
  (3): ReLU()
  (4): Linear(in_features=512, out_features=1024, bias=True)
  (5): ReLU()
  (6): Linear(in_features=1024, out_features=784, bias=True)
  (7): Tanh()
)";
    let discriminator = "\
Sequential(
  (0): Linear(in_features=784, out_features=1024, bias=True)
  (1): LeakyReLU(negative_slope=0.2)
  (2): Dropout(p=0.3, inplace=False)
  (3): Linear(in_features=1024, out_features=512, bias=True)
  (4): LeakyReLU(negative_slope=0.2)
  (5): Dropout(p=0.3, inplace=False)
  (6): Linear(in_features=512, out_features=256, bias=True)
  (7): LeakyReLU(negative_slope=0.2)
  (8): Dropout(p=0.3, inplace=False)
  (9): Linear(in_features=256, out_features=1, bias=True)
  (10): Sigmoid()
)";
    assert_eq!(ferrograd::gan::generator(&CPU).to_string(), generator);
    assert_eq!(
        format!("{:?}", ferrograd::gan::discriminator(&CPU)),
        discriminator
    );

    struct Scale;
    impl Module for Scale {
        fn forward(&self, input: &Tensor) -> Tensor {
            input.clone()
        }
    }
    let unbiased = Linear::from_tensors(Tensor::zeros(&[3, 2], &CPU), None);
    let nested = Sequential::new()
        .add(Sequential::new().add(ReLU).add(Scale))
        .add(unbiased);
    let expected = "\
Sequential(
  (0): Sequential(
    (0): ReLU()
    (1): Scale()
  )
  (1): Linear(in_features=2, out_features=3, bias=False)
)";
    assert_eq!(nested.to_string(), expected);
    assert_eq!(Sequential::new().to_string(), "Sequential()");
}
