//! Files that are either fully written or not there at all.
//!
//! The data goes to a temporary file beside the target, is flushed to disk (`fsync`), and only
//! then renamed over the target; the directory is synced so the rename itself survives a
//! crash. A process killed at any moment leaves the previous file intact (and at worst a
//! stray `.tmp` file, never a half-written target; [`remove_abandoned_temporaries`] clears
//! those).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// Writes `path` atomically with `write`, which receives the temporary file. If `write` fails,
/// the temporary file is removed and `path` is untouched.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let temp = temp_path(path);
    let result = (|| {
        let mut file = File::create(&temp)?;
        write(&mut file)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)?;
        sync_parent_dir(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp); // best effort: the error that matters is `result`'s
    }
    result
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
/// liveness can be read (Linux's `/proc`); elsewhere it removes nothing.
///
/// # Errors
/// If `dir` cannot be read, or a file there cannot be removed.
pub fn remove_abandoned_temporaries(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_file_pid) else {
            continue;
        };
        if pid != std::process::id() && process_has_ended(pid) {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The process id in a name made by [`temp_path`] (`.name.<pid>.tmp`), if it is one.
fn temp_file_pid(file_name: &str) -> Option<u32> {
    let stem = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    match stem.rsplit_once('.') {
        Some((name, pid)) if !name.is_empty() => pid.parse().ok(),
        _ => None,
    }
}

/// Whether process `pid` is known to have ended (never where that cannot be told).
fn process_has_ended(pid: u32) -> bool {
    cfg!(target_os = "linux")
        && Path::new("/proc/self").exists()
        && !Path::new("/proc").join(pid.to_string()).exists()
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
