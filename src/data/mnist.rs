//! MNIST from its four standard IDX files, plain or gzipped, in one directory.

use std::path::{Path, PathBuf};

use super::idx::{self, IdxArray};
use crate::error::{Error, Result};

/// Rows and columns of an MNIST image.
pub const IMAGE_SIDE: usize = 28;
/// Pixels of an MNIST image.
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;

/// The training images' standard file name, without `.gz` (as are the three below).
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// The training labels' file name.
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// The test images' file name.
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// The test labels' file name.
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// The 60 000 training or the 10 000 test examples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The 60 000 training examples.
    Train,
    /// The 10 000 test examples.
    Test,
}

impl Split {
    /// The file names of the split's images and labels.
    pub fn file_names(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => (TRAIN_IMAGES, TRAIN_LABELS),
            Split::Test => (TEST_IMAGES, TEST_LABELS),
        }
    }
}

/// Images as bytes (`len × 784`, row-major, 0 = background, 255 = ink) and their labels.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// `len × 784` bytes, image after image.
    pub images: Vec<u8>,
    /// One label (0–9) per image.
    pub labels: Vec<u8>,
}

impl Mnist {
    /// Loads one split from `dir`, finding each file as `name` or `name.gz`, and checks that
    /// the files are what they should be: IDX images of 28 × 28, labels 0–9, equal counts.
    pub fn load(dir: &Path, split: Split) -> Result<Mnist> {
        let (images_name, labels_name) = split.file_names();
        let images_path = find(dir, images_name)?;
        let labels_path = find(dir, labels_name)?;
        let images = read_idx(&images_path)?;
        let labels = read_idx(&labels_path)?;
        match images.dims[..] {
            [_, IMAGE_SIDE, IMAGE_SIDE] => {}
            [_, _, _] => {
                return Err(Error::MnistImageSize {
                    path: images_path,
                    dims: images.dims,
                })
            }
            _ => {
                return Err(Error::MnistKind {
                    path: images_path,
                    expected: "images (3 dimensions)",
                    dims: images.dims,
                })
            }
        }
        if labels.dims.len() != 1 {
            return Err(Error::MnistKind {
                path: labels_path,
                expected: "labels (1 dimension)",
                dims: labels.dims,
            });
        }
        if images.dims[0] != labels.dims[0] {
            return Err(Error::MnistCountMismatch {
                images: images_path,
                image_count: images.dims[0],
                labels: labels_path,
                label_count: labels.dims[0],
            });
        }
        if let Some((index, &value)) = labels.data.iter().enumerate().find(|(_, &v)| v > 9) {
            return Err(Error::MnistLabel {
                path: labels_path,
                index,
                value,
            });
        }
        Ok(Mnist {
            images: images.data,
            labels: labels.data,
        })
    }

    /// The number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// `dir/name` if present, else `dir/name.gz` if present.
pub fn find(dir: &Path, name: &'static str) -> Result<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.gz"))]
        .into_iter()
        .find(|path| path.is_file())
        .ok_or_else(|| Error::MnistMissing {
            dir: dir.to_path_buf(),
            name,
        })
}

/// Reads and decodes one IDX file, naming it in any error.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    idx::decode(&bytes).map_err(|source| Error::Idx {
        path: path.to_path_buf(),
        source,
    })
}
