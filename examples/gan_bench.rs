//! Times ferrograd on one device: the full GAN training iteration, the GEMM at the GAN's
//! shapes (and a large square one), and an elementwise kernel's memory bandwidth. The GPU
//! speed work compares these with PyTorch on the same GPU (`scripts/bench-gpu.sh`).
//!
//! `cargo run --release --example gan_bench -- --device cuda`
//!
//! Each figure is the median of several timed runs after a warm-up; a run ends by reading a
//! value back, which waits for the device to finish.

use std::time::Instant;

use clap::{Parser, ValueEnum};
use ferrograd::backend::cpu::Bf16Units;
use ferrograd::backend::cuda::launch::{Dim3, GemmPlan};
use ferrograd::backend::cuda::tuning::Timed;
use ferrograd::backend::cuda::{
    set_small_tiles, set_split_k_for, set_split_k_override, CudaDevice, CudaStorage, TuneOptions,
    TunedProduct, Tuning,
};
use ferrograd::backend::{BackendStorage, GemmDims, Identity};
use ferrograd::gan::{Gan, PendingStats, IMAGE_DIM, LAYERS};
use ferrograd::nn::functional::linear;
use ferrograd::{graph, manual_seed, no_grad, Device, Tensor};

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
    #[arg(long, default_value_t = 7)]
    repeats: usize,
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
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
        (20, args.repeats)
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
    if !setup.defines.is_empty() && args.device != DeviceChoice::Cpu {
        line += &format!(", kernels compiled with {}", setup.defines.join(" "));
    }
    if args.tf32 {
        line += ", TF32 matrix products";
    }
    match setup.bf16_units {
        Some(Bf16Units::Amx) => line += ", BF16 matrix products (AMX)",
        Some(Bf16Units::Avx512Bf16) => line += ", BF16 matrix products (AVX512-BF16)",
        None => {}
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

/// The training iteration on `real`, eager and (on a GPU) as a CUDA graph, each in three
/// ways of reading its losses.
fn time_iterations(
    device: &Device,
    real: &Tensor,
    repeats: usize,
    iters: usize,
) -> ferrograd::Result<()> {
    let mut modes = vec!["eager"];
    if device.is_cuda() {
        modes.push("CUDA graph");
    }
    for mode in modes {
        // As a training loop reads its losses every step (one wait per step), as a loop that
        // queues steps and reads them now and then does, and as mnist_gan does: each batch
        // uploaded from the host, each step's losses read once the next step is queued.
        let labels = [
            "stats read each step",
            "queued",
            "pipelined: batch uploaded, stats read a step later",
        ];
        let host_batch = real.to_vec();
        for label in labels {
            // Each figure from the GAN as first made. Trained long on its one batch of noise,
            // D tells it from G's output with certainty (D(G(z)) ~ 1e-17 after ~550 steps),
            // its gradients turn subnormal, and the CPU's step slows down (benches/RESULTS.md,
            // seventeenth session): no figure should depend on how many came before it.
            manual_seed(1);
            let mut gan = Gan::new(device, 2e-4);
            if mode == "CUDA graph" {
                gan.capture_train_step(64)?;
                if label == labels[0] {
                    println!(
                        "captured the step: {} launches per replay",
                        gan.captured_launches().unwrap_or(0)
                    );
                }
            }
            let mut in_flight: Option<PendingStats> = None;
            let us = median_us(device, repeats, iters, || match label {
                "queued" => gan.train_step_async(real),
                "stats read each step" => {
                    gan.train_step_async(real);
                    std::hint::black_box(gan.last_stats());
                }
                _ => {
                    // As mnist_gan: a batch made on the host, handed to the step.
                    let batch = Tensor::from_vec(host_batch.clone(), real.shape(), &Device::Cpu);
                    gan.train_step_async(&batch);
                    let queued = gan.last_stats_later().expect("a step has just run");
                    if let Some(previous) = in_flight.replace(queued) {
                        std::hint::black_box(previous.wait());
                    }
                }
            });
            println!(
                "training iteration (batch 64, {mode}, {label}): {us:.1} us/iter, {:.0} images/s",
                64e6 / us
            );
        }
    }
    Ok(())
}

/// How a figure was timed: on a GPU, kernel time over `calls` calls in a CUDA graph.
fn timing_method(device: &Device, calls: usize) -> String {
    if device.is_cuda() {
        format!("kernel time: {calls} calls in a CUDA graph")
    } else {
        "per call".to_string()
    }
}

/// `X·Wᵀ` at the GAN's batch-64 shapes, then a large square product.
fn time_products(
    device: &Device,
    quick: bool,
    repeats: usize,
    iters: usize,
) -> ferrograd::Result<()> {
    let mut shapes: Vec<_> = LAYERS.iter().map(|&(inp, out)| (64, inp, out)).collect();
    shapes.push(if quick {
        (256, 256, 256)
    } else if device.is_cuda() {
        (4096, 4096, 4096)
    } else {
        (1024, 1024, 1024)
    });
    for (m, k, n) in shapes {
        let operand_bytes = 4 * (m * k + k * n);
        let (copies, calls) = if device.is_cuda() && !quick {
            gpu_rotation(operand_bytes)
        } else {
            (1, iters) // as benches/numpy_sgemm.py, which the CPU figures are compared with
        };
        let xs: Vec<_> = (0..copies)
            .map(|_| Tensor::uniform(&[m, k], -1.0, 1.0, device))
            .collect();
        let ws: Vec<_> = (0..copies)
            .map(|_| Tensor::uniform(&[n, k], -1.0, 1.0, device))
            .collect();
        let us = kernel_median_us(device, repeats, calls, |i| {
            std::hint::black_box(linear(&xs[i % copies], &ws[i % copies], None));
        })?;
        let gflops = 2.0 * (m * k * n) as f64 / us / 1e3;
        let how = timing_method(device, calls);
        println!("gemm {m}x{k}x{n} (X·Wᵀ, {how}): {us:.1} us, {gflops:.1} GFLOP/s");
    }
    Ok(())
}

/// `tanh` over 2²⁴ floats (2¹⁶ quick): an elementwise kernel's bandwidth.
fn time_tanh(device: &Device, quick: bool, repeats: usize, iters: usize) -> ferrograd::Result<()> {
    let len = if quick { 1 << 16 } else { 1 << 24 };
    let x = Tensor::uniform(&[len], -1.0, 1.0, device);
    let calls = if device.is_cuda() && !quick {
        gpu_rotation(2 * 4 * len).1
    } else {
        iters
    };
    let us = kernel_median_us(device, repeats, calls, |_| {
        std::hint::black_box(x.tanh());
    })?;
    let bytes = 2.0 * 4.0 * len as f64; // read + write
    println!(
        "tanh over {len} floats ({}): {us:.1} us, {:.1} GB/s (read + write)",
        timing_method(device, calls),
        bytes / us / 1e3
    );
    Ok(())
}

/// What the autotuner chose for each product, and the sum over them.
fn print_tuning(tuned: &[TunedProduct]) {
    let show = |t: &Timed| {
        let tiles = if t.choice.small_tiles { 32 } else { 64 };
        format!(
            "{} splits, {tiles} x {tiles} tiles, {:.1} us",
            t.choice.splits, t.micros
        )
    };
    for t in tuned {
        let GemmDims {
            m,
            k,
            n,
            lhs_transposed,
            rhs_transposed,
        } = t.product.dims;
        let layout = match (lhs_transposed, rhs_transposed) {
            (false, false) => "A·B",
            (false, true) => "A·Bᵀ",
            (true, false) => "Aᵀ·B",
            (true, true) => "Aᵀ·Bᵀ",
        };
        println!(
            "autotune {m}x{k}x{n} {layout}{}: planned {} | chosen {}",
            if t.product.row_sums {
                " with row sums"
            } else {
                ""
            },
            show(&t.planned),
            show(&t.chosen)
        );
    }
    let (planned, chosen) = tuned.iter().fold((0.0, 0.0), |(p, c), t| {
        (p + t.planned.micros, c + t.chosen.micros)
    });
    println!(
        "autotune total over {} distinct products: planned {planned:.1} us, chosen {chosen:.1} us ({:.2}x)",
        tuned.len(),
        planned / chosen
    );
}

/// Times every kernel of `steps` eager training iterations (a fresh GAN: the bench's own
/// replays a graph, one submission) and prints them grouped by kernel and grid, the costliest
/// first.
fn print_kernel_times(cuda: &CudaDevice, real: &Tensor, steps: usize) {
    let mut gan = Gan::new(real.device(), 2e-4);
    for _ in 0..2 {
        gan.train_step_async(real); // warm-up: kernels compiled, buffers cached
    }
    cuda.set_kernel_timing(true);
    cuda.take_kernel_times(); // only the timed steps' kernels
    for _ in 0..steps {
        gan.train_step_async(real);
    }
    let times = cuda.take_kernel_times();
    cuda.set_kernel_timing(false);
    // (name, grid) → (launches, µs), in the order first launched.
    let mut groups: Vec<((String, Dim3), usize, f64)> = Vec::new();
    for time in &times {
        let key = (time.name.clone(), time.config.grid);
        match groups.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, launches, micros)) => {
                *launches += 1;
                *micros += time.micros;
            }
            None => groups.push((key, 1, time.micros)),
        }
    }
    groups.sort_by(|a, b| b.2.total_cmp(&a.2));
    let total: f64 = times.iter().map(|t| t.micros).sum();
    let per_step = |x: f64| x / steps as f64;
    println!(
        "kernel times (eager iteration, {} launches, sum of kernel durations): {:.1} us/iter",
        times.len() / steps,
        per_step(total)
    );
    for ((name, grid), launches, micros) in groups {
        println!(
            "kernel {name} grid {}x{}x{}: {} per iter, {:.1} us each, {:.1} us/iter ({:.1}%)",
            grid.x,
            grid.y,
            grid.z,
            launches / steps,
            micros / launches as f64,
            per_step(micros),
            100.0 * micros / total
        );
    }
}

