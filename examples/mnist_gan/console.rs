//! What the run says, and how it is stopped: by Ctrl-C, SIGTERM or SIGHUP, or by its
//! standard output going away. Either way training ends after the step in flight, with its
//! checkpoint written.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the first Ctrl-C, SIGTERM or SIGHUP during training (`stop_on_signals`).
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);
/// Whether the training loop is still running (what the first signal's message says).
static TRAINING: AtomicBool = AtomicBool::new(false);
/// The exit status of a run stopped by a signal (128 + SIGINT, as shells report it).
const STOPPED_STATUS: u8 = 130;
/// Set when a line could not be written to standard output (`say`).
static OUTPUT_LOST: AtomicBool = AtomicBool::new(false);
/// The exit status of a run stopped because its output went away (128 + SIGPIPE: what a shell
/// reports for a program killed by writing into a pipe nobody reads).
const OUTPUT_LOST_STATUS: u8 = 141;

/// `println!` that cannot panic; see [`say`].
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::console::say(format_args!($($arg)*))
    };
}

/// `eprintln!` that cannot panic: if standard error is gone too, the line is dropped.
macro_rules! complain {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Writes a line to standard output. If it cannot (the reader of a pipe quit, as `head` does,
/// or the disk holding the output is full), training stops as on SIGTERM: after the step in
/// flight, with its checkpoint written. `println!` would panic instead, with the training
/// since the last checkpoint lost.
pub fn say(line: std::fmt::Arguments) {
    if OUTPUT_LOST.load(Ordering::Relaxed) {
        return;
    }
    if let Err(err) = writeln!(std::io::stdout(), "{line}") {
        OUTPUT_LOST.store(true, Ordering::Relaxed);
        STOP_REQUESTED.store(true, Ordering::Relaxed);
        if TRAINING.load(Ordering::Relaxed) {
            complain!(
                "standard output is gone ({err}): stopping after this step to write a checkpoint"
            );
        } else {
            complain!("standard output is gone ({err}): stopping");
        }
    }
}

/// Whether a signal, or standard output going away, asked the run to stop.
pub fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::Relaxed)
}

/// Marks the training loop as running or not, for what a stop request says it will do.
pub fn set_training(training: bool) {
    TRAINING.store(training, Ordering::Relaxed);
}

/// The exit status of a run that stopped when asked to, having written its files: 141 if its
/// standard output went away, 130 for a signal; `None` if nothing asked it to stop.
pub fn stopped_status() -> Option<ExitCode> {
    if !stop_requested() {
        return None;
    }
    let status = if OUTPUT_LOST.load(Ordering::Relaxed) {
        OUTPUT_LOST_STATUS
    } else {
        STOPPED_STATUS
    };
    Some(ExitCode::from(status))
}

/// From now on, the first Ctrl-C (SIGINT), SIGTERM or SIGHUP asks training to stop after the
/// step in flight and write its checkpoint, as a job scheduler's notice or an impatient user
/// would want; a second one ends the process at once.
pub fn stop_on_signals() -> Result<(), ctrlc::Error> {
    ctrlc::set_handler(|| {
        if STOP_REQUESTED.swap(true, Ordering::Relaxed) {
            complain!("\nstopped at once (a checkpoint written before stays intact)");
            std::process::exit(i32::from(STOPPED_STATUS));
        }
        if TRAINING.load(Ordering::Relaxed) {
            complain!("\nstopping after this step to write a checkpoint (again to stop at once)");
        } else {
            complain!("\nstopping once the files are written (again to stop at once)");
        }
    })
}
