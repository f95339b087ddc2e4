//! The classic MLP GAN on 28 × 28 images, as the PyTorch tutorials have it: the model that the
//! `mnist_gan` example trains and the benchmarks time.
//!
//! - Generator: `100 → 256 → 512 → 1024 → 784`, ReLU between layers, tanh at the end (images
//!   in `[-1, 1]`).
//! - Discriminator: `784 → 1024 → 512 → 256 → 1`, LeakyReLU(0.2) and Dropout(0.3) between
//!   layers, sigmoid at the end (the probability that the input is real).
//! - Both trained by Adam with lr 2e-4 and betas (0.5, 0.999).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use crate::backend::cuda::{record_products, TuneOptions, TunedProduct, Tuning};
use crate::checkpoint::{Checkpoint, Snapshot};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::{self, Graph};
use crate::nn::functional::binary_cross_entropy;
use crate::nn::{Dropout, LeakyReLU, Linear, Module, ReLU, Sequential, Sigmoid, Tanh};
use crate::ops::binary_cross_entropy_scaled;
use crate::optim::{Adam, AdamConfig};
use crate::rng::Generator;
use crate::storage::PendingValues;
use crate::tensor::Tensor;

/// The length of the noise vector `z` the generator maps to an image.
pub const LATENT_DIM: usize = 100;
/// Pixels per image (28 × 28).
pub const IMAGE_DIM: usize = 784;

/// `(in, out)` of every linear layer, the generator's four then the discriminator's four:
/// at batch 64 each is a `[64, in] · [in, out]` product, the shapes the benchmarks time.
pub const LAYERS: [(usize, usize); 8] = [
    (LATENT_DIM, 256),
    (256, 512),
    (512, 1024),
    (1024, IMAGE_DIM),
    (IMAGE_DIM, 1024),
    (1024, 512),
    (512, 256),
    (256, 1),
];

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

/// The classic GAN's learning rate.
pub const CLASSIC_LR: f32 = 2e-4;

/// The optimiser settings of the classic GAN: Adam, betas (0.5, 0.999), learning rate `lr`
/// ([`CLASSIC_LR`] in the classic script).
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

/// Where a training run stands: what a checkpoint holds beside the weights and optimiser
/// states, so that a resumed run continues exactly where the saved one was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrainingProgress {
    /// Completed epochs.
    pub epoch: u64,
    /// Completed iterations (each a D step and a G step), over all epochs.
    pub step: u64,
    /// The run's seed: initial weights, the data order, noise and dropout.
    pub seed: u64,
    /// Images per batch.
    pub batch_size: usize,
    /// The process-wide generator (noise and dropout masks) at this point.
    pub rng: Generator,
}

/// The format tag stored in every checkpoint's metadata.
pub const CHECKPOINT_FORMAT: &str = "ferrograd.mnist_gan.v1";

/// A generator, a discriminator and their optimisers.
pub struct Gan {
    /// G: 100 → 256 → 512 → 1024 → 784, ReLU between layers, tanh at the end.
    pub generator: Sequential,
    /// D: 784 → 1024 → 512 → 256 → 1, LeakyReLU(0.2) and dropout(0.3) between layers,
    /// sigmoid at the end.
    pub discriminator: Sequential,
    /// Adam over G's parameters.
    pub generator_optimizer: Adam,
    /// Adam over D's parameters.
    pub discriminator_optimizer: Adam,
    device: Device,
    /// The training step as a CUDA graph, once [`Gan::capture_train_step`] made one.
    captured: Option<CapturedStep>,
    /// What the latest step computed, on the device.
    last: Option<StepResults>,
    /// The step's constant tensors for the latest batch size (see [`StepConstants`]): made
    /// once, not at every step (on a GPU, fills fewer per step, replayed or not).
    constants: Option<StepConstants>,
}

impl fmt::Debug for Gan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gan")
            .field("generator", &self.generator)
            .field("discriminator", &self.discriminator)
            .field("lr", &self.lr())
            .field("device", &self.device)
            .field("step_captured", &self.captured.is_some())
            .finish_non_exhaustive()
    }
}

