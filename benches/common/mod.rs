//! What the CPU and CUDA benchmarks share: the matrix products they time.

use ferrograd::gan::LAYERS;

/// The three products of a linear layer `[batch, in] → [batch, out]`.
#[derive(Clone, Copy, Debug)]
pub enum Product {
    /// `Y = X·Wᵀ`: `[batch, in] · [out, in]ᵀ` (W stored `[out, in]`).
    Forward,
    /// `dX = dY·W`: `[batch, out] · [out, in]`.
    InputGradient,
    /// `dW = dYᵀ·X`: `[batch, out]ᵀ · [batch, in]`.
    WeightGradient,
}

impl Product {
    /// `op(A) · op(B)` for this product at `[m, k] · [k, n]`, the transposes read in place.
    pub fn dims(self, m: usize, k: usize, n: usize) -> ferrograd::backend::GemmDims {
        ferrograd::backend::GemmDims {
            m,
            k,
            n,
            lhs_transposed: matches!(self, Product::WeightGradient),
            rhs_transposed: matches!(self, Product::Forward),
        }
    }
}

/// `A · B` at `[m, k] · [k, n]`, both row-major, neither transposed: the layout of the
/// teaching GEMMs (`gemm_steps`), timed beside the engine's product on the same operands.
pub fn untransposed(m: usize, k: usize, n: usize) -> ferrograd::backend::GemmDims {
    ferrograd::backend::GemmDims {
        m,
        k,
        n,
        lhs_transposed: false,
        rhs_transposed: false,
    }
}

/// `(product, m, k, n)`: every layer of the GAN at batch 64 in the forward layout, the
/// backward layouts of its largest layers, and two squares of the given sizes.
pub fn gemm_cases(squares: [usize; 2]) -> Vec<(Product, usize, usize, usize)> {
    let mut cases: Vec<_> = LAYERS
        .iter()
        .map(|&(inp, out)| (Product::Forward, 64, inp, out))
        .collect();
    cases.extend([
        (Product::InputGradient, 64, 1024, 784),
        (Product::InputGradient, 64, 1024, 512),
        (Product::WeightGradient, 1024, 64, 784),
        (Product::WeightGradient, 256, 64, 100),
    ]);
    cases.extend(squares.map(|s| (Product::Forward, s, s, s)));
    cases
}
