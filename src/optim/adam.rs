//! Adam (Kingma & Ba, 2015) with PyTorch's semantics.
//!
//! For each parameter `θ` with gradient `g`, at its step `t` (counted per parameter):
//!
//! ```text
//! g  ← g + λ·θ                       (weight decay λ, L2 style; 0 by default)
//! m  ← β₁·m + (1 − β₁)·g             (first moment)
//! v  ← β₂·v + (1 − β₂)·g²            (second moment)
//! m̂  = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)   (bias correction: m and v start at 0)
//! θ  ← θ − lr · m̂ / (√v̂ + ε)         (ε added after the square root, as PyTorch)
//! ```
//!
//! The whole update of one parameter runs as a single fused kernel over the four buffers.

use crate::backend::OptimizerKernel;
use crate::tensor::Tensor;

/// Adam's hyper-parameters; [`Default`] gives PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f32,
    pub betas: (f32, f32),
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Adam's state for one parameter: its moments and its own step count. Saving these (and
/// restoring them with [`Adam::states_mut`]) resumes training exactly.
#[derive(Clone, Debug)]
pub struct AdamState {
    /// `m`, the running mean of gradients.
    pub exp_avg: Tensor,
    /// `v`, the running mean of squared gradients.
    pub exp_avg_sq: Tensor,
    /// Steps taken on this parameter (its `t`).
    pub step: u64,
}

/// The Adam optimiser over a fixed list of parameters.
pub struct Adam {
    config: AdamConfig,
    params: Vec<Tensor>,
    states: Vec<AdamState>,
}

/// The per-element update above, with the step's bias corrections folded into two scalars as
/// PyTorch does: `θ ← θ − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)`.
struct AdamUpdate {
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    step_size: f32,
    bias_correction2_sqrt: f32,
}

impl OptimizerKernel for AdamUpdate {
    const NAME: &'static str = "adam_update";
    fn update(&self, param: &mut f32, grad: f32, m: &mut f32, v: &mut f32) {
        let g = grad + self.weight_decay * *param;
        *m = self.beta1 * *m + (1.0 - self.beta1) * g;
        *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
        let denom = v.sqrt() / self.bias_correction2_sqrt + self.eps;
        *param -= self.step_size * *m / denom;
    }

    fn params(&self) -> [f32; 6] {
        [
            self.beta1,
            self.beta2,
            self.eps,
            self.weight_decay,
            self.step_size,
            self.bias_correction2_sqrt,
        ]
    }
}

impl Adam {
    /// An optimiser for `params` (typically `model.parameters()`), each of which must require a
    /// gradient to ever be updated.
    pub fn new(params: Vec<Tensor>, config: AdamConfig) -> Self {
        let states = params
            .iter()
            .map(|param| AdamState {
                exp_avg: Tensor::zeros(param.shape(), param.device()),
                exp_avg_sq: Tensor::zeros(param.shape(), param.device()),
                step: 0,
            })
            .collect();
        Adam {
            config,
            params,
            states,
        }
    }

    /// The state of each parameter, in the order the parameters were given.
    pub fn states(&self) -> &[AdamState] {
        &self.states
    }

    /// The state, for restoring a checkpoint: overwrite the moments' values in place (see
    /// `crate::checkpoint`) and the step counts.
    pub fn states_mut(&mut self) -> &mut [AdamState] {
        &mut self.states
    }

    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// Changes the learning rate from the next step on (for schedules).
    pub fn set_lr(&mut self, lr: f32) {
        self.config.lr = lr;
    }

    /// Clears the gradients of all parameters.
    pub fn zero_grad(&self) {
        for param in &self.params {
            param.zero_grad();
        }
    }

    /// Updates every parameter that has a gradient; parameters without one are skipped and
    /// their step count does not advance (as in PyTorch).
    pub fn step(&mut self) {
        let AdamConfig {
            lr,
            betas: (beta1, beta2),
            eps,
            weight_decay,
        } = self.config;
        for (param, state) in self.params.iter().zip(&mut self.states) {
            let Some(grad) = param.grad() else {
                continue;
            };
            state.step += 1;
            // Bias corrections in f64, as PyTorch computes them in Python floats.
            let t = state.step as f64;
            let bias_correction1 = 1.0 - f64::from(beta1).powf(t);
            let bias_correction2 = 1.0 - f64::from(beta2).powf(t);
            let kernel = AdamUpdate {
                beta1,
                beta2,
                eps,
                weight_decay,
                step_size: (f64::from(lr) / bias_correction1) as f32,
                bias_correction2_sqrt: bias_correction2.sqrt() as f32,
            };
            let grad = grad.storage();
            let mut m = state.exp_avg.storage_mut();
            let mut v = state.exp_avg_sq.storage_mut();
            param
                .storage_mut()
                .update_in_place(&grad, &mut m, &mut v, &kernel);
        }
    }
}
