//! Trains the classic MLP GAN on MNIST and shows digits appearing.
//!
//! `cargo run --release --example mnist_gan` downloads MNIST into `data/mnist` if it is not
//! there, then trains, writing into `runs/mnist_gan/`: a grid of samples from a fixed noise
//! batch after every epoch (`samples_epoch_NNN.png`, and `samples_latest.png`; when the run
//! ends, all of them as one animated PNG, `samples_progress.png`), the losses of every
//! iteration (`losses.csv`) and their curve (`losses.svg`), and a checkpoint
//! (`checkpoint.safetensors`) that `--resume` continues from. `--help` lists the options.
//!
//! Ctrl-C (or SIGTERM, or SIGHUP) while training stops the run after the step in flight,
//! writes its checkpoint and exits with status 130; a second one exits at once (the last
//! checkpoint written stays intact: every write is atomic). Standard output going away (its
//! reader quit, as in `mnist_gan | head`) stops the run the same way, with status 141.

mod gan_output;

use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use ferrograd::atomic_file::{remove_abandoned_temporaries, write_atomically};
use ferrograd::backend::cpu::Bf16Units;
use ferrograd::backend::cuda::{TuneOptions, Tuning};
use ferrograd::checkpoint::Snapshot;
use ferrograd::data::download::{default_mirrors, download_missing, DownloadEvent, MIRROR_ENV};
use ferrograd::data::mnist::IMAGE_PIXELS;
use ferrograd::data::{DataLoader, Mnist, Split};
use ferrograd::gan::{Gan, PendingStats, StepStats, TrainingProgress, CLASSIC_LR, LATENT_DIM};
use ferrograd::rng::{with_default_generator, Generator};
use ferrograd::{manual_seed, Device, Tensor};
use gan_output::{
    at_path, epoch_grids, loss_plot_svg, write_grid_png, write_progress_apng, write_samples_idx,
    LossLog, LossRow,
};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};

/// Set by the first Ctrl-C, SIGTERM or SIGHUP during training (`stop_on_signals`).
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);
/// Whether the training loop is still running (what the first signal's message says).
static TRAINING: AtomicBool = AtomicBool::new(false);
/// The exit status of a run stopped by a signal (128 + SIGINT, as shells report it).
const STOPPED_STATUS: u8 = 130;
/// Set when a line could not be written to standard output (`say`).
static OUTPUT_LOST: AtomicBool = AtomicBool::new(false);
/// The exit status of a run stopped because its output went away (128 + SIGPIPE: what a shell
/// reports for a program killed by writing into a pipe nobody reads).
const OUTPUT_LOST_STATUS: u8 = 141;

/// `println!` that cannot panic; see [`say`].
macro_rules! say {
    ($($arg:tt)*) => {
        say(format_args!($($arg)*))
    };
}

/// `eprintln!` that cannot panic: if standard error is gone too, the line is dropped.
macro_rules! complain {
    ($($arg:tt)*) => {
        let _ = writeln!(std::io::stderr(), $($arg)*);
    };
}

/// Writes a line to standard output. If it cannot (the reader of a pipe quit, as `head` does,
/// or the disk holding the output is full), training stops as on SIGTERM: after the step in
/// flight, with its checkpoint written. `println!` would panic instead, with the training
/// since the last checkpoint lost.
fn say(line: std::fmt::Arguments) {
    if OUTPUT_LOST.load(Ordering::Relaxed) {
        return;
    }
    if let Err(err) = writeln!(std::io::stdout(), "{line}") {
        OUTPUT_LOST.store(true, Ordering::Relaxed);
        STOP_REQUESTED.store(true, Ordering::Relaxed);
        if TRAINING.load(Ordering::Relaxed) {
            complain!(
                "standard output is gone ({err}): stopping after this step to write a checkpoint"
            );
        } else {
            complain!("standard output is gone ({err}): stopping");
        }
    }
}

/// Seeds the fixed noise batch of the sample grids, apart from the training stream.
const GRID_NOISE_SALT: u64 = 0x6772_6964; // "grid"
/// Seeds the noise of `--samples-out`.
const SAMPLES_NOISE_SALT: u64 = 0x5341_4d50; // "SAMP"
/// The epochs' grids as one animated PNG, in `--out`.
const PROGRESS_PNG: &str = "samples_progress.png";

/// Where to train (`--device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeviceChoice {
    /// The first GPU if there is one, else the CPU.
    Auto,
    Cpu,
    /// GPU N, numbered as PyTorch and `nvidia-smi` number them (`cuda` is `cuda:0`).
    Cuda(usize),
}

