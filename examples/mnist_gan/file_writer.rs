//! The run's files, written on a thread of their own while training goes on.

use std::error::Error;

/// Writes the run's files on a thread of its own, one job at a time and in order, while
/// training goes on: each file is synced to disk before it replaces the previous one (tens of
/// ms for a 35 MB checkpoint, a few for each picture), which the GPU should not wait for.
/// Every write is atomic, so a kill at any moment leaves the previous file intact.
#[derive(Default)]
pub struct FileWriter {
    in_flight: Option<std::thread::JoinHandle<Result<(), Box<dyn Error + Send + Sync>>>>,
}

impl FileWriter {
    /// Starts `job` once the job before it is done (whose error, if it failed, is returned
    /// here instead).
    pub fn write(
        &mut self,
        job: impl FnOnce() -> Result<(), Box<dyn Error + Send + Sync>> + Send + 'static,
    ) -> Result<(), Box<dyn Error>> {
        self.finish()?;
        self.in_flight = Some(std::thread::spawn(job));
        Ok(())
    }

    /// The error of the job in flight if it has failed already, without waiting for one still
    /// running: called every step, it stops a run whose checkpoint could not be written (a full
    /// disk) at once, instead of at the next write, an epoch of training later.
    pub fn check(&mut self) -> Result<(), Box<dyn Error>> {
        match &self.in_flight {
            Some(job) if job.is_finished() => self.finish(),
            _ => Ok(()),
        }
    }

    /// Waits until the job in flight, if any, is done.
    pub fn finish(&mut self) -> Result<(), Box<dyn Error>> {
        match self.in_flight.take() {
            None => Ok(()),
            Some(writer) => Ok(writer
                .join()
                .map_err(|_| "the file writer panicked")?
                .map_err(|err| err.to_string())?),
        }
    }
}

impl Drop for FileWriter {
    /// A run that stops on an error still finishes the job in flight (its own error, if any,
    /// is secondary to the one being reported).
    fn drop(&mut self) {
        let _ = self.finish();
    }
}
