//! The contract between the device-blind op layer and the devices.
//!
//! Ops (in `src/ops/`) describe *what* to compute with small kernel values: a struct that
//! says how to map one float ([`UnaryKernel`]) or a pair of floats ([`BinaryKernel`]). A backend
//! says *how* to run that over a buffer: the CPU backend maps it over slices on the rayon pool;
//! the CUDA backend launches the kernel of the same name from `kernels/*.cu`.
//!
//! Every backend's storage implements [`BackendStorage`]; `Storage` (`src/storage.rs`) is the enum
//! over them that tensors hold. Nothing above this module knows which device it runs on.

pub mod cpu;
pub mod cuda;

use crate::rng::PhiloxStream;

/// An elementwise map `y = f(x)`.
pub trait UnaryKernel: Sync {
    /// The op's name: shown in graphs; the GPU kernel is `unary_<NAME>` in `kernels/`.
    const NAME: &'static str;
    /// `f(x)`: the CPU's kernel; `kernels/elementwise.cu` holds the GPU's.
    fn apply(&self, x: f32) -> f32;
    /// The kernel's parameter (a slope, a scale), passed to the GPU kernel as `p`.
    fn param(&self) -> f32 {
        0.0
    }
}

/// The map that leaves its input as it is: the epilogue of a plain GEMM.
#[derive(Debug)]
pub struct Identity;

impl UnaryKernel for Identity {
    const NAME: &'static str = "identity";
    fn apply(&self, x: f32) -> f32 {
        x
    }
}

/// An elementwise map `y = f(a, b)`; backward rules are mostly of this kind (`f(saved, grad)`).
pub trait BinaryKernel: Sync {
    /// The GPU kernel is `binary_<NAME>` in `kernels/`.
    const NAME: &'static str;
    /// `f(a, b)`, on the CPU.
    fn apply(&self, a: f32, b: f32) -> f32;
    /// The kernel's parameter, passed to the GPU kernel as `p`.
    fn param(&self) -> f32 {
        0.0
    }
}

/// An elementwise map `y = f(a, b, c)`, `c` one value: a loss's backward rule, which reads two
/// saved tensors beside the incoming scalar gradient (`f(prediction, target, grad)`).
pub trait TernaryKernel: Sync {
    /// The GPU kernel is `ternary_<NAME>` in `kernels/`.
    const NAME: &'static str;
    /// `f(a, b, c)`, on the CPU.
    fn apply(&self, a: f32, b: f32, c: f32) -> f32;
    /// The kernel's parameter, passed to the GPU kernel as `p`.
    fn param(&self) -> f32 {
        0.0
    }
}

/// A backward rule `∂L/∂x = f(saved, ∂L/∂y)` behind a reference, as [`LhsRule`] holds it; every
/// [`BinaryKernel`] is one. (A trait object, so that a layer's backward node keeps the rule of
/// whichever activation it has without a type parameter.)
pub trait GradRule: Sync {
    /// The kernel's name: the GPU's GEMMs apply some rules by name as they load their left
    /// operand; any other runs as the elementwise kernel `binary_<name>` before the product.
    fn name(&self) -> &'static str;
    /// The kernel's parameter (a slope).
    fn param(&self) -> f32;
    /// `grads[i] = f(saved[i], grads[i])` for every element.
    fn apply_in_place(&self, saved: &[f32], grads: &mut [f32]);
}

impl<K: BinaryKernel> GradRule for K {
    fn name(&self) -> &'static str {
        K::NAME
    }
    fn param(&self) -> f32 {
        BinaryKernel::param(self)
    }
    fn apply_in_place(&self, saved: &[f32], grads: &mut [f32]) {
        for (grad, &saved) in grads.iter_mut().zip(saved) {
            *grad = self.apply(saved, *grad);
        }
    }
}

