//! The CPU emulator is only as good a stand-in for a GPU as it is strict: a kernel that breaks
//! one of CUDA's rules must fail here, not pass by the luck of the emulator's schedule. Each
//! test runs one of `kernels/emulator/checks.cpp`'s kernels, which break a rule on purpose,
//! and checks that the emulator shows it (and that the same kernel keeping the rule passes).
#![cfg(ferrograd_emulator)] // an emulator test: none in a build without it (build.rs)

use ferrograd::backend::cuda::args::UnaryArgs;
use ferrograd::backend::cuda::emulator::{self, set_thread_order, BlockOrder, ThreadOrder};
use ferrograd::backend::cuda::launch::{Dim3, LaunchConfig};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The thread and block orders are process-wide: the tests of this file take turns.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `kernel` over `grid` × `threads` (along x), with x and y as given.
fn launch_on(
    kernel: &str,
    (grid, threads): (Dim3, u32),
    x: &[f32],
    y: &mut [f32],
    n: u64,
    p: f32,
) -> Result<(), String> {
    let block = Dim3 {
        x: threads,
        y: 1,
        z: 1,
    };
    let args = UnaryArgs {
        x: x.as_ptr() as u64,
        y: y.as_mut_ptr() as u64,
        n,
        p,
    };
    // SAFETY: the kernels read x[..blocks · threads] at most and write y[..blocks · threads]
    // (the rendezvous two more), the lengths every caller gives; a refused launch runs nothing.
    unsafe { emulator::launch(kernel, LaunchConfig { grid, block }, &args) }
}

/// A grid of `x` × `y` blocks.
fn grid_of(x: u32, y: u32) -> Dim3 {
    Dim3 { x, y, z: 1 }
}

