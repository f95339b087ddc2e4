//! Everything before the first step: the device, the data, the output directory, and the GAN,
//! new or resumed (on a GPU, tuned and captured as a CUDA graph).

use std::error::Error;
use std::path::Path;
use std::time::Instant;

use ferrograd::atomic_file::remove_abandoned_temporaries;
use ferrograd::backend::cpu::Bf16Units;
use ferrograd::backend::cuda::kernel_cache::{self, KernelsLoaded};
use ferrograd::backend::cuda::{TuneOptions, Tuning};
use ferrograd::data::download::{default_mirrors, download_missing, DownloadEvent};
use ferrograd::data::{Mnist, Split};
use ferrograd::gan::{Gan, TrainingProgress, CLASSIC_LR};
use ferrograd::rng::with_default_generator;
use ferrograd::{manual_seed, Device};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{directory_of, resume_options, Args, Autotune, DeviceChoice};

/// The device `--device` names, set up as `--tf32` and `--bf16` ask, and the units that run the
/// CPU's BF16 products if `--bf16` is on.
pub fn open_device(args: &Args) -> Result<(Device, Option<Bf16Units>), Box<dyn Error>> {
    let device = select_device(args.device)?;
    match &device {
        Device::Cuda(gpu) => {
            say_kernels_compiled(gpu.kernels_loaded());
            if args.tf32 && !gpu.has_tf32_tensor_cores() {
                say!(
                    "note: --tf32 changes nothing on {}: TF32 tensor cores came with sm_80, so \
                     its matrix products stay FP32",
                    device.description()
                );
            }
        }
        Device::Cpu => note_unused_gpu_options(args),
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
        if !units.faster_than_fp32() {
            say!(
                "note: --bf16 trains slower than FP32 on this processor (no AMX; {}): leave \
                 it out to train faster",
                units.description()
            );
        }
        Some(units)
    } else {
        None
    };
    Ok((device, bf16_units))
}

/// Makes the directories the run writes into, so that a wrong path fails now, not after
/// training, and removes the temporary files a killed run left in `out`.
pub fn prepare_out_dir(args: &Args, out: &Path) -> Result<(), String> {
    if let Some(dir) = args.samples_out.as_deref().filter(|file| file.is_dir()) {
        return Err(format!(
            "--samples-out {}: a directory; name the file to write in it",
            dir.display()
        ));
    }
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
pub fn new_or_resumed_gan(
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

/// On a GPU (or the emulator): the step's matrix products tuned for it (`--autotune`), then the
/// step captured as a CUDA graph (unless `--eager`). Either failing leaves the step as it was,
/// with a note.
pub fn prepare_gpu_step(gan: &mut Gan, args: &Args, device: &Device, batch_size: usize) {
    let tuning = match args.autotune {
        Autotune::Off => None,
        Autotune::Tiles => Some(Tuning::Tiles),
        Autotune::Splits => Some(Tuning::TilesAndSplits),
    };
    if let (Some(tuning), true) = (tuning, device.is_cuda()) {
        let (options, tuned_for) = if args.device.is_emulator() {
            // The emulator's timings say nothing of a GPU's: one call of each runs the path
            // (seconds, where the full tuning takes minutes) without pretending to tune it.
            let once = TuneOptions {
                rounds: 1,
                calls: 1,
            };
            (once, "the emulator")
        } else {
            (TuneOptions::default(), "this GPU")
        };
        let started = Instant::now();
        match gan.tune_products(batch_size, tuning, options) {
            // Only products in the tiled kernel have configurations to choose from.
            Ok(tuned) if tuned.is_empty() => say!(
                "note: nothing to tune: {}",
                if args.tf32 {
                    "with --tf32 the matrix products run in the tensor-core kernel, which has \
                     one configuration"
                } else {
                    "none of the step's matrix products runs in tiles"
                }
            ),
            Ok(tuned) => {
                let (planned, chosen) = tuned.iter().fold((0.0, 0.0), |(p, c), t| {
                    (p + t.planned.micros, c + t.chosen.micros)
                });
                let changed = tuned.iter().filter(|t| t.chosen != t.planned).count();
                say!(
                    "tuned the step's {} matrix products for {tuned_for} in {:.1} s: {changed} \
                     run faster another way ({planned:.0} -> {chosen:.0} us, one call of each)",
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

/// An error if `--out` holds the checkpoint of a run this one does not continue (unless
/// `--overwrite`): a forgotten `--resume` would otherwise replace hours of training with the
/// first epoch of a new run.
pub fn refuse_to_replace_another_run(args: &Args, out: &Path) -> Result<(), String> {
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
        "{} holds another run's checkpoint: continue that run with {}, or start this one \
         elsewhere with --out DIR, or replace it with --overwrite",
        out.display(),
        resume_options(&existing)
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
        DeviceChoice::CudaEmulator => {
            Device::cuda_emulator().map_err(|err| format!("--device cuda-emulator: {err}"))
        }
        DeviceChoice::CudaEmulatorSm75 => Device::cuda_emulator_sm75()
            .map_err(|err| format!("--device cuda-emulator-sm75: {err}")),
        DeviceChoice::Auto => Ok(Device::cuda(0).unwrap_or_else(|err| {
            say!("device auto: no usable GPU ({err}); training on the CPU");
            Device::Cpu
        })),
    }
}

/// Explains the seconds a first run on a GPU spent before anything else: NVRTC compiling our
/// kernels, which later runs read from the cache instead (nothing to say then).
fn say_kernels_compiled(loaded: KernelsLoaded) {
    if loaded.compiled == 0 {
        return;
    }
    let kept = match kernel_cache::cache_dir() {
        Some(dir) => format!("kept in {}: later runs load them at once", dir.display()),
        None => format!("not kept: {} is empty", kernel_cache::CACHE_ENV),
    };
    say!(
        "compiled {} of our kernel files with NVRTC in {:.1} s ({kept})",
        loaded.compiled,
        loaded.seconds
    );
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
pub fn load_mnist(args: &Args) -> Result<Mnist, Box<dyn Error>> {
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
    let mnist = Mnist::load(&args.data, Split::Train).map_err(with_remedy)?;
    if mnist.is_empty() {
        return Err(format!(
            "the training files in {} hold no images: nothing to train on. Remove them and run \
             again to download MNIST",
            args.data.display()
        )
        .into());
    }
    Ok(mnist)
}

/// An error loading MNIST's training files, with what to do where a file is at fault: a damaged
/// file, or another dataset's under MNIST's name, would stay in the way (only missing files
/// are downloaded).
fn with_remedy(err: ferrograd::Error) -> String {
    use ferrograd::Error as Load;
    match err {
        Load::Idx { .. }
        | Load::MnistKind { .. }
        | Load::MnistImageSize { .. }
        | Load::MnistLabel { .. } => {
            format!("{err}. Remove it and run again: a missing file is downloaded")
        }
        Load::MnistCountMismatch { .. } => {
            format!("{err}. Remove them and run again: missing files are downloaded")
        }
        err => err.to_string(),
    }
}
