//! Generates digits from a `mnist_gan` checkpoint, without training.
//!
//! `cargo run --release --example gan_sample -- --checkpoint runs/mnist_gan/checkpoint.safetensors`
//! writes an 8 × 8 grid of samples (`samples.png`); `--interpolate` makes the grid a walk through
//! the latent space instead; `--samples-out FILE` also writes `--num-samples` samples as IDX3
//! for outside tools.

mod gan_output;

use std::error::Error;
use std::io::Write;
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
    /// Where to write the 8 × 8 grid, a PNG image.
    #[arg(long, default_value = "samples.png", value_parser = png_path)]
    grid: PathBuf,
    /// Make the grid a walk through the latent space, read like text: each row goes from one
    /// noise vector to the next in 8 steps (its last image is the next row's first), along the
    /// great circle between them (spherical interpolation).
    #[arg(long)]
    interpolate: bool,
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

/// `--grid`'s value. The grid is written as PNG whatever the name says, so a name with another
/// extension (`grid.jpg`) is refused before anything is generated, rather than given PNG bytes
/// an image viewer would misread. A name without one (`/dev/stdout`) is taken as it is.
fn png_path(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("an empty name".into());
    }
    let path = PathBuf::from(text);
    match path.extension() {
        Some(extension) if !extension.eq_ignore_ascii_case("png") => Err(format!(
            "the grid is a PNG image, not .{}; name it {}",
            extension.to_string_lossy(),
            path.with_extension("png").display()
        )),
        _ => Ok(path),
    }
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
    let noise = if args.interpolate {
        latent_walk(&mut rng, &device)
    } else {
        Tensor::randn_with(&[64, LATENT_DIM], &device, &mut rng)
    };
    write_grid_png(&args.grid, &generate(&generator, &noise), 8)?;
    let what = if args.interpolate {
        "a walk through the latent space"
    } else {
        "samples"
    };
    say(format_args!(
        "wrote an 8 × 8 grid of {what} to {}",
        args.grid.display()
    ));
    if let Some(path) = &args.samples_out {
        write_samples_idx(
            path,
            &generator,
            args.num_samples as usize,
            &mut rng,
            &device,
        )?;
        say(format_args!(
            "wrote {} samples to {}",
            args.num_samples,
            path.display()
        ));
    }
    Ok(())
}

/// Says what was written. Standard output gone (the reader of a pipe quit) is no reason to
/// stop: `println!` would panic there, before the samples that follow are written.
fn say(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// 64 noise vectors in 8 rows of 8: nine anchors drawn from N(0, I), row r going from anchor r
/// (its first column) to anchor r + 1 (its last), so that each row ends where the next begins.
fn latent_walk(rng: &mut Generator, device: &Device) -> Tensor {
    const STEPS: usize = 8;
    let anchors = Tensor::randn_with(&[STEPS + 1, LATENT_DIM], device, rng).to_vec();
    let anchor = |i: usize| &anchors[i * LATENT_DIM..(i + 1) * LATENT_DIM];
    let mut noise = Vec::with_capacity(STEPS * STEPS * LATENT_DIM);
    for row in 0..STEPS {
        for col in 0..STEPS {
            let t = col as f64 / (STEPS - 1) as f64;
            noise.extend(slerp(anchor(row), anchor(row + 1), t));
        }
    }
    Tensor::from_vec(noise, &[STEPS * STEPS, LATENT_DIM], device)
}

/// Spherical interpolation from `a` (t = 0) to `b` (t = 1), Ω the angle between them:
///
///   slerp(a, b, t) = sin((1 − t)·Ω) / sin Ω · a + sin(t·Ω) / sin Ω · b
///
/// Why not a straight line: in 100 dimensions nearly every draw of N(0, I) has a norm near 10,
/// and two draws are nearly orthogonal, so the midpoint of the line between them has a norm
/// near 10/√2, where the generator saw no noise while it trained. Along the great circle the
/// norm stays near theirs (T. White, "Sampling Generative Networks", 2016). t = 0 and t = 1 give
/// `a` and `b` exactly; nearly parallel vectors (sin Ω ≈ 0) fall back to the straight line.
fn slerp(a: &[f32], b: &[f32], t: f64) -> Vec<f32> {
    let dot = |x: &[f32], y: &[f32]| -> f64 {
        x.iter()
            .zip(y)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum()
    };
    let cos = dot(a, b) / (dot(a, a) * dot(b, b)).sqrt();
    let omega = cos.clamp(-1.0, 1.0).acos();
    let sin = omega.sin();
    let (from_a, from_b) = if sin >= 1e-6 {
        (((1.0 - t) * omega).sin() / sin, (t * omega).sin() / sin)
    } else {
        (1.0 - t, t) // also where a norm is 0, and Ω is NaN
    };
    a.iter()
        .zip(b)
        .map(|(&a, &b)| (from_a * f64::from(a) + from_b * f64::from(b)) as f32)
        .collect()
}
