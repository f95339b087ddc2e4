//! The training loop: epochs of steps, each step's statistics logged while the next runs, and
//! each epoch's files written while the next epoch trains.

use std::error::Error;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ferrograd::atomic_file::write_atomically;
use ferrograd::checkpoint::Snapshot;
use ferrograd::data::mnist::IMAGE_PIXELS;
use ferrograd::data::{DataLoader, Mnist};
use ferrograd::gan::{Gan, PendingStats, StepStats, TrainingProgress, LATENT_DIM};
use ferrograd::rng::{with_default_generator, Generator};
use ferrograd::{Device, Tensor};

use crate::cli::{directory_of, resume_options, Args};
use crate::console::stop_requested;
use crate::file_writer::FileWriter;
use crate::gan_output::{
    self, at_path, epoch_grids, loss_plot_svg, write_grid_png, write_progress_apng, LossLog,
};
use crate::progress::{rate_text, time_left, EpochProgress};

/// Seeds the fixed noise batch of the sample grids, apart from the training stream.
const GRID_NOISE_SALT: u64 = 0x6772_6964; // "grid"

/// The epochs' grids as one animated PNG, in `--out`.
const PROGRESS_PNG: &str = "samples_progress.png";

/// The newest grid, rewritten after each epoch (and each `--sample-every` iterations).
const LATEST_PNG: &str = "samples_latest.png";

/// A run under way: the GAN and where it stands, the data, and the files the run writes.
pub struct Training<'a> {
    pub gan: Gan,
    pub progress: TrainingProgress,
    pub loader: DataLoader<'a>,
    batches: u64,
    /// The iteration the run ends at (`--epochs`, `--max-iters`); a stop request brings it
    /// forward to the step in flight.
    last_step: u64,
    /// The noise batch of the sample grids, the same after every epoch.
    grid_noise: Tensor,
    log: LossLog,
    out: PathBuf,
    checkpoint_path: PathBuf,
    files: FileWriter,
    /// The iteration of the last checkpoint this run has written to `checkpoint_path` (synced
    /// to disk), set by the file writer once it has.
    checkpoint_on_disk: Arc<Mutex<Option<u64>>>,
    /// The checkpoint `--resume` named, and its iteration.
    resumed_from: Option<(u64, PathBuf)>,
    /// Whether this run finished an epoch, so wrote its grid (`samples_epoch_NNN.png`).
    wrote_epoch_grid: bool,
    /// Set by the file writer once it has written `samples_progress.png`.
    animated: Arc<AtomicBool>,
}

impl<'a> Training<'a> {
    pub fn new(
        args: &Args,
        out: &Path,
        gan: Gan,
        progress: TrainingProgress,
        mnist: &'a Mnist,
        device: &Device,
    ) -> Result<Self, Box<dyn Error>> {
        let loader = DataLoader::new(
            &mnist.images,
            IMAGE_PIXELS,
            progress.batch_size,
            progress.seed,
        );
        let batches = loader.batches_per_epoch() as u64;
        let grid_noise = Tensor::randn_with(
            &[64, LATENT_DIM],
            device,
            &mut Generator::new(progress.seed ^ GRID_NOISE_SALT),
        );
        // The loss log goes on from the run's own: the resumed checkpoint's, wherever this
        // run's files go.
        let log_path = out.join("losses.csv");
        let earlier_log = args
            .resume
            .as_deref()
            .map_or(log_path.clone(), |checkpoint| {
                directory_of(checkpoint).join("losses.csv")
            });
        let log = LossLog::open(&log_path, &earlier_log, progress.step)?;
        let resumed_step = progress.step;
        Ok(Training {
            gan,
            progress,
            loader,
            batches,
            last_step: epochs_end(args.epochs, batches).min(args.max_iters.unwrap_or(u64::MAX)),
            grid_noise,
            log,
            out: out.to_path_buf(),
            checkpoint_path: out.join("checkpoint.safetensors"),
            files: FileWriter::default(),
            checkpoint_on_disk: Arc::default(),
            resumed_from: args.resume.clone().map(|path| (resumed_step, path)),
            wrote_epoch_grid: false,
            animated: Arc::default(),
        })
    }

