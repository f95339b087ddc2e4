//! `--gemm-sweep`: every matrix product of the training iteration timed at each split of k,
//! the data `benches/fit_split_k.py` fits split-K's plan to.

use ferrograd::backend::cuda::launch::GemmPlan;
use ferrograd::backend::cuda::{
    set_small_tiles, set_split_k_for, set_split_k_override, CudaDevice, CudaStorage,
};
use ferrograd::backend::{BackendStorage, GemmDims, Identity};
use ferrograd::gan::LAYERS;
use ferrograd::{Device, Tensor};

use crate::timing::{captured_iteration_us, kernel_median_us};

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
pub fn sweep_gemm_splits(cuda: &CudaDevice, repeats: usize, quick: bool) -> ferrograd::Result<()> {
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
