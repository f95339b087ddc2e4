//! Generates digits from a `mnist_gan` checkpoint, without training.
//!
//! `cargo run --release --example gan_sample -- --checkpoint runs/mnist_gan/checkpoint.safetensors`
//! writes an 8 × 8 grid of samples (`samples.png`); `--samples-out FILE` also writes
//! `--num-samples` of them as IDX3 for outside tools.

mod gan_output;

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ferrograd::gan::{load_generator, LATENT_DIM};
use ferrograd::rng::Generator;
use ferrograd::{Device, Tensor};
use gan_output::{generate, write_grid_png, write_samples_idx};

/// Sample digits from a trained mnist_gan generator.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// A checkpoint written by mnist_gan, or any safetensors file holding the generator's
    /// tensors under their names there (`generator.0.weight`, …: a PyTorch generator's
    /// state_dict saved with that prefix).
    #[arg(long, default_value = "runs/mnist_gan/checkpoint.safetensors")]
    checkpoint: PathBuf,
    /// Where to write the 8 × 8 grid.
    #[arg(long, default_value = "samples.png")]
    grid: PathBuf,
    /// Also write samples to this file as IDX3 (28 × 28 unsigned bytes).
    #[arg(long)]
    samples_out: Option<PathBuf>,
    /// How many samples --samples-out writes (IDX counts them in 32 bits).
    #[arg(
        long,
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..=u32::MAX.into())
    )]
    num_samples: u64,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> ExitCode {
    gan_output::exit_code(run(Args::parse()))
}

fn run(args: Args) -> Result<(), Box<dyn Error>> {
    if !args.checkpoint.exists() {
        return Err(format!(
            "no checkpoint at {}: train one with `cargo run --release --example mnist_gan`, or \
             name one with --checkpoint",
            args.checkpoint.display()
        )
        .into());
    }
    let device = Device::Cpu;
    let generator = load_generator(&args.checkpoint, &device)?;
    let mut rng = Generator::new(args.seed);
    let noise = Tensor::randn_with(&[64, LATENT_DIM], &device, &mut rng);
    write_grid_png(&args.grid, &generate(&generator, &noise), 8)?;
    println!("wrote an 8 × 8 grid to {}", args.grid.display());
    if let Some(path) = &args.samples_out {
        write_samples_idx(
            path,
            &generator,
            args.num_samples as usize,
            &mut rng,
            &device,
        )?;
        println!("wrote {} samples to {}", args.num_samples, path.display());
    }
    Ok(())
}