/// The results of a step, on the device, detached from the graph.
#[derive(Clone)]
struct StepResults {
    d_loss: Tensor,
    g_loss: Tensor,
    /// `[2, 1]`: D's mean output on the real images, then on the fakes.
    d_means: Tensor,
}

/// The constant tensors a step of `batch` images reads.
#[derive(Clone)]
struct StepConstants {
    /// `[]`, one: each backward pass's seed, `∂loss/∂loss`.
    one: Tensor,
    /// `[batch, 1]` of ones: G's BCE targets.
    ones: Tensor,
    /// `[2·batch, 1]`: `batch` ones, then `batch` zeros: D's targets, real images then fakes.
    real_then_fake: Tensor,
    /// `[2, 2·batch]`: 1/batch over the first `batch` columns of row 0 and the last `batch` of
    /// row 1, zero elsewhere. Times D's `[2·batch, 1]` output it gives D(x) and D(G(z)), the
    /// means over each half, in one small product (instead of a copy and a sum per half).
    half_means: Tensor,
}

impl StepConstants {
    fn new(batch: usize, device: &Device) -> Self {
        let ones = Tensor::ones(&[batch, 1], device);
        let real_then_fake = Tensor::cat(&[&ones, &Tensor::zeros(&[batch, 1], device)]);
        let share = 1.0 / batch as f32;
        let mut half_means = vec![0.0; 2 * 2 * batch];
        half_means[..batch].fill(share);
        half_means[3 * batch..].fill(share);
        StepConstants {
            one: Tensor::ones(&[], device),
            ones,
            real_then_fake,
            half_means: Tensor::from_vec(half_means, &[2, 2 * batch], device),
        }
    }
}

impl StepResults {
    /// Starts copying the four numbers to the host (on a GPU, behind the step, without waiting
    /// for it).
    fn read_later(&self) -> PendingStats {
        PendingStats(Tensor::to_vecs_later(&[
            &self.d_loss,
            &self.g_loss,
            &self.d_means,
        ]))
    }
}

/// A step's statistics on their way to the host ([`Gan::last_stats_later`]).
#[must_use = "the statistics come with wait()"]
#[derive(Debug)]
pub struct PendingStats(PendingValues);

impl PendingStats {
    /// Waits for the statistics (on a GPU, for their copy alone, not for later steps).
    pub fn wait(self) -> StepStats {
        let values = self.0.wait();
        let [d_loss, g_loss] = [0, 1].map(|i| values[i][0]);
        let [d_real, d_fake] = [0, 1].map(|half| values[2][half]);
        StepStats {
            d_loss,
            g_loss,
            d_real,
            d_fake,
        }
    }
}

/// A training step captured as a graph: the input buffer each replay reads, the constants
/// it reads (kept alive here: the graph reads their buffers), and the tensors it leaves its
/// results in.
struct CapturedStep {
    graph: Graph,
    real: Tensor,
    _constants: StepConstants,
    results: StepResults,
}

impl Gan {
    /// A freshly initialised GAN (weights drawn from the process-wide generator).
    ///
    /// # Panics
    /// If `lr` is negative or NaN, as [`Adam::new`] does.
    pub fn new(device: &Device, lr: f32) -> Self {
        let generator = generator(device);
        let discriminator = discriminator(device);
        Gan {
            generator_optimizer: Adam::new(generator.parameters(), adam_config(lr)),
            discriminator_optimizer: Adam::new(discriminator.parameters(), adam_config(lr)),
            generator,
            discriminator,
            device: device.clone(),
            captured: None,
            last: None,
            constants: None,
        }
    }

    /// One iteration on a batch of real images `[batch, 784]` in `[-1, 1]`:
    /// 1. D step: minimise `BCE(D(x), 1) + BCE(D(G(z).detach()), 0)`;
    /// 2. G step, with fresh noise: minimise `BCE(D(G(z)), 1)`.
    ///
    /// A batch of the size [`Gan::capture_train_step`] captured replays the graph; any other
    /// runs eagerly. Both compute the same values. `real` may be on the GAN's device or on the
    /// host (the CPU): a captured step then uploads it straight into the graph's input buffer,
    /// with no copy on the GPU.
    pub fn train_step(&mut self, real: &Tensor) -> StepStats {
        self.train_step_async(real);
        self.last_stats().expect("a step has just run")
    }

