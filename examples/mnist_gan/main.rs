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
//! reader quit, as in `mnist_gan | head`) stops the run the same way, with status 141. An error
//! that ends a run (a checkpoint that cannot be written: a full disk; training diverging to
//! NaN) says which checkpoint is intact and the `--resume` that continues from it.
//!
//! A run, module by module: `cli` reads the options; `setup` opens the device, finds or
//! downloads MNIST, prepares `--out` and makes the GAN (new, or resumed from a checkpoint);
//! `training` runs the epochs, `progress` draws them, `file_writer` writes each epoch's files
//! while the next one trains; `console` is what the run prints, and how Ctrl-C stops it. The
//! pictures, the loss log and its plot are `../gan_output`, shared with `gan_sample`.

#[macro_use]
mod console;
mod cli;
mod file_writer;
#[path = "../gan_output/mod.rs"]
mod gan_output;
mod progress;
mod setup;
mod training;

use std::error::Error;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use ferrograd::backend::cpu::{rayon_threads_env_warning, start_thread_pool};
use ferrograd::gan::Gan;
use ferrograd::rng::Generator;
use ferrograd::Device;

use cli::{resume_options, Args};
use console::{set_training, stop_on_signals, stop_requested};
use gan_output::write_samples_idx;
use progress::describe_batches;
use setup::{
    load_mnist, new_or_resumed_gan, open_device, prepare_gpu_step, prepare_out_dir,
    refuse_to_replace_another_run,
};
use training::Training;

/// Seeds the noise of `--samples-out`.
const SAMPLES_NOISE_SALT: u64 = 0x5341_4d50; // "SAMP"

fn main() -> ExitCode {
    let result = run(Args::parse());
    match console::stopped_status() {
        Some(status) if result.is_ok() => status,
        _ => gan_output::exit_code(result),
    }
}

fn run(args: Args) -> Result<(), Box<dyn Error>> {
    let out = args.out_dir();
    start_thread_pool(args.threads.map(|threads| threads as usize))?;
    if let (None, Some(warning)) = (args.threads, rayon_threads_env_warning()) {
        complain!("{warning}");
    }
    refuse_to_replace_another_run(&args, &out)?;
    let (device, bf16_units) = open_device(&args)?;
    let mnist = load_mnist(&args)?;
    prepare_out_dir(&args, &out)?;

    let (mut gan, progress) = new_or_resumed_gan(&args, &device)?;
    prepare_gpu_step(&mut gan, &args, &device, progress.batch_size);
    let mut training = Training::new(&args, &out, gan, progress, &mnist, &device)?;
    stop_on_signals()?;
    set_training(true);
    say!(
        "training on {} images, {} per epoch, on {}{}",
        training.loader.len(),
        describe_batches(training.loader.len(), training.progress.batch_size),
        device.description(),
        bf16_units.map_or(String::new(), |units| format!(
            ", BF16 matrix products ({})",
            units.description()
        ))
    );
    if let Err(err) = training.train(&args) {
        return Err(training.with_resume_hint(err));
    }
    set_training(false);
    let checkpoint = training
        .finish()
        .map_err(|err| training.with_resume_hint(err))?;
    if let Some(path) = &checkpoint {
        say!("checkpoint: {}", path.display());
    }
    if stop_requested() {
        match training.resume_point() {
            Some((step, checkpoint)) => say!(
                "stopped at iteration {step}; continue with {}",
                resume_options(checkpoint)
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