fn parse_device(text: &str) -> Result<DeviceChoice, String> {
    match text {
        "auto" => Ok(DeviceChoice::Auto),
        "cpu" => Ok(DeviceChoice::Cpu),
        "cuda" => Ok(DeviceChoice::Cuda(0)),
        _ => text
            .strip_prefix("cuda:")
            .and_then(|ordinal| ordinal.parse().ok())
            .map(DeviceChoice::Cuda)
            .ok_or_else(|| format!("{text:?} is not auto, cpu, cuda or cuda:N")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Autotune {
    Off,
    Tiles,
    Splits,
}

/// Train the classic MLP GAN (G 100-256-512-1024-784, D 784-1024-512-256-1) on MNIST.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Epochs to train (the classic script's 100).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    epochs: u64,
    /// Images per batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// Adam's learning rate, for both networks [default: 2e-4, or a resumed run's own].
    #[arg(long, value_parser = positive_f32)]
    lr: Option<f32>,
    /// Seed of the weights, the data order, the noise and dropout.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to train: auto (the first GPU if there is one, else the CPU), cpu, cuda (the
    /// first GPU) or cuda:N (GPU N).
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceChoice,
    /// On a GPU, launch every kernel of every step instead of replaying the step captured
    /// once as a CUDA graph (same results, slower).
    #[arg(long)]
    eager: bool,
    /// On a GPU, time the step's matrix products in their configurations before training and
    /// run each in the fastest: `tiles` (64 × 64 or 32 × 32 tiles: the same results, bit for
    /// bit), `splits` (also how split-K cuts k: last-bit differences), or `off`.
    #[arg(long, value_enum, default_value_t = Autotune::Tiles)]
    autotune: Autotune,
    /// On a GPU, let matrix products use TF32 tensor cores (10-bit mantissas in the products,
    /// FP32 sums; as PyTorch's allow_tf32).
    #[arg(long)]
    tf32: bool,
    /// On the CPU, round the matrix products' operands to BF16 and multiply them on Intel AMX
    /// tiles (Xeon 4th generation or later) or with AVX512-BF16 (AMD Zen 4 or later); FP32
    /// sums, as PyTorch's autocast to bfloat16.
    #[arg(long)]
    bf16: bool,
    /// The MNIST directory; missing files are downloaded into it.
    #[arg(long, env = "MNIST_DIR", default_value = "data/mnist")]
    data: PathBuf,
    /// Base URL to download MNIST from, instead of the public mirrors.
    #[arg(long, env = MIRROR_ENV)]
    mirror: Option<String>,
    /// Where samples, losses and checkpoints go [default: runs/mnist_gan, or with --resume the
    /// checkpoint's directory, so that the run goes on where it was].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
    /// Stop after this many iterations in all (for smoke runs).
    #[arg(long)]
    max_iters: Option<u64>,
    /// Also checkpoint every N iterations; 0, the default, writes only the checkpoints that
    /// are always written, after each epoch and when training stops.
    #[arg(long, default_value_t = 0)]
    checkpoint_every: u64,
    /// Continue the run saved in this checkpoint, in its directory unless --out says otherwise
    /// (a new --out starts with the run's losses so far).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Start a new run in --out even though another run's checkpoint is there (that run's
    /// files are replaced).
    #[arg(long)]
    overwrite: bool,
    /// After training, write generated samples to this file as IDX3 (28 × 28 unsigned bytes).
    #[arg(long)]
    samples_out: Option<PathBuf>,
    /// How many samples --samples-out writes.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    num_samples: u64,
}

fn positive_f32(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

fn main() -> ExitCode {
    let result = run(Args::parse());
    if result.is_ok() && stop_requested() {
        if OUTPUT_LOST.load(Ordering::Relaxed) {
            return ExitCode::from(OUTPUT_LOST_STATUS);
        }
        return ExitCode::from(STOPPED_STATUS);
    }
    gan_output::exit_code(result)
}

fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::Relaxed)
}

/// From now on, the first Ctrl-C (SIGINT), SIGTERM or SIGHUP asks training to stop after the
/// step in flight and write its checkpoint, as a job scheduler's notice or an impatient user
/// would want; a second one ends the process at once.
fn stop_on_signals() -> Result<(), ctrlc::Error> {
    ctrlc::set_handler(|| {
        if STOP_REQUESTED.swap(true, Ordering::Relaxed) {
            complain!("\nstopped at once (a checkpoint written before stays intact)");
            std::process::exit(i32::from(STOPPED_STATUS));
        }
        if TRAINING.load(Ordering::Relaxed) {
            complain!("\nstopping after this step to write a checkpoint (again to stop at once)");
        } else {
            complain!("\nstopping once the files are written (again to stop at once)");
        }
    })
}

impl Args {
    /// `--out`, or its default: where a resumed run's checkpoint is, else `runs/mnist_gan`.
    fn out_dir(&self) -> PathBuf {
        match (&self.out, &self.resume) {
            (Some(out), _) => out.clone(),
            (None, Some(checkpoint)) => directory_of(checkpoint),
            (None, None) => PathBuf::from("runs/mnist_gan"),
        }
    }
}

/// The directory `file` is in (`.` for a bare file name).
fn directory_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn run(args: Args) -> Result<(), Box<dyn Error>> {
    let out = args.out_dir();
    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads as usize)
            .build_global()?;
    }
    refuse_to_replace_another_run(&args, &out)?;
    let (device, bf16_units) = open_device(&args)?;
    let mnist = load_mnist(&args)?;
    prepare_out_dir(&args, &out)?;

    let (mut gan, progress) = new_or_resumed_gan(&args, &device)?;
    prepare_gpu_step(&mut gan, &args, &device, progress.batch_size);
    let mut training = Training::new(&args, &out, gan, progress, &mnist, &device)?;
    stop_on_signals()?;
    TRAINING.store(true, Ordering::Relaxed);
    say!(
        "training on {} images, {} per epoch, on {}{}",
        training.loader.len(),
        describe_batches(training.loader.len(), training.progress.batch_size),
        device.description(),
        match bf16_units {
            Some(Bf16Units::Amx) => ", BF16 matrix products (AMX)",
            Some(Bf16Units::Avx512Bf16) => ", BF16 matrix products (AVX512-BF16)",
            None => "",
        }
    );
    training.train(&args)?;
    TRAINING.store(false, Ordering::Relaxed);
    let checkpoint = training.finish()?;
    if let Some(path) = &checkpoint {
        say!("checkpoint: {}", path.display());
    }
    if stop_requested() {
        match checkpoint.as_ref().or(args.resume.as_ref()) {
            Some(checkpoint) => say!(
                "stopped at iteration {}; continue with --resume {}",
                training.progress.step,
                checkpoint.display()
            ),
            None => say!("stopped before training: no checkpoint written"),
        }
        if args.samples_out.is_some() {
            say!("no --samples-out from a stopped run");
        }
        return Ok(());
    }
    if let Some(path) = &args.samples_out {
        let seed = training.progress.seed;
        write_samples_out(path, &args, &training.gan, seed, &device)?;
    }
    Ok(())
}