/// A product's left operand read through a backward rule: each element `a` of `A` (as stored)
/// counts as `rule(saved, a · mask)`, where `saved` and `mask` are stored as `A` is (`· mask`
/// only with a mask). This is a fused layer's `∂L/∂z = act'(y) · (∂L/∂y · mask)` taken by its
/// products straight from `∂L/∂y`: the CUDA backend applies the rule as its GEMM loads `A`, so
/// `∂L/∂z` is never written and costs no launch of its own.
pub struct LhsRule<'a, S> {
    /// What the rule reads beside each element, such as the activation's output `y`.
    pub saved: &'a S,
    /// Dropout's mask, which multiplies each element first, if the layer has dropout.
    pub mask: Option<&'a S>,
    /// The activation's backward rule.
    pub rule: &'a dyn GradRule,
}

// By hand: derived, they would ask `S: Copy`, where only references are copied.
impl<S> Clone for LhsRule<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for LhsRule<'_, S> {}

impl<S> std::fmt::Debug for LhsRule<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LhsRule")
            .field("masked", &self.mask.is_some())
            .finish_non_exhaustive()
    }
}

/// An optimiser step fused over many parameters, in two phases: `prepare` advances the step
/// count kept in a small buffer of scalars and derives the step's other scalars from it (so
/// nothing about the step lives on the host), then `update` applies the step to every element
/// of every parameter, beside its gradient and two state buffers (Adam's moments). The CPU
/// backend runs them in turn; the GPU kernel `STEP` does both in one launch.
pub trait OptimizerKernel: Sync {
    /// The GPU kernel of a step, in `kernels/`.
    const STEP: &'static str;
    /// Advances `scalars[0]`, the step count, and derives the rest of `scalars` from it.
    fn prepare(&self, scalars: &mut [f32]);
    /// Updates one element, given the step's scalars.
    fn update(
        &self,
        scalars: &[f32],
        param: &mut f32,
        grad: f32,
        state_a: &mut f32,
        state_b: &mut f32,
    );
    /// The hyper-parameters the GPU kernels take, in their argument structs' order.
    fn hyper_params(&self) -> [f32; 5];
}

/// How the right operand of a binary map lines up with the left one (whose shape the result has).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broadcast {
    /// Same number of elements, matched one to one.
    None,
    /// The left operand is `[rows, cols]` and the right one `[cols]`, repeated for every row
    /// (a bias added to a batch).
    Rows,
    /// The right operand is one value, used for every element.
    Scalar,
}

/// The shape of `C = op(A) · op(B)`: `op(A)` is `[m, k]`, `op(B)` is `[k, n]`, `C` is `[m, n]`.
/// A transposed operand is stored the other way round (`A` as `[k, m]`, `B` as `[n, k]`), so the
/// three products a linear layer needs run without copying a transpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmDims {
    /// Rows of `op(A)` and `C`.
    pub m: usize,
    /// The length of each sum: columns of `op(A)`, rows of `op(B)`.
    pub k: usize,
    /// Columns of `op(B)` and `C`.
    pub n: usize,
    /// `A` is stored as `[k, m]`: `op(A) = Aᵀ`.
    pub lhs_transposed: bool,
    /// `B` is stored as `[n, k]`: `op(B) = Bᵀ`.
    pub rhs_transposed: bool,
}

/// What a random fill draws for each element.
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(missing_docs)] // the fields: named in their variant's doc, one line each
pub enum Distribution {
    /// Uniform on `[low, high)`.
    Uniform { low: f32, high: f32 },
    /// Normal with mean `mean` and standard deviation `std` (Box–Muller).
    Normal { mean: f32, std: f32 },
    /// An inverted-dropout mask: `1 / (1 - p)` with probability `1 - p`, else `0`.
    DropoutMask { p: f32 },
}

