//! The argument structs of the kernels, field for field as in `kernels/*.cu`. Pointers are
//! device addresses (host addresses in the emulator), so one struct serves both runtimes.

use crate::backend::{GemmDims, Identity, UnaryKernel};

/// A `#[repr(C)]` mirror of a kernel's argument struct.
///
/// # Safety
/// Implementors must have exactly the layout of the C struct the kernel takes; the layout
/// test compares their sizes with the C compiler's.
pub unsafe trait KernelArgs: Copy {
    /// The C struct's name, for the layout check.
    const C_NAME: &'static str;
}

macro_rules! kernel_args {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug)]
        #[allow(missing_docs)] // the C struct's fields, as the doc above and the kernel name them
        pub struct $name { $(pub $field: $ty),* }
        // SAFETY: #[repr(C)] with the fields, types and order of the C struct of this name
        // (kernels/*.cu), checked by tests/cuda_kernels.rs against the C compiler's sizeof.
        unsafe impl KernelArgs for $name {
            const C_NAME: &'static str = stringify!($name);
        }
    };
}

kernel_args!(
    /// `y[i] = f(x[i], p)` (`common.cuh`).
    UnaryArgs { x: u64, y: u64, n: u64, p: f32 }
);
kernel_args!(
    /// `out[i] = f(a[i], b[…], p)`, `b` lined up by `broadcast` (`common.cuh`).
    BinaryArgs { a: u64, b: u64, out: u64, n: u64, cols: u64, p: f32, broadcast: i32 }
);
kernel_args!(
    /// `out[i] = f(a[i], b[i], c[0], p)` (`common.cuh`).
    TernaryArgs { a: u64, b: u64, c: u64, out: u64, n: u64, p: f32 }
);
kernel_args!(
    /// Up to [`CONCAT_MAX_PARTS`] buffers one after another (`elementwise.cu`): part `p` goes
    /// to `out[starts[p]..starts[p + 1]]`.
    ConcatArgs {
        parts: [u64; CONCAT_MAX_PARTS], starts: [u64; CONCAT_MAX_PARTS + 1], out: u64,
        count: u32,
    }
);

/// `CONCAT_MAX_PARTS` in `elementwise.cu`: the parts one `concat` launch joins.
pub const CONCAT_MAX_PARTS: usize = 8;

kernel_args!(
    /// The two passes of a full sum, times `scale` (`reduce.cu`); `y` is a summed map's second
    /// operand (0 for a plain sum).
    SumArgs { x: u64, y: u64, partials: u64, out: u64, n: u64, blocks: u64, scale: f32 }
);
kernel_args!(
    /// Column sums of `[rows, cols]` (`reduce.cu`).
    SumRowsArgs { x: u64, out: u64, rows: u64, cols: u64 }
);
kernel_args!(
    /// Where a draw's random numbers come from (`common.cuh`): the key and the counter block of
    /// value 0 — relative to the offset of the generator state at `generator` (whose key is
    /// then used) unless `generator` is 0. See `CudaDevice::philox_draw`.
    PhiloxDraw { first_block: u64, generator: u64, key0: u32, key1: u32 }
);
impl PhiloxDraw {
    /// The draw of a kernel that draws nothing (`GemmArgs` without dropout).
    pub const NONE: PhiloxDraw = PhiloxDraw {
        first_block: 0,
        generator: 0,
        key0: 0,
        key1: 0,
    };
}

kernel_args!(
    /// `C = epilogue(op(A) · op(B) + bias)` (`gemm.cu`): `partials`, `tile_counters` and
    /// `k_chunk` for split-K, `epilogue` one of [`epilogue_code`]'s, `p` its parameter; with a
    /// `mask` (else 0), `C` then times the inverted-dropout mask of probability `dropout_p`
    /// drawn from `dropout`, which is written to `mask`; with `row_sums` (else 0), `gemm` also
    /// writes the row sums of `op(A)` there; with `lhs_rule` (one of [`lhs_rule_code`]'s, else
    /// 0), A is read through that backward rule, `lhs_saved` and `lhs_mask` (else 0) beside it.
    GemmArgs {
        a: u64, b: u64, bias: u64, c: u64, partials: u64, tile_counters: u64,
        m: i32, k: i32, n: i32, lhs_transposed: i32, rhs_transposed: i32,
        k_chunk: i32, epilogue: i32, p: f32,
        dropout_p: f32, mask: u64, dropout: PhiloxDraw, row_sums: u64,
        lhs_saved: u64, lhs_mask: u64, lhs_rule: i32, lhs_rule_p: f32,
    }
);
impl GemmArgs {
    /// `C = op(A) · op(B)` of `dims`, A, B and C at these addresses, and nothing more: no
    /// bias, the identity epilogue, k in one chunk, no dropout, row sums or backward rule.
    /// Every other product sets what it adds.
    ///
    /// # Panics
    /// Where a dimension does not fit the kernels' `int` (2³¹ and beyond).
    pub fn product(a: u64, b: u64, c: u64, dims: GemmDims) -> GemmArgs {
        GemmArgs {
            a,
            b,
            bias: 0,
            c,
            partials: 0,
            tile_counters: 0,
            m: gemm_dim(dims.m),
            k: gemm_dim(dims.k),
            n: gemm_dim(dims.n),
            lhs_transposed: i32::from(dims.lhs_transposed),
            rhs_transposed: i32::from(dims.rhs_transposed),
            k_chunk: gemm_dim(dims.k),
            epilogue: epilogue_code(<Identity as UnaryKernel>::NAME),
            p: 0.0,
            dropout_p: 0.0,
            mask: 0,
            dropout: PhiloxDraw::NONE,
            row_sums: 0,
            lhs_saved: 0,
            lhs_mask: 0,
            lhs_rule: 0,
            lhs_rule_p: 0.0,
        }
    }
}

