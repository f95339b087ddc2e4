//! The MNIST download path against an HTTP server on 127.0.0.1 that serves
//! `../shared/data/mnist` (no internet needed): mirror fallback, MD5 verification, atomic
//! writes, corrupted files rejected without a trace, and `mnist_gan`'s first run.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{example, shared_mnist};
use ferrograd::data::download::{download_missing, DownloadEvent, FILES};
use ferrograd::data::{Mnist, Split};
use ferrograd::Error;

/// Serves `/good/<file>` from `source`, `/corrupt/<file>` with one byte flipped, and 404 for
/// anything else. It answers at most `max_requests` requests within 60 s, then stops.
fn serve(source: PathBuf, max_requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut served = 0;
        while served < max_requests && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    served += 1;
                    respond(stream, &source);
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    format!("http://{address}")
}

fn respond(mut stream: TcpStream, source: &Path) {
    stream.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut header = String::new();
    while reader.read_line(&mut header).unwrap() > 2 {
        header.clear();
    }
    let path = request_line.split(' ').nth(1).unwrap_or("");
    let (route, name) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or(("", ""));
    let body = std::fs::read(source.join(name))
        .ok()
        .and_then(|mut bytes| match route {
            "good" => Some(bytes),
            "corrupt" => {
                bytes[1000] ^= 0x55;
                Some(bytes)
            }
            _ => None,
        });
    let _ = match body {
        Some(body) => stream
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .and_then(|()| stream.write_all(&body)),
        None => stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    };
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ferrograd-download-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A corrupt first mirror and a missing second one: every file still arrives, from the third,
/// byte-identical and loadable, and nothing else is left in the directory.
#[test]
fn falls_back_across_mirrors_and_keeps_only_verified_files() {
    let Some(source) = shared_mnist() else { return };
    let server = serve(source.clone(), 20);
    let mirrors = [
        format!("{server}/corrupt/"),
        format!("{server}/missing/"),
        format!("{server}/good"),
    ];
    let dir = scratch_dir("fallback");
    let mut failures = Vec::new();
    let mut finished = Vec::new();
    let mut bytes = 0;
    let fetched = download_missing(&dir, &mirrors, &mut |event| match event {
        DownloadEvent::Failed { url, reason } => failures.push(format!("{url}: {reason}")),
        DownloadEvent::Finished { file } => finished.push(file.to_string()),
        DownloadEvent::Progress { bytes: n } => bytes += n,
        DownloadEvent::Started { .. } => {}
    })
    .unwrap();
    assert_eq!(fetched.len(), 4);
    assert_eq!(
        failures.len(),
        8,
        "two failed mirrors per file: {failures:#?}"
    );
    assert!(
        failures
            .iter()
            .filter(|f| f.contains("/corrupt/"))
            .all(|f| f.contains("MD5")),
        "{failures:#?}"
    );
    assert!(
        failures
            .iter()
            .filter(|f| f.contains("/missing/"))
            .all(|f| f.contains("404")),
        "{failures:#?}"
    );
    let expected: Vec<String> = FILES.iter().map(|f| format!("{}.gz", f.name)).collect();
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(finished, expected);
    assert_eq!(
        files_in(&dir),
        sorted,
        "no temporary or corrupted file left"
    );
    for name in &expected {
        assert_eq!(
            std::fs::read(dir.join(name)).unwrap(),
            std::fs::read(source.join(name)).unwrap()
        );
    }
    let total: u64 = expected
        .iter()
        .map(|n| std::fs::metadata(source.join(n)).unwrap().len())
        .sum();
    assert!(
        bytes >= total,
        "progress reported {bytes} of at least {total} bytes"
    );
    assert_eq!(Mnist::load(&dir, Split::Test).unwrap().len(), 10_000);

    // Everything is present now: nothing is fetched again.
    assert!(download_missing(&dir, &mirrors, &mut |_| {})
        .unwrap()
        .is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A new user's first run: `mnist_gan` with no MNIST at hand downloads the four files, saying
/// as each arrives that its MD5 checked out, says where they are, and trains on them.
#[test]
fn mnist_gan_downloads_mnist_then_trains() {
    let Some(source) = shared_mnist() else { return };
    let server = serve(source, 4);
    let dir = scratch_dir("mnist-gan-data");
    let out = scratch_dir("mnist-gan-run");
    let output = Command::new(example("mnist_gan"))
        .args(["--mirror", &format!("{server}/good/")])
        .args(["--max-iters", "1", "--threads", "2"])
        .arg("--data")
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    let mut names: Vec<String> = FILES.iter().map(|f| format!("{}.gz", f.name)).collect();
    for name in &names {
        let line = format!("downloaded {name} (MD5 verified)");
        assert!(said.contains(&line), "no {line:?} in\n{said}");
    }
    let line = format!("MNIST is in {}", dir.display());
    assert!(said.contains(&line), "no {line:?} in\n{said}");
    names.sort();
    assert_eq!(files_in(&dir), names);
    assert!(out.join("checkpoint.safetensors").is_file(), "{said}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
}

/// With only a corrupt mirror the download fails with every attempt listed, and the
/// corrupted bytes are not kept.
#[test]
fn a_corrupted_file_is_rejected_and_not_kept() {
    let Some(source) = shared_mnist() else { return };
    let server = serve(source, 4);
    let dir = scratch_dir("corrupt");
    let err = download_missing(&dir, &[format!("{server}/corrupt")], &mut |_| {}).unwrap_err();
    match &err {
        Error::Download { file, attempts } => {
            assert_eq!(file, "train-images-idx3-ubyte.gz");
            assert_eq!(attempts.len(), 1);
            assert!(
                attempts[0].contains("MD5")
                    && attempts[0].contains("f68b3c2dcbeaaa9fbdd348bbdeb94873"),
                "{err}"
            );
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(
        files_in(&dir).is_empty(),
        "left behind: {:?}",
        files_in(&dir)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unreachable_mirror_is_a_clear_error() {
    let dir = scratch_dir("unreachable");
    // Port 9 (discard) on loopback: nothing listens there.
    let err =
        download_missing(&dir, &["http://127.0.0.1:9/".to_string()], &mut |_| {}).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("could not download train-images-idx3-ubyte.gz:"),
        "{err}"
    );
    assert!(files_in(&dir).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file that cannot be written here (a full disk; here its temporary file's name is taken by
/// a directory) is an error naming it, and no other mirror is tried: each would download the
/// file again to fail the same way.
#[test]
fn a_file_that_cannot_be_written_here_is_not_fetched_from_the_next_mirror() {
    let Some(source) = shared_mnist() else { return };
    let server = serve(source, 4);
    let dir = scratch_dir("unwritable");
    let target = dir.join("train-images-idx3-ubyte.gz");
    let temporary = dir.join(format!(
        ".train-images-idx3-ubyte.gz.{}.tmp",
        std::process::id()
    ));
    std::fs::create_dir_all(&temporary).unwrap();
    let mirrors = [format!("{server}/good"), format!("{server}/good/")];
    let (mut started, mut failed) = (0, 0);
    let err = download_missing(&dir, &mirrors, &mut |event| match event {
        DownloadEvent::Started { .. } => started += 1,
        DownloadEvent::Failed { .. } => failed += 1,
        _ => {}
    })
    .unwrap_err();
    match &err {
        Error::Io { path, .. } => assert_eq!(path, &target, "{err}"),
        other => panic!("not an error writing the file: {other}"),
    }
    assert_eq!((started, failed), (1, 0), "one mirror asked: {err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