/// A run under way: the GAN and where it stands, the data, and the files the run writes.
struct Training<'a> {
    gan: Gan,
    progress: TrainingProgress,
    loader: DataLoader<'a>,
    batches: u64,
    /// The iteration the run ends at (`--epochs`, `--max-iters`); a stop request brings it
    /// forward to the step in flight.
    last_step: u64,
    /// The noise batch of the sample grids, the same after every epoch.
    grid_noise: Tensor,
    log: LossLog,
    out: PathBuf,
    checkpoint_path: PathBuf,
    files: FileWriter,
    wrote_checkpoint: bool,
    /// Whether this run finished an epoch, so wrote its grid (`samples_epoch_NNN.png`).
    wrote_epoch_grid: bool,
    /// Set by the file writer once it has written `samples_progress.png`.
    animated: Arc<AtomicBool>,
}

impl<'a> Training<'a> {
    fn new(
        args: &Args,
        out: &Path,
        gan: Gan,
        progress: TrainingProgress,
        mnist: &'a Mnist,
        device: &Device,
    ) -> Result<Self, Box<dyn Error>> {
        let loader = DataLoader::new(
            &mnist.images,
            IMAGE_PIXELS,
            progress.batch_size,
            progress.seed,
        );
        let batches = loader.batches_per_epoch() as u64;
        let grid_noise = Tensor::randn_with(
            &[64, LATENT_DIM],
            device,
            &mut Generator::new(progress.seed ^ GRID_NOISE_SALT),
        );
        // The loss log goes on from the run's own: the resumed checkpoint's, wherever this
        // run's files go.
        let log_path = out.join("losses.csv");
        let earlier_log = args
            .resume
            .as_deref()
            .map_or(log_path.clone(), |checkpoint| {
                directory_of(checkpoint).join("losses.csv")
            });
        let log = LossLog::open(&log_path, &earlier_log, progress.step)?;
        Ok(Training {
            gan,
            progress,
            loader,
            batches,
            last_step: (args.epochs * batches).min(args.max_iters.unwrap_or(u64::MAX)),
            grid_noise,
            log,
            out: out.to_path_buf(),
            checkpoint_path: out.join("checkpoint.safetensors"),
            files: FileWriter::default(),
            wrote_checkpoint: false,
            wrote_epoch_grid: false,
            animated: Arc::default(),
        })
    }

