//! Reshape: the same elements, in the same row-major order, under another shape.

use super::record;
use crate::tensor::{numel, GradFn, Tensor};

/// `y = reshape(x)`: `∂L/∂x = reshape(∂L/∂y, shape of x)`.
struct ReshapeBackward {
    input_shape: Vec<usize>,
}

impl GradFn for ReshapeBackward {
    fn name(&self) -> &'static str {
        "reshape"
    }

    fn backward(&self, grad_output: &Tensor, _needs_grad: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(grad_output.reshape(&self.input_shape))]
    }
}

impl Tensor {
    /// The same values under `shape` (sharing storage, no copy).
    ///
    /// # Panics
    /// If `shape` holds a different number of elements.
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        assert_eq!(
            numel(shape),
            self.numel(),
            "reshape: shape {:?} ({} elements) cannot become {shape:?} ({} elements)",
            self.shape(),
            self.numel(),
            numel(shape)
        );
        let y = self.share_storage_as(shape);
        record(&y, &[self], || ReshapeBackward {
            input_shape: self.shape().to_vec(),
        });
        y
    }
}