/// The operations every device's storage provides. Each takes its operands by reference and
/// returns a new buffer, except the optimiser update, which works in place.
pub trait BackendStorage: Sized {
    /// Every element, copied to the host.
    fn to_vec(&self) -> Vec<f32>;
    /// Overwrites every element with `values` (as many as the buffer holds), in place: the
    /// buffer keeps its address, which captured CUDA graphs rely on.
    fn write(&mut self, values: &[f32]);
    /// Overwrites every element with `src`'s (same length, same device), in place.
    fn copy_from(&mut self, src: &Self);
    /// The buffers one after another (a concatenation along the first dimension).
    fn concat(parts: &[&Self]) -> Self;
    /// Elements `start..start + len`, copied.
    fn slice(&self, start: usize, len: usize) -> Self;
    /// `kernel(self[i])` for every element.
    fn unary<K: UnaryKernel>(&self, kernel: &K) -> Self;
    /// `kernel(self[i], r)` for every element, `r` the element of `rhs` that `broadcast` pairs
    /// with it.
    fn binary<K: BinaryKernel>(&self, rhs: &Self, broadcast: Broadcast, kernel: &K) -> Self;
    /// `kernel(self[i], b[i], c[0])`, `self` and `b` of one length, `c` one value (an incoming
    /// scalar gradient, left on the device: a GPU need not wait to read it).
    fn ternary<K: TernaryKernel>(&self, b: &Self, c: &Self, kernel: &K) -> Self;
    /// `scale` times the sum of all elements (1 for a sum, 1/N for a mean), as a one-element
    /// buffer: the sum rounded to f32, then the product. Fixed chunking: the result does not
    /// depend on the number of threads.
    fn sum_all(&self, scale: f32) -> Self;
    /// [`BackendStorage::sum_all`] of `kernel` mapped over `(self, rhs)` (same lengths), in one
    /// pass that writes no elementwise buffer: the same bits as the map, then its sum. (On CUDA
    /// the map needs a `sum_<NAME>` kernel in `reduce.cu`: the losses have one.)
    fn map_sum_all<K: BinaryKernel>(&self, rhs: &Self, kernel: &K, scale: f32) -> Self;
    /// Column sums of a `[rows, cols]` buffer: `[cols]` (a bias gradient).
    fn sum_rows(&self, rows: usize, cols: usize) -> Self;
    /// `len` copies of this one-element buffer's value times `scale` (the gradient of a sum).
    fn expand_scalar(&self, len: usize, scale: f32) -> Self;
    /// `C = epilogue(op(A) · op(B) + bias)`, the bias (if any) added to every row and the
    /// epilogue applied while each output tile is still hot ([`Identity`] for a plain GEMM).
    fn gemm<E: UnaryKernel>(
        &self,
        rhs: &Self,
        bias: Option<&Self>,
        dims: GemmDims,
        epilogue: &E,
    ) -> Self;
    /// This buffer read through `rule` (see [`LhsRule`]), written out: for a fused layer's
    /// `∂L/∂z` wanted on its own (a bias gradient without a weight gradient).
    fn through_rule(&self, rule: LhsRule<'_, Self>) -> Self;
    /// `op(A) · op(B)` (no bias, no epilogue) with `A` read through `rule`, if any: a fused
    /// layer's `∂L/∂x` alone. Without a rule, [`BackendStorage::gemm`].
    fn gemm_through_rule(
        &self,
        rhs: &Self,
        dims: GemmDims,
        rule: Option<LhsRule<'_, Self>>,
    ) -> Self;
    /// `(op(A) · op(B), the row sums of op(A))` for `A` stored transposed (`[k, m]`) and read
    /// through `rule`, if any: a weight gradient `(∂L/∂z)ᵀ · x` and the bias gradient
    /// `Σ_rows ∂L/∂z` beside it (the column sums of `A` as stored, as
    /// [`BackendStorage::sum_rows`] computes them, bit for bit). The CUDA backend sums the rows
    /// in the GEMM, from the tiles of `A` it reads anyway.
    fn gemm_with_lhs_row_sums(
        &self,
        rhs: &Self,
        dims: GemmDims,
        rule: Option<LhsRule<'_, Self>>,
    ) -> (Self, Self);
    /// Two independent products of one left operand `A` (this buffer, read through `rule` if
    /// any): `op(A) · op(first.0)` as [`BackendStorage::gemm_through_rule`], and `second` as
    /// [`BackendStorage::gemm_with_lhs_row_sums`] (`A` transposed there): a linear layer's
    /// `∂L/∂x = ∂L/∂z · W` beside its `∂L/∂W` and `∂L/∂b`. The same values as the two calls;
    /// the CUDA backend runs both in one launch where it can, sharing the GPU between them.
    fn gemm_pair_with_lhs_row_sums(
        &self,
        rule: Option<LhsRule<'_, Self>>,
        first: (&Self, GemmDims),
        second: (&Self, GemmDims),
    ) -> (Self, (Self, Self));
    /// [`BackendStorage::gemm`] followed by inverted dropout (training mode): `(C · mask,
    /// mask)`, `mask` the values `0..m·n` of the draw `stream` of
    /// [`Distribution::DropoutMask`]`{ p }`: what a random fill of that draw would hold, so
    /// the result equals the three unfused operations bit for bit. The CUDA backend draws the
    /// mask in the GEMM's epilogue: one kernel where the unfused ops take three.
    #[allow(clippy::too_many_arguments)] // the GEMM's five, and the dropout's two
    fn gemm_dropout<E: UnaryKernel>(
        &self,
        rhs: &Self,
        bias: Option<&Self>,
        dims: GemmDims,
        epilogue: &E,
        p: f32,
        stream: PhiloxStream,
    ) -> (Self, Self);
    /// An optimiser step: the step's scalars advanced in `scalars`, then every element of
    /// every parameter updated, in one pass (on CUDA, one launch per 16 parameters).
    fn optimizer_step<K: OptimizerKernel>(
        params: &mut [&mut Self],
        grads: &[&Self],
        state_a: &mut [&mut Self],
        state_b: &mut [&mut Self],
        scalars: &mut Self,
        kernel: &K,
    );
}

impl Distribution {
    /// The four values one Philox block yields. Every backend uses this mapping, so one seed
    /// gives the same numbers on every device.
    pub fn sample_block(&self, words: [u32; 4]) -> [f32; 4] {
        self.sample_lanes(words.map(|word| [word]))
            .map(|[value]| value)
    }

