//! Adam (Kingma & Ba, 2015) with PyTorch's semantics.
//!
//! For each parameter `θ` with gradient `g`, at step `t`:
//!
//! ```text
//! g  ← g + λ·θ                       (weight decay λ, L2 style; 0 by default)
//! m  ← β₁·m + (1 − β₁)·g             (first moment)
//! v  ← β₂·v + (1 − β₂)·g²            (second moment)
//! m̂  = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)   (bias correction: m and v start at 0)
//! θ  ← θ − lr · m̂ / (√v̂ + ε)         (ε added after the square root, as PyTorch)
//! ```
//!
//! One departure from PyTorch: `m` and `v` are stored with subnormal values (below 1.2e-38)
//! flushed to 0. A parameter whose gradient is exactly 0 (a unit ReLU has switched off) sees
//! its `v` decay by β₂ each step; from 1e-8 it reaches the subnormal range after ~70 000 steps
//! and stays there for ~16 000 more, where every x86 instruction touching it takes a
//! microcode assist: an Adam step over such parameters costs 8× a normal one
//! (`benches/RESULTS.md`). The flush leaves the updates as they were: a subnormal `v` gives a
//! `√v̂` below 1e-17, which added to ε = 1e-8 rounds back to ε exactly as `v` = 0 does, and a
//! subnormal `m` moves θ by less than 1e-29 (for lr ≤ 0.1), below the last bit of any θ above
//! 1e-21.
//!
//! A step is one pass over all parameters together, in two phases: `prepare` advances the step
//! count `t`, kept on the parameters' device (an integer in a float slot's bits), and folds the
//! bias corrections into two scalars as PyTorch does (`step_size = lr / (1 − β₁ᵗ)`,
//! `c₂ = √(1 − β₂ᵗ)`, then `θ ← θ − step_size · m / (√v / c₂ + ε)`); `update` applies them to
//! every element. On CUDA both are one launch (`adam_step` in `kernels/adam.cu`, for up to 16
//! parameters).

use std::fmt;

use crate::backend::OptimizerKernel;
use crate::math::flush_subnormal;
use crate::storage::Storage;
use crate::tensor::Tensor;

/// Adam's hyper-parameters; [`Default`] gives PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// The learning rate (1e-3).
    pub lr: f32,
    /// The decay rates of the moving averages of the gradient and of its square (0.9, 0.999).
    pub betas: (f32, f32),
    /// Added to the square root of the second moment, against division by zero (1e-8).
    pub eps: f32,
    /// L2 penalty: `weight_decay · θ` added to each gradient, as PyTorch's `Adam` (0).
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

/// Adam's state for one parameter: its two moments. Saved with the step count
/// ([`Adam::step_count`]) they resume training exactly.
#[derive(Clone, Debug)]
pub struct AdamState {
    /// `m`, the running mean of gradients.
    pub exp_avg: Tensor,
    /// `v`, the running mean of squared gradients.
    pub exp_avg_sq: Tensor,
}

/// `params` with each tensor kept once, where it first appears (tensors sharing their values
/// count as one): a step locks every parameter for writing, and would wait for itself forever
/// on a second lock of the same values.
fn without_repeats(params: Vec<Tensor>) -> Vec<Tensor> {
    let mut kept: Vec<Tensor> = Vec::with_capacity(params.len());
    for param in params {
        if !kept.iter().any(|earlier| earlier.shares_storage(&param)) {
            kept.push(param);
        }
    }
    kept
}

/// The Adam optimiser over a fixed list of parameters, all on one device.
pub struct Adam {
    config: AdamConfig,
    params: Vec<Tensor>,
    states: Vec<AdamState>,
    /// `[t, step_size, c₂, 0]` on the parameters' device (see the module docs: `t` and the
    /// CUDA kernel's count of a step's finished blocks, in the last slot, are integers held
    /// in the floats' bits).
    scalars: Tensor,
}