/// One matrix product of the training iteration, as the step launches it.
struct StepProduct {
    what: String,
    dims: GemmDims,
    /// How often an iteration runs it.
    per_iteration: usize,
    /// A weight gradient: the product and its bias gradient (the row sums of `∂L/∂z`), as
    /// `linear`'s backward asks for them.
    with_row_sums: bool,
}

/// Every matrix product of one training iteration at batch 64 (`Gan::train_step`): G's layers
/// run forward on 64 rows in both steps; D's on 128 rows (real and fake) in the D step and on
/// 64 in the G step. Weight gradients: D's in the D step, G's in the G step. Input gradients:
/// every layer a backward pass goes through but its first (D's layer 1 in the G step: the
/// gradient reaches G through it).
fn step_products() -> Vec<StepProduct> {
    let mut products = Vec::new();
    for (index, &(inputs, outputs)) in LAYERS.iter().enumerate() {
        let (net, layer) = if index < 4 {
            ("G", index + 1)
        } else {
            ("D", index - 3)
        };
        let mut add = |pass: &str, batch, dims: GemmDims, per_iteration, with_row_sums| {
            products.push(StepProduct {
                what: format!("{net} layer {layer} {pass}, batch {batch}"),
                dims,
                per_iteration,
                with_row_sums,
            })
        };
        let dims = |m, k, n, lhs_transposed, rhs_transposed| GemmDims {
            m,
            k,
            n,
            lhs_transposed,
            rhs_transposed,
        };
        // (batch, runs per iteration) of the forward passes, the batch of the backward pass
        // that updates this layer's weights, and those of the passes that go through it.
        let (forward, weights, through): (&[(usize, usize)], usize, &[usize]) = match net {
            "G" => (&[(64, 2)], 64, &[64]),
            _ => (&[(128, 1), (64, 1)], 128, &[128, 64]),
        };
        for &(batch, runs) in forward {
            // X·Wᵀ: [batch, in] · [out, in]ᵀ.
            add(
                "forward",
                batch,
                dims(batch, inputs, outputs, false, true),
                runs,
                false,
            );
        }
        // ∂L/∂W = (∂L/∂z)ᵀ · X: [batch, out]ᵀ · [batch, in].
        add(
            "weight grad",
            weights,
            dims(outputs, weights, inputs, true, false),
            1,
            true,
        );
        for &batch in through {
            // ∂L/∂X = ∂L/∂z · W: [batch, out] · [out, in].
            let first_of_pass = layer == 1 && (net == "G" || batch == 128);
            if !first_of_pass {
                add(
                    "input grad",
                    batch,
                    dims(batch, outputs, inputs, false, false),
                    1,
                    false,
                );
            }
        }
    }
    products
}

