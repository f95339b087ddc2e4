//! One test suite, every device: each test is written once and instantiated for the CPU, the
//! CUDA path run by the CPU emulator, and a real GPU when there is one (skipped otherwise,
//! unless `FERROGRAD_REQUIRE_GPU=1`). Each checks a device's results against the CPU's.

mod common;

use common::{away_from_zero, panic_message, process_wide_generator, uniform, CPU};
use ferrograd::backend::cuda::kernels::MODULES;
use ferrograd::gan::{Gan, StepStats, TrainingProgress, IMAGE_DIM};
use ferrograd::nn::functional::{
    binary_cross_entropy, dropout, dropout_with, linear, linear_activation,
    linear_activation_dropout, Activation,
};
use ferrograd::nn::{Dropout, LeakyReLU, Linear, Module, Sequential, Sigmoid};
use ferrograd::optim::{Adam, AdamConfig};
use ferrograd::rng::{with_default_generator, Generator};
use ferrograd::{manual_seed, Device, Tensor};

/// Relative tolerance between a device's results and the CPU's: a different order of
/// summation (GEMM tiles, reduction trees) changes the last bits of f32 results.
const TOL: f32 = 2e-5;

fn assert_close(what: &str, device: &[f32], cpu: &[f32]) {
    assert_eq!(device.len(), cpu.len(), "{what}: lengths");
    for (i, (d, c)) in device.iter().zip(cpu).enumerate() {
        assert!(
            (d - c).abs() <= TOL * (1.0 + c.abs()),
            "{what}[{i}]: device {d}, cpu {c}"
        );
    }
}

fn leaf(values: &[f32], shape: &[usize], device: &Device) -> Tensor {
    let t = Tensor::from_vec(values.to_vec(), shape, device);
    t.set_requires_grad(true);
    t
}

/// Every op, forward and backward, in one expression; returns the loss and each leaf's
/// gradient.
fn every_op(device: &Device) -> (Vec<f32>, Vec<Vec<f32>>) {
    let x = leaf(&uniform(6 * 5, -1.0, 1.0, 1), &[6, 5], device);
    let w1 = leaf(&uniform(7 * 5, -0.5, 0.5, 2), &[7, 5], device);
    let b1 = leaf(&uniform(7, -0.5, 0.5, 3), &[7], device);
    let w2 = leaf(&uniform(7 * 3, -0.5, 0.5, 4), &[7, 3], device);
    let w3 = leaf(&uniform(7 * 7, -0.5, 0.5, 8), &[7, 7], device);
    let b3 = leaf(&uniform(7, -0.5, 0.5, 9), &[7], device);
    let row = leaf(&away_from_zero(3, 5), &[3], device);
    let target = leaf(&uniform(6 * 3, 0.0, 1.0, 6), &[6, 3], device);
    let mut generator = Generator::new(7);
    let h = linear(&x, &w1, Some(&b1)).leaky_relu(0.2);
    let h = dropout_with(&h, 0.3, true, &mut generator);
    let h = h.relu() + h.tanh() * 0.5;
    // Each activation fused into a linear layer (its GEMM epilogue), summed back in.
    let fused = [
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::Tanh,
        Activation::Sigmoid,
    ]
    .into_iter()
    .map(|activation| linear_activation(&h, &w3, Some(&b3), activation))
    .reduce(|a, b| a + b)
    .unwrap();
    let h = h + fused * 0.25;
    // Rows taken apart and joined again in another order.
    let h = Tensor::cat(&[&h.narrow_rows(4, 2), &h.narrow_rows(0, 4)]);
    let y = h.matmul(&w2) * &row - 0.25;
    let y = (y.reshape(&[3, 6]) / 2.0).reshape(&[6, 3]).sigmoid();
    let loss =
        binary_cross_entropy(&y, &target) + y.mean() - y.sum() * 0.01 + (1.0 - &y).sum() * 0.1;
    loss.backward();
    let grads = [&x, &w1, &b1, &w2, &w3, &b3, &row, &target]
        .iter()
        .map(|t| t.grad().unwrap().to_vec())
        .collect();
    (loss.to_vec(), grads)
}

fn check_every_op(device: &Device) {
    let (loss, grads) = every_op(device);
    let (cpu_loss, cpu_grads) = every_op(&CPU);
    assert_close("loss", &loss, &cpu_loss);
    for (i, (g, c)) in grads.iter().zip(&cpu_grads).enumerate() {
        assert_close(&format!("gradient of leaf {i}"), g, c);
    }
}