    /// [`Gan::train_step`] without reading its results back: on a GPU it returns once the
    /// work is queued, so steps follow each other without waiting for the host. Read them with
    /// [`Gan::last_stats`].
    pub fn train_step_async(&mut self, real: &Tensor) {
        if let Some(captured) = &self.captured {
            if captured.real.shape() == real.shape() {
                captured.real.copy_from(real); // an upload when `real` is on the host
                captured
                    .graph
                    .replay()
                    .unwrap_or_else(|err| panic!("train_step: {err}"));
                self.last = Some(captured.results.clone());
                return;
            }
        }
        let moved;
        let real = if real.device() == &self.device {
            real
        } else {
            moved = real.to_device(&self.device);
            &moved
        };
        // On the CPU the whole step runs as one task of the rayon pool: its parallel ops then
        // split work from inside the pool instead of handing every op to it from outside and
        // sleeping until it is done (two thread wake-ups per op, hundreds of ops per step),
        // and the pool's other workers stay awake between ops (see `Device::run`).
        let device = self.device.clone();
        let results = device.run(|| self.step_results(real));
        self.last = Some(results);
    }

    /// The statistics of the latest step (`None` before the first); on a GPU, one wait for
    /// the step to finish.
    pub fn last_stats(&self) -> Option<StepStats> {
        self.last_stats_later().map(PendingStats::wait)
    }

    /// The statistics of the latest step without waiting for it: queue the next step, then
    /// wait for these, and the GPU never waits for the host between steps (`mnist_gan` does).
    /// A later step does not change what they say.
    pub fn last_stats_later(&self) -> Option<PendingStats> {
        self.last.as_ref().map(StepResults::read_later)
    }

    /// Captures the training step for batches of `batch` images as a CUDA graph, which
    /// [`Gan::train_step`] replays from then on: one submission instead of a launch per kernel.
    /// Capturing runs nothing (the weights do not change); it replaces an earlier capture.
    ///
    /// # Errors
    /// On the CPU (there is nothing to capture), or if the driver rejects the capture.
    pub fn capture_train_step(&mut self, batch: usize) -> Result<()> {
        self.captured = None;
        let real = Tensor::zeros(&[batch, IMAGE_DIM], &self.device);
        // Made now, so that the graph does not refill them at each replay.
        let constants = self.constants(batch);
        let device = self.device.clone();
        let (graph, results) = graph::capture(&device, || self.step_results(&real))?;
        self.captured = Some(CapturedStep {
            graph,
            real,
            _constants: constants,
            results,
        });
        Ok(())
    }

    /// Tunes the matrix products of a training step on batches of `batch` images for this
    /// GPU ([`crate::backend::cuda::tuning`]): records them by capturing the step (which runs
    /// nothing, and is dropped: capture again afterwards), times each in the configurations
    /// `tuning` allows, and makes each run in the fastest from now on. Under
    /// [`Tuning::Tiles`] the step computes the same bits as untuned.
    ///
    /// # Errors
    /// On the CPU (its products have no such configurations), or if the capture fails.
    pub fn tune_products(
        &mut self,
        batch: usize,
        tuning: Tuning,
        options: TuneOptions,
    ) -> Result<Vec<TunedProduct>> {
        let Device::Cuda(cuda) = self.device.clone() else {
            return Err(Error::Device(
                "tune_products: only CUDA products can be tuned".into(),
            ));
        };
        let (captured, products) = record_products(|| self.capture_train_step(batch));
        self.captured = None;
        captured?;
        Ok(cuda.tune_products(&products, tuning, options))
    }

    /// Kernel launches per captured step (`None` without a capture).
    pub fn captured_launches(&self) -> Option<usize> {
        self.captured
            .as_ref()
            .map(|captured| captured.graph.launches())
    }