/// `--gemm-sweep`: each product of [`step_products`] timed at the split the plan picks and at
/// 1, 2, 3, 4, 6, 8, … splits (kernel time, operands warm in L2 as in the step), then the
/// iteration's total both ways. The products are timed plain: in the step, the backward ones
/// also read ∂L/∂y through an activation's rule (a few more instructions per k-slice, the same
/// for every split), which the captured iteration timed at the end includes.
fn sweep_gemm_splits(cuda: &CudaDevice, repeats: usize, quick: bool) -> ferrograd::Result<()> {
    let mut products = step_products();
    let (calls, asked): (usize, &[usize]) = if quick {
        products.truncate(2);
        (2, &[1, 2])
    } else {
        (100, &[1, 2, 3, 4, 6, 8, 12, 16, 24, 32])
    };
    let (mut planned_total, mut best_total, mut small_total) = (0.0, 0.0, 0.0);
    let mut best_splits = Vec::new();
    for product in &products {
        let swept = sweep_product(cuda, product, repeats, calls, asked)?;
        let per_iteration = product.per_iteration as f64;
        planned_total += swept.planned_us * per_iteration;
        best_total += swept.best.1 * per_iteration;
        small_total += swept.small_or_best_us * per_iteration;
        best_splits.push((product.dims, swept.best.0));
    }
    println!(
        "gemm sweep total: the iteration's products take {planned_total:.1} us as planned, \
         {best_total:.1} us at each one's best split ({:.2}x)",
        planned_total / best_total
    );
    println!(
        "gemm sweep total with small tiles where they are faster: {small_total:.1} us ({:.2}x as planned)",
        planned_total / small_total
    );
    let device = Device::Cuda(cuda.clone());
    let [planned, tuned] = iteration_at_splits(&device, &best_splits, repeats, quick)?;
    println!(
        "training iteration (batch 64, CUDA graph, queued, each product at its swept best \
         split): {tuned:.1} us/iter, {:.0} images/s; as planned in the same turns: \
         {planned:.1} us/iter ({:.2}x)",
        64e6 / tuned,
        planned / tuned
    );
    Ok(())
}

