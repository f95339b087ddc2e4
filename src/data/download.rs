//! Fetching MNIST the way torchvision does: each missing `.gz` file from the first mirror that
//! delivers it with the right MD5, written atomically.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

use md5::{Digest, Md5};

use super::mnist::{self, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
use crate::atomic_file::write_atomically;
use crate::error::{Error, Result};

/// Public mirrors of the original files, tried in order (torchvision's list first).
pub const MIRRORS: [&str; 3] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

/// The environment variable that replaces [`MIRRORS`] with one base URL.
pub const MIRROR_ENV: &str = "MNIST_MIRROR";

/// A file to fetch: its standard name (without `.gz`) and the MD5 of its `.gz` form.
#[derive(Clone, Copy, Debug)]
pub struct RemoteFile {
    /// The name without `.gz`, as in [`crate::data::mnist::TRAIN_IMAGES`].
    pub name: &'static str,
    /// The MD5 of the `.gz` file, in lowercase hex.
    pub md5: &'static str,
}

/// The four MNIST files and their published checksums.
pub const FILES: [RemoteFile; 4] = [
    RemoteFile {
        name: TRAIN_IMAGES,
        md5: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    },
    RemoteFile {
        name: TRAIN_LABELS,
        md5: "d53e105ee54ea40749a09fcbcd1e9432",
    },
    RemoteFile {
        name: TEST_IMAGES,
        md5: "9fb629c4189551a2d022fa330f9573f3",
    },
    RemoteFile {
        name: TEST_LABELS,
        md5: "ec29112dd5afa0611ce80d1b7f02629c",
    },
];

/// What a download reports as it goes, for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // the fields: named in their variant's doc, one line each
pub enum DownloadEvent<'a> {
    /// A request to `url` for `file` was answered; `total_bytes` is the announced length, if
    /// any.
    Started {
        file: &'a str,
        url: &'a str,
        total_bytes: Option<u64>,
    },
    /// `bytes` more bytes arrived.
    Progress { bytes: u64 },
    /// The attempt at `url` failed, for `reason` (and the next mirror is tried).
    Failed { url: &'a str, reason: &'a str },
    /// `file` is in place, checksum verified.
    Finished { file: &'a str },
}

/// The mirrors to use: `$MNIST_MIRROR` if set, else [`MIRRORS`].
pub fn default_mirrors() -> Vec<String> {
    match std::env::var(MIRROR_ENV) {
        Ok(url) if !url.is_empty() => vec![url],
        _ => MIRRORS.iter().map(|m| m.to_string()).collect(),
    }
}

/// Downloads every MNIST file that is in `dir` in neither plain nor `.gz` form, creating `dir`
/// if needed. Returns the names of the files it fetched.
pub fn download_missing(
    dir: &Path,
    mirrors: &[String],
    on_event: &mut dyn FnMut(DownloadEvent),
) -> Result<Vec<&'static str>> {
    let missing: Vec<RemoteFile> = FILES
        .into_iter()
        .filter(|file| mnist::find(dir, file.name).is_err())
        .collect();
    if !missing.is_empty() {
        fs::create_dir_all(dir).map_err(|source| {
            // Over a file, `create_dir_all` says only "File exists": name the file in the way.
            match dir.ancestors().find(|path| path.is_file()) {
                Some(file) => Error::Io {
                    path: file.to_path_buf(),
                    source: io::Error::new(
                        io::ErrorKind::NotADirectory,
                        "a file where MNIST's directory should be",
                    ),
                },
                None => Error::Io {
                    path: dir.to_path_buf(),
                    source,
                },
            }
        })?;
    }
    for file in &missing {
        download(dir, *file, mirrors, on_event)?;
    }
    Ok(missing.iter().map(|file| file.name).collect())
}

/// Fetches `file` into `dir/<name>.gz` from the first mirror that delivers the right bytes.
fn download(
    dir: &Path,
    file: RemoteFile,
    mirrors: &[String],
    on_event: &mut dyn FnMut(DownloadEvent),
) -> Result<()> {
    let gz_name = format!("{}.gz", file.name);
    let target = dir.join(&gz_name);
    let mut attempts = Vec::new();
    for mirror in mirrors {
        let url = format!("{}/{gz_name}", mirror.trim_end_matches('/'));
        match fetch_verified(&url, &target, file, on_event) {
            Ok(()) => {
                on_event(DownloadEvent::Finished { file: &gz_name });
                return Ok(());
            }
            Err(Failure::Mirror(reason)) => {
                on_event(DownloadEvent::Failed {
                    url: &url,
                    reason: &reason,
                });
                attempts.push(format!("{url}: {reason}"));
            }
            // Writing here failed (a full disk): no mirror would do better, so none is tried.
            Err(Failure::Local(source)) => {
                return Err(Error::Io {
                    path: target,
                    source,
                })
            }
        }
    }
    Err(Error::Download {
        file: gz_name,
        attempts,
    })
}

/// Why an attempt at a mirror failed.
enum Failure {
    /// At the mirror's end: no answer, an error status, a broken transfer, wrong bytes. The
    /// next mirror may do better.
    Mirror(String),
    /// Here, writing the file.
    Local(io::Error),
}

/// A failure of the mirror's making inside the file's write, told apart from the write's own
/// errors ([`Failure::Local`]) by its type.
#[derive(Debug)]
struct MirrorFault(String);

impl std::fmt::Display for MirrorFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MirrorFault {}

/// Streams `url` into `target` atomically, hashing as it goes; a wrong MD5 leaves no file.
fn fetch_verified(
    url: &str,
    target: &Path,
    file: RemoteFile,
    on_event: &mut dyn FnMut(DownloadEvent),
) -> std::result::Result<(), Failure> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_per_read(Some(Duration::from_secs(30))) // a stalled mirror, not a slow one
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|err| Failure::Mirror(err.to_string()))?;
    let body = response.body_mut();
    on_event(DownloadEvent::Started {
        file: file.name,
        url,
        total_bytes: body.content_length(),
    });
    let mut reader = body.as_reader();
    write_atomically(target, |out| {
        let digest = copy_hashing(&mut reader, out, on_event)?;
        if digest == file.md5 {
            Ok(())
        } else {
            Err(io::Error::other(MirrorFault(format!(
                "MD5 {digest} does not match the published {}",
                file.md5
            ))))
        }
    })
    .map_err(|err| match err.get_ref() {
        Some(inner) if inner.is::<MirrorFault>() => Failure::Mirror(err.to_string()),
        _ => Failure::Local(err),
    })
}

/// Copies `reader` to `out`, returning the MD5 of what passed, as lowercase hex. An error
/// reading is the mirror's ([`MirrorFault`]), one writing is this machine's.
fn copy_hashing(
    reader: &mut impl Read,
    out: &mut File,
    on_event: &mut dyn FnMut(DownloadEvent),
) -> io::Result<String> {
    let mut hasher = Md5::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = reader
            .read(&mut buffer)
            .map_err(|err| io::Error::other(MirrorFault(err.to_string())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])?;
        on_event(DownloadEvent::Progress { bytes: n as u64 });
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}