    /// The step itself (see [`Gan::train_step`]), its results left on the device.
    fn step_results(&mut self, real: &Tensor) -> StepResults {
        let batch = real.shape()[0];
        let constants = self.constants(batch);
        let (g, d) = (&self.generator, &self.discriminator);

        // D sees the real and the fake images as one batch of 2·batch rows: the loss and
        // gradients of two passes (none of D's layers mixes rows; dropout draws a fresh mask
        // for every element either way), in half the kernel launches and with GEMMs twice
        // as tall. BCE(D(x), 1) + BCE(D(G(z)), 0), two means over `batch` rows, is the sum
        // over all 2·batch rows divided by `batch`.
        self.discriminator_optimizer.zero_grad();
        let fake = g.forward(&self.noise(batch)).detach();
        let d_out = d.forward(&Tensor::cat(&[real, &fake]));
        let d_loss =
            binary_cross_entropy_scaled(&d_out, &constants.real_then_fake, 1.0 / batch as f32);
        d_loss.backward_with(&constants.one);
        self.discriminator_optimizer.step();

        // The G step needs gradients through D, not for D's weights: freezing them skips
        // their products in the backward pass (D's optimiser has already stepped).
        let frozen = d.parameters();
        frozen.iter().for_each(|p| p.set_requires_grad(false));
        self.generator_optimizer.zero_grad();
        let g_loss =
            binary_cross_entropy(&d.forward(&g.forward(&self.noise(batch))), &constants.ones);
        g_loss.backward_with(&constants.one);
        self.generator_optimizer.step();
        frozen.iter().for_each(|p| p.set_requires_grad(true));

        StepResults {
            d_loss: d_loss.detach(),
            g_loss: g_loss.detach(),
            d_means: constants.half_means.matmul(&d_out.detach()),
        }
    }

    /// The constants of a step of `batch` images, made at the first step of that size.
    fn constants(&mut self, batch: usize) -> StepConstants {
        match &self.constants {
            Some(constants) if constants.ones.shape()[0] == batch => constants.clone(),
            _ => {
                let constants = StepConstants::new(batch, &self.device);
                self.constants = Some(constants.clone());
                constants
            }
        }
    }

    /// A batch of `z ~ N(0, 1)^100`.
    pub fn noise(&self, batch: usize) -> Tensor {
        Tensor::randn(&[batch, LATENT_DIM], &self.device)
    }

    /// Saves both networks, both optimisers' states and `progress` as one safetensors file,
    /// atomically. Tensor names: `generator.<i>.weight|bias` (loadable into PyTorch's
    /// `nn.Sequential` generator after stripping `generator.`), `discriminator.…`,
    /// `generator_optimizer.exp_avg.…`, `generator_optimizer.exp_avg_sq.…`, and the same for the
    /// discriminator's optimiser; every value is f32 in PyTorch's layout. Metadata: the
    /// progress, and each optimiser's step count (`generator_optimizer.step`).
    pub fn save_checkpoint(&self, path: &Path, progress: &TrainingProgress) -> Result<()> {
        self.checkpoint_snapshot(progress).write(path)
    }

    /// What [`Gan::save_checkpoint`] writes, copied to host memory now, to be written with
    /// [`Snapshot::write`] later (on another thread, while training goes on).
    pub fn checkpoint_snapshot(&self, progress: &TrainingProgress) -> Snapshot {
        let mut metadata = HashMap::from([
            ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
            ("epoch".to_string(), progress.epoch.to_string()),
            ("step".to_string(), progress.step.to_string()),
            ("seed".to_string(), progress.seed.to_string()),
            ("batch_size".to_string(), progress.batch_size.to_string()),
            ("rng_seed".to_string(), progress.rng.seed().to_string()),
            ("rng_offset".to_string(), progress.rng.offset().to_string()),
            ("lr".to_string(), self.lr().to_string()),
        ]);
        for (net, _, optimizer) in self.parts() {
            let steps = optimizer.step_count().to_string();
            metadata.insert(format!("{net}_optimizer.step"), steps);
        }
        Snapshot::of(&self.checkpoint_tensors(), metadata)
    }

