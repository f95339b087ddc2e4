//! The products a step plans, noted as it plans them: what the autotuner (`tuning.rs`) times.
//!
//! `storage.rs` notes each product it plans in `gemm`'s tiles; [`record_products`] listens on
//! its thread while a closure runs (a graph capture plans every product of a step without
//! running it).

use std::cell::RefCell;

use crate::backend::GemmDims;

/// A product that `gemm`'s tiles computed while [`record_products`] was listening.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordedProduct {
    /// Its shape and layout.
    pub dims: GemmDims,
    /// Asked for with the row sums of its left operand (a weight gradient and its bias
    /// gradient): summed in the GEMM without split-K, by a launch of their own with it, so the
    /// tuner times both.
    pub row_sums: bool,
}

thread_local! {
    /// The products noted since [`record_products`] began listening on this thread (`None`:
    /// nobody listens).
    static RECORDING: RefCell<Option<Vec<RecordedProduct>>> = const { RefCell::new(None) };
}

/// Runs `f` and returns, beside its result, the distinct products it planned in `gemm`'s
/// tiles (not `gemm_large`, `gemv` or the TF32 kernel), in the order first planned. Capturing
/// a step records them without running anything.
pub fn record_products<R>(f: impl FnOnce() -> R) -> (R, Vec<RecordedProduct>) {
    let outer = RECORDING.with(|recording| recording.replace(Some(Vec::new())));
    let result = f();
    let products = RECORDING.with(|recording| recording.replace(outer));
    (result, products.unwrap_or_default())
}

/// Notes a product planned in `gemm`'s tiles, for [`record_products`].
pub(crate) fn note_product(dims: GemmDims) {
    RECORDING.with(|recording| {
        if let Some(products) = recording.borrow_mut().as_mut() {
            if products.iter().all(|product| product.dims != dims) {
                products.push(RecordedProduct {
                    dims,
                    row_sums: false,
                });
            }
        }
    });
}

/// Notes that the product `dims`, if noted, was asked for with its row sums.
pub(crate) fn note_row_sums(dims: GemmDims) {
    RECORDING.with(|recording| {
        if let Some(products) = recording.borrow_mut().as_mut() {
            for product in products.iter_mut().filter(|product| product.dims == dims) {
                product.row_sums = true;
            }
        }
    });
}
