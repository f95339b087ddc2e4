//! Matrix product of 2-D tensors: `C = A · B`.

use super::{assert_same_device, record};
use crate::backend::{GemmDims, GradRule, Identity, LhsRule, UnaryKernel};
use crate::rng::Generator;
use crate::storage::Storage;
use crate::tensor::{with_storage_slice, with_storages, GradFn, Tensor};

/// `C = op(A) · op(B) (+ bias)` outside the graph, where the transposes in `dims` are read
/// straight from the stored layout (see [`GemmDims`]).
pub(crate) fn gemm(lhs: &Tensor, rhs: &Tensor, bias: Option<&Tensor>, dims: GemmDims) -> Tensor {
    gemm_then(lhs, rhs, bias, dims, &Identity)
}

/// [`gemm`] with `epilogue` applied to its output in the same pass.
pub(crate) fn gemm_then<E: UnaryKernel>(
    lhs: &Tensor,
    rhs: &Tensor,
    bias: Option<&Tensor>,
    dims: GemmDims,
    epilogue: &E,
) -> Tensor {
    let storage = match bias {
        None => with_storages([lhs, rhs], |[a, b]| a.gemm(b, None, dims, epilogue)),
        Some(bias) => with_storages([lhs, rhs, bias], |[a, b, c]| {
            a.gemm(b, Some(c), dims, epilogue)
        }),
    };
    Tensor::from_storage(storage, vec![dims.m, dims.n])
}

/// A backward rule and what it reads beside `∂L/∂y`: the tensors of a [`LhsRule`], which the
/// products below read their left operand through (a fused layer's `∂L/∂z = act'(y) ·
/// (∂L/∂y · mask)`, never written out where the device applies it in its GEMM).
pub(crate) struct SavedRule {
    /// The activation's output `y`.
    pub saved: Tensor,
    /// The dropout mask applied after the activation, if any.
    pub mask: Option<Tensor>,
    pub rule: Box<dyn GradRule + Send>,
}

