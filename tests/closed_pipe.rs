//! The tools that only print end quietly when the reader of their output has quit, as `cat`
//! does (`gan_bench | head -1`): killed by SIGPIPE, nothing on standard error. The tools that
//! write files finish them first (tests/mnist_gan_cli.rs: `mnist_gan` stops with a checkpoint,
//! `gan_sample` writes its grid and samples as if nothing had happened).
#![cfg(unix)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

use common::{closed_pipe, example};

/// Runs the example `name` with its standard output a pipe nobody reads any more.
fn output_into_a_closed_pipe(name: &str, args: &[&str]) -> Output {
    Command::new(example(name))
        .args(args)
        .stdout(closed_pipe())
        .output()
        .unwrap()
}

#[test]
fn printing_tools_end_quietly_when_their_reader_has_quit() {
    for (name, args) in [
        ("autodiff_tour", &[][..]),
        ("gan_bench", &["--quick", "--iteration-only"][..]),
    ] {
        let output = output_into_a_closed_pipe(name, args);
        assert_eq!(
            output.status.signal(),
            Some(libc::SIGPIPE),
            "{name}: {:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.stderr.is_empty(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