    /// Every tensor a checkpoint holds, with its name there: each network's parameters and
    /// its optimiser's two moments of each.
    fn checkpoint_tensors(&self) -> Vec<(String, Tensor)> {
        let mut tensors = Vec::new();
        for (net, model, optimizer) in self.parts() {
            let opt = format!("{net}_optimizer");
            for ((name, param), state) in
                model.named_parameters().into_iter().zip(optimizer.states())
            {
                tensors.push((format!("{net}.{name}"), param));
                tensors.push((format!("{opt}.exp_avg.{name}"), state.exp_avg.clone()));
                tensors.push((format!("{opt}.exp_avg_sq.{name}"), state.exp_avg_sq.clone()));
            }
        }
        tensors
    }

    /// The optimisers' learning rate (both networks share it).
    pub fn lr(&self) -> f32 {
        self.generator_optimizer.config().lr
    }

    /// Sets both optimisers' learning rate. A captured step keeps the rate it was captured
    /// with, so a change drops the capture: capture again ([`Gan::capture_train_step`]).
    pub fn set_lr(&mut self, lr: f32) {
        if lr != self.lr() {
            self.captured = None;
        }
        self.generator_optimizer.set_lr(lr);
        self.discriminator_optimizer.set_lr(lr);
    }

    /// Restores everything [`Gan::save_checkpoint`] saved, the learning rate included (as
    /// PyTorch's `Optimizer.load_state_dict` does; [`Gan::set_lr`] changes it afterwards), and
    /// returns the saved progress. The caller restores the process-wide generator from
    /// `progress.rng`. A file that cannot be restored whole (a tensor missing or of another
    /// shape, metadata missing, malformed or out of range) is an error that leaves this GAN as
    /// it was.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<TrainingProgress> {
        let saved = Checkpoint::load(path)?;
        let format = saved.metadata("format")?;
        if format != CHECKPOINT_FORMAT {
            return Err(saved.error(format!("format {format:?}, expected {CHECKPOINT_FORMAT:?}")));
        }
        // Everything is looked up and checked before anything is overwritten, so that a bad
        // file leaves this GAN as it was.
        let writes = saved.check_restores(self.checkpoint_tensors())?;
        let optimizer_steps = |key: &str| -> Result<u64> {
            let steps: u64 = saved.parse(key)?;
            if steps > Adam::MAX_STEP_COUNT {
                return Err(saved.error(format!(
                    "metadata entry {key:?} = {steps} is more steps than Adam counts ({})",
                    Adam::MAX_STEP_COUNT
                )));
            }
            Ok(steps)
        };
        let generator_steps = optimizer_steps("generator_optimizer.step")?;
        let discriminator_steps = optimizer_steps("discriminator_optimizer.step")?;
        let lr: f32 = saved.parse("lr")?;
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(saved.error(format!(
                "metadata entry \"lr\" = {lr} is not a learning rate"
            )));
        }
        let progress = TrainingProgress {
            epoch: saved.parse("epoch")?,
            step: saved.parse("step")?,
            seed: saved.parse("seed")?,
            batch_size: saved.parse("batch_size")?,
            rng: Generator::from_state(saved.parse("rng_seed")?, saved.parse("rng_offset")?),
        };
        if progress.batch_size == 0 {
            return Err(saved.error("metadata entry \"batch_size\" = 0 is not a batch size".into()));
        }
        writes.apply();
        self.generator_optimizer.set_step_count(generator_steps);
        self.discriminator_optimizer
            .set_step_count(discriminator_steps);
        self.set_lr(lr);
        Ok(progress)
    }

    /// Each network with its name and optimiser.
    fn parts(&self) -> [(&'static str, &Sequential, &Adam); 2] {
        [
            ("generator", &self.generator, &self.generator_optimizer),
            (
                "discriminator",
                &self.discriminator,
                &self.discriminator_optimizer,
            ),
        ]
    }
}

/// A generator with the weights from a checkpoint written by [`Gan::save_checkpoint`].
pub fn load_generator(path: &Path, device: &Device) -> Result<Sequential> {
    let generator = generator(device);
    Checkpoint::load(path)?.restore_module("generator.", &generator)?;
    Ok(generator)
}