fn check_random_numbers(device: &Device) {
    let draw = |device: &Device| {
        let mut generator = Generator::new(11);
        let normal = Tensor::randn_with(&[1001], device, &mut generator).to_vec();
        let uniform = Tensor::uniform_with(&[999], -1.0, 2.0, device, &mut generator).to_vec();
        let ones = Tensor::ones(&[1003], device);
        let mask = dropout_with(&ones, 0.3, true, &mut generator).to_vec();
        (normal, uniform, mask)
    };
    let (normal, uniform, mask) = draw(device);
    let (cpu_normal, cpu_uniform, cpu_mask) = draw(&CPU);
    assert_close("normal", &normal, &cpu_normal);
    assert_eq!(uniform, cpu_uniform, "uniform: same bits");
    assert_eq!(mask, cpu_mask, "dropout mask: same bits");
}

fn check_constructors_and_copies(device: &Device) {
    let values = uniform(37, -5.0, 5.0, 12);
    let t = Tensor::from_vec(values.clone(), &[37], device);
    assert_eq!(t.device(), device);
    assert_eq!(t.to_vec(), values);
    assert_eq!(t.to_device(&CPU).to_vec(), values);
    assert_eq!(Tensor::full(&[3, 2], 1.5, device).to_vec(), [1.5; 6]);
    assert_eq!(Tensor::zeros(&[4], device).to_vec(), [0.0; 4]);
    assert_eq!(Tensor::scalar(7.0, device).item(), 7.0);
    // The elementwise maps move float4s where length and alignment allow, single floats
    // elsewhere (a concatenation copies into the middle of a buffer): both, against the CPU.
    for len in [37, 40, 44, 1, 4] {
        let x = uniform(len, -3.0, 3.0, len as u64);
        let on = |device: &Device| {
            let t = Tensor::from_vec(x.clone(), &[len], device);
            let joined = Tensor::cat(&[&t.narrow_rows(1, len - 1), &t]);
            // More parts than one CUDA launch joins (8).
            let head = t.narrow_rows(0, len / 2 + 1);
            let many: Vec<&Tensor> = (0..11)
                .map(|i| if i % 3 == 0 { &head } else { &t })
                .collect();
            [
                t.tanh().to_vec(),
                (&t * &t.relu()).to_vec(),
                joined.to_vec(),
                Tensor::cat(&many).to_vec(),
            ]
        };
        let (here, cpu) = (on(device), on(&CPU));
        for (what, (a, b)) in ["tanh", "x · relu(x)", "cat", "cat of 11"]
            .iter()
            .zip(here.iter().zip(&cpu))
        {
            assert_close(&format!("{what}, {len} elements"), a, b);
        }
    }
    // Several tensors read back at once (one wait on a GPU), a repeated one included.
    let other = Tensor::from_vec(vec![1.0, 2.0], &[2], device);
    assert_eq!(
        Tensor::to_vecs(&[&t, &other, &t]),
        [values.clone(), vec![1.0, 2.0], values]
    );
}

/// Copies that do not make the host wait (on a GPU, through page-locked buffers): each upload
/// keeps the values its source had at the call, however soon the source changes and however
/// many uploads are in flight; a read started before later writes returns the values before
/// them, whichever order the pending reads are waited for in.
fn check_copies_that_do_not_wait(device: &Device) {
    let mut source = uniform(1000, -1.0, 1.0, 21);
    let mut uploaded = Vec::new();
    for i in 0..20 {
        uploaded.push((
            source.clone(),
            Tensor::from_vec(source.clone(), &[1000], device),
        ));
        source.iter_mut().for_each(|v| *v += i as f32); // the next upload's values
    }
    // Larger than the staging buffers take (4 MiB): copied the waiting way.
    let large = uniform(1_100_000, -1.0, 1.0, 22);
    let large_tensor = Tensor::from_vec(large.clone(), &[1_100_000], device);
    for (i, (values, tensor)) in uploaded.iter().enumerate() {
        assert_eq!(&tensor.to_vec(), values, "upload {i}");
    }
    assert_eq!(large_tensor.to_vec(), large, "large upload");

    let (first, second) = (&uploaded[0].1, &uploaded[1].1);
    let before = Tensor::to_vecs_later(&[first, second]);
    first.copy_from(second); // queued after the read
    let between = Tensor::to_vecs_later(&[first]);
    second.copy_from(&uploaded[2].1);
    assert_eq!(between.wait(), [uploaded[1].0.clone()]);
    assert_eq!(
        before.wait(),
        [uploaded[0].0.clone(), uploaded[1].0.clone()],
        "the values when the read was queued"
    );
    assert_eq!(second.to_vec(), uploaded[2].0);
}