/// What [`sweep_product`] found for one product, in µs of kernel time.
struct SweptProduct {
    /// At the split the plan picks.
    planned_us: f64,
    /// The fastest split, and its time (the planned one's where none beats it).
    best: (usize, f64),
    /// In 32 × 32 tiles at the best split, if faster; else `best`'s time.
    small_or_best_us: f64,
}

/// One product of the step timed at its planned split and at each split of `asked`, then in
/// 32 × 32 tiles at the fastest, a line printed for each.
fn sweep_product(
    cuda: &CudaDevice,
    product: &StepProduct,
    repeats: usize,
    calls: usize,
    asked: &[usize],
) -> ferrograd::Result<SweptProduct> {
    let device = Device::Cuda(cuda.clone());
    let random = |len: usize| {
        let values = Tensor::uniform(&[len], -1.0, 1.0, &device).to_vec();
        CudaStorage::from_vec(values, cuda)
    };
    let GemmDims { m, k, n, .. } = product.dims;
    let (a, b) = (random(m * k), random(k * n));
    let time = |splits: Option<usize>| {
        set_split_k_override(splits);
        let us = kernel_median_us(&device, repeats, calls, |_| {
            if product.with_row_sums {
                std::hint::black_box(a.gemm_with_lhs_row_sums(&b, product.dims, None));
            } else {
                std::hint::black_box(a.gemm(&b, None, product.dims, &Identity));
            }
        });
        set_split_k_override(None);
        us
    };
    let splits_of = |plan| match plan {
        GemmPlan::Tiled { splits, .. } => splits,
        GemmPlan::Large => 1,
    };
    let planned = (splits_of(GemmPlan::for_product(product.dims)), time(None)?);
    let mut swept: Vec<(usize, f64)> = Vec::new();
    // A one-column product runs as `gemv`, which does not split k.
    let one_column = n == 1 && !product.dims.lhs_transposed;
    for &splits in if one_column { &[] } else { asked } {
        let splits = splits_of(GemmPlan::with_splits(k, splits));
        if swept.iter().all(|&(done, _)| done != splits) {
            swept.push((splits, time(Some(splits))?));
        }
    }
    let best = swept
        .iter()
        .copied()
        .fold(planned, |best, t| if t.1 < best.1 { t } else { best });
    let row: Vec<String> = swept
        .iter()
        .map(|(s, us)| format!("{s}: {us:.1}"))
        .collect();
    println!(
        "gemm sweep {m}x{k}x{n} ({}, x{}/iter): planned {} splits {:.1} us | {} | best {} splits {:.1} us",
        product.what,
        product.per_iteration,
        planned.0,
        planned.1,
        row.join(", "),
        best.0,
        best.1
    );
    if one_column {
        return Ok(SweptProduct {
            planned_us: planned.1,
            best,
            small_or_best_us: best.1,
        });
    }
    // The same product in 32 × 32 tiles at its best split: the data for set_small_tiles.
    set_small_tiles(true);
    let small = time(Some(best.0));
    set_small_tiles(false);
    let small = small?;
    println!(
        "gemm sweep in small tiles {m}x{k}x{n}: {small:.1} us at {} splits ({:.2}x the 64 x 64 tiles)",
        best.0,
        best.1 / small
    );
    Ok(SweptProduct {
        planned_us: planned.1,
        best,
        small_or_best_us: small.min(best.1),
    })
}