    /// Trains epoch after epoch until the run's last iteration, or a stop request.
    fn train(&mut self, args: &Args) -> Result<(), Box<dyn Error>> {
        if self.progress.step >= self.last_step {
            let limit = match args.max_iters {
                Some(iters) if iters < args.epochs * self.batches => {
                    format!("--max-iters {iters}")
                }
                _ => format!("--epochs {}", args.epochs),
            };
            say!(
                "nothing to train: the run is at iteration {} already, and {limit} stops it at \
                 iteration {}",
                self.progress.step,
                self.last_step
            );
        }
        while self.progress.step < self.last_step && !stop_requested() {
            let this_epoch = self.train_epoch(args)?;
            self.end_epoch(this_epoch, args.epochs)?;
        }
        if self.wrote_epoch_grid {
            self.animate_epoch_grids()?;
        }
        Ok(())
    }

    /// Writes `samples_progress.png`: every epoch's grid in `--out` (an earlier run's too,
    /// when this one resumed it there) as one animation, once the grids are on disk. A grid it
    /// cannot read (a file of the user's under that name) costs the animation, with a note,
    /// and not the run.
    fn animate_epoch_grids(&mut self) -> Result<(), Box<dyn Error>> {
        let out = self.out.clone();
        let animated = Arc::clone(&self.animated);
        self.files.write(move || {
            let written = epoch_grids(&out)
                .map_err(at_path(&out))
                .and_then(|grids| write_progress_apng(&out.join(PROGRESS_PNG), &grids));
            match written {
                Ok(()) => animated.store(true, Ordering::Relaxed),
                Err(err) => {
                    complain!("note: no animation of the epochs' samples: {err}");
                }
            }
            Ok(())
        })
    }

    /// Runs the steps of the epoch the run is in, from where it stands to the epoch's end (or
    /// the run's, or a stop request), logging each step's statistics.
    fn train_epoch(&mut self, args: &Args) -> Result<EpochProgress, Box<dyn Error>> {
        let epoch = self.progress.step / self.batches;
        let first_batch = self.progress.step % self.batches;
        let order = self.loader.order(epoch);
        let mut this_epoch = EpochProgress::new(epoch, args.epochs, self.batches, first_batch);
        // A step's statistics are read while the next step runs: on a GPU the host queues
        // step s + 1 before it waits for the numbers of step s, so the GPU never idles while
        // the host uploads a batch, logs a row or draws the bar.
        let mut in_flight: Option<(u64, PendingStats)> = None;
        for index in first_batch..self.batches {
            if stop_requested() {
                self.last_step = self.progress.step; // end_epoch writes the checkpoint
            }
            if self.progress.step == self.last_step {
                break;
            }
            // Made on the host: a captured step uploads it straight into its input buffer.
            let batch = self.loader.batch(&order, index as usize, &Device::Cpu);
            self.gan.train_step_async(&batch);
            self.progress.step += 1;
            let queued = self.gan.last_stats_later().expect("a step has just run");
            if let Some((step, stats)) = in_flight.replace((self.progress.step, queued)) {
                this_epoch.record(&mut self.log, step, stats.wait())?;
            }
            let step = self.progress.step;
            if args.checkpoint_every > 0 && step.is_multiple_of(args.checkpoint_every) {
                if let Some((step, stats)) = in_flight.take() {
                    // The log reaches the checkpoint's step.
                    this_epoch.record(&mut self.log, step, stats.wait())?;
                }
                self.checkpoint()?;
            }
        }
        if let Some((step, stats)) = in_flight.take() {
            this_epoch.record(&mut self.log, step, stats.wait())?;
        }
        Ok(this_epoch)
    }

    /// Writes the loss log and then a checkpoint of the run as it stands, while training goes
    /// on.
    fn checkpoint(&mut self) -> Result<(), Box<dyn Error>> {
        let log_file = self.log.flush()?;
        let snapshot = checkpoint_snapshot(&self.gan, &mut self.progress, self.batches);
        let path = self.checkpoint_path.clone();
        self.files.write(move || {
            log_file.sync_data()?; // on disk before the checkpoint that follows it
            Ok(snapshot.write(&path)?)
        })
    }