    /// Trains epoch after epoch until the run's last iteration, or a stop request.
    pub fn train(&mut self, args: &Args) -> Result<(), Box<dyn Error>> {
        if self.progress.step >= self.last_step {
            let limit = match args.max_iters {
                Some(iters) if iters < epochs_end(args.epochs, self.batches) => {
                    format!("--max-iters {iters}")
                }
                _ => format!("--epochs {}", args.epochs),
            };
            say!(
                "nothing to train: the run is at iteration {} already, and {limit} stops it at \
                 iteration {}",
                self.progress.step,
                self.last_step
            );
        }
        while self.progress.step < self.last_step && !stop_requested() {
            let this_epoch = self.train_epoch(args)?;
            self.end_epoch(this_epoch, args.epochs)?;
        }
        if self.wrote_epoch_grid {
            self.animate_epoch_grids()?;
        }
        Ok(())
    }

    /// Writes `samples_progress.png`: every epoch's grid in `--out` (an earlier run's too,
    /// when this one resumed it there) as one animation, once the grids are on disk. A grid it
    /// cannot read (a file of the user's under that name) costs the animation, with a note,
    /// and not the run.
    fn animate_epoch_grids(&mut self) -> Result<(), Box<dyn Error>> {
        let out = self.out.clone();
        let animated = Arc::clone(&self.animated);
        self.files.write(move || {
            let written = epoch_grids(&out)
                .map_err(at_path(&out))
                .and_then(|grids| write_progress_apng(&out.join(PROGRESS_PNG), &grids));
            match written {
                Ok(()) => animated.store(true, Ordering::Relaxed),
                Err(err) => {
                    complain!("note: no animation of the epochs' samples: {err}");
                }
            }
            Ok(())
        })
    }

    /// Runs the steps of the epoch the run is in, from where it stands to the epoch's end (or
    /// the run's, or a stop request), logging each step's statistics.
    fn train_epoch(&mut self, args: &Args) -> Result<EpochProgress, Box<dyn Error>> {
        let epoch = self.progress.step / self.batches;
        let first_batch = self.progress.step % self.batches;
        let order = self.loader.order(epoch);
        let mut this_epoch = EpochProgress::new(epoch, args.epochs, self.batches, first_batch);
        // A step's statistics are read while the next step runs: on a GPU the host queues
        // step s + 1 before it waits for the numbers of step s, so the GPU never idles while
        // the host uploads a batch, logs a row or draws the bar.
        let mut in_flight: Option<(u64, PendingStats)> = None;
        for index in first_batch..self.batches {
            if stop_requested() {
                self.last_step = self.progress.step; // end_epoch writes the checkpoint
            }
            if self.progress.step == self.last_step {
                break;
            }
            self.files.check()?;
            // Made on the host: a captured step uploads it straight into its input buffer.
            let batch = self.loader.batch(&order, index as usize, &Device::Cpu);
            self.gan.train_step_async(&batch);
            self.progress.step += 1;
            let queued = self.gan.last_stats_later().expect("a step has just run");
            if let Some((step, stats)) = in_flight.replace((self.progress.step, queued)) {
                self.record(&mut this_epoch, step, stats.wait())?;
            }
            let step = self.progress.step;
            if args.checkpoint_every > 0 && step.is_multiple_of(args.checkpoint_every) {
                if let Some((step, stats)) = in_flight.take() {
                    // The log reaches the checkpoint's step.
                    self.record(&mut this_epoch, step, stats.wait())?;
                }
                self.checkpoint()?;
            }
            if args.sample_every > 0 && step.is_multiple_of(args.sample_every) {
                self.write_grid(&format!("samples_iter_{step:07}.png"))?;
            }
        }
        if let Some((step, stats)) = in_flight.take() {
            self.record(&mut this_epoch, step, stats.wait())?;
        }
        Ok(this_epoch)
    }

