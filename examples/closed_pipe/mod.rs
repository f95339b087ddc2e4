//! How a tool that only prints ends when the reader of its output quits (`gan_bench | head`):
//! quietly, killed by SIGPIPE, as `cat` and `grep` are. Rust's runtime ignores SIGPIPE, so a
//! write into a closed pipe fails instead, and `println!` panics with a backtrace.
//!
//! Only for tools with nothing to save: `mnist_gan` instead stops after the step in flight
//! and writes its checkpoint (`examples/mnist_gan/console.rs`).

/// From now on, writing into a pipe whose reader has quit ends the process, with the status
/// shells report as 141 (128 + SIGPIPE). Call it first in `main`. Elsewhere than Unix, where
/// there is no SIGPIPE, it does nothing.
pub fn end_quietly_when_the_reader_quits() {
    #[cfg(unix)]
    // SAFETY: `signal` with SIG_DFL installs no handler of ours (no code runs in signal context);
    // it only restores the default action the runtime replaced before `main`.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
