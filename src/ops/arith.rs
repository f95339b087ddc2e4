//! Elementwise arithmetic: `a + b`, `a − b`, `a · b` with broadcasting, and the same with a
//! number. Also the `+ − * /` operators on tensors and `f32`.

use std::ops;

use super::{assert_same_device, broadcast_of, record, sum_to_broadcast, try_broadcast};
use crate::backend::{BinaryKernel, Broadcast, UnaryKernel};
use crate::tensor::{GradFn, Tensor};

pub(crate) struct Add;

impl BinaryKernel for Add {
    const NAME: &'static str = "add";
    fn apply(&self, a: f32, b: f32) -> f32 {
        a + b
    }
}

struct Sub;

impl BinaryKernel for Sub {
    const NAME: &'static str = "sub";
    fn apply(&self, a: f32, b: f32) -> f32 {
        a - b
    }
}

pub(crate) struct Mul;

impl BinaryKernel for Mul {
    const NAME: &'static str = "mul";
    fn apply(&self, a: f32, b: f32) -> f32 {
        a * b
    }
}

struct AddScalar(f32);

impl UnaryKernel for AddScalar {
    const NAME: &'static str = "add_scalar";
    fn apply(&self, x: f32) -> f32 {
        x + self.0
    }
    fn param(&self) -> f32 {
        self.0
    }
}

pub(crate) struct MulScalar(pub f32);

impl UnaryKernel for MulScalar {
    const NAME: &'static str = "mul_scalar";
    fn apply(&self, x: f32) -> f32 {
        x * self.0
    }
    fn param(&self) -> f32 {
        self.0
    }
}

/// `c = a + b`: `∂L/∂a = ∂L/∂c`, `∂L/∂b = ∂L/∂c` (summed over `b`'s broadcast copies).
struct AddBackward {
    broadcast: Broadcast,
    rhs_shape: Vec<usize>,
}

impl GradFn for AddBackward {
    fn name(&self) -> &'static str {
        "add"
    }

    fn backward(&self, grad: &Tensor, needs_grad: &[bool]) -> Vec<Option<Tensor>> {
        let grad_rhs =
            needs_grad[1].then(|| sum_to_broadcast(grad.clone(), self.broadcast, &self.rhs_shape));
        vec![Some(grad.clone()), grad_rhs]
    }
}

/// `c = a − b`: `∂L/∂a = ∂L/∂c`, `∂L/∂b = −∂L/∂c` (summed over `b`'s broadcast copies).
struct SubBackward {
    broadcast: Broadcast,
    rhs_shape: Vec<usize>,
}

impl GradFn for SubBackward {
    fn name(&self) -> &'static str {
        "sub"
    }

    fn backward(&self, grad: &Tensor, needs_grad: &[bool]) -> Vec<Option<Tensor>> {
        let grad_rhs = needs_grad[1]
            .then(|| sum_to_broadcast(grad.map(&MulScalar(-1.0)), self.broadcast, &self.rhs_shape));
        vec![Some(grad.clone()), grad_rhs]
    }
}

/// `c = a · b`: `∂L/∂a = ∂L/∂c · b`, `∂L/∂b = ∂L/∂c · a` (summed over `b`'s broadcast copies).
/// Each factor is saved only if the *other* one needs a gradient.
struct MulBackward {
    lhs: Option<Tensor>,
    rhs: Option<Tensor>,
    broadcast: Broadcast,
    rhs_shape: Vec<usize>,
}

impl GradFn for MulBackward {
    fn name(&self) -> &'static str {
        "mul"
    }

    fn backward(&self, grad: &Tensor, _needs_grad: &[bool]) -> Vec<Option<Tensor>> {
        let grad_lhs = self
            .rhs
            .as_ref()
            .map(|rhs| grad.zip_map(rhs, self.broadcast, &Mul));
        let grad_rhs = self.lhs.as_ref().map(|lhs| {
            let full = grad.zip_map(lhs, Broadcast::None, &Mul);
            sum_to_broadcast(full, self.broadcast, &self.rhs_shape)
        });
        vec![grad_lhs, grad_rhs]
    }
}

/// `y = x + s`: `∂L/∂x = ∂L/∂y`. Named for the operator written: `add_scalar` for `x + s`,
/// `sub_scalar` for `x − s` (run as `x + (−s)`).
struct AddScalarBackward {
    name: &'static str,
}

impl GradFn for AddScalarBackward {
    fn name(&self) -> &'static str {
        self.name
    }

    fn backward(&self, grad: &Tensor, _needs_grad: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(grad.clone())]
    }
}

/// `y = s · x`: `∂L/∂x = s · ∂L/∂y`. Named for the operator written: `mul_scalar` for
/// `x · s`, `div_scalar` for `x / s` (run as `x · (1/s)`), `neg` for `−x`, and `rsub_scalar`
/// for `c − x` (run as `−x + c`, whose rule is that of `· (−1)`).
struct MulScalarBackward {
    scale: f32,
    name: &'static str,
}

impl GradFn for MulScalarBackward {
    fn name(&self) -> &'static str {
        self.name
    }

    fn backward(&self, grad: &Tensor, _needs_grad: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(grad.map(&MulScalar(self.scale)))]
    }
}

