//! Times ferrograd on one device: the full GAN training iteration, the GEMM at the GAN's
//! shapes (and a large square one), and an elementwise kernel's memory bandwidth. The GPU
//! speed work compares these with PyTorch on the same GPU (`scripts/bench-gpu.sh`).
//!
//! `cargo run --release --example gan_bench -- --device cuda`
//!
//! Each figure is the median of several timed runs after a warm-up; a run ends by reading a
//! value back, which waits for the device to finish.
//!
//! `timing` times each figure (the iteration, the products, tanh); `breakdown` prints where an
//! iteration's GPU time goes and what the autotuner chose; `gemm_sweep` times every product of
//! the step at every split of k (`--gemm-sweep`).

mod breakdown;
#[path = "../closed_pipe/mod.rs"]
mod closed_pipe;
mod gemm_sweep;
mod timing;

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use ferrograd::backend::cpu::{rayon_threads_env_warning, start_thread_pool, Bf16Units};
use ferrograd::backend::cuda::{TuneOptions, Tuning};
use ferrograd::gan::{Gan, IMAGE_DIM};
use ferrograd::{manual_seed, no_grad, Device, Tensor};

use breakdown::{print_kernel_times, print_tuning};
use gemm_sweep::sweep_gemm_splits;
use timing::{time_iterations, time_products, time_tanh};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DeviceChoice {
    Cpu,
    Cuda,
    /// The CUDA kernels on the CPU emulator (slow: for checking the bench itself).
    CudaEmulator,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Autotune {
    Tiles,
    Splits,
}

/// Time the GAN iteration, the GEMM and an elementwise kernel on one device.
#[derive(Debug, Parser)]
struct Args {
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    device: DeviceChoice,
    /// Timed runs per figure (the median is reported).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..))]
    repeats: u64,
    /// Fewer, smaller measurements (for the emulator, or a quick look).
    #[arg(long)]
    quick: bool,
    /// Time only the training iteration (for profiling it).
    #[arg(long)]
    iteration_only: bool,
    /// CUDA: also time each kernel of the eager iteration (events around every launch) and
    /// print where an iteration's GPU time goes, kernel by kernel.
    #[arg(long)]
    kernel_times: bool,
    /// Let CUDA matrix products use TF32 tensor cores.
    #[arg(long)]
    tf32: bool,
    /// CPU: matrix products in BF16 on Intel AMX tiles or with AVX512-BF16, FP32 sums
    /// (`set_allow_bf16`).
    #[arg(long)]
    bf16: bool,
    /// CUDA (sm_90 and later): launch kernels with programmatic dependent launch, each one
    /// scheduled while the one before it still runs.
    #[arg(long)]
    pdl: bool,
    /// CUDA: the FP32 products in 32 × 32 tiles of 128 threads instead of 64 × 64 tiles of 256
    /// (the same bits; a tuning sweep: `set_small_tiles`).
    #[arg(long)]
    small_tiles: bool,
    /// CUDA: tune the step's matrix products for this GPU first (`Gan::tune_products`):
    /// their tiles (the same bits) or their tiles and splits; each product's times printed.
    #[arg(long, value_enum)]
    autotune: Option<Autotune>,
    /// CUDA: how many blocks split-K cuts a small product into, at least (a tuning sweep;
    /// default 128, about one per SM of an H100).
    #[arg(long)]
    split_k_blocks: Option<usize>,
    /// CUDA: the least k one split-K block sums (a tuning sweep; default 128).
    #[arg(long)]
    split_k_min_k: Option<usize>,
    /// CUDA: time every matrix product of the training iteration (forward, both gradients,
    /// each batch size) with k split into 1, 2, 3, 4, 6, 8, … chunks, beside the split the
    /// plan picks, then the iteration with each product at its best split beside the
    /// iteration as planned: the data for split-K's plan (then exit).
    #[arg(long)]
    gemm_sweep: bool,
}

fn main() -> ExitCode {
    closed_pipe::end_quietly_when_the_reader_quits();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // PyTorch's default, which `benches/gan_pytorch.py` runs beside this.
    start_thread_pool(None)?;
    if let Some(warning) = rayon_threads_env_warning() {
        eprintln!("{warning}");
    }
    let device = match args.device {
        DeviceChoice::Cpu => Device::Cpu,
        DeviceChoice::Cuda => Device::cuda(0)?,
        DeviceChoice::CudaEmulator => Device::cuda_emulator()?,
    };
    let setup = apply_options(&args, &device)?;
    println!("{}", header(&args, &device, &setup));
    let (iters, repeats) = if args.quick {
        (2, 3)
    } else {
        (20, args.repeats as usize)
    };

    manual_seed(1);
    if args.gemm_sweep {
        let Device::Cuda(cuda) = &device else {
            return Err("--gemm-sweep times CUDA kernels: use --device cuda".into());
        };
        return Ok(sweep_gemm_splits(cuda, repeats, args.quick)?);
    }
    if let Some(autotune) = args.autotune {
        let tuning = match autotune {
            Autotune::Tiles => Tuning::Tiles,
            Autotune::Splits => Tuning::TilesAndSplits,
        };
        let options = if args.quick {
            TuneOptions {
                rounds: 1,
                calls: 1,
            }
        } else {
            TuneOptions::default()
        };
        // The choices are the device's: they hold for every GAN made on it from now on.
        let mut gan = Gan::new(&device, 2e-4);
        print_tuning(&gan.tune_products(64, tuning, options)?);
    }
    let real = Tensor::uniform(&[64, IMAGE_DIM], -1.0, 1.0, &device);
    time_iterations(&device, &real, repeats, iters)?;
    if let (true, Device::Cuda(cuda)) = (args.kernel_times, &device) {
        print_kernel_times(cuda, &real, if args.quick { 2 } else { 20 });
    }
    if args.iteration_only {
        return Ok(());
    }
    let _recording_off = no_grad();
    time_products(&device, args.quick, repeats, iters)?;
    time_tanh(&device, args.quick, repeats, iters)?;
    Ok(())
}

/// What the options set before anything runs, as far as the header reports it.
struct Setup {
    bf16_units: Option<Bf16Units>,
    /// `FERROGRAD_KERNEL_DEFINES`: the kernels' compile-time parameters, if any are set.
    defines: Vec<String>,
}

/// Applies the options that switch the engine's process-wide settings.
fn apply_options(args: &Args, device: &Device) -> Result<Setup, Box<dyn std::error::Error>> {
    ferrograd::backend::cuda::set_allow_tf32(args.tf32);
    let bf16_units = if args.bf16 {
        let units =
            ferrograd::backend::cpu::enable_bf16().map_err(|why| format!("--bf16: {why}"))?;
        Some(units)
    } else {
        None
    };
    ferrograd::backend::cuda::set_small_tiles(args.small_tiles);
    if let (true, Device::Cuda(cuda)) = (args.pdl, device) {
        cuda.set_programmatic_launch(true)?;
    }
    if let Some(blocks) = args.split_k_blocks {
        ferrograd::backend::cuda::set_split_k_blocks(blocks);
    }
    if let Some(k) = args.split_k_min_k {
        ferrograd::backend::cuda::set_split_k_min_k(k);
    }
    let defines = ferrograd::backend::cuda::nvrtc::kernel_defines()?;
    if args.device == DeviceChoice::CudaEmulator && !defines.is_empty() {
        // The emulator has kernels/sweep.txt's variants compiled in: a dry run of the GPU
        // benchmark's sweep runs the variant each of its lines names (others are refused).
        ferrograd::backend::cuda::emulator::set_kernel_defines(&defines.join(" "))?;
    }
    Ok(Setup {
        bf16_units,
        defines,
    })
}

/// The first line: the version, the device and every setting that changes the figures.
fn header(args: &Args, device: &Device, setup: &Setup) -> String {
    let mut line = format!(
        "ferrograd {} on {}",
        env!("CARGO_PKG_VERSION"),
        device.description()
    );
    if args.device == DeviceChoice::Cpu {
        line += &format!(", {}", ferrograd::backend::cpu::describe_processor());
    }
    if let Device::Cuda(gpu) = device {
        // Before the defines: benches/gpu_table.py reads those to the end of the line.
        let loaded = gpu.kernels_loaded();
        if loaded.compiled > 0 {
            line += &format!(
                ", {} kernel files compiled by NVRTC in {:.1} s",
                loaded.compiled, loaded.seconds
            );
        }
    }
    if !setup.defines.is_empty() && args.device != DeviceChoice::Cpu {
        line += &format!(", kernels compiled with {}", setup.defines.join(" "));
    }
    match device {
        Device::Cuda(gpu) if args.tf32 && !gpu.has_tf32_tensor_cores() => {
            // Not "TF32" in capitals: benches/gpu_table.py reads that as a TF32 run.
            line += ", FP32 matrix products (--tf32 ignored: no such tensor cores before sm_80)";
        }
        _ if args.tf32 => line += ", TF32 matrix products",
        _ => {}
    }
    if let Some(units) = setup.bf16_units {
        line += &format!(", BF16 matrix products ({})", units.description());
    }
    if args.pdl {
        line += ", programmatic dependent launch";
    }
    if args.small_tiles {
        line += ", 32 × 32 GEMM tiles";
    }
    if args.split_k_blocks.is_some() || args.split_k_min_k.is_some() {
        line += &format!(
            ", split-K aiming for {} blocks of k >= {}",
            ferrograd::backend::cuda::split_k_blocks(),
            args.split_k_min_k.unwrap_or(128)
        );
    }
    match args.autotune {
        None => {}
        Some(Autotune::Tiles) => line += ", GEMM tiles autotuned",
        Some(Autotune::Splits) => line += ", GEMM tiles and splits autotuned",
    }
    line
}