    /// Says how the epoch went, and writes its files while the next one trains: the sample
    /// grid, the loss curve and a checkpoint.
    fn end_epoch(&mut self, this_epoch: EpochProgress, epochs: u64) -> Result<(), Box<dyn Error>> {
        let EpochProgress {
            epoch,
            bar,
            means,
            started,
        } = this_epoch;
        bar.finish_and_clear();
        let finished_epoch = self.progress.step.is_multiple_of(self.batches);
        let label = if finished_epoch {
            format!("epoch {}/{epochs}", epoch + 1)
        } else {
            format!(
                "stopped in epoch {} at iteration {}",
                epoch + 1,
                self.progress.step
            )
        };
        let seconds = started.elapsed().as_secs_f64();
        let rate = means.count as f64 / seconds;
        let steps_left = if stop_requested() {
            0
        } else {
            self.last_step - self.progress.step
        };
        say!(
            "{label}  {}  ({seconds:.1} s, {rate:.1} it/s{})",
            means.summary(),
            time_left(steps_left as f64 / rate)
        );
        let log_file = self.log.flush()?;
        // What the files need is read from the GPU now; the files are written while the next
        // epoch trains.
        let samples =
            gan_output::generate(&self.gan.generator, &self.grid_noise).to_device(&Device::Cpu);
        let epoch_png =
            finished_epoch.then(|| self.out.join(format!("samples_epoch_{:03}.png", epoch + 1)));
        let latest_png = self.out.join("samples_latest.png");
        let svg = loss_plot_svg(self.log.rows(), self.batches as usize);
        let svg_path = self.out.join("losses.svg");
        let snapshot = checkpoint_snapshot(&self.gan, &mut self.progress, self.batches);
        let path = self.checkpoint_path.clone();
        self.files.write(move || {
            if let Some(epoch_png) = epoch_png {
                write_grid_png(&epoch_png, &samples, 8)?;
            }
            write_grid_png(&latest_png, &samples, 8)?;
            write_atomically(&svg_path, |file| file.write_all(svg.as_bytes()))
                .map_err(at_path(&svg_path))?;
            log_file.sync_data()?; // on disk before the checkpoint that follows it
            Ok(snapshot.write(&path)?)
        })?;
        self.wrote_checkpoint = true;
        self.wrote_epoch_grid |= finished_epoch;
        Ok(())
    }

    /// Waits for the files still being written; returns the checkpoint's path if this run
    /// wrote one.
    fn finish(&mut self) -> Result<Option<PathBuf>, Box<dyn Error>> {
        self.files.finish()?;
        if self.animated.load(Ordering::Relaxed) {
            let progress = self.out.join(PROGRESS_PNG);
            say!("every epoch's samples, animated: {}", progress.display());
        }
        Ok(self.wrote_checkpoint.then(|| self.checkpoint_path.clone()))
    }
}

/// The epoch being trained: its progress bar, and the means of its statistics so far.
struct EpochProgress {
    epoch: u64,
    bar: ProgressBar,
    means: RunningMeans,
    started: Instant,
}

impl EpochProgress {
    fn new(epoch: u64, epochs: u64, batches: u64, first_batch: u64) -> Self {
        EpochProgress {
            epoch,
            bar: epoch_bar(epoch, epochs, batches, first_batch),
            means: RunningMeans::default(),
            started: Instant::now(),
        }
    }

    /// Adds step `step`'s statistics to the log, the means and the bar.
    fn record(&mut self, log: &mut LossLog, step: u64, stats: StepStats) -> std::io::Result<()> {
        self.means.add(&stats);
        log.push(LossRow {
            epoch: self.epoch + 1,
            iter: step,
            d_loss: stats.d_loss,
            g_loss: stats.g_loss,
            d_real: stats.d_real,
            d_fake: stats.d_fake,
        })?;
        self.bar.inc(1);
        self.bar.set_message(self.means.summary());
        Ok(())
    }
}

