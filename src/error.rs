//! Errors for input a user can get wrong: files, downloads, checkpoints, devices. (Misusing an
//! op, such as mismatched shapes, panics instead, as PyTorch raises.)

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::data::idx::IdxError;

/// A result whose error is ferrograd's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong with a file, a download, a checkpoint or a device, with the path or name
/// involved; its `Display` is a sentence for the user.
#[derive(Debug)]
pub enum Error {
    /// Reading or writing a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A file is not valid IDX.
    Idx {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: IdxError,
    },
    /// A standard MNIST file is in neither its plain nor its `.gz` form.
    MnistMissing {
        /// The directory searched.
        dir: PathBuf,
        /// The file's standard name, such as `train-images-idx3-ubyte`.
        name: &'static str,
    },
    /// An MNIST image file whose images are not 28 × 28.
    MnistImageSize {
        /// The file.
        path: PathBuf,
        /// Its dimensions, as its header gives them.
        dims: Vec<usize>,
    },
    /// An MNIST file of the wrong kind (labels where images belong, or the other way).
    MnistKind {
        /// The file.
        path: PathBuf,
        /// What was expected there, such as `"labels (1 dimension)"`.
        expected: &'static str,
        /// Its dimensions, as its header gives them.
        dims: Vec<usize>,
    },
    /// Image and label files that disagree on the number of items.
    MnistCountMismatch {
        /// The image file.
        images: PathBuf,
        /// How many images it holds.
        image_count: usize,
        /// The label file.
        labels: PathBuf,
        /// How many labels it holds.
        label_count: usize,
    },
    /// A label outside 0–9.
    MnistLabel {
        /// The label file.
        path: PathBuf,
        /// Which label, counting from 0.
        index: usize,
        /// Its value.
        value: u8,
    },
    /// No mirror delivered a file with the right checksum; one line per attempt.
    Download {
        /// The file's name.
        file: String,
        /// Each attempt: the URL and why it failed.
        attempts: Vec<String>,
    },
    /// A checkpoint that cannot be read, or that does not fit the model.
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The requested device is not available: why.
    Device(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Idx { path, source } => {
                write!(f, "{}: not a valid IDX file: {source}", path.display())
            }
            Error::MnistMissing { dir, name } => write!(
                f,
                "{}: MNIST file {name} (or {name}.gz) not found",
                dir.display()
            ),
            Error::MnistImageSize { path, dims } => write!(
                f,
                "{}: MNIST images must be 28 × 28, this file holds dims {dims:?}",
                path.display()
            ),
            Error::MnistKind {
                path,
                expected,
                dims,
            } => write!(
                f,
                "{}: expected an IDX file of {expected}, found one with dims {dims:?}",
                path.display()
            ),
            Error::MnistCountMismatch {
                images,
                image_count,
                labels,
                label_count,
            } => write!(
                f,
                "{} holds {image_count} images but {} holds {label_count} labels",
                images.display(),
                labels.display()
            ),
            Error::MnistLabel { path, index, value } => write!(
                f,
                "{}: label {index} is {value}, outside 0–9",
                path.display()
            ),
            Error::Download { file, attempts } => {
                write!(f, "could not download {file}:")?;
                for attempt in attempts {
                    write!(f, "\n  {attempt}")?;
                }
                Ok(())
            }
            Error::Checkpoint { path, reason } => {
                write!(f, "{}: unusable checkpoint: {reason}", path.display())
            }
            Error::Device(reason) => f.write_str(reason),
        }
    }
}

/// No `source()`: the message already ends with the cause's (the `source` fields hold it for
/// code that needs it), and a chain printer such as anyhow's `{:#}` would print it twice.
impl std::error::Error for Error {}
