//! Reductions: the sum and the mean of all elements, and the column sums a bias gradient needs.

use super::record;
use crate::tensor::{GradFn, Tensor};

/// `y = scale · Σᵢ xᵢ` (`scale` = 1 for `sum`, 1/N for `mean`): `∂L/∂xᵢ = scale · ∂L/∂y`.
struct SumBackward {
    name: &'static str,
    input_shape: Vec<usize>,
    scale: f32,
}

impl GradFn for SumBackward {
    fn name(&self) -> &'static str {
        self.name
    }

    fn backward(&self, grad: &Tensor, _needs_grad: &[bool]) -> Vec<Option<Tensor>> {
        let len = crate::tensor::numel(&self.input_shape);
        let storage = grad.storage().expand_scalar(len, self.scale);
        vec![Some(Tensor::from_storage(
            storage,
            self.input_shape.clone(),
        ))]
    }
}

impl Tensor {
    /// The sum of all elements, as a zero-dimensional tensor.
    pub fn sum(&self) -> Tensor {
        self.scaled_sum("sum", 1.0)
    }

    /// The mean of all elements, as a zero-dimensional tensor (NaN for an empty tensor).
    pub fn mean(&self) -> Tensor {
        self.scaled_sum("mean", 1.0 / self.numel() as f32)
    }

    fn scaled_sum(&self, name: &'static str, scale: f32) -> Tensor {
        let y = Tensor::from_storage(self.storage().sum_all(scale), vec![]);
        record(&y, &[self], || SumBackward {
            name,
            input_shape: self.shape().to_vec(),
            scale,
        });
        y
    }

    /// Column sums of a `[m, n]` tensor, outside the graph: `[n]`. Backward rules use it to
    /// sum a gradient over the rows a bias was broadcast to.
    pub(crate) fn sum_over_rows(&self) -> Tensor {
        let (rows, cols) = (self.shape()[0], self.shape()[1]);
        Tensor::from_storage(self.storage().sum_rows(rows, cols), vec![cols])
    }
}