/// The device `--device` names, set up as `--tf32` and `--bf16` ask, and the units that run the
/// CPU's BF16 products if `--bf16` is on.
fn open_device(args: &Args) -> Result<(Device, Option<Bf16Units>), Box<dyn Error>> {
    let device = select_device(args.device)?;
    if !device.is_cuda() {
        note_unused_gpu_options(args);
    }
    ferrograd::backend::cuda::set_allow_tf32(args.tf32);
    let bf16_units = if args.bf16 {
        if device != Device::Cpu {
            return Err(
                "--bf16 is for the CPU's products: add --device cpu, or use --tf32 on a GPU".into(),
            );
        }
        let units =
            ferrograd::backend::cpu::enable_bf16().map_err(|why| format!("--bf16: {why}"))?;
        Some(units)
    } else {
        None
    };
    Ok((device, bf16_units))
}

/// Makes the directories the run writes into, so that a wrong path fails now, not after
/// training, and removes the temporary files a killed run left in `out`.
fn prepare_out_dir(args: &Args, out: &Path) -> Result<(), String> {
    let samples = args
        .samples_out
        .as_deref()
        .map(|file| ("--samples-out", file, directory_of(file)));
    let dirs = std::iter::once(("--out", out, out.to_path_buf())).chain(samples);
    for (option, given, dir) in dirs {
        std::fs::create_dir_all(&dir).map_err(|err| {
            let why = match dir.ancestors().find(|path| path.is_file()) {
                Some(file) if file == dir => "a file is in its place".to_string(),
                Some(file) => format!("{} is a file", file.display()),
                None => err.to_string(),
            };
            format!(
                "{option} {}: cannot create {}: {why}",
                given.display(),
                dir.display()
            )
        })?;
    }
    match remove_abandoned_temporaries(out) {
        Ok(0) => {}
        Ok(removed) => {
            let plural = if removed > 1 { "s" } else { "" };
            say!(
                "removed {removed} temporary file{plural} that a killed run left in {}",
                out.display()
            );
        }
        // Leftovers take space but harm nothing: not a reason to refuse to train.
        Err(err) => say!("note: could not clean up {}: {err}", out.display()),
    }
    Ok(())
}

/// A new GAN seeded with `--seed`, or the one `--resume` names, with where its run stands.
fn new_or_resumed_gan(
    args: &Args,
    device: &Device,
) -> Result<(Gan, TrainingProgress), Box<dyn Error>> {
    manual_seed(args.seed);
    let mut gan = Gan::new(device, args.lr.unwrap_or(CLASSIC_LR));
    let mut progress = TrainingProgress {
        epoch: 0,
        step: 0,
        seed: args.seed,
        batch_size: args.batch_size as usize,
        rng: with_default_generator(|g| *g),
    };
    if let Some(path) = &args.resume {
        progress = gan.load_checkpoint(path)?;
        with_default_generator(|g| *g = progress.rng);
        if progress.seed != args.seed || progress.batch_size as u64 != args.batch_size {
            say!(
                "note: continuing with the checkpoint's seed {} and batch size {}",
                progress.seed,
                progress.batch_size
            );
        }
        if let Some(lr) = args.lr.filter(|&lr| lr != gan.lr()) {
            say!("note: lr {lr} instead of the checkpoint's {}", gan.lr());
            gan.set_lr(lr);
        }
        say!("resumed {} at iteration {}", path.display(), progress.step);
    }
    Ok((gan, progress))
}

/// On a GPU: the step's matrix products tuned for it (`--autotune`), then the step captured as
/// a CUDA graph (unless `--eager`). Either failing leaves the step as it was, with a note.
fn prepare_gpu_step(gan: &mut Gan, args: &Args, device: &Device, batch_size: usize) {
    let tuning = match args.autotune {
        Autotune::Off => None,
        Autotune::Tiles => Some(Tuning::Tiles),
        Autotune::Splits => Some(Tuning::TilesAndSplits),
    };
    if let (Some(tuning), true) = (tuning, device.is_cuda()) {
        let started = Instant::now();
        match gan.tune_products(batch_size, tuning, TuneOptions::default()) {
            Ok(tuned) => {
                let (planned, chosen) = tuned.iter().fold((0.0, 0.0), |(p, c), t| {
                    (p + t.planned.micros, c + t.chosen.micros)
                });
                let changed = tuned.iter().filter(|t| t.chosen != t.planned).count();
                say!(
                    "tuned the step's {} matrix products for this GPU in {:.1} s: {changed} run \
                     faster another way ({planned:.0} -> {chosen:.0} us, one call of each)",
                    tuned.len(),
                    started.elapsed().as_secs_f64()
                );
            }
            Err(err) => say!("note: the matrix products keep the built-in plan: {err}"),
        }
    }
    if device.is_cuda() && !args.eager {
        // One submission per step instead of a launch per kernel; a short last batch runs
        // eagerly. The results are the same either way.
        match gan.capture_train_step(batch_size) {
            Ok(()) => say!(
                "captured the training step as a CUDA graph ({} kernels)",
                gan.captured_launches().unwrap_or(0)
            ),
            Err(err) => say!("note: running eagerly, the step could not be captured: {err}"),
        }
    }
}