/// Binary cross-entropy at predictions outside `[0, 1]` or NaN (a diverged network): the loss
/// and that element's gradients are NaN, never a finite number such as the clamped log's 100
/// (`f32::max` and CUDA's `fmaxf` return −100 for `max(NaN, −100)`). Inside `[0, 1]`, ends
/// included, everything stays finite, as on the CPU.
fn check_bce_outside_its_domain(device: &Device) {
    let in_range = [0.0, 1.0, 0.3];
    for p in [f32::NAN, 1.5, -0.5, 1.0 + f32::EPSILON, f32::INFINITY] {
        let pred = leaf(&[in_range[0], in_range[1], in_range[2], p], &[4], device);
        let target = leaf(&[1.0, 0.0, 1.0, 1.0], &[4], device);
        let loss = binary_cross_entropy(&pred, &target);
        loss.backward();
        assert!(loss.item().is_nan(), "p = {p}: loss {}", loss.item());
        let alone = binary_cross_entropy(&leaf(&[p], &[1], device), &leaf(&[0.0], &[1], device));
        assert!(
            alone.item().is_nan(),
            "p = {p}, t = 0: loss {}",
            alone.item()
        );
        for (name, grad) in [("pred", pred.grad()), ("target", target.grad())] {
            let grad = grad.unwrap().to_vec();
            assert!(grad[3].is_nan(), "p = {p}: d/d{name} {grad:?}");
            assert!(
                grad[..3].iter().all(|g| g.is_finite()),
                "p = {p}: d/d{name} {grad:?}"
            );
        }
    }
    let finite = |device: &Device| {
        let pred = leaf(&in_range, &[3], device);
        let target = leaf(&[1.0, 0.0, 1.0], &[3], device);
        let loss = binary_cross_entropy(&pred, &target);
        loss.backward();
        let grads = [
            pred.grad().unwrap().to_vec(),
            target.grad().unwrap().to_vec(),
        ];
        (loss.item(), grads)
    };
    let ((loss, grads), (cpu_loss, cpu_grads)) = (finite(device), finite(&CPU));
    assert!(loss.is_finite(), "{loss}");
    assert_close("loss in [0, 1]", &[loss], &[cpu_loss]);
    for (g, c) in grads.iter().zip(&cpu_grads) {
        assert_close("gradient in [0, 1]", g, c);
    }
}

/// NaN through each activation's backward rule, alone and fused into a linear layer (the
/// GEMM applies the rule as it loads ∂L/∂y), as PyTorch computes it: ReLU and LeakyReLU pass
/// a gradient where their output is NaN (`y ≤ 0 ? 0 : g`, `x > 0 ? g : slope·g`), tanh and
/// sigmoid give NaN. Rows of one column, so that the NaN stays in its own row.
fn check_nan_through_activations(device: &Device) {
    let cases = [
        (Activation::Relu, [1.0, 0.0, 1.0]),
        (Activation::LeakyRelu(0.2), [0.2, 0.2, 1.0]),
        (Activation::Tanh, [f32::NAN, 0.419_974_3, 0.419_974_3]),
        (Activation::Sigmoid, [f32::NAN, 0.196_611_93, 0.196_611_93]),
    ];
    for (activation, expected) in cases {
        let w = Tensor::from_vec(vec![1.0], &[1, 1], device);
        for fused in [false, true] {
            let x = leaf(&[f32::NAN, -1.0, 1.0], &[3, 1], device);
            let y = if fused {
                linear_activation(&x, &w, None, activation)
            } else {
                common::activate(&x, activation)
            };
            y.sum().backward();
            let grad = x.grad().unwrap().to_vec();
            let same = grad
                .iter()
                .zip(&expected)
                .all(|(g, e)| (g.is_nan() && e.is_nan()) || (g - e).abs() <= TOL * (1.0 + e.abs()));
            assert!(
                same,
                "{activation:?} (fused: {fused}): {grad:?}, PyTorch {expected:?}"
            );
        }
    }
}

