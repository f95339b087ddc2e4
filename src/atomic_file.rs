//! Files that are either fully written or not there at all.
//!
//! The data goes to a temporary file beside the target, is flushed to disk (`fsync`), and only
//! then renamed over the target; the directory is synced so the rename itself survives a
//! crash. A process killed at any moment leaves the previous file intact (and at worst a
//! stray `.tmp` file, never a half-written target; the next write of the same file removes
//! it, and [`remove_abandoned_temporaries`] clears a whole directory of them). On Windows,
//! where the rename is refused while another process holds the target open, it is tried again
//! for about two seconds before the write fails.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

/// Writes `path` atomically with `write`, which receives the temporary file. If `write` fails,
/// the temporary file is removed and `path` is untouched. First it removes the temporary files
/// of `path` that killed writers left (best effort).
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    remove_abandoned_temporaries_of(path);
    let temp = temp_path(path);
    let result = (|| {
        let mut file = File::create(&temp)?;
        write(&mut file)?;
        file.sync_all()?;
        drop(file);
        replace(&temp, path)?;
        sync_parent_dir(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp); // best effort: the error that matters is `result`'s
    }
    result
}

/// How many times a rename over the target is tried on Windows while it is refused with
/// "access denied": there, a process holding the target open (a virus scanner, a search
/// indexer, a reader of the previous checkpoint; any, under Wine) makes the rename fail until
/// it lets go. The waits between tries double from [`FIRST_RETRY_WAIT`] up to
/// [`LONGEST_RETRY_WAIT`], about two seconds in all: short enough to catch a reader's pause
/// between two reads. Elsewhere a rename does not care who has the target open, and is tried
/// once.
const RENAME_TRIES_ON_WINDOWS: u32 = 128;
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(1);
const LONGEST_RETRY_WAIT: Duration = Duration::from_millis(16);

/// Renames `temp` over `path`, replacing it.
fn replace(temp: &Path, path: &Path) -> io::Result<()> {
    if !cfg!(windows) {
        return fs::rename(temp, path);
    }
    retry_while_denied(RENAME_TRIES_ON_WINDOWS, || fs::rename(temp, path)).map_err(|err| {
        if err.kind() == io::ErrorKind::PermissionDenied {
            io::Error::new(
                err.kind(),
                format!("{err}; does another program hold it open?"),
            )
        } else {
            err
        }
    })
}

/// Calls `operation` until it succeeds, fails with another error than
/// [`io::ErrorKind::PermissionDenied`], or has been called `tries` times (at least once);
/// returns its last result.
fn retry_while_denied<T>(
    tries: u32,
    mut operation: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let mut wait = FIRST_RETRY_WAIT;
    for _ in 1..tries {
        match operation() {
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                thread::sleep(wait);
                wait = (wait * 2).min(LONGEST_RETRY_WAIT);
            }
            result => return result,
        }
    }
    operation()
}

/// `dir/.name.<pid>.tmp`: beside the target (so the rename stays on one file system), hidden,
/// and unique per process.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "unnamed".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Removes from `dir` the temporary files of writes whose process was killed before it
/// could rename or remove them (`.name.<pid>.tmp`, the process no longer running), and
/// returns how many it removed: a run stopped at once during its checkpoint leaves one the
/// checkpoint's size, and a later run in the directory cleans it up. Only where a process's
/// liveness can be read (Unix's `kill(pid, 0)`, Windows' `OpenProcess`); elsewhere it removes
/// nothing.
///
/// # Errors
/// If `dir` cannot be read, or a file there cannot be removed.
pub fn remove_abandoned_temporaries(dir: &Path) -> io::Result<usize> {
    remove_abandoned(dir, |_| true)
}

