//! `backend::cpu::hot_pool::run`: it returns what the work computed, on pools of any size, its
//! pollers stop when it returns or panics (they would otherwise burn a core for ever), and a
//! pool with more threads than CPUs gets none.

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

/// The CPUs this process may use.
#[cfg(target_os = "linux")]
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |cpus| cpus.get())
}

/// CPU time used (in clock ticks) while `run` sleeps 300 ms on a pool of `threads`, in each
/// of four bursts: the pollers', 30 ticks each. (A worker that wakes too late for a burst
/// polls in none of it: as one woken onto the CPU where `run` waits for it does, which Linux
/// kept doing for every burst of a fresh pool in 4 runs of 10 here, before the workers were
/// first spread over the CPUs.)
#[cfg(target_os = "linux")]
fn ticks_of_sleeping_bursts(threads: usize) -> Vec<u64> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    // Every worker busy for a while, so that the system spreads them over the CPUs.
    pool.broadcast(|_| {
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::spin_loop();
        }
    });
    (0..4)
        .map(|_| {
            let before = cpu_ticks();
            pool.install(|| {
                hot_pool::run(|| std::thread::sleep(std::time::Duration::from_millis(300)))
            });
            cpu_ticks() - before
        })
        .collect()
}

/// Pollers where the pool fits the CPUs; none where it has more threads than CPUs (they
/// would take turns on the CPUs with the threads doing the work).
#[cfg(target_os = "linux")]
#[test]
fn no_pollers_on_a_pool_with_more_threads_than_cpus() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cpus = cpus();
    if cpus >= 2 {
        let used = ticks_of_sleeping_bursts(cpus);
        let pollers = cpus as u64 - 1;
        assert!(
            used.iter().max().unwrap() >= &(15 * pollers),
            "{used:?} ticks on {cpus} threads: {pollers} poller(s) should spin ~30 ticks each"
        );
    }
    let used = ticks_of_sleeping_bursts(cpus + 1);
    assert!(
        used.iter().all(|&ticks| ticks < 10),
        "{used:?} ticks on {} threads for {cpus} CPUs: pollers spun",
        cpus + 1
    );
}

/// On two threads, a pool that fits the CPUs of any machine but one with a single CPU, where
/// the test skips (a pool with more threads than CPUs gets no pollers).
#[cfg(target_os = "linux")]
#[test]
fn pollers_stop_after_return_and_after_panic() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if cpus() < 2 {
        eprintln!("skipped: one CPU, so `run` starts no pollers to stop");
        return;
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| hot_pool::run(parallel_work));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.install(|| hot_pool::run(|| -> u64 { panic!("the work failed") }))
    }));
    assert!(panicked.is_err());
    // A worker still polling would use about 400 ms of CPU time while we sleep.
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