/// A small network trained with Adam for a few steps: the same losses as on the CPU.
fn check_training(device: &Device) {
    let train = |device: &Device| {
        let mut generator = Generator::new(13);
        let net = Sequential::new()
            .add(Linear::new_with(2, 16, device, &mut generator))
            .add(LeakyReLU::new(0.2))
            .add(Linear::new_with(16, 1, device, &mut generator))
            .add(Sigmoid);
        let config = AdamConfig {
            lr: 0.05,
            betas: (0.5, 0.999),
            ..Default::default()
        };
        let mut adam = Adam::new(net.parameters(), config);
        let x = Tensor::from_vec(vec![0., 0., 0., 1., 1., 0., 1., 1.], &[4, 2], device);
        let t = Tensor::from_vec(vec![0., 1., 1., 0.], &[4, 1], device);
        (0..20)
            .map(|_| {
                adam.zero_grad();
                let loss = binary_cross_entropy(&net.forward(&x), &t);
                loss.backward();
                adam.step();
                loss.item()
            })
            .collect::<Vec<f32>>()
    };
    let (losses, cpu_losses) = (train(device), train(&CPU));
    assert_close("losses", &losses, &cpu_losses);
    assert!(losses[19] < losses[0], "{losses:?}");
}

/// A training step inside [`Device::run`] (and a `run` inside it) computes what the same step
/// computes with its ops called one by one: the same losses and parameters, bit for bit. The
/// layer is wide enough that the CPU's ops split their work over the pool.
fn check_steps_inside_run(device: &Device) {
    let train = |inside_run: bool| {
        let _turn = process_wide_generator();
        manual_seed(21);
        let net = Sequential::new()
            .add(Linear::new(256, 512, device))
            .add(LeakyReLU::new(0.2))
            .add(Dropout::new(0.3))
            .add(Linear::new(512, 1, device))
            .add(Sigmoid);
        let mut adam = Adam::new(net.parameters(), AdamConfig::default());
        let x = Tensor::uniform(&[64, 256], -1.0, 1.0, device);
        let t = Tensor::uniform(&[64, 1], 0.0, 1.0, device);
        let mut step = || {
            adam.zero_grad();
            let loss = binary_cross_entropy(&net.forward(&x), &t);
            if inside_run {
                device.run(|| loss.backward()); // nested: runs where it is
            } else {
                loss.backward();
            }
            adam.step();
            loss.item()
        };
        let losses: Vec<f32> = (0..3)
            .map(|_| {
                if inside_run {
                    device.run(&mut step)
                } else {
                    step()
                }
            })
            .collect();
        let params: Vec<Vec<f32>> = net.parameters().iter().map(Tensor::to_vec).collect();
        (losses, params)
    };
    let ((direct_losses, direct_params), (inside_losses, inside_params)) =
        (train(false), train(true));
    let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&direct_losses), bits(&inside_losses), "losses");
    for (direct, inside) in direct_params.iter().zip(&inside_params) {
        assert_eq!(bits(direct), bits(inside), "parameters");
    }
    assert!(direct_losses[2] < direct_losses[0], "{direct_losses:?}");
}