/// Runs `f` on the storages of `tensors` and of `rule`'s tensors, as a [`LhsRule`].
fn with_rule_storages<R, const N: usize>(
    tensors: [&Tensor; N],
    rule: Option<&SavedRule>,
    f: impl FnOnce([&Storage; N], Option<LhsRule<'_, Storage>>) -> R,
) -> R {
    let mut all = tensors.to_vec();
    if let Some(rule) = rule {
        all.push(&rule.saved);
        all.extend(&rule.mask);
    }
    with_storage_slice(&all, |storages| {
        let lhs_rule = rule.map(|rule| LhsRule {
            saved: storages[N],
            mask: rule.mask.as_ref().map(|_| storages[N + 1]),
            rule: &*rule.rule,
        });
        f(std::array::from_fn(|i| storages[i]), lhs_rule)
    })
}

/// `∂L/∂y` read through `rule`, written out: `∂L/∂z` on its own.
pub(crate) fn through_rule(grad: &Tensor, rule: &SavedRule) -> Tensor {
    let storage = with_rule_storages([grad], Some(rule), |[grad], rule| {
        grad.through_rule(rule.expect("a rule"))
    });
    Tensor::from_storage(storage, grad.shape().to_vec())
}

/// `op(A) · op(B)` outside the graph, `A` read through `rule` if any.
pub(crate) fn gemm_through_rule(
    lhs: &Tensor,
    rhs: &Tensor,
    dims: GemmDims,
    rule: Option<&SavedRule>,
) -> Tensor {
    let storage = with_rule_storages([lhs, rhs], rule, |[a, b], rule| {
        a.gemm_through_rule(b, dims, rule)
    });
    Tensor::from_storage(storage, vec![dims.m, dims.n])
}

/// `(op(A) · op(B), the row sums of op(A))` outside the graph, for `A` stored transposed and
/// read through `rule` if any: a weight gradient and its bias gradient from one pass over
/// `∂L/∂z` where the device can.
pub(crate) fn gemm_with_lhs_row_sums(
    lhs: &Tensor,
    rhs: &Tensor,
    dims: GemmDims,
    rule: Option<&SavedRule>,
) -> (Tensor, Tensor) {
    let (product, sums) = with_rule_storages([lhs, rhs], rule, |[a, b], rule| {
        a.gemm_with_lhs_row_sums(b, dims, rule)
    });
    (
        Tensor::from_storage(product, vec![dims.m, dims.n]),
        Tensor::from_storage(sums, vec![dims.m]),
    )
}

/// `(A · first, (Aᵀ · second, the row sums of Aᵀ))` outside the graph, `A` read through `rule`
/// if any: a linear layer's `∂L/∂x` beside its `∂L/∂W` and `∂L/∂b`, both products in one
/// launch where the device can.
pub(crate) fn gemm_pair_with_lhs_row_sums(
    lhs: &Tensor,
    rule: Option<&SavedRule>,
    (rhs, dims): (&Tensor, GemmDims),
    (rhs2, dims2): (&Tensor, GemmDims),
) -> (Tensor, (Tensor, Tensor)) {
    let (first, (second, sums)) = with_rule_storages([lhs, rhs, rhs2], rule, |[a, b, d], rule| {
        a.gemm_pair_with_lhs_row_sums(rule, (b, dims), (d, dims2))
    });
    (
        Tensor::from_storage(first, vec![dims.m, dims.n]),
        (
            Tensor::from_storage(second, vec![dims2.m, dims2.n]),
            Tensor::from_storage(sums, vec![dims2.m]),
        ),
    )
}

/// [`gemm_then`] followed by inverted dropout with probability `p`, the mask drawn from
/// `generator`: `(output, mask)`, equal to `gemm_then`, a random fill of
/// `Distribution::DropoutMask` and a product (one kernel on CUDA).
pub(crate) fn gemm_then_dropout<E: UnaryKernel>(
    (lhs, rhs, bias): (&Tensor, &Tensor, Option<&Tensor>),
    dims: GemmDims,
    epilogue: &E,
    p: f32,
    generator: &mut Generator,
) -> (Tensor, Tensor) {
    let stream = generator.draw(dims.m * dims.n);
    let (out, mask) = match bias {
        None => with_storages([lhs, rhs], |[a, b]| {
            a.gemm_dropout(b, None, dims, epilogue, p, stream)
        }),
        Some(bias) => with_storages([lhs, rhs, bias], |[a, b, c]| {
            a.gemm_dropout(b, Some(c), dims, epilogue, p, stream)
        }),
    };
    let shape = vec![dims.m, dims.n];
    (
        Tensor::from_storage(out, shape.clone()),
        Tensor::from_storage(mask, shape),
    )
}

/// `GemmDims` for `[m, k] · [k, n]` with the given transposes.
pub(crate) fn dims(m: usize, k: usize, n: usize, lhs_t: bool, rhs_t: bool) -> GemmDims {
    GemmDims {
        m,
        k,
        n,
        lhs_transposed: lhs_t,
        rhs_transposed: rhs_t,
    }
}

/// `C = A · B` with `A: [m, k]`, `B: [k, n]`:
/// `∂L/∂A = ∂L/∂C · Bᵀ` (`[m, n] · [n, k]`) and `∂L/∂B = Aᵀ · ∂L/∂C` (`[k, m] · [m, n]`).
/// `A` is saved only if `B` needs a gradient, and the other way round.
struct MatmulBackward {
    lhs: Option<Tensor>,
    rhs: Option<Tensor>,
}

impl GradFn for MatmulBackward {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn backward(&self, grad: &Tensor, _needs_grad: &[bool]) -> Vec<Option<Tensor>> {
        let (m, n) = (grad.shape()[0], grad.shape()[1]);
        let grad_lhs = self.rhs.as_ref().map(|b| {
            let k = b.shape()[0];
            gemm(grad, b, None, dims(m, n, k, false, true))
        });
        let grad_rhs = self.lhs.as_ref().map(|a| {
            let k = a.shape()[1];
            gemm(a, grad, None, dims(k, m, n, true, false))
        });
        vec![grad_lhs, grad_rhs]
    }
}

impl Tensor {
    /// Matrix product: `[m, k] · [k, n] → [m, n]`.
    ///
    /// # Panics
    /// Unless both tensors are 2-D with matching inner dimensions.
    pub fn matmul(&self, rhs: &Tensor) -> Tensor {
        let (a, b) = (self.shape(), rhs.shape());
        assert!(
            a.len() == 2 && b.len() == 2 && a[1] == b[0],
            "matmul: shapes {a:?} and {b:?} cannot be multiplied (need [m, k] and [k, n])"
        );
        assert!(
            crate::tensor::checked_numel(&[a[0], b[1]]).is_some(),
            "matmul: shapes {a:?} and {b:?} give a result of more elements than a usize can count"
        );
        assert_same_device("matmul", self, rhs);
        let c = gemm(self, rhs, None, dims(a[0], a[1], b[1], false, false));
        record(&c, &[self, rhs], || MatmulBackward {
            lhs: rhs.requires_grad().then(|| self.detach()),
            rhs: self.requires_grad().then(|| rhs.detach()),
        });
        c
    }
}
