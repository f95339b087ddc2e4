//! Optimisers: they read each parameter's `.grad` and update its values in place.

mod adam;

pub use adam::{Adam, AdamConfig, AdamState};