/// `linear_activation_dropout` against the ops it fuses, `dropout(linear_activation(…))`:
/// the same values and gradients on this device (the fused backward multiplies in the same
/// order, and draws the same mask), and the CPU's within tolerance.
fn check_fused_linear_dropout(device: &Device) {
    let _turn = process_wide_generator();
    let run = |device: &Device, fused: bool, activation: Activation| {
        manual_seed(21);
        let x = leaf(&uniform(8 * 6, -1.0, 1.0, 1), &[8, 6], device);
        let w = leaf(&uniform(10 * 6, -0.5, 0.5, 2), &[10, 6], device);
        let b = leaf(&uniform(10, -0.5, 0.5, 3), &[10], device);
        let g = Tensor::from_vec(uniform(8 * 10, -1.0, 1.0, 4), &[8, 10], device);
        let y = if fused {
            linear_activation_dropout(&x, &w, Some(&b), activation, 0.3)
        } else {
            dropout(&linear_activation(&x, &w, Some(&b), activation), 0.3, true)
        };
        y.mul(&g).sum().backward();
        let grads = [&x, &w, &b].map(|t| t.grad().unwrap().to_vec());
        (y.to_vec(), grads)
    };
    for activation in [Activation::Relu, Activation::LeakyRelu(0.2)] {
        let (y, grads) = run(device, true, activation);
        let unfused = run(device, false, activation);
        assert_eq!(
            (&y, &grads),
            (&unfused.0, &unfused.1),
            "{activation:?}: fused vs unfused"
        );
        let dropped = y.iter().filter(|&&v| v == 0.0).count();
        assert!(
            (10..60).contains(&dropped),
            "{dropped} of 80 dropped at p = 0.3"
        );
        let (cpu_y, cpu_grads) = run(&CPU, true, activation);
        assert_close("output", &y, &cpu_y);
        for (what, (g, c)) in ["x", "W", "b"].iter().zip(grads.iter().zip(&cpu_grads)) {
            assert_close(&format!("{activation:?}: gradient of {what}"), g, c);
        }
    }

    // `Sequential` fuses Linear, LeakyReLU, Dropout into that op in training mode, and the
    // first two alone in evaluation mode: the same values as the modules one by one.
    let mut net = Sequential::new()
        .add(Linear::new_with(6, 10, device, &mut Generator::new(5)))
        .add(LeakyReLU::new(0.2))
        .add(Dropout::new(0.3));
    let params = net.parameters();
    let x = Tensor::from_vec(uniform(8 * 6, -1.0, 1.0, 6), &[8, 6], device);
    let layer_by_layer = |x: &Tensor| linear(x, &params[0], Some(&params[1])).leaky_relu(0.2);
    manual_seed(22);
    let fused = net.forward(&x).to_vec();
    manual_seed(22);
    assert_eq!(
        fused,
        dropout(&layer_by_layer(&x), 0.3, true).to_vec(),
        "training"
    );
    net.eval();
    assert_eq!(
        net.forward(&x).to_vec(),
        layer_by_layer(&x).to_vec(),
        "evaluation"
    );
}

/// Three iterations of the real GAN (batch 16): the same losses and outputs as on the CPU,
/// each step's read (as mnist_gan reads them) only after the next step is queued.
fn check_gan_steps(device: &Device) {
    let _turn = process_wide_generator();
    let train = |device: &Device| {
        manual_seed(15);
        let mut gan = Gan::new(device, 2e-4);
        let mut pending = Vec::new();
        for _ in 0..3 {
            gan.train_step_async(&Tensor::uniform(&[16, IMAGE_DIM], -1.0, 1.0, device));
            pending.push(gan.last_stats_later().expect("a step has run"));
        }
        pending
            .into_iter()
            .flat_map(|stats| {
                let stats = stats.wait();
                [stats.d_loss, stats.g_loss, stats.d_real, stats.d_fake]
            })
            .collect::<Vec<f32>>()
    };
    let (stats, cpu_stats) = (train(device), train(&CPU));
    assert_close("GAN statistics", &stats, &cpu_stats);
    assert!(stats[..4] != stats[4..8], "each step its own statistics");
}

/// Every parameter, Adam moment and step count of a GAN, as the host sees them.
fn gan_state(gan: &Gan) -> Vec<Vec<f32>> {
    let mut state = Vec::new();
    for (model, optimizer) in [
        (&gan.generator, &gan.generator_optimizer),
        (&gan.discriminator, &gan.discriminator_optimizer),
    ] {
        state.extend(model.parameters().iter().map(Tensor::to_vec));
        for moments in optimizer.states() {
            state.push(moments.exp_avg.to_vec());
            state.push(moments.exp_avg_sq.to_vec());
        }
        state.push(vec![optimizer.step_count() as f32]);
    }
    state
}

