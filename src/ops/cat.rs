//! Joining tensors along the first dimension, and taking a range of rows back out: row-major
//! storage makes both plain copies of contiguous ranges.

use super::record;
use crate::storage::Storage;
use crate::tensor::{checked_numel, with_storage_slice, GradFn, Tensor};

/// `y = [x₁; x₂; …]` along the first dimension: `∂L/∂xᵢ` is `∂L/∂y`'s rows of `xᵢ`.
struct CatBackward {
    row_counts: Vec<usize>,
}

impl GradFn for CatBackward {
    fn name(&self) -> &'static str {
        "cat"
    }

    fn backward(&self, grad: &Tensor, needs_grad: &[bool]) -> Vec<Option<Tensor>> {
        let mut first_row = 0;
        self.row_counts
            .iter()
            .zip(needs_grad)
            .map(|(&rows, &needed)| {
                let part = needed.then(|| grad.narrow_rows(first_row, rows));
                first_row += rows;
                part
            })
            .collect()
    }
}

/// `y = x[start..start + len]` (rows): `∂L/∂x` is `∂L/∂y` in those rows and zero elsewhere.
struct NarrowBackward {
    input_shape: Vec<usize>,
    start: usize,
}

impl GradFn for NarrowBackward {
    fn name(&self) -> &'static str {
        "narrow_rows"
    }

    fn backward(&self, grad: &Tensor, _needs_grad: &[bool]) -> Vec<Option<Tensor>> {
        let row_shape = &self.input_shape[1..];
        let zero_rows = |rows: usize| {
            let shape: Vec<usize> = [rows].iter().chain(row_shape).copied().collect();
            Tensor::zeros(&shape, grad.device())
        };
        let after = self.input_shape[0] - self.start - grad.shape()[0];
        let parts = [zero_rows(self.start), grad.clone(), zero_rows(after)];
        vec![Some(cat_storage(&parts.iter().collect::<Vec<_>>()))]
    }
}

/// The tensors' elements one after another, outside the graph, shaped as their rows stacked.
fn cat_storage(parts: &[&Tensor]) -> Tensor {
    let rows = parts.iter().map(|part| part.shape()[0]).sum();
    let shape: Vec<usize> = [rows]
        .iter()
        .chain(&parts[0].shape()[1..])
        .copied()
        .collect();
    let joined = with_storage_slice(parts, Storage::concat);
    Tensor::from_storage(joined, shape)
}

impl Tensor {
    /// The tensors stacked along the first dimension, as PyTorch's `torch.cat(tensors, 0)`.
    ///
    /// # Panics
    /// If `parts` is empty, or the parts differ in their other dimensions or devices.
    pub fn cat(parts: &[&Tensor]) -> Tensor {
        let first = parts.first().expect("cat: no tensors to join");
        for part in parts {
            assert!(
                !part.shape().is_empty() && part.shape()[1..] == first.shape()[1..],
                "cat: shapes {:?} and {:?} cannot be joined along the first dimension",
                first.shape(),
                part.shape()
            );
            super::assert_same_device("cat", first, part);
        }
        let rows = parts
            .iter()
            .try_fold(0usize, |rows, part| rows.checked_add(part.shape()[0]));
        let joined = rows.map(|rows| [&[rows], &first.shape()[1..]].concat());
        assert!(
            joined.is_some_and(|shape| checked_numel(&shape).is_some()),
            "cat: the shapes {:?} joined have more elements than a usize can count",
            parts.iter().map(|part| part.shape()).collect::<Vec<_>>()
        );
        let y = cat_storage(parts);
        record(&y, parts, || CatBackward {
            row_counts: parts.iter().map(|part| part.shape()[0]).collect(),
        });
        y
    }

    /// Rows `start..start + len` (a copy), as PyTorch's `x.narrow(0, start, len)`.
    ///
    /// # Panics
    /// If the tensor has no dimensions or the rows are out of range.
    pub fn narrow_rows(&self, start: usize, len: usize) -> Tensor {
        let shape = self.shape();
        let end = start.checked_add(len);
        assert!(
            !shape.is_empty() && end.is_some_and(|end| end <= shape[0]),
            "narrow_rows: {len} rows from row {start} of a tensor of shape {shape:?}"
        );
        let row = shape[1..].iter().product::<usize>();
        let mut out_shape = shape.to_vec();
        out_shape[0] = len;
        let y = Tensor::from_storage(self.storage().slice(start * row, len * row), out_shape);
        record(&y, &[self], || NarrowBackward {
            input_shape: shape.to_vec(),
            start,
        });
        y
    }
}
