//! `backend::cpu::hot_pool::run`: it returns what the work computed, on pools of any size, and
//! its pollers stop when it returns or panics (they would otherwise burn a core for ever).

use ferrograd::backend::cpu::hot_pool;
use rayon::prelude::*;
use std::sync::Mutex;

/// The tests take turns: one measures the process's CPU time while idle.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Nested parallel loops inside `run`, the shape of a training step's ops.
fn parallel_work() -> u64 {
    (0..64u64)
        .map(|round| {
            (0..20_000u64)
                .into_par_iter()
                .map(|i| (i * i + round) % 7)
                .sum::<u64>()
        })
        .sum()
}

#[test]
fn returns_the_work_result_on_pools_of_every_size() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let expected = parallel_work();
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let got = pool.install(|| hot_pool::run(parallel_work));
        assert_eq!(got, expected, "{threads} threads");
    }
}

/// CPU time this process has used so far, in clock ticks (Linux: /proc/self/stat).
#[cfg(target_os = "linux")]
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses): utime and stime are the 12th
    // and 13th of them.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn pollers_stop_after_return_and_after_panic() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    pool.install(|| hot_pool::run(parallel_work));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.install(|| hot_pool::run(|| -> u64 { panic!("the work failed") }))
    }));
    assert!(panicked.is_err());
    // Two workers still polling would use about 2 × 400 ms of CPU time while we sleep.
    std::thread::sleep(std::time::Duration::from_millis(50)); // let them notice
    let before = cpu_ticks();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let used = cpu_ticks() - before;
    assert!(
        used < 10,
        "{used} ticks of CPU time used while idle: pollers still running"
    );
}

/// Many short bursts of nested parallel loops, as training steps are: a worker may take its
/// poller while it waits inside one of the burst's own jobs (rayon runs other jobs while a
/// join waits), and a poller polling there would keep that job from ever finishing. (The old
/// `run` hung within 20,000 to 300,000 bursts here.) Up to 400,000 bursts or 15 s, on a
/// watchdog that fails the test when the bursts stop making progress (a machine under load
/// only slows them).
#[test]
fn bursts_of_nested_loops_never_hang() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    static BURSTS: AtomicUsize = AtomicUsize::new(0);
    let (finished, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let nested = || {
            (0..8u64)
                .into_par_iter()
                .map(|i| (0..64u64).into_par_iter().map(|j| (i * j) % 5).sum::<u64>())
                .sum::<u64>()
        };
        let expected = nested();
        let start = Instant::now();
        for burst in 0..400_000 {
            let got = pool.install(|| hot_pool::run(|| (0..4).map(|_| nested()).sum::<u64>()));
            assert_eq!(got, 4 * expected, "burst {burst}");
            BURSTS.store(burst + 1, Ordering::Relaxed);
            if start.elapsed() > Duration::from_secs(15) {
                break;
            }
        }
        finished.send(()).unwrap();
    });
    let mut seen = 0;
    loop {
        match result.recv_timeout(Duration::from_secs(10)) {
            Ok(()) => return,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let now = BURSTS.load(Ordering::Relaxed);
                assert!(now > seen, "hot_pool::run hung after {now} bursts");
                seen = now;
            }
            Err(err) => panic!("the bursts panicked ({err})"),
        }
    }
}
