//! What `mnist_gan`'s terminal shows: the pure functions of its `progress` module, compiled
//! here from the example's own source (`cargo test` builds examples as programs, which run no
//! unit tests of their own; `tests/mnist_gan_cli.rs` runs the program whole).

#[path = "../examples/gan_output/mod.rs"]
mod gan_output; // what `progress` writes to (it allows its own dead code)
#[allow(dead_code)] // the progress bar itself, which these tests do not draw
#[path = "../examples/mnist_gan/progress.rs"]
mod progress;

use progress::{describe_batches, rate_text, time_left};

#[test]
fn rates_under_one_a_second_read_as_seconds_an_iteration() {
    assert_eq!(rate_text(34.94), "34.9 it/s");
    assert_eq!(rate_text(1.0), "1.0 it/s");
    assert_eq!(rate_text(0.4), "2.50 s/it");
    assert_eq!(rate_text(1.0 / 25.8), "25.80 s/it");
    assert_eq!(rate_text(0.0), "? it/s");
    assert_eq!(rate_text(f64::NAN), "? it/s");
}

#[test]
fn time_left_in_seconds_minutes_or_hours() {
    assert_eq!(time_left(22.4), ", about 22 s left");
    assert_eq!(time_left(42.4), ", about 1 min left");
    assert_eq!(time_left(720.0), ", about 12 min left");
    assert_eq!(
        time_left(3.0 * 3600.0 + 5.0 * 60.0),
        ", about 3 h 05 min left"
    );
    assert_eq!(time_left(0.0), "");
    assert_eq!(time_left(f64::INFINITY), "");
}

#[test]
fn an_epoch_cuts_into_batches_as_pytorch_drop_last_false() {
    assert_eq!(
        describe_batches(60_000, 64),
        "938 batches of 64 (the last of 32)"
    );
    assert_eq!(describe_batches(64_000, 64), "1000 batches of 64");
    assert_eq!(describe_batches(60_000, 70_000), "1 batch of 60000");
}
