//! How each figure is timed: on the CPU, the median of repeated runs of many calls; on a GPU,
//! many calls captured in one CUDA graph, operands rotated so that none is found in L2.

use std::time::Instant;

use ferrograd::gan::{Gan, PendingStats, IMAGE_DIM, LAYERS};
use ferrograd::nn::functional::linear;
use ferrograd::{graph, manual_seed, Device, Tensor};

/// The training iteration on `real`, eager and (on a GPU) as a CUDA graph, each in three
/// ways of reading its losses.
pub fn time_iterations(
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

/// `X·Wᵀ` at the GAN's batch-64 shapes, then a large square product.
pub fn time_products(
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
pub fn time_tanh(
    device: &Device,
    quick: bool,
    repeats: usize,
    iters: usize,
) -> ferrograd::Result<()> {
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

/// How a figure was timed: on a GPU, kernel time over `calls` calls in a CUDA graph.
fn timing_method(device: &Device, calls: usize) -> String {
    if device.is_cuda() {
        format!("kernel time: {calls} calls in a CUDA graph")
    } else {
        "per call".to_string()
    }
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
pub fn kernel_median_us(
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

/// A fresh GAN's training step captured as a CUDA graph (with the plans in force now), then
/// timed replaying it queued: µs per iteration.
pub fn captured_iteration_us(
    device: &Device,
    repeats: usize,
    iters: usize,
) -> ferrograd::Result<f64> {
    manual_seed(1);
    let mut gan = Gan::new(device, 2e-4);
    gan.capture_train_step(64)?;
    let real = Tensor::uniform(&[64, IMAGE_DIM], -1.0, 1.0, device);
    Ok(median_us(device, repeats, iters, || {
        gan.train_step_async(&real)
    }))
}