/// A product's dimension as the GEMM kernels' `int`.
///
/// # Panics
/// From 2³¹ on.
pub(crate) fn gemm_dim(d: usize) -> i32 {
    i32::try_from(d).expect("gemm: dimensions beyond 2³¹ are not supported")
}

kernel_args!(
    /// Two products in one launch (`gemm.cu`'s `gemm_pair`): each with its grid of 64 × 64
    /// tiles (`tiles_x` × `tiles_y`) and `splits` chunks of k, the first product's blocks first.
    GemmPairArgs { product: [GemmArgs; 2], tiles_x: [i32; 2], tiles_y: [i32; 2], splits: [i32; 2] }
);
kernel_args!(
    /// `C = A · B`, row-major, for the teaching kernels of `gemm_steps.cu`.
    GemmStepArgs { a: u64, b: u64, c: u64, m: i32, k: i32, n: i32 }
);
kernel_args!(
    /// A Philox fill (`random.cu`).
    RandomArgs { out: u64, n: u64, draw: PhiloxDraw, distribution: i32, a: f32, b: f32 }
);
kernel_args!(
    /// Moves a captured graph's random-number counter past one replay's draws (`random.cu`).
    PhiloxAdvanceArgs { generator: u64, blocks: u64 }
);
kernel_args!(
    /// An Adam step over up to [`ADAM_MAX_TENSORS`] parameters at once (`adam.cu`), the step
    /// count moved on by the launch with `advance` = 1 (a step's last). The table of addresses
    /// travels inside the arguments, as PyTorch's multi-tensor apply does, so a step copies
    /// nothing from the host and can be captured; `offsets` are prefix sums of the parameters'
    /// quads of 4 (a thread's share), `lengths` their lengths.
    AdamStepArgs {
        tensors: [u64; 4 * ADAM_MAX_TENSORS], offsets: [u64; ADAM_MAX_TENSORS + 1],
        lengths: [u64; ADAM_MAX_TENSORS], scalars: u64, count: u32, advance: u32,
        lr: f32, beta1: f32, beta2: f32, eps: f32, weight_decay: f32,
    }
);

/// `ADAM_MAX_TENSORS` in `adam.cu`: parameters per Adam launch (about 850 bytes of arguments,
/// well under the 4 KiB a launch may pass).
pub const ADAM_MAX_TENSORS: usize = 16;

/// `GemmArgs::epilogue` (`GEMM_EPILOGUE_*` in `gemm.cu`) for a unary kernel's name.
///
/// # Panics
/// For a kernel `gemm.cu` has no epilogue for (a programming error, not a user's).
pub fn epilogue_code(name: &str) -> i32 {
    match name {
        <Identity as UnaryKernel>::NAME => 0,
        "relu" => 1,
        "leaky_relu" => 2,
        "tanh" => 3,
        "sigmoid" => 4,
        other => panic!("gemm.cu has no epilogue for {other}"),
    }
}

/// `GemmArgs::lhs_rule` (`GEMM_LHS_RULE_*` in `gemm.cu`) for a backward rule's name, if the
/// GEMM kernels have that rule (else the rule's elementwise kernel runs before the product).
pub fn lhs_rule_code(name: &str) -> Option<i32> {
    match name {
        "relu_backward" => Some(1),
        "leaky_relu_backward" => Some(2),
        "tanh_backward" => Some(3),
        "sigmoid_backward" => Some(4),
        _ => None,
    }
}

/// `BinaryArgs::broadcast` for each [`crate::backend::Broadcast`].
pub fn broadcast_code(broadcast: crate::backend::Broadcast) -> i32 {
    match broadcast {
        crate::backend::Broadcast::None => 0,
        crate::backend::Broadcast::Rows => 1,
        crate::backend::Broadcast::Scalar => 2,
    }
}

/// `RandomArgs::{distribution, a, b}` for a [`crate::backend::Distribution`].
pub fn distribution_code(distribution: crate::backend::Distribution) -> (i32, f32, f32) {
    match distribution {
        crate::backend::Distribution::Uniform { low, high } => (0, low, high),
        crate::backend::Distribution::Normal { mean, std } => (1, mean, std),
        crate::backend::Distribution::DropoutMask { p } => (2, p, 0.0),
    }
}