/// Removes from `dir` the abandoned temporary files (see [`remove_abandoned_temporaries`]) of
/// the targets whose file names `of_target` accepts; returns how many it removed.
fn remove_abandoned(dir: &Path, of_target: impl Fn(&str) -> bool) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some((target, pid)) = name.to_str().and_then(temp_file_parts) else {
            continue;
        };
        if of_target(target) && pid != std::process::id() && process_has_ended(pid) {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes the temporary files that killed writers of `path` left beside it (those of
/// [`remove_abandoned_temporaries`] named after `path`'s file). Best effort: what cannot be
/// read or removed stays, and the write goes on.
fn remove_abandoned_temporaries_of(path: &Path) {
    let (Some(dir), Some(target)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let _ = remove_abandoned(dir, |name| target.to_str() == Some(name));
}

/// The target's file name and the process id in a name made by [`temp_path`]
/// (`.name.<pid>.tmp`), if it is one.
fn temp_file_parts(file_name: &str) -> Option<(&str, u32)> {
    let stem = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    match stem.rsplit_once('.') {
        Some((name, pid)) if !name.is_empty() => Some((name, pid.parse().ok()?)),
        _ => None,
    }
}

/// Whether process `pid` is known to have ended: never where that cannot be told, nor for a
/// process that has ended but is not yet reaped, nor where its id has gone to a new process.
#[cfg(unix)]
fn process_has_ended(pid: u32) -> bool {
    /// `ESRCH`, "no such process" (3 on Linux, macOS and the BSDs).
    const NO_SUCH_PROCESS: i32 = 3;
    extern "C" {
        /// POSIX `kill`: with signal 0 it sends nothing, and only checks that `pid` exists.
        fn kill(pid: i32, signal: i32) -> i32;
    }
    // 0 and negative ids name process groups, not a process.
    let Some(pid) = i32::try_from(pid).ok().filter(|&pid| pid > 0) else {
        return false;
    };
    // SAFETY: signal 0 is no signal; `kill` only reads its two integers.
    let checked = unsafe { kill(pid, 0) };
    checked == -1 && io::Error::last_os_error().raw_os_error() == Some(NO_SUCH_PROCESS)
}

/// Whether process `pid` is known to have ended: never where that cannot be told, nor for a
/// process that has ended with exit code 259 (which reads as still running).
#[cfg(windows)]
fn process_has_ended(pid: u32) -> bool {
    use std::ffi::c_void;
    /// The least access that reads a process's exit code.
    const PROCESS_QUERY_LIMITED_INFORMATION: u32 = 0x1000;
    /// What `OpenProcess` fails with for an id no process has.
    const ERROR_INVALID_PARAMETER: i32 = 87;
    /// The exit code of a process still running.
    const STILL_ACTIVE: u32 = 259;
    #[link(name = "kernel32")]
    extern "system" {
        fn OpenProcess(access: u32, inherit_handle: i32, pid: u32) -> *mut c_void;
        fn GetExitCodeProcess(process: *mut c_void, exit_code: *mut u32) -> i32;
        fn CloseHandle(handle: *mut c_void) -> i32;
    }
    // SAFETY: `OpenProcess` only reads its integers; it returns a handle or null.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if process.is_null() {
        // Access denied, for one, is a process that exists.
        return io::Error::last_os_error().raw_os_error() == Some(ERROR_INVALID_PARAMETER);
    }
    let mut exit_code = 0u32;
    // SAFETY: `process` is the open handle just returned, `exit_code` a live `u32`; the handle
    // is closed once, after its last use.
    let read = unsafe { GetExitCodeProcess(process, &mut exit_code) };
    // SAFETY: as above: closed once, and not used again.
    unsafe { CloseHandle(process) };
    read != 0 && exit_code != STILL_ACTIVE
}

#[cfg(not(any(unix, windows)))]
fn process_has_ended(_pid: u32) -> bool {
    false
}

fn sync_parent_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        // Directories can be opened and synced on Unix; elsewhere the rename is what we get.
        Some(dir) if cfg!(unix) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            File::open(dir)?.sync_all()
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::{process_has_ended, retry_while_denied, RENAME_TRIES_ON_WINDOWS};
    use std::io::{self, ErrorKind};
    use std::process::{Command, Stdio};

    #[test]
    #[cfg(any(unix, windows))]
    fn a_running_process_has_not_ended_and_a_finished_one_has() {
        assert!(!process_has_ended(std::process::id()));
        // This test binary, listing its tests: ended once waited for, and still once its
        // `Child` (on Windows, a handle that keeps the process's record) is gone.
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--list")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(process_has_ended(pid));
        drop(child);
        assert!(process_has_ended(pid));
    }

    /// Runs `retry_while_denied(tries, …)` over an operation that fails with `errors` in turn,
    /// then succeeds with 7; returns its result and how many times it was called.
    fn retried(tries: u32, errors: &[ErrorKind]) -> (io::Result<u32>, usize) {
        let mut calls = 0;
        let result = retry_while_denied(tries, || {
            calls += 1;
            errors
                .get(calls - 1)
                .map_or(Ok(7), |&kind| Err(kind.into()))
        });
        (result, calls)
    }

    #[test]
    fn a_denied_rename_is_tried_again_until_it_succeeds() {
        let (result, calls) = retried(RENAME_TRIES_ON_WINDOWS, &[ErrorKind::PermissionDenied; 3]);
        assert_eq!((result.unwrap(), calls), (7, 4));
    }

    #[test]
    fn retries_stop_at_their_count_or_at_another_error() {
        let always_denied = [ErrorKind::PermissionDenied; 20];
        let (result, calls) = retried(5, &always_denied);
        assert_eq!(
            (result.unwrap_err().kind(), calls),
            (ErrorKind::PermissionDenied, 5)
        );
        // One try: the first error is the answer.
        let (result, calls) = retried(1, &always_denied);
        assert_eq!(
            (result.unwrap_err().kind(), calls),
            (ErrorKind::PermissionDenied, 1)
        );
        // Another error is no reason to wait.
        let (result, calls) = retried(5, &[ErrorKind::PermissionDenied, ErrorKind::NotFound]);
        assert_eq!(
            (result.unwrap_err().kind(), calls),
            (ErrorKind::NotFound, 2)
        );
    }
}
