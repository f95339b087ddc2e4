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
//! included) until the burst is over. The calling thread's own copy of that job does
//! nothing, so no worker can end up polling on top of a frame of the burst that is waiting
//! for it, and the polling ends when [`run`] returns, panics included.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Runs `f` on the rayon pool while the pool's other workers poll for work instead of
/// sleeping, and returns its result. For a burst of small parallel ops (a training step):
/// it costs every other core of the pool for as long as `f` runs.
pub fn run<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| {
        let done = Arc::new(AtomicBool::new(false));
        // Set when this frame ends, whether `f` returns or panics: the pollers stop.
        let _stop = StopOnDrop(Arc::clone(&done));
        let caller = rayon::current_thread_index();
        rayon::spawn_broadcast(move |worker| {
            if Some(worker.index()) == caller {
                return;
            }
            while !done.load(Ordering::Acquire) {
                if rayon::yield_now() == Some(rayon::Yield::Idle) {
                    // Found nothing: wait a little before looking again, so that polling
                    // does not keep the other deques' cache lines busy.
                    for _ in 0..POLL_PAUSES {
                        std::hint::spin_loop();
                    }
                }
            }
        });
        f()
    })
}

/// `pause` instructions between two looks for work by an idle worker (about 0.1 µs each
/// on current x86 cores).
const POLL_PAUSES: usize = 32;

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}
