//! Data: the IDX format, MNIST (loading and downloading), and shuffled mini-batches.

pub mod download;
pub mod idx;
mod loader;
pub mod mnist;

pub use loader::DataLoader;
pub use mnist::{Mnist, Split};