/// A checkpoint saved on `device` resumes on the CPU (a GPU run continued on a laptop, or
/// sampled there by `gan_sample`), and one saved on the CPU resumes on `device`: every tensor
/// arrives with its bits, and each resumed run trains on as the original does.
fn check_checkpoints_move_between_devices(device: &Device) {
    let _turn = process_wide_generator();
    let dir = std::env::temp_dir().join(format!(
        "ferrograd-devices-checkpoint-{}-{}",
        device.to_string().replace(':', "_"),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let real = Tensor::uniform(&[16, IMAGE_DIM], -1.0, 1.0, &CPU);
    let save = |gan: &Gan, name: &str| {
        let progress = TrainingProgress {
            epoch: 0,
            step: 1,
            seed: 23,
            batch_size: 16,
            rng: with_default_generator(|g| *g),
        };
        let path = dir.join(name);
        gan.save_checkpoint(&path, &progress).unwrap();
        (path, progress)
    };
    let stats_of = |stats: StepStats| [stats.d_loss, stats.g_loss, stats.d_real, stats.d_fake];
    for (i, (from, to)) in [(device, &CPU), (&CPU, device)].into_iter().enumerate() {
        manual_seed(23);
        let mut original = Gan::new(from, 2e-4);
        original.train_step(&real);
        let (path, progress) = save(&original, &format!("gan-{i}.safetensors"));
        let saved_state = gan_state(&original);
        let expected = stats_of(original.train_step(&real));

        manual_seed(99); // other initial weights, each to be overwritten
        let mut resumed = Gan::new(to, 1e-3);
        let loaded = resumed.load_checkpoint(&path).unwrap();
        assert_eq!(loaded, progress, "{from} -> {to}");
        assert!(
            gan_state(&resumed) == saved_state,
            "{from} -> {to}: a tensor changed on the way"
        );
        with_default_generator(|g| *g = loaded.rng);
        let step = stats_of(resumed.train_step(&real));
        assert_close(&format!("{from} -> {to}: the next step"), &step, &expected);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Adam over more parameters than one CUDA launch carries (16): the same updates as the CPU's.
fn check_adam_over_many_parameters(device: &Device) {
    let run = |device: &Device| {
        let params: Vec<Tensor> = (0..37)
            .map(|i| {
                leaf(
                    &uniform(i % 5 + 1, -1.0, 1.0, i as u64),
                    &[i % 5 + 1],
                    device,
                )
            })
            .collect();
        let mut adam = Adam::new(params.clone(), AdamConfig::default());
        for step in 0..3 {
            adam.zero_grad();
            let loss = params
                .iter()
                .map(|p| (p * p).sum() * (step + 1) as f32)
                .reduce(|a, b| a + b)
                .expect("37 terms");
            loss.backward();
            adam.step();
        }
        params.iter().flat_map(|p| p.to_vec()).collect::<Vec<f32>>()
    };
    let (values, cpu_values) = (run(device), run(&CPU));
    assert_close("parameters after 3 Adam steps", &values, &cpu_values);
    assert!(values
        .iter()
        .zip(&cpu_values)
        .any(|(v, c)| v != &0.0 && c != &0.0));
}

/// One Adam step, PyTorch's formula in f32 with nothing flushed: `(θ, m, v)` after it.
fn adam_reference(config: &AdamConfig, theta: f32, g: f32, m: f32, v: f32) -> (f32, f32, f32) {
    let (beta1, beta2) = config.betas;
    let step_size = (f64::from(config.lr) / (1.0 - f64::from(beta1))) as f32; // t = 1
    let c2 = (1.0 - f64::from(beta2)).sqrt() as f32;
    let m = beta1 * m + (1.0 - beta1) * g;
    let v = beta2 * v + (1.0 - beta2) * g * g;
    (theta - step_size * m / (v.sqrt() / c2 + config.eps), m, v)
}

/// Adam stores no subnormal moment (they are ~100× slower on x86; see `optim::adam`): a step
/// that would leave `m` or `v` below 1.2e-38 leaves 0 instead, and the parameters come out as
/// PyTorch's unflushed formula has them, bit for bit.
fn check_adam_flushes_subnormal_moments(device: &Device) {
    const MIN: f32 = f32::MIN_POSITIVE;
    // (θ, g, m, v): a decay into the subnormals (g = 0); moments already subnormal (as from
    // an older checkpoint); g² subnormal; tiny normal moments, which stay; an ordinary case.
    let cases: [(f32, f32, f32, f32); 5] = [
        (0.5, 0.0, 1.05 * MIN, 1.0005 * MIN),
        (-0.25, 0.0, MIN / 2.0, MIN / 4.0),
        (2.0, 1e-20, 0.0, 0.0),
        (1.0, 0.0, 1e-30, 1e-30),
        (-1.0, 0.5, 0.01, 1e-4),
    ];
    let config = AdamConfig::default();
    let theta = leaf(&cases.map(|c| c.0), &[5], device);
    let gradient_scale = Tensor::from_vec(cases.map(|c| c.1).to_vec(), &[5], device);
    let mut adam = Adam::new(vec![theta.clone()], config);
    adam.states()[0].exp_avg.assign(&cases.map(|c| c.2));
    adam.states()[0].exp_avg_sq.assign(&cases.map(|c| c.3));
    (&theta * &gradient_scale).sum().backward(); // ∂L/∂θ = g
    adam.step();
    let (thetas, ms, vs) = (
        theta.to_vec(),
        adam.states()[0].exp_avg.to_vec(),
        adam.states()[0].exp_avg_sq.to_vec(),
    );
    let subnormal = |x: f32| x != 0.0 && x.abs() < MIN;
    for (i, &(theta0, g, m0, v0)) in cases.iter().enumerate() {
        let (theta1, m1, v1) = adam_reference(&config, theta0, g, m0, v0);
        let flush = |x: f32| if subnormal(x) { 0.0 } else { x };
        if i < 4 {
            // g = 0 or tiny: no rounding differs between devices (no FMA changes these).
            assert_eq!(
                thetas[i].to_bits(),
                theta1.to_bits(),
                "θ[{i}]: {}",
                thetas[i]
            );
            assert_eq!(ms[i].to_bits(), flush(m1).to_bits(), "m[{i}]: {}", ms[i]);
            assert_eq!(vs[i].to_bits(), flush(v1).to_bits(), "v[{i}]: {}", vs[i]);
        } else {
            for (what, got, want) in [("θ", thetas[i], theta1), ("m", ms[i], m1), ("v", vs[i], v1)]
            {
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs(),
                    "{what}[{i}]: {got} vs {want}"
                );
            }
        }
    }
    // The cases test what they say: the unflushed formula leaves subnormals in the first three.
    let reference: Vec<_> = cases
        .iter()
        .map(|c| adam_reference(&config, c.0, c.1, c.2, c.3))
        .collect();
    assert!(reference[..2]
        .iter()
        .all(|r| subnormal(r.1) && subnormal(r.2)));
    assert!(subnormal(reference[2].2) && !subnormal(reference[3].1) && reference[3].2 > 0.0);
}

/// Adam's step count goes on where an `f32` stops counting (2²⁴: 2²⁴ + 1 rounds back to it,
/// and PyTorch's float32 `step` stays there) and holds at its maximum. At such a step both bias
/// corrections are 1: the update is `lr · m / (√v + ε)`, which a step count misread as a float
/// (2²⁴'s bits are 2.4e-38: a bias correction of ~1e-39) would be far from.
fn check_adam_counts_past_what_a_float_holds(device: &Device) {
    const FLOAT_LIMIT: u64 = 1 << 24;
    let max = Adam::MAX_STEP_COUNT;
    for (from, to) in [
        (FLOAT_LIMIT, FLOAT_LIMIT + 1),
        (FLOAT_LIMIT + 1, FLOAT_LIMIT + 2),
        (max - 1, max),
        (max, max),
    ] {
        let theta = leaf(&[0.5, -2.0], &[2], device);
        let mut adam = Adam::new(vec![theta.clone()], AdamConfig::default());
        adam.set_step_count(from);
        theta.sum().backward(); // g = 1: m = 0.1, v = 0.001
        adam.step();
        assert_eq!(adam.step_count(), to, "one step from {from}");
        let update = 1e-3 * 0.1 / (0.001f64.sqrt() + 1e-8);
        for (got, start) in theta.to_vec().into_iter().zip([0.5, -2.0]) {
            let want = start - update;
            assert!(
                (f64::from(got) - want).abs() < 1e-6,
                "θ after one step from {from}: {got} vs {want}"
            );
        }
    }
    let message = panic_message(|| {
        let mut adam = Adam::new(vec![leaf(&[1.0], &[1], device)], AdamConfig::default());
        adam.set_step_count(max + 1);
    });
    assert_eq!(
        message,
        "Adam: a step count of 4294967296 is more than the 4294967295 it holds"
    );
}

fn gpu() -> Option<Device> {
    match Device::cuda(0) {
        Ok(device) => Some(device),
        Err(err) => {
            let required = std::env::var("FERROGRAD_REQUIRE_GPU").is_ok_and(|v| v == "1");
            assert!(!required, "FERROGRAD_REQUIRE_GPU=1 but: {err}");
            eprintln!("skipped: {err}");
            None
        }
    }
}

/// Instantiates every check for each device (candle's `test_device!` pattern).
macro_rules! test_devices {
    ($($device:ident => $make:expr),* $(,)?) => {$(
        mod $device {
            use super::*;
            fn device() -> Option<Device> {
                $make
            }
            #[test]
            fn every_op_forward_and_backward() {
                if let Some(d) = device() { check_every_op(&d) }
            }
            #[test]
            fn random_numbers() {
                if let Some(d) = device() { check_random_numbers(&d) }
            }
            #[test]
            fn constructors_and_copies() {
                if let Some(d) = device() { check_constructors_and_copies(&d) }
            }
            #[test]
            fn copies_that_do_not_wait() {
                if let Some(d) = device() { check_copies_that_do_not_wait(&d) }
            }
            #[test]
            fn bce_outside_its_domain() {
                if let Some(d) = device() { check_bce_outside_its_domain(&d) }
            }
            #[test]
            fn nan_through_activations() {
                if let Some(d) = device() { check_nan_through_activations(&d) }
            }
            #[test]
            fn training() {
                if let Some(d) = device() { check_training(&d) }
            }
            #[test]
            fn adam_over_many_parameters() {
                if let Some(d) = device() { check_adam_over_many_parameters(&d) }
            }
            #[test]
            fn adam_flushes_subnormal_moments() {
                if let Some(d) = device() { check_adam_flushes_subnormal_moments(&d) }
            }
            #[test]
            fn adam_counts_past_what_a_float_holds() {
                if let Some(d) = device() { check_adam_counts_past_what_a_float_holds(&d) }
            }
            #[test]
            fn fused_linear_dropout() {
                if let Some(d) = device() { check_fused_linear_dropout(&d) }
            }
            #[test]
            fn steps_inside_run() {
                if let Some(d) = device() { check_steps_inside_run(&d) }
            }
            #[test]
            fn gan_steps() {
                if let Some(d) = device() { check_gan_steps(&d) }
            }
            #[test]
            fn checkpoints_move_between_devices() {
                if let Some(d) = device() { check_checkpoints_move_between_devices(&d) }
            }
        }
    )*};
}

test_devices!(
    cpu => Some(Device::Cpu),
    cuda_emulator => common::emulator(),
    cuda_gpu => gpu(),
);

/// Opening a GPU compiles (or reads from the kernel cache) and loads every kernel file, so
/// that a file NVRTC or the driver refuses is an error there, not a panic at some op's first
/// launch. (Named for the GPU check's `devices cuda_gpu` filter.)
#[test]
fn cuda_gpu_opened_with_every_kernel_file_loaded() {
    let Some(Device::Cuda(gpu)) = gpu() else {
        return;
    };
    let loaded = gpu.kernels_loaded();
    assert_eq!(
        loaded.compiled + loaded.from_cache,
        MODULES.len(),
        "{loaded:?}"
    );
    assert!(loaded.seconds > 0.0, "{loaded:?}");
}

#[test]
fn without_a_gpu_cuda_is_a_clear_error() {
    if let Err(err) = Device::cuda(0) {
        let message = err.to_string();
        assert!(
            message.contains("CUDA driver")
                || message.contains("NVRTC")
                || message.contains("cuda:0"),
            "{message}"
        );
    }
    let err = Device::cuda(99)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(!err.is_empty(), "there is no GPU 99");
}

/// A tensor larger than memory (256 TiB: more than a process can address, whatever the
/// system's overcommit) is a panic that says so, which a caller can catch, rather than the
/// process's abort on a failed allocation. (The closure borrows a `Device`, so this also
/// holds devices, like tensors, to crossing `catch_unwind`.)
#[test]
fn a_tensor_larger_than_memory_is_a_panic_that_says_so() {
    for device in [Some(CPU), common::emulator()].into_iter().flatten() {
        let message = panic_message(|| Tensor::zeros(&[1 << 46], &device).numel());
        assert!(message.contains("memory"), "{device}: {message}");
    }
}

/// `Device::cuda_emulator()` is the emulator in a build that has it, and otherwise an error
/// that says why it is missing (CI runs this in a build without it too).
#[test]
fn the_emulator_is_there_or_says_why_not() {
    let missing = ferrograd::backend::cuda::emulator::missing();
    match (Device::cuda_emulator(), missing) {
        (Ok(device), None) => assert_eq!(device.to_string(), "cuda-emulator"),
        (Err(err), Some(reason)) => {
            let message = err.to_string();
            assert!(
                message.contains("no CUDA emulator") && message.contains(reason),
                "{message}"
            );
        }
        (result, reason) => panic!("cuda_emulator() gave {result:?}, but missing() {reason:?}"),
    }
}
