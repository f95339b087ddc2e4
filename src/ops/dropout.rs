//! Inverted dropout: while training, zero each element with probability `p` and scale the
//! survivors by `1 / (1 − p)`, so the expected value is unchanged and evaluation needs no
//! rescaling.

use super::arith::Mul;
use super::record;
use crate::backend::{Broadcast, Distribution};
use crate::rng::{reserve_default, Generator};
use crate::tensor::{GradFn, Tensor};

/// `y = x · mask` with `mask ∈ {0, 1/(1 − p)}`: `∂L/∂x = ∂L/∂y · mask`.
struct DropoutBackward {
    mask: Tensor,
}

impl GradFn for DropoutBackward {
    fn name(&self) -> &'static str {
        "dropout"
    }

    fn backward(&self, grad: &Tensor, _needs_grad: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(grad.zip_map(&self.mask, Broadcast::None, &Mul))]
    }
}

/// Dropout with the mask drawn from the process-wide generator (PyTorch's `F.dropout`).
/// In evaluation (`training == false`) or with `p == 0` it returns `input` unchanged.
///
/// # Panics
/// Unless `0 ≤ p ≤ 1`.
pub fn dropout(input: &Tensor, p: f32, training: bool) -> Tensor {
    let draws = if training && p != 0.0 && (0.0..=1.0).contains(&p) {
        vec![input.numel()]
    } else {
        Vec::new() // no mask, no draw
    };
    dropout_with(input, p, training, &mut reserve_default(&draws))
}

/// Dropout with the mask drawn from `generator`: the same generator state gives the same mask
/// on every device and thread count.
///
/// # Panics
/// Unless `0 ≤ p ≤ 1`.
pub fn dropout_with(input: &Tensor, p: f32, training: bool, generator: &mut Generator) -> Tensor {
    assert!(
        (0.0..=1.0).contains(&p),
        "dropout: probability has to be between 0 and 1, but got {p}"
    );
    if !training || p == 0.0 {
        return input.clone();
    }
    let mask = Tensor::random(
        input.shape(),
        Distribution::DropoutMask { p },
        input.device(),
        generator,
    );
    let y = input.zip_map(&mask, Broadcast::None, &Mul);
    record(&y, &[input], || DropoutBackward { mask });
    y
}