/// `--samples-out`: `--num-samples` images from the trained generator, as an IDX3 file.
fn write_samples_out(
    path: &Path,
    args: &Args,
    gan: &Gan,
    seed: u64,
    device: &Device,
) -> Result<(), Box<dyn Error>> {
    let mut rng = Generator::new(seed ^ SAMPLES_NOISE_SALT);
    write_samples_idx(
        path,
        &gan.generator,
        args.num_samples as usize,
        &mut rng,
        device,
    )?;
    say!("wrote {} samples to {}", args.num_samples, path.display());
    Ok(())
}

/// An error if `--out` holds the checkpoint of a run this one does not continue (unless
/// `--overwrite`): a forgotten `--resume` would otherwise replace hours of training with the
/// first epoch of a new run.
fn refuse_to_replace_another_run(args: &Args, out: &Path) -> Result<(), String> {
    let existing = out.join("checkpoint.safetensors");
    if args.overwrite || !existing.exists() {
        return Ok(());
    }
    let canonical = |path: &std::path::Path| std::fs::canonicalize(path).ok();
    if let Some(resume) = &args.resume {
        if canonical(resume) == canonical(&existing) {
            return Ok(());
        }
    }
    Err(format!(
        "{} holds another run's checkpoint: continue that run with --resume {}, or start \
         this one elsewhere with --out DIR, or replace it with --overwrite",
        out.display(),
        existing.display()
    ))
}

fn select_device(choice: DeviceChoice) -> Result<Device, String> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda(ordinal) => Device::cuda(ordinal).map_err(|err| {
            let err = err.to_string();
            let reason = err
                .strip_prefix(&format!("cuda:{ordinal}: "))
                .unwrap_or(&err);
            format!("--device cuda:{ordinal}: {reason}")
        }),
        DeviceChoice::Auto => Ok(Device::cuda(0).unwrap_or_else(|err| {
            say!("device auto: no usable GPU ({err}); training on the CPU");
            Device::Cpu
        })),
    }
}

/// Says which of the GPU's options a run on the CPU leaves unused, rather than ignoring them
/// silently: with `--device auto` on a machine without a usable GPU, they are the sign that
/// a GPU was expected.
fn note_unused_gpu_options(args: &Args) {
    let given: Vec<&str> = [
        (args.tf32, "--tf32"),
        (args.eager, "--eager"),
        (args.autotune != Autotune::Tiles, "--autotune"),
    ]
    .into_iter()
    .filter_map(|(given, name)| given.then_some(name))
    .collect();
    let plural = if given.len() > 1 { "s" } else { "" };
    if !given.is_empty() {
        say!(
            "note: training on the CPU, which ignores the GPU option{plural} {}",
            given.join(", ")
        );
    }
}

/// The training images, downloading any missing MNIST file first.
fn load_mnist(args: &Args) -> Result<Mnist, Box<dyn Error>> {
    let mirrors = args
        .mirror
        .clone()
        .map_or_else(default_mirrors, |mirror| vec![mirror]);
    let mut bar: Option<ProgressBar> = None;
    let fetched = download_missing(&args.data, &mirrors, &mut |event| match event {
        DownloadEvent::Started {
            file,
            url,
            total_bytes,
        } => {
            let new_bar = ProgressBar::new(total_bytes.unwrap_or(0));
            new_bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            new_bar.set_message(format!("{file} from {url}"));
            bar = Some(new_bar);
        }
        DownloadEvent::Progress { bytes } => {
            if let Some(bar) = &bar {
                bar.inc(bytes);
            }
        }
        DownloadEvent::Failed { url, reason } => {
            if let Some(bar) = bar.take() {
                bar.abandon();
            }
            let last_mirror = mirrors.last().is_some_and(|last| url.starts_with(last));
            let next = if last_mirror {
                ""
            } else {
                "; trying the next mirror"
            };
            complain!("  {url} failed: {reason}{next}");
        }
        DownloadEvent::Finished { file } => {
            if let Some(bar) = bar.take() {
                bar.finish_and_clear();
            }
            say!("downloaded {file} (MD5 verified)");
        }
    });
    let fetched = fetched.map_err(|err| match err {
        ferrograd::Error::Download { file, .. } => format!(
            "could not download {file} from any mirror (each attempt above). Put the MNIST files \
             in {} or point --data (or MNIST_DIR) at a copy, or name another mirror with \
             --mirror (or MNIST_MIRROR)",
            args.data.display()
        ),
        err => err.to_string(),
    })?;
    if !fetched.is_empty() {
        say!("MNIST is in {}", args.data.display());
    }
    Ok(Mnist::load(&args.data, Split::Train)?)
}

