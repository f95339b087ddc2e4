//! CUDA graphs: a captured step replayed gives exactly what the same steps run eagerly give.
//! Run on the CPU emulator of the CUDA path (where a capture records the launch list and a
//! replay runs it again) and on a GPU when there is one (`FERROGRAD_REQUIRE_GPU=1` demands it,
//! and then the tests that take every CUDA device run on the GPU alone).

mod common;

use std::sync::{Mutex, MutexGuard};

use common::cuda_devices;
use ferrograd::gan::{Gan, StepStats, IMAGE_DIM};
use ferrograd::graph;
use ferrograd::nn::Module;
use ferrograd::rng::{with_default_generator, Generator};
use ferrograd::{manual_seed, Device, Tensor};

/// Captures use the process-wide generator and one capture per device: one test at a time.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything a training run leaves behind, to compare two runs bit for bit.
struct RunResult {
    stats: Vec<[f32; 4]>,
    weights: Vec<Vec<f32>>,
    adam_moments: Vec<Vec<f32>>,
    adam_steps: [u64; 2],
    generator: Generator,
}

/// Batches of "images" drawn from a generator of their own (not the process-wide one, which
/// the steps draw their noise and dropout masks from). A batch of 5 among 8s runs eagerly
/// between replays.
fn batches(device: &Device) -> Vec<Tensor> {
    let mut data = Generator::new(99);
    [8, 8, 5, 8, 8]
        .iter()
        .map(|&n| Tensor::uniform_with(&[n, IMAGE_DIM], -1.0, 1.0, device, &mut data))
        .collect()
}

/// The GAN trained on `batches` (made on `batches_on`: the GAN's device, or the host as
/// mnist_gan's loader makes them), eagerly with each step's statistics read as it ends, or
/// replaying a captured step with each step's read waited for only after the next step is
/// queued (as mnist_gan does: the replay overwrites the results' buffers, the read must not).
fn train(device: &Device, capture: bool, batches_on: &Device) -> RunResult {
    manual_seed(7);
    let mut gan = Gan::new(device, 2e-4);
    if capture {
        gan.capture_train_step(8).expect("capture");
    }
    let as_array = |s: StepStats| [s.d_loss, s.g_loss, s.d_real, s.d_fake];
    let mut stats = Vec::new();
    let mut in_flight = None;
    for real in &batches(batches_on) {
        if capture {
            gan.train_step_async(real);
            let queued = gan.last_stats_later().expect("a step has run");
            if let Some(previous) = in_flight.replace(queued) {
                stats.push(as_array(previous.wait()));
            }
        } else {
            stats.push(as_array(gan.train_step(real)));
        }
    }
    stats.extend(in_flight.map(|last| as_array(last.wait())));
    let nets = [&gan.generator, &gan.discriminator];
    let optimizers = [&gan.generator_optimizer, &gan.discriminator_optimizer];
    RunResult {
        stats,
        weights: nets
            .iter()
            .flat_map(|net| net.parameters())
            .map(|p| p.to_vec())
            .collect(),
        adam_moments: optimizers
            .iter()
            .flat_map(|opt| opt.states())
            .flat_map(|state| [state.exp_avg.to_vec(), state.exp_avg_sq.to_vec()])
            .collect(),
        adam_steps: optimizers.map(|opt| opt.step_count()),
        generator: with_default_generator(|g| *g),
    }
}

#[test]
fn replaying_the_captured_gan_step_equals_running_it_eagerly() {
    let _turn = one_at_a_time();
    for device in cuda_devices() {
        let eager = train(&device, false, &device);
        let replayed = train(&device, true, &device);
        assert_eq!(eager.adam_steps, [5, 5]);
        assert!(eager.stats.iter().flatten().all(|v| v.is_finite()));
        // Same kernels, same order, same random numbers: identical to the last bit.
        assert_eq!(replayed.stats, eager.stats, "statistics on {device}");
        assert_eq!(
            replayed.adam_steps, eager.adam_steps,
            "Adam steps on {device}"
        );
        assert_eq!(replayed.generator, eager.generator, "generator on {device}");
        // On a GPU, with programmatic dependent launch (each kernel scheduled while the one
        // before it runs, waiting for it in its first instruction): the same run, captured or
        // eager. (The emulator runs kernels one after another whatever their launch allows.)
        if Device::cuda_emulator().ok().as_ref() != Some(&device) {
            let Device::Cuda(cuda) = &device else {
                unreachable!("a CUDA device")
            };
            match cuda.set_programmatic_launch(true) {
                Ok(()) => {
                    let runs = [true, false].map(|capture| train(&device, capture, &device));
                    cuda.set_programmatic_launch(false)
                        .expect("plain launches again");
                    for run in runs {
                        assert_eq!(run.stats, eager.stats, "programmatic launches on {device}");
                        assert!(run.weights == eager.weights, "programmatic on {device}");
                    }
                }
                Err(err) => println!("{device}: {err}"),
            }
        }
        // Batches from the host: uploaded straight into the graph's input (or moved to the
        // device for an eager step), the same run.
        let from_host = train(&device, true, &Device::Cpu);
        assert_eq!(from_host.stats, eager.stats, "host batches on {device}");
        assert!(
            from_host.weights == eager.weights,
            "host batches on {device}"
        );
        let tensors = [
            ("weight", &replayed.weights, &eager.weights),
            ("Adam moment", &replayed.adam_moments, &eager.adam_moments),
        ];
        for (what, replayed, eager) in tensors {
            for (i, (r, e)) in replayed.iter().zip(eager).enumerate() {
                assert!(r == e, "{what} tensor {i} differs on {device}");
            }
        }
    }
}

