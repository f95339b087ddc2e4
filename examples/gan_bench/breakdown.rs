//! Where a GPU iteration's time goes: each kernel's share (`--kernel-times`), and what the
//! autotuner chose for each product (`--autotune`).

use ferrograd::backend::cuda::launch::Dim3;
use ferrograd::backend::cuda::tuning::Timed;
use ferrograd::backend::cuda::{CudaDevice, TunedProduct};
use ferrograd::backend::GemmDims;
use ferrograd::gan::Gan;
use ferrograd::Tensor;

/// What the autotuner chose for each product, and the sum over them.
pub fn print_tuning(tuned: &[TunedProduct]) {
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
pub fn print_kernel_times(cuda: &CudaDevice, real: &Tensor, steps: usize) {
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