    /// [`Distribution::sample_block`] for `L` blocks given word by word: `values[w][l]` is
    /// value `w` of the block whose words are `words[0..4][l]`. Each value depends only on its
    /// lane, so the CPU's fills run this as SIMD over [`crate::rng::WIDE_BLOCKS`] blocks (the
    /// normal distribution's logarithm and sine stay scalar calls).
    #[inline(always)]
    pub fn sample_lanes<const L: usize>(&self, words: [[u32; L]; 4]) -> [[f32; L]; 4] {
        use crate::rng::{box_muller, unit_f32};
        match *self {
            Distribution::Uniform { low, high } => {
                each_word(words, |w| low + (high - low) * unit_f32(w))
            }
            Distribution::Normal { mean, std } => {
                // Box–Muller turns words (0, 1) into values (0, 1), and words (2, 3) into (2, 3).
                let mut values = [[0.0; L]; 4];
                for pair in [0, 2] {
                    for l in 0..L {
                        let (a, b) = box_muller(words[pair][l], words[pair + 1][l]);
                        values[pair][l] = mean + std * a;
                        values[pair + 1][l] = mean + std * b;
                    }
                }
                values
            }
            Distribution::DropoutMask { p } => {
                let keep_scale = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
                each_word(words, |w| if unit_f32(w) >= p { keep_scale } else { 0.0 })
            }
        }
    }
}

/// `f` of every word, as plain loops: `[T; N]::map` is not inlined into the AVX-512 build of
/// a fill, and then runs scalar, outside it.
#[inline(always)]
fn each_word<const L: usize>(words: [[u32; L]; 4], f: impl Fn(u32) -> f32) -> [[f32; L]; 4] {
    let mut values = [[0.0; L]; 4];
    for (values, words) in values.iter_mut().zip(&words) {
        for (value, &word) in values.iter_mut().zip(words) {
            *value = f(word);
        }
    }
    values
}
