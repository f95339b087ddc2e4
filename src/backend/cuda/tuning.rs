//! GEMM autotuning: the products a step runs, each timed on this device in every configuration
//! that computes it, and each given the fastest — as PyTorch's `cudnn.benchmark` does for
//! convolutions.
//!
//! At batch 64 which configuration is fastest depends on the GPU: how many SMs a product's few
//! tiles leave idle, how long a round trip to memory takes, how a block's warps hide it.
//! [`GemmPlan`] decides from one formula; the tuner measures. Two scopes ([`Tuning`]):
//! - tiles: 64 × 64 tiles of 256 threads (`gemm`) or 32 × 32 of 128 (`gemm_small`). Each result
//!   is one thread's sum over k in the same order either way, so whatever the timings choose,
//!   the results are the same bits: a tuned run stays reproducible;
//! - tiles and splits: also how many chunks split-K cuts k into. Another split sums in another
//!   order, so results differ from an untuned run's in the last bits, and two runs whose
//!   timings chose differently differ likewise (as with PyTorch's benchmark mode).
//!
//! How: [`record_products`](super::record_products) notes the products a closure plans in
//! `gemm`'s tiles (a graph capture plans every product of a step without running it);
//! [`CudaDevice::tune_products`] times each product alone and plain in each candidate
//! configuration, with the kernel timing of [`CudaDevice::set_kernel_timing`] (events around each
//! launch on a GPU), the candidates in turns so that a slow moment of the machine hits them all,
//! and sets the winner with [`set_split_k_for`] and [`set_small_tiles_for`]: every later plan of
//! that product — the next capture's — uses it. What timing a product alone does not see: in the
//! step it may also read its left operand through an activation's rule, or share a launch with
//! its pair, and a weight gradient split along k leaves its rule to a launch of its own;
//! `gan_bench --autotune` times the whole step.

use super::device::CudaDevice;
use super::launch::{set_small_tiles_for, set_split_k_for, small_tiles_fit, GemmPlan};
use super::recorded_products::RecordedProduct;
use super::storage::{small_tiles_default, CudaStorage};
use crate::backend::{BackendStorage, GemmDims, Identity};

/// What the tuner may change (see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tuning {
    /// 64 × 64 or 32 × 32 tiles: the same bits as untuned.
    Tiles,
    /// Tiles, and how many chunks split-K cuts k into: last-bit differences from untuned.
    TilesAndSplits,
}

/// How long the tuner times each candidate: `rounds` turns through the candidates (after `calls`
/// untimed calls of each), each turn `calls` calls of each in a row; a candidate's time is the
/// median of its turns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TuneOptions {
    /// Timed turns through the candidates.
    pub rounds: usize,
    /// Calls of each candidate in a turn (and untimed before the first).
    pub calls: usize,
}

impl Default for TuneOptions {
    /// 5 turns of 10 calls: a batch-64 step's ~25 distinct products in well under a second on a
    /// GPU.
    fn default() -> Self {
        TuneOptions {
            rounds: 5,
            calls: 10,
        }
    }
}

/// How a tiled product runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmChoice {
    /// The chunks split-K cuts k into (1: no split).
    pub splits: usize,
    /// 32 × 32 tiles (`gemm_small`) instead of 64 × 64.
    pub small_tiles: bool,
}

/// A configuration and its time per call, in µs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timed {
    /// The configuration.
    pub choice: GemmChoice,
    /// Its median time per call, in µs.
    pub micros: f64,
}

/// What tuning one product found: how the plan runs it and how fast, and what it runs now.
#[derive(Clone, Debug, PartialEq)]
pub struct TunedProduct {
    /// The product, as the step runs it.
    pub product: RecordedProduct,
    /// The built-in plan's configuration and time.
    pub planned: Timed,
    /// The fastest configuration, which the product runs in from now on.
    pub chosen: Timed,
}

