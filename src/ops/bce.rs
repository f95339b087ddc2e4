//! Binary cross-entropy with mean reduction, as PyTorch's `F.binary_cross_entropy`:
//!
//! `loss = mean_i −[tᵢ · max(ln pᵢ, −100) + (1 − tᵢ) · max(ln(1 − pᵢ), −100)]`
//!
//! The clamp at −100 keeps the loss finite when a prediction is exactly 0 or 1. Outside
//! `[0, 1]`, or at NaN, a prediction has no loss: its loss and both gradients are NaN, so that a
//! diverged network shows (PyTorch raises there; that would need the values read back from a
//! GPU).

use super::{assert_same_device, record};
use crate::backend::{BinaryKernel, TernaryKernel};
use crate::tensor::{with_storages, GradFn, Tensor};

/// PyTorch's floor on each log term.
const LOG_FLOOR: f32 = -100.0;
/// PyTorch's floor on `p(1 − p)` in the gradient, which keeps it finite at `p ∈ {0, 1}`.
const GRAD_EPSILON: f32 = 1e-12;

/// `max(ln x, −100)`, but NaN stays NaN (`f32::max` would return −100 for it, turning a NaN
/// prediction's loss into 100).
fn clamped_ln(x: f32) -> f32 {
    let ln = x.ln();
    if ln < LOG_FLOOR {
        LOG_FLOOR
    } else {
        ln
    }
}

/// `p(1 − p)` floored at ε; NaN where `p` is outside `[0, 1]` (where `p(1 − p) < 0`) or NaN.
fn floored_variance(p: f32) -> f32 {
    let variance = p * (1.0 - p);
    if variance < 0.0 {
        f32::NAN
    } else if variance < GRAD_EPSILON {
        GRAD_EPSILON
    } else {
        variance
    }
}

/// One element's loss, `−[t · ln p + (1 − t) · ln(1 − p)]`, logs clamped.
struct BceLoss;

impl BinaryKernel for BceLoss {
    const NAME: &'static str = "bce_loss";
    fn apply(&self, p: f32, t: f32) -> f32 {
        -(t * clamped_ln(p) + (1.0 - t) * clamped_ln(1.0 - p))
    }
}

/// `∂L/∂pᵢ = ∂L/∂loss · scale · (p − t) / max(p(1 − p), ε)` (`scale` = 1/N for the mean),
/// from `(p, t, ∂L/∂loss)`: the local rule and the chain rule's product in one pass.
struct BceGradPred {
    scale: f32,
}

impl TernaryKernel for BceGradPred {
    const NAME: &'static str = "bce_backward_pred";
    fn apply(&self, p: f32, t: f32, grad: f32) -> f32 {
        let local = self.scale * (p - t) / floored_variance(p);
        local * grad
    }
    fn param(&self) -> f32 {
        self.scale
    }
}

/// `∂L/∂tᵢ = ∂L/∂loss · scale · (ln(1 − p) − ln p)` (logs clamped), from `(p, t, ∂L/∂loss)`.
struct BceGradTarget {
    scale: f32,
}

impl TernaryKernel for BceGradTarget {
    const NAME: &'static str = "bce_backward_target";
    fn apply(&self, p: f32, _t: f32, grad: f32) -> f32 {
        let local = self.scale * (clamped_ln(1.0 - p) - clamped_ln(p));
        local * grad
    }
    fn param(&self) -> f32 {
        self.scale
    }
}

/// Backward of the loss `scale · Σᵢ lossᵢ`: each input's elementwise rule above, times the
/// incoming `∂L/∂loss`.
struct BceBackward {
    pred: Tensor,
    target: Tensor,
    scale: f32,
}

impl GradFn for BceBackward {
    fn name(&self) -> &'static str {
        "binary_cross_entropy"
    }

    fn backward(&self, grad: &Tensor, needs_grad: &[bool]) -> Vec<Option<Tensor>> {
        let scale = self.scale;
        let grad_pred =
            needs_grad[0].then(|| (self.pred).zip3_map(&self.target, grad, &BceGradPred { scale }));
        let grad_target = needs_grad[1]
            .then(|| (self.pred).zip3_map(&self.target, grad, &BceGradTarget { scale }));
        vec![grad_pred, grad_target]
    }
}

/// The mean binary cross-entropy between predicted probabilities and targets of the same
/// shape. Predictions should lie in `[0, 1]`: outside it, or at NaN, the loss and the
/// gradients of that element are NaN.
///
/// # Panics
/// If the shapes differ.
pub fn binary_cross_entropy(pred: &Tensor, target: &Tensor) -> Tensor {
    binary_cross_entropy_scaled(pred, target, 1.0 / pred.numel() as f32)
}

/// `scale · Σᵢ lossᵢ`: [`binary_cross_entropy`] with another weight than `1/N` on the sum (the
/// GAN's D loss over a real and a fake half, `mean(real) + mean(fake)`, is `Σ / half`).
///
/// # Panics
/// If the shapes differ.
pub(crate) fn binary_cross_entropy_scaled(pred: &Tensor, target: &Tensor, scale: f32) -> Tensor {
    assert!(
        pred.shape() == target.shape(),
        "binary_cross_entropy: input {:?} and target {:?} must have the same shape",
        pred.shape(),
        target.shape()
    );
    assert_same_device("binary_cross_entropy", pred, target);
    // Each element's loss summed as it is computed: one pass, one launch on a GPU.
    let loss = with_storages([pred, target], |[p, t]| p.map_sum_all(t, &BceLoss, scale));
    let loss = Tensor::from_storage(loss, vec![]);
    record(&loss, &[pred, target], || BceBackward {
        pred: pred.detach(),
        target: target.detach(),
        scale,
    });
    loss
}
