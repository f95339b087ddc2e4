//! What the terminal shows while training: a progress bar per epoch with the running means
//! of the step's statistics, and how long the run has left.

use std::time::Instant;

use ferrograd::gan::StepStats;
use indicatif::{ProgressBar, ProgressState, ProgressStyle};

use crate::gan_output::{LossLog, LossRow};

/// The epoch being trained: its progress bar, and the means of its statistics so far.
pub struct EpochProgress {
    pub epoch: u64,
    pub bar: ProgressBar,
    pub means: RunningMeans,
    pub started: Instant,
}

impl EpochProgress {
    pub fn new(epoch: u64, epochs: u64, batches: u64, first_batch: u64) -> Self {
        EpochProgress {
            epoch,
            bar: epoch_bar(epoch, epochs, batches, first_batch),
            means: RunningMeans::default(),
            started: Instant::now(),
        }
    }

    /// Adds step `step`'s statistics to the log, the means and the bar.
    pub fn record(
        &mut self,
        log: &mut LossLog,
        step: u64,
        stats: StepStats,
    ) -> std::io::Result<()> {
        self.means.add(&stats);
        log.push(LossRow {
            epoch: self.epoch + 1,
            iter: step,
            d_loss: stats.d_loss,
            g_loss: stats.g_loss,
            d_real: stats.d_real,
            d_fake: stats.d_fake,
        })?;
        self.bar.inc(1);
        self.bar.set_message(self.means.summary());
        Ok(())
    }
}

/// `938 batches of 64 (the last of 32)`: how an epoch of `images` cuts into batches, the last
/// one short as with PyTorch's `drop_last=False`.
pub fn describe_batches(images: usize, batch_size: usize) -> String {
    if images <= batch_size {
        return format!("1 batch of {images}");
    }
    let batches = images.div_ceil(batch_size);
    let last = images - (batches - 1) * batch_size;
    if last == batch_size {
        format!("{batches} batches of {batch_size}")
    } else {
        format!("{batches} batches of {batch_size} (the last of {last})")
    }
}

fn epoch_bar(epoch: u64, epochs: u64, batches: u64, position: u64) -> ProgressBar {
    let bar = ProgressBar::new(batches);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {rate} eta {eta}  {msg}")
            .expect("valid template")
            .with_key(
                "rate",
                |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let _ = write!(out, "{}", rate_text(state.per_sec()));
                },
            )
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
    bar.set_position(position);
    bar.reset_eta();
    bar
}

/// A rate as tqdm shows it: `12.3 it/s`, or under one iteration a second `2.41 s/it` (a run on
/// the emulator, or of very large batches), where `0.4 it/s` would hide the step's time.
pub fn rate_text(iterations_per_second: f64) -> String {
    if !(iterations_per_second.is_finite() && iterations_per_second > 0.0) {
        "? it/s".to_string() // no step timed yet
    } else if iterations_per_second < 1.0 {
        format!("{:.2} s/it", 1.0 / iterations_per_second)
    } else {
        format!("{iterations_per_second:.1} it/s")
    }
}

/// `, about 12 min left` for the rest of the run at this epoch's pace; nothing once it is done.
pub fn time_left(seconds: f64) -> String {
    if !(seconds.is_finite() && seconds > 0.0) {
        return String::new();
    }
    let minutes = (seconds / 60.0).round() as u64;
    match minutes {
        0 => format!(", about {seconds:.0} s left"),
        1..=59 => format!(", about {minutes} min left"),
        _ => format!(", about {} h {:02} min left", minutes / 60, minutes % 60),
    }
}

/// Means of the epoch's statistics so far.
#[derive(Default)]
pub struct RunningMeans {
    pub count: u64,
    sums: [f64; 4],
}

impl RunningMeans {
    fn add(&mut self, stats: &StepStats) {
        self.count += 1;
        let values = [stats.d_loss, stats.g_loss, stats.d_real, stats.d_fake];
        for (sum, value) in self.sums.iter_mut().zip(values) {
            *sum += f64::from(value);
        }
    }

    pub fn summary(&self) -> String {
        let n = self.count.max(1) as f64;
        let [d, g, dx, dgz] = self.sums.map(|s| s / n);
        format!("d_loss {d:.3}  g_loss {g:.3}  D(x) {dx:.3}  D(G(z)) {dgz:.3}")
    }
}