/// What the optimiser is, not its buffers: the hyper-parameters, the parameters' shapes and
/// the step count (read from the device). The parameters' values are theirs to print, and the
/// scalars slots hold integers as float bits, which would print as meaningless tiny floats.
impl fmt::Debug for Adam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shapes: Vec<&[usize]> = self.params.iter().map(Tensor::shape).collect();
        f.debug_struct("Adam")
            .field("config", &self.config)
            .field("params", &shapes)
            .field("step_count", &self.step_count())
            .finish()
    }
}

impl AdamConfig {
    /// What PyTorch's `Adam` would refuse in this configuration, if anything (NaN included).
    fn out_of_range(&self) -> Option<String> {
        let AdamConfig {
            lr,
            betas,
            eps,
            weight_decay,
        } = *self;
        let non_negative = |x: f32| x >= 0.0;
        let beta_ok = |beta: f32| (0.0..1.0).contains(&beta);
        if !non_negative(lr) {
            Some(format!("Invalid learning rate: {lr}"))
        } else if !non_negative(eps) {
            Some(format!("Invalid epsilon value: {eps}"))
        } else if !beta_ok(betas.0) {
            Some(format!("Invalid beta parameter at index 0: {}", betas.0))
        } else if !beta_ok(betas.1) {
            Some(format!("Invalid beta parameter at index 1: {}", betas.1))
        } else if !non_negative(weight_decay) {
            Some(format!("Invalid weight_decay value: {weight_decay}"))
        } else {
            None
        }
    }
}

/// The step count `t` held in `scalars[0]`: an unsigned integer in the float's bits, since an
/// `f32` counts whole numbers exactly only up to 2²⁴ (16.7 M steps: PyTorch's float32 `step`
/// stops there).
fn steps_of(slot: f32) -> u32 {
    slot.to_bits()
}

impl OptimizerKernel for AdamConfig {
    const STEP: &'static str = "adam_step";

    fn prepare(&self, scalars: &mut [f32]) {
        // t + 1, held at u32::MAX (4.3 billion steps, where βᵗ is long 0) instead of wrapping.
        let t = steps_of(scalars[0]).saturating_add(1);
        // In f64, as PyTorch computes them on the host.
        let bias_correction1 = 1.0 - f64::from(self.betas.0).powf(f64::from(t));
        let bias_correction2 = 1.0 - f64::from(self.betas.1).powf(f64::from(t));
        scalars[0] = f32::from_bits(t);
        scalars[1] = (f64::from(self.lr) / bias_correction1) as f32;
        scalars[2] = bias_correction2.sqrt() as f32;
    }

    fn update(&self, scalars: &[f32], param: &mut f32, grad: f32, m: &mut f32, v: &mut f32) {
        let (beta1, beta2) = self.betas;
        let g = grad + self.weight_decay * *param;
        *m = flush_subnormal(beta1 * *m + (1.0 - beta1) * g);
        *v = flush_subnormal(beta2 * *v + (1.0 - beta2) * g * g);
        let denom = v.sqrt() / scalars[2] + self.eps;
        *param -= scalars[1] * *m / denom;
    }

    fn hyper_params(&self) -> [f32; 5] {
        [
            self.lr,
            self.betas.0,
            self.betas.1,
            self.eps,
            self.weight_decay,
        ]
    }
}