/// `gan` and `progress` as they are now, ready to be written as a checkpoint (the values are
/// copied: training may go on while the snapshot is written).
fn checkpoint_snapshot(gan: &Gan, progress: &mut TrainingProgress, batches: u64) -> Snapshot {
    progress.epoch = progress.step / batches;
    progress.rng = with_default_generator(|g| *g);
    gan.checkpoint_snapshot(progress)
}

/// Writes the run's files on a thread of its own, one job at a time and in order, while
/// training goes on: each file is synced to disk before it replaces the previous one (tens of
/// ms for a 35 MB checkpoint, a few for each picture), which the GPU should not wait for.
/// Every write is atomic, so a kill at any moment leaves the previous file intact.
#[derive(Default)]
struct FileWriter {
    in_flight: Option<std::thread::JoinHandle<Result<(), Box<dyn Error + Send + Sync>>>>,
}

impl FileWriter {
    /// Starts `job` once the job before it is done (whose error, if it failed, is returned
    /// here instead).
    fn write(
        &mut self,
        job: impl FnOnce() -> Result<(), Box<dyn Error + Send + Sync>> + Send + 'static,
    ) -> Result<(), Box<dyn Error>> {
        self.finish()?;
        self.in_flight = Some(std::thread::spawn(job));
        Ok(())
    }

    /// Waits until the job in flight, if any, is done.
    fn finish(&mut self) -> Result<(), Box<dyn Error>> {
        match self.in_flight.take() {
            None => Ok(()),
            Some(writer) => Ok(writer
                .join()
                .map_err(|_| "the file writer panicked")?
                .map_err(|err| err.to_string())?),
        }
    }
}

impl Drop for FileWriter {
    /// A run that stops on an error still finishes the job in flight (its own error, if any,
    /// is secondary to the one being reported).
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// `938 batches of 64 (the last of 32)`: how an epoch of `images` cuts into batches, the last
/// one short as with PyTorch's `drop_last=False`.
fn describe_batches(images: usize, batch_size: usize) -> String {
    if images <= batch_size {
        return format!("1 batch of {images}");
    }
    let batches = images.div_ceil(batch_size);
    let last = images - (batches - 1) * batch_size;
    if last == batch_size {
        format!("{batches} batches of {batch_size}")
    } else {
        format!("{batches} batches of {batch_size} (the last of {last})")
    }
}

fn epoch_bar(epoch: u64, epochs: u64, batches: u64, position: u64) -> ProgressBar {
    let bar = ProgressBar::new(batches);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {rate} eta {eta}  {msg}")
            .expect("valid template")
            .with_key(
                "rate",
                |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let _ = write!(out, "{:.1} it/s", state.per_sec()); // as tqdm shows it
                },
            )
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
    bar.set_position(position);
    bar.reset_eta();
    bar
}

/// `, about 12 min left` for the rest of the run at this epoch's pace; nothing once it is done.
fn time_left(seconds: f64) -> String {
    if !(seconds.is_finite() && seconds > 0.0) {
        return String::new();
    }
    let minutes = (seconds / 60.0).round() as u64;
    match minutes {
        0 => format!(", about {seconds:.0} s left"),
        1..=59 => format!(", about {minutes} min left"),
        _ => format!(", about {} h {:02} min left", minutes / 60, minutes % 60),
    }
}

/// Means of the epoch's statistics so far.
#[derive(Default)]
struct RunningMeans {
    count: u64,
    sums: [f64; 4],
}

impl RunningMeans {
    fn add(&mut self, stats: &StepStats) {
        self.count += 1;
        let values = [stats.d_loss, stats.g_loss, stats.d_real, stats.d_fake];
        for (sum, value) in self.sums.iter_mut().zip(values) {
            *sum += f64::from(value);
        }
    }

    fn summary(&self) -> String {
        let n = self.count.max(1) as f64;
        let [d, g, dx, dgz] = self.sums.map(|s| s / n);
        format!("d_loss {d:.3}  g_loss {g:.3}  D(x) {dx:.3}  D(G(z)) {dgz:.3}")
    }
}