/// Runs `kernel` on `blocks` blocks of `threads` threads with y = NaN, returning y.
fn run(
    kernel: &str,
    blocks: u32,
    threads: u32,
    x: &[f32],
    n: u64,
    p: f32,
) -> Result<Vec<f32>, String> {
    let mut y = vec![f32::NAN; (blocks * threads) as usize];
    launch_on(kernel, (grid_of(blocks, 1), threads), x, &mut y, n, p)?;
    Ok(y)
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// Threads store to shared memory and read a neighbour's store: with the barrier between,
/// every order gives the neighbours' values; without it, index order and reversed order give
/// different results (the reader comes before the writer in one of them), each with a NaN
/// where a thread read a word not yet written — the missing barrier is seen, whichever thread
/// it leaves behind.
#[test]
fn a_missing_barrier_shows_as_results_that_depend_on_the_thread_order() {
    let _turn = one_at_a_time();
    let x: Vec<f32> = (0..64).map(|i| i as f32).collect();
    let shifted: Vec<f32> = (0..64).map(|i| ((i + 1) % 64) as f32).collect();
    let mut without_barrier = Vec::new();
    for order in [
        ThreadOrder::Index,
        ThreadOrder::Reversed,
        ThreadOrder::Shuffled(9),
    ] {
        set_thread_order(order);
        let with = run("emulator_check_neighbour_read", 1, 64, &x, 64, 1.0);
        let without = run("emulator_check_neighbour_read", 1, 64, &x, 64, 0.0);
        set_thread_order(ThreadOrder::Index);
        assert_eq!(with.unwrap(), shifted, "with the barrier, {order:?}");
        let without = without.unwrap();
        assert!(
            without.iter().any(|v| v.is_nan()),
            "without the barrier, {order:?}: {without:?}"
        );
        without_barrier.push(bits(&without));
    }
    assert_ne!(
        without_barrier[0], without_barrier[1],
        "index and reversed order agree without the barrier"
    );
}

/// A block's shared memory starts as NaN, not as what the block before left there (on a GPU,
/// whatever was there): block 0 reads the value its thread 0 stored, block 1 a NaN.
#[test]
fn every_block_starts_with_its_shared_memory_unwritten() {
    let _turn = one_at_a_time();
    let y = run("emulator_check_unwritten_shared", 2, 32, &[7.0], 1, 0.0).unwrap();
    assert!(y[..32].iter().all(|&v| v == 7.0), "{y:?}");
    assert!(y[32..].iter().all(|v| v.is_nan()), "{y:?}");
}

/// A barrier that some of its threads returned before reaching is an error (a hang or
/// undefined behaviour on a GPU), for __syncthreads() and for a warp shuffle alike; so are
/// threads of one warp waiting at different barriers. The same barriers reached by every
/// thread pass.
#[test]
fn barriers_that_threads_do_not_all_reach_are_errors() {
    let _turn = one_at_a_time();
    let x: Vec<f32> = (0..64).map(|i| i as f32).collect();
    let check = |mode: f32, n: u64| run("emulator_check_barriers", 1, 64, &x, n, mode);
    assert_eq!(check(0.0, 64).unwrap(), x, "every thread at __syncthreads");
    let swapped: Vec<f32> = (0..64).map(|i| (i ^ 1) as f32).collect();
    assert_eq!(check(2.0, 64).unwrap(), swapped, "every lane shuffles");
    for (mode, what) in [
        (1.0, "threads from 40 on return before __syncthreads"),
        (2.0, "lanes from 40 on return before a shuffle"),
    ] {
        let err = check(mode, 40).expect_err(what);
        assert!(err.contains("returned before reaching"), "{what}: {err}");
    }
    let err = check(3.0, 40).expect_err("lanes split between two barriers");
    assert!(err.contains("deadlocked"), "{err}");
}

/// Blocks meet at a rendezvous, the last to count itself in summing every block's stores. With
/// a barrier between a block's stores and its count, every order gives the sum. Without it,
/// blocks run one after another still give it (a block's threads all store before the next
/// block starts), but interleaved blocks do not: a block counts in, another finishes the sum
/// before the first one's other threads have stored.
#[test]
fn a_block_that_arrives_before_its_stores_shows_when_blocks_interleave() {
    let _turn = one_at_a_time();
    let (blocks, threads) = (4, 32);
    let x: Vec<f32> = (0..blocks * threads).map(|i| (i % 7) as f32).collect();
    let sum: f32 = x.iter().sum();
    let total = |order: BlockOrder, barrier: bool| {
        emulator::set_block_order(order);
        // y[0]: the counter (0 bits); y[1..]: the stores, then the total.
        let mut y = vec![f32::NAN; 2 + x.len()];
        y[0] = 0.0;
        let result = launch_on(
            "emulator_check_early_arrival",
            (grid_of(blocks, 1), threads),
            &x,
            &mut y,
            0,
            if barrier { 1.0 } else { 0.0 },
        );
        emulator::set_block_order(BlockOrder::Grid);
        result.unwrap();
        y[1 + x.len()]
    };
    let seeds = 1..=8;
    for seed in seeds.clone() {
        for order in [BlockOrder::Shuffled(seed), BlockOrder::Interleaved(seed)] {
            assert_eq!(total(order, true), sum, "with the barrier, {order:?}");
        }
        assert_eq!(total(BlockOrder::Shuffled(seed), false), sum);
    }
    assert!(
        seeds
            .map(|seed| total(BlockOrder::Interleaved(seed), false))
            .any(|t| t.is_nan()),
        "no interleaving of 8 showed the early arrival"
    );
}

/// Geometry a GPU refuses is refused before anything runs, naming the launch: more threads a
/// block than the kernel's `__launch_bounds__` (128 here) or 1,024, an empty grid, more than
/// 65,535 blocks along y.
#[test]
fn launches_a_gpu_would_refuse_are_errors() {
    let _turn = one_at_a_time();
    let x = [7.0f32];
    let mut y = vec![f32::NAN; 1024];
    let mut launch = |grid: Dim3, threads: u32| {
        let kernel = "emulator_check_unwritten_shared";
        launch_on(kernel, (grid, threads), &x, &mut y, 1, 0.0)
    };
    launch(grid_of(8, 1), 128).expect("128 threads, the kernel's launch bounds");
    for (grid, threads) in [
        (grid_of(1, 1), 256),
        (grid_of(1, 1), 0),
        (grid_of(0, 1), 32),
        (grid_of(1, 65_536), 1),
    ] {
        let err = launch(grid, threads).expect_err("refused");
        assert!(err.contains("a GPU refuses"), "{grid:?} x {threads}: {err}");
    }
    assert!(
        y[..128].iter().all(|&v| v == 7.0),
        "the accepted launch ran"
    );
}
