//! Files that are either fully written or not there at all.
//!
//! The data goes to a temporary file beside the target, is flushed to disk (`fsync`), and only
//! then renamed over the target; the directory is synced so the rename itself survives a
//! crash. A process killed at any moment leaves the previous file intact (and at worst a
//! stray `.tmp` file, never a half-written target).

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