    /// Logs step `step`'s statistics; an error once they are not all finite numbers: the
    /// weights have diverged (NaN stays NaN), and no later step or checkpoint would be worth
    /// having. (The losses alone can stay finite: binary cross-entropy clamps its logarithms.)
    fn record(
        &mut self,
        this_epoch: &mut EpochProgress,
        step: u64,
        stats: StepStats,
    ) -> Result<(), Box<dyn Error>> {
        this_epoch.record(&mut self.log, step, stats)?;
        let StepStats {
            d_loss,
            g_loss,
            d_real,
            d_fake,
        } = stats;
        if [d_loss, g_loss, d_real, d_fake]
            .iter()
            .all(|v| v.is_finite())
        {
            return Ok(());
        }
        Err(format!(
            "training diverged at iteration {step}: d_loss {d_loss}, g_loss {g_loss}, D(x) \
             {d_real}, D(G(z)) {d_fake}; a lower --lr may train (a resumed run takes a new one)"
        )
        .into())
    }

    /// Writes the loss log and then a checkpoint of the run as it stands, while training goes
    /// on.
    fn checkpoint(&mut self) -> Result<(), Box<dyn Error>> {
        let checkpoint = self.pending_checkpoint()?;
        self.files.write(move || checkpoint.write())
    }

    /// The run as it stands, to be written as a checkpoint once the loss log is on disk (the
    /// values are copied: training goes on while they are written).
    fn pending_checkpoint(&mut self) -> Result<PendingCheckpoint, Box<dyn Error>> {
        self.progress.epoch = self.progress.step / self.batches;
        self.progress.rng = with_default_generator(|g| *g);
        Ok(PendingCheckpoint {
            log_file: self.log.flush()?,
            snapshot: self.gan.checkpoint_snapshot(&self.progress),
            step: self.progress.step,
            path: self.checkpoint_path.clone(),
            on_disk: Arc::clone(&self.checkpoint_on_disk),
        })
    }

    /// Writes the sample grid as the generator now draws it to `name` and `samples_latest.png`
    /// in `--out`, while training goes on (`--sample-every`).
    fn write_grid(&mut self, name: &str) -> Result<(), Box<dyn Error>> {
        let samples = self.samples();
        let (png, latest_png) = (self.out.join(name), self.out.join(LATEST_PNG));
        self.files.write(move || {
            write_grid_png(&png, &samples, 8)?;
            Ok(write_grid_png(&latest_png, &samples, 8)?)
        })
    }

    /// The generator's images of the grid's fixed noise, on the host: read from the GPU now,
    /// so that they can be written while training goes on.
    fn samples(&self) -> Tensor {
        gan_output::generate(&self.gan.generator, &self.grid_noise).to_device(&Device::Cpu)
    }

    /// Says how the epoch went, and writes its files while the next one trains: a checkpoint,
    /// the sample grid and the loss curve.
    fn end_epoch(&mut self, this_epoch: EpochProgress, epochs: u64) -> Result<(), Box<dyn Error>> {
        let EpochProgress {
            epoch,
            bar,
            means,
            started,
        } = this_epoch;
        bar.finish_and_clear();
        let finished_epoch = self.progress.step.is_multiple_of(self.batches);
        let label = if finished_epoch {
            format!("epoch {}/{epochs}", epoch + 1)
        } else {
            format!(
                "stopped in epoch {} at iteration {}",
                epoch + 1,
                self.progress.step
            )
        };
        let seconds = started.elapsed().as_secs_f64();
        let rate = means.count as f64 / seconds;
        let steps_left = if stop_requested() {
            0
        } else {
            self.last_step - self.progress.step
        };
        say!(
            "{label}  {}  ({seconds:.1} s, {}{})",
            means.summary(),
            rate_text(rate),
            time_left(steps_left as f64 / rate)
        );
        // What the files need is read from the GPU now; the files are written while the next
        // epoch trains.
        let samples = self.samples();
        let epoch_png =
            finished_epoch.then(|| self.out.join(format!("samples_epoch_{:03}.png", epoch + 1)));
        let latest_png = self.out.join(LATEST_PNG);
        let svg = loss_plot_svg(self.log.rows(), self.batches as usize);
        let svg_path = self.out.join("losses.svg");
        let checkpoint = self.pending_checkpoint()?;
        self.files.write(move || {
            // The checkpoint first: if a picture cannot be written (a full disk), the run
            // stops with the epoch's training saved, not lost with the picture.
            checkpoint.write()?;
            if let Some(epoch_png) = epoch_png {
                write_grid_png(&epoch_png, &samples, 8)?;
            }
            write_grid_png(&latest_png, &samples, 8)?;
            write_atomically(&svg_path, |file| file.write_all(svg.as_bytes()))
                .map_err(at_path(&svg_path))?;
            Ok(())
        })?;
        self.wrote_epoch_grid |= finished_epoch;
        Ok(())
    }