#[test]
fn capturing_runs_nothing() {
    let _turn = one_at_a_time();
    for device in cuda_devices() {
        manual_seed(3);
        let mut gan = Gan::new(&device, 2e-4);
        let weights = gan.generator.parameters()[0].to_vec();
        let generator = with_default_generator(|g| *g);
        gan.capture_train_step(8).expect("capture");
        assert_eq!(gan.generator.parameters()[0].to_vec(), weights);
        assert_eq!(with_default_generator(|g| *g), generator);
        assert_eq!(gan.generator_optimizer.step_count(), 0);
        assert!(gan.last_stats().is_none());
        // D step (3 LeakyReLU/dropout layers, a BCE …) plus G step: a few dozen, and no more
        // than the 39 of 2026-11-28 (each D layer's GEMM, activation and dropout one kernel
        // forward; backward, each fused layer's activation and dropout rules applied as its
        // GEMMs read ∂L/∂y; split-K GEMMs one launch; a layer's input and weight gradients one launch;
        // a loss summed as it is computed, one launch; the targets and the backward passes'
        // seeds made before the capture; real and fake images through D as one batch, joined
        // in one launch; each bias gradient summed in its weight gradient's GEMM; an Adam step
        // one launch; BCE's backward times its incoming gradient in one pass; D(x) and D(G(z))
        // one small product): an op that stops fusing shows up here.
        let launches = gan.captured_launches().expect("captured");
        assert!((30..=39).contains(&launches), "{launches} launches");
    }
}

#[test]
fn replays_draw_fresh_random_numbers_and_allocate_nothing() {
    let _turn = one_at_a_time();
    let Some(device) = common::emulator() else {
        return;
    };
    let Device::Cuda(cuda) = &device else {
        unreachable!()
    };
    let x = Tensor::zeros(&[6], &device);
    let (graph, y) = graph::capture(&device, || {
        let noise = Tensor::randn(&[6], &device);
        &x + &noise
    })
    .expect("capture");
    assert_eq!(graph.random_blocks(), 2);
    let mut eager = with_default_generator(|g| *g);
    for step in 0..3 {
        x.assign(&[step as f32; 6]);
        graph.replay().expect("replay");
        let expected = &x + &Tensor::randn_with(&[6], &device, &mut eager);
        assert_eq!(y.to_vec(), expected.to_vec(), "replay {step}");
    }
    assert_eq!(with_default_generator(|g| *g), eager);
    let allocations = cuda.raw_allocations();
    for _ in 0..3 {
        graph.replay().expect("replay");
    }
    assert_eq!(
        cuda.raw_allocations(),
        allocations,
        "replays allocate nothing"
    );
}

#[test]
fn a_copy_from_the_host_inside_a_capture_is_a_clear_error_and_harms_nothing() {
    let _turn = one_at_a_time();
    let Some(device) = common::emulator() else {
        return;
    };
    let err = graph::capture(&device, || Tensor::from_vec(vec![1.0, 2.0], &[2], &device))
        .expect_err("a host copy cannot be captured");
    assert!(err.to_string().contains("inside a captured step"), "{err}");
    // The device still runs eagerly, and captures again.
    let t = Tensor::from_vec(vec![1.0, 2.0], &[2], &device);
    assert_eq!((&t * 3.0).to_vec(), [3.0, 6.0]);
    let (graph, doubled) = graph::capture(&device, || &t * 2.0).expect("capture");
    graph.replay().expect("replay");
    assert_eq!(doubled.to_vec(), [2.0, 4.0]);
}

/// A step captures once: a capture begun inside another is refused with the reason, and the
/// outer capture goes on to replay what it recorded.
#[test]
fn a_capture_inside_a_capture_is_refused_and_the_outer_one_stands() {
    let _turn = one_at_a_time();
    let Some(device) = common::emulator() else {
        return;
    };
    let t = Tensor::from_vec(vec![1.0, 2.0], &[2], &device);
    let (graph, (nested, doubled)) = graph::capture(&device, || {
        let nested = graph::capture(&device, || &t + 1.0).map(|(graph, _)| graph.launches());
        (nested, &t * 2.0)
    })
    .expect("the outer capture");
    let err = nested.expect_err("a capture inside a capture");
    assert!(
        err.to_string().contains("a capture is already in progress"),
        "{err}"
    );
    assert_eq!(graph.launches(), 1);
    graph.replay().expect("replay");
    assert_eq!(doubled.to_vec(), [2.0, 4.0]);
}

#[test]
fn a_capture_drawing_from_two_generators_is_refused() {
    let _turn = one_at_a_time();
    let Some(device) = common::emulator() else {
        return;
    };
    let err = graph::capture(&device, || {
        let a = Tensor::randn(&[4], &device);
        let b = Tensor::randn_with(&[4], &device, &mut Generator::new(1234));
        &a + &b
    })
    .expect_err("two generators");
    assert!(err.to_string().contains("more than one generator"), "{err}");
}

#[test]
fn graphs_need_a_cuda_device() {
    let _turn = one_at_a_time(); // Gan::new draws from the process-wide generator
    let err = graph::capture(&Device::Cpu, || ()).expect_err("CPU");
    assert!(err.to_string().contains("needs a CUDA device"), "{err}");
    let mut gan = Gan::new(&Device::Cpu, 2e-4);
    assert!(gan.capture_train_step(64).is_err());
}