/// Checks the operands, runs `kernel` and records the rule `make_grad_fn(broadcast)` builds.
fn binary_op<K: BinaryKernel, G: GradFn + 'static>(
    lhs: &Tensor,
    rhs: &Tensor,
    kernel: &K,
    make_grad_fn: impl FnOnce(Broadcast) -> G,
) -> Tensor {
    assert_same_device(K::NAME, lhs, rhs);
    let broadcast = broadcast_of(K::NAME, lhs.shape(), rhs.shape());
    let out = lhs.zip_map(rhs, broadcast, kernel);
    record(&out, &[lhs, rhs], || make_grad_fn(broadcast));
    out
}

/// Whether `lhs` is the operand that broadcasts (the kernels broadcast only their right one).
fn lhs_broadcasts(lhs: &Tensor, rhs: &Tensor) -> bool {
    lhs.shape() != rhs.shape() && try_broadcast(rhs.shape(), lhs.shape()).is_some()
}

impl Tensor {
    /// Elementwise sum. Either operand may be broadcast: one value, or a `[n]` row over `[m, n]`.
    #[allow(clippy::should_implement_trait)] // the `+` operator is implemented too, below
    pub fn add(&self, rhs: &Tensor) -> Tensor {
        if lhs_broadcasts(self, rhs) {
            return rhs.add(self);
        }
        binary_op(self, rhs, &Add, |broadcast| AddBackward {
            broadcast,
            rhs_shape: rhs.shape().to_vec(),
        })
    }

    /// Elementwise difference, broadcasting as [`Tensor::add`].
    #[allow(clippy::should_implement_trait)]
    pub fn sub(&self, rhs: &Tensor) -> Tensor {
        if lhs_broadcasts(self, rhs) {
            return rhs.sub(self).neg();
        }
        binary_op(self, rhs, &Sub, |broadcast| SubBackward {
            broadcast,
            rhs_shape: rhs.shape().to_vec(),
        })
    }

    /// Elementwise product, broadcasting as [`Tensor::add`].
    #[allow(clippy::should_implement_trait)]
    pub fn mul(&self, rhs: &Tensor) -> Tensor {
        if lhs_broadcasts(self, rhs) {
            return rhs.mul(self);
        }
        binary_op(self, rhs, &Mul, |broadcast| MulBackward {
            lhs: rhs.requires_grad().then(|| self.detach()),
            rhs: self.requires_grad().then(|| rhs.detach()),
            broadcast,
            rhs_shape: rhs.shape().to_vec(),
        })
    }

    /// `x + value`, elementwise.
    pub fn add_scalar(&self, value: f32) -> Tensor {
        self.scalar_add(value, "add_scalar")
    }

    /// `x · value`, elementwise.
    pub fn mul_scalar(&self, value: f32) -> Tensor {
        self.scalar_mul(value, "mul_scalar")
    }

    /// `−x`, elementwise.
    #[allow(clippy::should_implement_trait)]
    pub fn neg(&self) -> Tensor {
        self.scalar_mul(-1.0, "neg")
    }

    /// `x + value`, its node named `name`.
    fn scalar_add(&self, value: f32, name: &'static str) -> Tensor {
        let y = self.map(&AddScalar(value));
        record(&y, &[self], || AddScalarBackward { name });
        y
    }

    /// `x · value`, its node named `name`.
    fn scalar_mul(&self, value: f32, name: &'static str) -> Tensor {
        let y = self.map(&MulScalar(value));
        record(&y, &[self], || MulScalarBackward { scale: value, name });
        y
    }
}

/// Implements `tensor ∘ tensor` and `tensor ∘ f32` for owned and borrowed tensors.
macro_rules! impl_operator {
    ($trait:ident, $method:ident, $tensor_op:ident, |$x:ident, $s:ident| $scalar_op:expr) => {
        impl ops::$trait<&Tensor> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                Tensor::$tensor_op(self, rhs)
            }
        }
        impl ops::$trait<Tensor> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                Tensor::$tensor_op(self, &rhs)
            }
        }
        impl ops::$trait<&Tensor> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                Tensor::$tensor_op(&self, rhs)
            }
        }
        impl ops::$trait<Tensor> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                Tensor::$tensor_op(&self, &rhs)
            }
        }
        impl ops::$trait<f32> for &Tensor {
            type Output = Tensor;
            fn $method(self, $s: f32) -> Tensor {
                let $x = self;
                $scalar_op
            }
        }
        impl ops::$trait<f32> for Tensor {
            type Output = Tensor;
            fn $method(self, $s: f32) -> Tensor {
                let $x = &self;
                $scalar_op
            }
        }
    };
}

impl_operator!(Add, add, add, |x, s| x.add_scalar(s));
impl_operator!(Sub, sub, sub, |x, s| x.scalar_add(-s, "sub_scalar"));
impl_operator!(Mul, mul, mul, |x, s| x.mul_scalar(s));

impl ops::Div<f32> for &Tensor {
    type Output = Tensor;
    fn div(self, s: f32) -> Tensor {
        self.scalar_mul(1.0 / s, "div_scalar")
    }
}

impl ops::Div<f32> for Tensor {
    type Output = Tensor;
    fn div(self, s: f32) -> Tensor {
        self.scalar_mul(1.0 / s, "div_scalar")
    }
}

impl ops::Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(self)
    }
}

impl ops::Neg for Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(&self)
    }
}

/// `s − x`, so that `1.0 - &p` reads as it does in PyTorch: `−x + s`, one node in the graph.
impl ops::Sub<&Tensor> for f32 {
    type Output = Tensor;
    fn sub(self, x: &Tensor) -> Tensor {
        let y = x.map(&MulScalar(-1.0)).map(&AddScalar(self));
        record(&y, &[x], || MulScalarBackward {
            scale: -1.0,
            name: "rsub_scalar",
        });
        y
    }
}