    /// Waits for the files still being written; returns the checkpoint's path if this run
    /// wrote one.
    pub fn finish(&mut self) -> Result<Option<PathBuf>, Box<dyn Error>> {
        self.files.finish()?;
        if self.animated.load(Ordering::Relaxed) {
            let progress = self.out.join(PROGRESS_PNG);
            say!("every epoch's samples, animated: {}", progress.display());
        }
        let written = *lock(&self.checkpoint_on_disk);
        Ok(written.map(|_| self.checkpoint_path.clone()))
    }

    /// Where the run can be continued from: this run's last checkpoint on disk, else the one it
    /// resumed from; with its iteration. Call once the files are written (`finish`).
    pub fn resume_point(&self) -> Option<(u64, &Path)> {
        let written = *lock(&self.checkpoint_on_disk);
        match (written, &self.resumed_from) {
            (Some(step), _) => Some((step, &self.checkpoint_path)),
            (None, Some((step, path))) => Some((*step, path)),
            (None, None) => None,
        }
    }

    /// `err`, which ends the run, followed by what the run leaves to continue from once the
    /// files in flight are written: a failed checkpoint leaves the one before it intact.
    pub fn with_resume_hint(&mut self, err: Box<dyn Error>) -> Box<dyn Error> {
        let _ = self.files.finish(); // its own error, if any, is secondary to `err`
        let hint = match self.resume_point() {
            Some((step, path)) => format!(
                "the checkpoint of iteration {step} is intact: continue with {}",
                resume_options(path)
            ),
            None => "no checkpoint to continue from: this run wrote none".to_string(),
        };
        format!("{err}\n{hint}").into()
    }
}

/// The iteration at which `epochs` epochs of `batches` end; `u64::MAX` for more than that
/// counts (`--epochs 19666038458112529` would otherwise wrap around to iteration 586).
fn epochs_end(epochs: u64, batches: u64) -> u64 {
    epochs.saturating_mul(batches)
}

/// A checkpoint to write on the file writer's thread, after the loss log it follows.
struct PendingCheckpoint {
    /// The loss log, flushed up to the checkpoint's step.
    log_file: File,
    snapshot: Snapshot,
    step: u64,
    path: PathBuf,
    /// Where the checkpoint's iteration goes once it is on disk (`Training::checkpoint_on_disk`).
    on_disk: Arc<Mutex<Option<u64>>>,
}

impl PendingCheckpoint {
    /// Writes the checkpoint, unless training has diverged: one whose weights are not all
    /// finite numbers would replace the last good one with nothing to resume from.
    fn write(self) -> Result<(), Box<dyn Error + Send + Sync>> {
        self.log_file.sync_data()?; // on disk before the checkpoint that follows it
        let written = match self.snapshot.first_non_finite() {
            Some(name) => Err(format!(
                "{name} holds NaN or infinite values (training diverged)"
            )),
            None => self
                .snapshot
                .write(&self.path)
                .map_err(|err| err.to_string()),
        };
        written.map_err(|why| {
            format!(
                "the checkpoint of iteration {} was not written: {why}",
                self.step
            )
        })?;
        *lock(&self.on_disk) = Some(self.step);
        Ok(())
    }
}

/// The iteration of the last checkpoint on disk. A panic while the lock was held cannot leave
/// an `Option<u64>` half written, so a poisoned lock is read all the same.
fn lock(on_disk: &Mutex<Option<u64>>) -> std::sync::MutexGuard<'_, Option<u64>> {
    on_disk.lock().unwrap_or_else(PoisonError::into_inner)
}