impl Adam {
    /// An optimiser for `params` (typically `model.parameters()`), each of which must require a
    /// gradient to ever be updated. A tensor given twice (or two sharing their values, as
    /// clones do) is kept once, its first time, and so stepped once a step: PyTorch warns of
    /// duplicate parameters and steps them twice.
    ///
    /// # Panics
    /// If the parameters are not all on one device, or if a hyper-parameter is out of its
    /// range (with PyTorch's messages, which it raises as `ValueError`): the learning rate,
    /// `eps` and the weight decay must be at least 0, and each beta in `[0, 1)`.
    pub fn new(params: Vec<Tensor>, config: AdamConfig) -> Self {
        if let Some(problem) = config.out_of_range() {
            panic!("Adam: {problem}");
        }
        let device = params
            .first()
            .map_or(crate::Device::Cpu, |p| p.device().clone());
        if let Some(other) = params.iter().find(|p| *p.device() != device) {
            panic!(
                "Adam: parameters on different devices ({device} and {})",
                other.device()
            );
        }
        let params = without_repeats(params);
        let states = params
            .iter()
            .map(|param| AdamState {
                exp_avg: Tensor::zeros(param.shape(), param.device()),
                exp_avg_sq: Tensor::zeros(param.shape(), param.device()),
            })
            .collect();
        Adam {
            config,
            params,
            states,
            scalars: Tensor::zeros(&[4], &device),
        }
    }

    /// The hyper-parameters in force.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// Changes the learning rate from the next step on (for schedules).
    pub fn set_lr(&mut self, lr: f32) {
        self.config.lr = lr;
    }

    /// The moments of each parameter, in the order the parameters were given (repeats left out).
    pub fn states(&self) -> &[AdamState] {
        &self.states
    }

    /// Steps taken (read from the device). It counts to [`Adam::MAX_STEP_COUNT`] and stays
    /// there.
    pub fn step_count(&self) -> u64 {
        u64::from(steps_of(self.scalars.to_vec()[0]))
    }

    /// The most steps the count holds, 2³² − 1: beyond it the step count stays, and so do the
    /// updates (their bias corrections `1 − βᵗ` reached 1 long before).
    pub const MAX_STEP_COUNT: u64 = u32::MAX as u64;

    /// Sets the step count, for restoring a checkpoint (with the moments, whose values
    /// `Checkpoint::restore` overwrites in place).
    ///
    /// # Panics
    /// If `steps` is more than [`Adam::MAX_STEP_COUNT`].
    pub fn set_step_count(&mut self, steps: u64) {
        let steps = u32::try_from(steps).unwrap_or_else(|_| {
            panic!(
                "Adam: a step count of {steps} is more than the {} it holds",
                Self::MAX_STEP_COUNT
            )
        });
        self.scalars.assign(&[f32::from_bits(steps), 0.0, 0.0, 0.0]);
    }

    /// Clears the gradients of all parameters.
    pub fn zero_grad(&self) {
        for param in &self.params {
            param.zero_grad();
        }
    }

    /// Updates every parameter that has a gradient, in one fused pass (parameters without one
    /// are left as they are). The step count is the optimiser's: all parameters step together,
    /// as in PyTorch's fused Adam.
    pub fn step(&mut self) {
        let (with_grad, grads): (Vec<usize>, Vec<Tensor>) = self
            .params
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.grad().map(|g| (i, g)))
            .unzip();
        if with_grad.is_empty() {
            return;
        }
        let grad_guards: Vec<_> = grads.iter().map(Tensor::storage).collect();
        let mut param_guards: Vec<_> = with_grad
            .iter()
            .map(|&i| self.params[i].storage_mut())
            .collect();
        let mut m_guards: Vec<_> = with_grad
            .iter()
            .map(|&i| self.states[i].exp_avg.storage_mut())
            .collect();
        let mut v_guards: Vec<_> = with_grad
            .iter()
            .map(|&i| self.states[i].exp_avg_sq.storage_mut())
            .collect();
        let mut scalars = self.scalars.storage_mut();
        Storage::optimizer_step(
            &mut param_guards
                .iter_mut()
                .map(|g| &mut **g)
                .collect::<Vec<_>>(),
            &grad_guards.iter().map(|g| &**g).collect::<Vec<_>>(),
            &mut m_guards.iter_mut().map(|g| &mut **g).collect::<Vec<_>>(),
            &mut v_guards.iter_mut().map(|g| &mut **g).collect::<Vec<_>>(),
            &mut scalars,
            &self.config,
        );
    }
}