/// The splits the tuner tries, as asked for: `GemmPlan::with_splits` makes each a whole number
/// of 16-deep k-slices per chunk, so several can come out the same.
const SPLITS_TRIED: [usize; 10] = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32];

/// The plan's configuration of `dims`, without any setting of its own (the tiles as
/// `set_small_tiles` says).
fn planned_choice(dims: GemmDims) -> GemmChoice {
    let splits = match GemmPlan::choose(dims.m, dims.k, dims.n) {
        GemmPlan::Tiled { splits, .. } => splits,
        GemmPlan::Large => 1,
    };
    GemmChoice {
        splits,
        small_tiles: small_tiles_default() && small_tiles_fit(dims.m, dims.n),
    }
}

/// The configurations of `dims` worth timing under `tuning`, the planned one first.
fn candidates(dims: GemmDims, tuning: Tuning) -> Vec<GemmChoice> {
    let planned = planned_choice(dims);
    let splits: Vec<usize> = match tuning {
        Tuning::Tiles => vec![planned.splits],
        Tuning::TilesAndSplits => SPLITS_TRIED
            .iter()
            .filter_map(|&asked| match GemmPlan::with_splits(dims.k, asked) {
                GemmPlan::Tiled { splits, .. } => Some(splits),
                GemmPlan::Large => None,
            })
            .collect(),
    };
    let tiles: &[bool] = if small_tiles_fit(dims.m, dims.n) {
        &[false, true]
    } else {
        &[false]
    };
    let mut choices = vec![planned];
    for &splits in &splits {
        for &small_tiles in tiles {
            let choice = GemmChoice {
                splits,
                small_tiles,
            };
            if !choices.contains(&choice) {
                choices.push(choice);
            }
        }
    }
    choices
}