/// The captured iteration's µs with every product as planned, then with each of
/// `splits_for` at its split: `[planned, at those splits]`, medians of turns taken in
/// alternation (the machine's noise hits both alike). Kernel times of products alone do not
/// add up to a step, where products follow each other and the pairs share launches.
fn iteration_at_splits(
    device: &Device,
    splits_for: &[(GemmDims, usize)],
    repeats: usize,
    quick: bool,
) -> ferrograd::Result<[f64; 2]> {
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..if quick { 1 } else { 3 } {
        for (tuned, times) in times.iter_mut().enumerate() {
            for &(dims, splits) in splits_for {
                set_split_k_for(dims, (tuned == 1).then_some(splits));
            }
            times.push(captured_iteration_us(
                device,
                repeats,
                if quick { 2 } else { 20 },
            )?);
        }
    }
    for &(dims, _) in splits_for {
        set_split_k_for(dims, None);
    }
    Ok(times.map(|mut t| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    }))
}

/// A fresh GAN's training step captured as a CUDA graph (with the plans in force now), then
/// timed replaying it queued: µs per iteration.
fn captured_iteration_us(device: &Device, repeats: usize, iters: usize) -> ferrograd::Result<f64> {
    manual_seed(1);
    let mut gan = Gan::new(device, 2e-4);
    gan.capture_train_step(64)?;
    let real = Tensor::uniform(&[64, IMAGE_DIM], -1.0, 1.0, device);
    Ok(median_us(device, repeats, iters, || {
        gan.train_step_async(&real)
    }))
}

/// How a GPU microbenchmark runs each of its calls on its own copy of the operands, `(copies,
/// calls per graph)`: copies enough that those in rotation hold 128 MiB, more than twice the
/// L2 of an H100 (as `benches/cuda_reference.py` does for cuBLAS), so no call finds its inputs
/// in L2 where an earlier one left them; and calls enough that a replay's own launch and the
/// wait after it (tens of µs) weigh a few per cent.
fn gpu_rotation(operand_bytes: usize) -> (usize, usize) {
    let copies = (128usize << 20).div_ceil(operand_bytes).clamp(1, 1024);
    let calls = if copies == 1 { 20 } else { copies.max(200) };
    (copies, calls)
}

/// The time per call of `f(i)` (`i` counting the calls), in µs: on CUDA, `calls` calls captured
/// in a graph and replayed, so that the GPU runs the kernels back to back and the host's
/// launch overhead is left out (the median of `repeats` replays); on the CPU, [`median_us`].
fn kernel_median_us(
    device: &Device,
    repeats: usize,
    calls: usize,
    f: impl Fn(usize),
) -> ferrograd::Result<f64> {
    if !device.is_cuda() {
        let mut call = 0;
        return Ok(median_us(device, repeats, calls, || {
            f(call);
            call += 1;
        }));
    }
    f(0); // compiles the kernels: no compiling inside the capture
    let (graph, ()) = graph::capture(device, || (0..calls).for_each(&f))?;
    let fence = || Tensor::zeros(&[1], device).item();
    graph.replay()?; // warm-up
    fence();
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        graph.replay()?;
        fence();
        times.push(start.elapsed().as_secs_f64() * 1e6 / calls as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Median over `repeats` runs of the time per call of `f`, in µs; each run makes `iters` calls
/// and then waits for the device (reading a value back).
fn median_us(device: &Device, repeats: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    // A copy back to the host waits for every kernel launched before it.
    let fence = || Tensor::zeros(&[1], device).item();
    for _ in 0..iters.min(3) {
        f(); // warm-up: compile kernels, fill the allocator's cache
    }
    let mut times: Vec<f64> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            fence();
            start.elapsed().as_secs_f64() * 1e6 / iters as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
