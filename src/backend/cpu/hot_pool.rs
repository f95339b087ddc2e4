//! Keeping the rayon pool's workers awake through a burst of small parallel ops.
//!
//! A training step on the CPU is a few hundred ops, most of them a parallel loop of tens to
//! hundreds of microseconds, with a little serial work (autograd's bookkeeping) in between.
//! A rayon worker that finds no work goes to sleep after a few dozen idle rounds, and the
//! next parallel loop must wake it: a futex call, and in a virtual machine an interrupt sent
//! to another virtual CPU, which costs tens of microseconds before that worker takes any
//! work. Measured on the 2-core development VM: about 76 sleeps per GAN step, and the step
//! 11 % faster when the workers are kept from sleeping (see benches/RESULTS.md).
//!
//! [`run`] keeps them from sleeping the simple way: every other worker of the pool runs a
//! job that polls for work ([`rayon::yield_now`], which runs any job it finds, stolen ones
//! included) until the burst is over.
//!
//! Where a poller runs matters. A worker waiting inside a job (a `join` whose other half was
//! stolen) runs whatever it finds meanwhile, its poller included: a poller started there would
//! poll on top of that job until the burst is over, and the burst cannot be over before that
//! job finishes — a deadlock (seen once in a few hundred thousand bursts). So `run` waits for
//! the pollers to start before the burst begins (briefly: a sleeping worker takes tens of µs
//! to wake), and a poller that starts after the burst has begun does nothing. A poller that
//! started before can have no job of the burst beneath it. The calling thread's own copy of
//! the job does nothing either, and the polling ends when `run` returns, panics included.
//!
//! A pool with more threads than the process has CPUs (`--threads 64` on a 2-CPU machine)
//! gets no pollers: they would spin on CPUs that the threads holding the burst's work are
//! waiting for. On the 2-CPU development VM a GAN step with 64 threads ran 15–20× slower than
//! with 2 with pollers, 1.4–1.7× without (benches/RESULTS.md).

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Runs `f` on the rayon pool while the pool's other workers poll for work instead of
/// sleeping, and returns its result. For a burst of small parallel ops (a training step):
/// it costs every other core of the pool for as long as `f` runs. On a pool with more threads
/// than CPUs, `f` runs on the pool without pollers.
pub fn run<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if more_threads_than_cpus() {
        return rayon::scope(|_| f());
    }
    rayon::scope(|_| {
        let state = Arc::new(Pollers::default());
        // Set when this frame ends, whether `f` returns or panics: the pollers stop.
        let _stop = StopOnDrop(Arc::clone(&state));
        let caller = rayon::current_thread_index();
        let others = rayon::current_num_threads() - usize::from(caller.is_some());
        let pollers = Arc::clone(&state);
        rayon::spawn_broadcast(move |worker| {
            if Some(worker.index()) == caller || pollers.begun.load(Ordering::SeqCst) {
                return; // the caller, or too late: maybe on top of one of the burst's jobs
            }
            pollers.started.fetch_add(1, Ordering::SeqCst);
            while !pollers.done.load(Ordering::Acquire) {
                if rayon::yield_now() == Some(rayon::Yield::Idle) {
                    // Found nothing: wait a little before looking again, so that polling
                    // does not keep the other deques' cache lines busy.
                    for _ in 0..POLL_PAUSES {
                        std::hint::spin_loop();
                    }
                }
            }
        });
        let deadline = Instant::now() + MAX_WAIT_FOR_POLLERS;
        while state.started.load(Ordering::SeqCst) < others && Instant::now() < deadline {
            std::hint::spin_loop();
        }
        state.begun.store(true, Ordering::SeqCst);
        f()
    })
}

/// Whether the current pool has more threads than this process has CPUs
/// ([`std::thread::available_parallelism`], read once).
fn more_threads_than_cpus() -> bool {
    static CPUS: OnceLock<usize> = OnceLock::new();
    let cpus =
        *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get));
    rayon::current_num_threads() > cpus
}

/// `pause` instructions between two looks for work by an idle worker (about 0.1 µs each
/// on current x86 cores).
const POLL_PAUSES: usize = 32;

/// How long `run` waits for the other workers to start polling: a sleeping worker takes tens
/// of µs to wake; one busy elsewhere may not come at all, and then the burst goes ahead
/// without it.
const MAX_WAIT_FOR_POLLERS: Duration = Duration::from_micros(200);

/// What the pollers of one burst share.
#[derive(Default)]
struct Pollers {
    /// Pollers that started before the burst began.
    started: AtomicUsize,
    /// The burst has begun: a poller starting now might be on top of one of its jobs.
    begun: AtomicBool,
    /// The burst is over: the pollers stop.
    done: AtomicBool,
}

struct StopOnDrop(Arc<Pollers>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.done.store(true, Ordering::Release);
    }
}