/// The fastest of `timed` (the planned configuration first), or the planned one where no
/// other beats it by more than 2 %: about the noise of a timing, so that tuning changes
/// nothing (not even, under [`Tuning::TilesAndSplits`], the bits) where it buys nothing.
fn fastest(timed: &[Timed]) -> Timed {
    let planned = timed[0];
    let best = timed.iter().copied().fold(
        planned,
        |best, t| if t.micros < best.micros { t } else { best },
    );
    if best.micros < 0.98 * planned.micros {
        best
    } else {
        planned
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Makes the products `dims` run as `choice`: settings of their own where it differs from the
/// plan, none where it is the plan.
fn set_choice(dims: GemmDims, choice: GemmChoice) {
    let planned = planned_choice(dims);
    set_split_k_for(
        dims,
        (choice.splits != planned.splits).then_some(choice.splits),
    );
    set_small_tiles_for(
        dims,
        (choice.small_tiles != planned.small_tiles).then_some(choice.small_tiles),
    );
}

impl CudaDevice {
    /// Times each of `products` (from [`record_products`](super::record_products)) alone on
    /// this device in every configuration `tuning` allows, and makes each run in the fastest
    /// from now on (process-wide, as `set_small_tiles`; a graph captured before keeps its
    /// plans: capture again).
    /// Uses the kernel timing, and leaves it off. Operands are scratch buffers of this device.
    ///
    /// # Panics
    /// If the GPU fails, as any launch does.
    pub fn tune_products(
        &self,
        products: &[RecordedProduct],
        tuning: Tuning,
        options: TuneOptions,
    ) -> Vec<TunedProduct> {
        products
            .iter()
            .map(|&product| self.tune_product(product, tuning, options))
            .collect()
    }

    fn tune_product(
        &self,
        product: RecordedProduct,
        tuning: Tuning,
        options: TuneOptions,
    ) -> TunedProduct {
        let dims = product.dims;
        // Values that keep every product finite and normal: timing does not depend on them.
        let a = CudaStorage::full(dims.m * dims.k, 0.5, self);
        let b = CudaStorage::full(dims.k * dims.n, 0.25, self);
        let call = || {
            if product.row_sums {
                std::hint::black_box(a.gemm_with_lhs_row_sums(&b, dims, None));
            } else {
                std::hint::black_box(a.gemm(&b, None, dims, &Identity));
            }
        };
        let choices = candidates(dims, tuning);
        let (rounds, calls) = (options.rounds.max(1), options.calls.max(1));
        for &choice in &choices {
            set_choice(dims, choice);
            // Compiles its kernels now, outside the timing, and brings the GPU's clocks up.
            (0..calls).for_each(|_| call());
        }
        let mut times = vec![Vec::with_capacity(rounds); choices.len()];
        for round in 0..rounds {
            // Every other turn in reverse order: a drift of the machine's speed during a turn
            // (clocks, a neighbour) favours no candidate for being timed later.
            let mut order: Vec<usize> = (0..choices.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for index in order {
                let (choice, times) = (choices[index], &mut times[index]);
                set_choice(dims, choice);
                self.set_kernel_timing(true);
                (0..calls).for_each(|_| call());
                let kernels = self.take_kernel_times();
                self.set_kernel_timing(false);
                times.push(kernels.iter().map(|k| k.micros).sum::<f64>() / calls as f64);
            }
        }
        let timed: Vec<Timed> = choices
            .iter()
            .zip(times)
            .map(|(&choice, times)| Timed {
                choice,
                micros: median(times),
            })
            .collect();
        let chosen = fastest(&timed);
        set_choice(dims, chosen.choice);
        TunedProduct {
            product,
            planned: timed[0],
            chosen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed(splits: usize, small_tiles: bool, micros: f64) -> Timed {
        Timed {
            choice: GemmChoice {
                splits,
                small_tiles,
            },
            micros,
        }
    }

    #[test]
    fn the_fastest_wins_by_more_than_the_noise() {
        let planned = timed(4, false, 10.0);
        assert_eq!(
            fastest(&[planned, timed(4, true, 7.0), timed(2, true, 8.0)]).micros,
            7.0
        );
        // 1.5 % faster: within the noise, the plan stays.
        assert_eq!(fastest(&[planned, timed(4, true, 9.85)]), planned);
        assert_eq!(fastest(&[planned, timed(1, false, 12.0)]), planned);
        assert_eq!(fastest(&[planned]), planned);
    }

    fn dims(m: usize, k: usize, n: usize) -> GemmDims {
        GemmDims {
            m,
            k,
            n,
            lhs_transposed: false,
            rhs_transposed: true,
        }
    }

    #[test]
    fn tiles_alone_keep_the_planned_split() {
        let product = dims(64, 1024, 784);
        let planned = planned_choice(product);
        let choices = candidates(product, Tuning::Tiles);
        assert_eq!(choices[0], planned);
        assert_eq!(choices.len(), 2);
        assert!(choices.iter().all(|c| c.splits == planned.splits));
    }

    #[test]
    fn splits_are_tried_once_each_in_whole_slices() {
        // k = 100: 7 slices of 16, cut into chunks of 112, 64, 48, 32 or 16 (1, 2, 3, 4 or 7
        // chunks); asking for 6 gives 4 chunks of 32, for 8 and more 7 chunks of 16.
        let choices = candidates(dims(64, 100, 256), Tuning::TilesAndSplits);
        let mut splits: Vec<usize> = choices.iter().map(|c| c.splits).collect();
        splits.sort_unstable();
        splits.dedup();
        assert_eq!(splits, [1, 2, 3, 4, 7]);
        assert_eq!(choices.len(), 2 * splits.len());
    }

    #[test]
    fn products_too_wide_for_small_tile_counters_stay_in_64_by_64() {
        // 1024 × 1024: 1024 small tiles fit, 1056 × 1024 (33 × 32 rows of tiles) do not.
        assert!(small_tiles_fit(1024, 1024));
        assert!(!small_tiles_fit(1056, 1024));
        let wide = dims(1056, 64, 1024);
        assert!(candidates(wide, Tuning::Tiles)
            .iter()
            .all(|c| !c.small_tiles));
    }
}
