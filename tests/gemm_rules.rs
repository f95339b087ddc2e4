//! Products that read their left operand through a backward rule (`backend::LhsRule`): a fused
//! layer's `∂L/∂z = act'(y) · (∂L/∂y · mask)` computed as the GEMM loads `∂L/∂y`, never written
//! out. On the CPU emulator of the CUDA kernels: every rule gemm.cu has, with and without a
//! dropout mask, in both of A's layouts, split along k or not, against the same products of the
//! rule written out first (the same bits: the rule changes where `∂L/∂z` is computed, not how)
//! and against the CPU; and the products the GEMM cannot read so (gemm_large, a rule gemm.cu
//! does not have, row sums under split-K) through the written-out rule.

mod common;

use common::uniform;
use ferrograd::backend::cpu::CpuStorage;
use ferrograd::backend::cuda::{set_allow_tf32, CudaDevice, CudaStorage};
use ferrograd::backend::{BackendStorage, BinaryKernel, GemmDims, GradRule, LhsRule};
use ferrograd::Device;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// TF32 is a process-wide switch: the tests of this file take turns.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The test's own statement of each rule, `f(saved, g)`, named as the library's kernels are:
/// the CUDA backend picks the GEMM's rule by name, and the CPU runs `apply`.
macro_rules! rule {
    ($kernel:ident, $name:literal, |$saved:ident, $g:ident, $slope:ident| $formula:expr) => {
        struct $kernel {
            slope: f32,
        }
        impl BinaryKernel for $kernel {
            const NAME: &'static str = $name;
            fn apply(&self, $saved: f32, $g: f32) -> f32 {
                let $slope = self.slope;
                $formula
            }
            fn param(&self) -> f32 {
                self.slope
            }
        }
    };
}

rule!(Relu, "relu_backward", |y, g, _slope| if y > 0.0 {
    g
} else {
    0.0
});
rule!(LeakyRelu, "leaky_relu_backward", |x, g, slope| if x > 0.0 {
    g
} else {
    slope * g
});
rule!(Tanh, "tanh_backward", |y, g, _slope| g * (1.0 - y * y));
rule!(Sigmoid, "sigmoid_backward", |y, g, _slope| g
    * y
    * (1.0 - y));
// No GEMM has it: the elementwise kernel binary_mul runs first.
rule!(Product, "mul", |a, g, _slope| a * g);

/// The CUDA devices here (the emulator, and the GPU if there is one), as CUDA devices.
fn cuda_devices() -> Vec<CudaDevice> {
    let cuda = |device| match device {
        Device::Cuda(cuda) => cuda,
        Device::Cpu => unreachable!("CUDA devices"),
    };
    common::cuda_devices().into_iter().map(cuda).collect()
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

fn assert_close(what: &str, actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= 1e-5 * (1.0 + e.abs()),
            "{what}[{i}]: emulator {a}, cpu {e}"
        );
    }
}

/// A layer's operands: `∂L/∂y` `[batch, out]`, its saved output (half of it ≤ 0, so every rule
/// takes both branches), a dropout mask of zeros and 1/(1 − 0.3), `W` `[out, in]`, `x`
/// `[batch, in]`; and the dims of `∂L/∂x = ∂L/∂z · W` and `∂L/∂W = (∂L/∂z)ᵀ · x`.
struct Layer {
    grad: Vec<f32>,
    saved: Vec<f32>,
    mask: Vec<f32>,
    weight: Vec<f32>,
    input: Vec<f32>,
    input_dims: GemmDims,
    weight_dims: GemmDims,
}

impl Layer {
    fn new(batch: usize, outputs: usize, inputs: usize) -> Layer {
        let keep = 1.0 / (1.0 - 0.3);
        Layer {
            grad: uniform(batch * outputs, -1.0, 1.0, 61),
            saved: uniform(batch * outputs, -0.9, 0.9, 62),
            mask: (uniform(batch * outputs, 0.0, 1.0, 63).iter())
                .map(|&u| if u >= 0.3 { keep } else { 0.0 })
                .collect(),
            weight: uniform(outputs * inputs, -1.0, 1.0, 64),
            input: uniform(batch * inputs, -1.0, 1.0, 65),
            input_dims: GemmDims {
                m: batch,
                k: outputs,
                n: inputs,
                lhs_transposed: false,
                rhs_transposed: false,
            },
            weight_dims: GemmDims {
                m: outputs,
                k: batch,
                n: inputs,
                lhs_transposed: true,
                rhs_transposed: false,
            },
        }
    }
}

/// A layer's three gradients on one backend: from `gemm_pair_with_lhs_row_sums`, then from
/// the two single products, each read through `rule` (with the mask if `masked`), or with the
/// rule written out first (`through_rule`) and the products reading that.
fn gradients<S: BackendStorage>(
    layer: &Layer,
    on: impl Fn(&[f32]) -> S,
    rule: &dyn GradRule,
    masked: bool,
    written_out: bool,
) -> [Vec<f32>; 6] {
    let (grad, saved, mask) = (on(&layer.grad), on(&layer.saved), on(&layer.mask));
    let (weight, input) = (on(&layer.weight), on(&layer.input));
    let rule = LhsRule {
        saved: &saved,
        mask: masked.then_some(&mask),
        rule,
    };
    let through;
    let (lhs, rule) = if written_out {
        through = grad.through_rule(rule);
        (&through, None)
    } else {
        (&grad, Some(rule))
    };
    let (paired_input, (paired_weight, paired_bias)) = lhs.gemm_pair_with_lhs_row_sums(
        rule,
        (&weight, layer.input_dims),
        (&input, layer.weight_dims),
    );
    let single_input = lhs.gemm_through_rule(&weight, layer.input_dims, rule);
    let (single_weight, single_bias) = lhs.gemm_with_lhs_row_sums(&input, layer.weight_dims, rule);
    [
        paired_input,
        paired_weight,
        paired_bias,
        single_input,
        single_weight,
        single_bias,
    ]
    .map(|s| s.to_vec())
}

const WHAT: [&str; 6] = [
    "paired ∂L/∂x",
    "paired ∂L/∂W",
    "paired ∂L/∂b",
    "∂L/∂x",
    "∂L/∂W",
    "∂L/∂b",
];

/// A layer's gradients read through each of `rules` (with and without the mask) on every CUDA
/// device: the bits of the rule written out first, and the CPU's values.
fn check_layer(layer: &Layer, rules: &[&dyn GradRule], label: &str) {
    let on_cpu = |values: &[f32]| CpuStorage::from_vec(values.to_vec());
    for cuda in cuda_devices() {
        let on_cuda = |values: &[f32]| CudaStorage::from_vec(values.to_vec(), &cuda);
        for &rule in rules {
            for masked in [false, true] {
                let case = format!("{label}, {}, mask {masked}, {cuda:?}", rule.name());
                let read = gradients(layer, on_cuda, rule, masked, false);
                let written = gradients(layer, on_cuda, rule, masked, true);
                let cpu = gradients(layer, on_cpu, rule, masked, false);
                for (what, ((read, written), cpu)) in
                    WHAT.iter().zip(read.iter().zip(&written).zip(&cpu))
                {
                    assert!(
                        bits(read) == bits(written),
                        "{case}: {what} read through the rule"
                    );
                    assert_close(&format!("{case}: {what}"), read, cpu);
                }
            }
        }
    }
}

/// Every rule gemm.cu has, in both of A's layouts (∂L/∂x reads ∂L/∂y along k, ∂L/∂W across
/// it), with ragged edges (k and m not multiples of 4: the rule's operands loaded one by one)
/// and split along k (64 × 300 · 300 × 70: its ∂L/∂x in two chunks, each reading its part of
/// ∂L/∂y through the rule; 1100 × 12 · 12 × 9: ∂L/∂W split, so its row sums are not the GEMM's
/// and the rule is written out first).
#[test]
fn a_rule_read_in_the_gemm_gives_the_bits_of_the_rule_written_out() {
    let _turn = one_at_a_time();
    let rules: [&dyn GradRule; 4] = [
        &Relu { slope: 0.0 },
        &LeakyRelu { slope: 0.2 },
        &Tanh { slope: 0.0 },
        &Sigmoid { slope: 0.0 },
    ];
    for (batch, outputs, inputs) in [(64, 300, 70), (9, 21, 130), (1100, 12, 9), (70, 65, 33)] {
        let layer = Layer::new(batch, outputs, inputs);
        check_layer(&layer, &rules, &format!("{batch}x{outputs}x{inputs}"));
    }
}

/// The tensor-core kernel reads through rules too (two quads of each slice per thread: 128
/// threads); its products then round the rule's results to TF32, as they would the rule written
/// out. Its row sums, a bias gradient, add the rule's results in FP32: the bits of `gemm`'s.
#[test]
fn the_tensor_core_gemm_reads_through_rules_too() {
    let _turn = one_at_a_time();
    let layer = Layer::new(64, 100, 70);
    let rule = LeakyRelu { slope: 0.2 };
    for cuda in cuda_devices() {
        let on_cuda = |values: &[f32]| CudaStorage::from_vec(values.to_vec(), &cuda);
        set_allow_tf32(true);
        let read = gradients(&layer, on_cuda, &rule, true, false);
        let written = gradients(&layer, on_cuda, &rule, true, true);
        set_allow_tf32(false);
        let fp32 = gradients(&layer, on_cuda, &rule, true, false);
        for (what, (read, written)) in WHAT.iter().zip(read.iter().zip(&written)) {
            assert!(bits(read) == bits(written), "tf32 on {cuda:?}: {what}");
        }
        for bias in [2, 5] {
            let what = WHAT[bias];
            assert!(
                bits(&read[bias]) == bits(&fp32[bias]),
                "tf32 on {cuda:?}: {what} / FP32"
            );
        }
    }
}

/// `∂L/∂x = ∂L/∂z · W` alone, `∂L/∂y` read through `rule` with the layer's mask.
fn input_gradient<S: BackendStorage>(
    layer: &Layer,
    on: impl Fn(&[f32]) -> S,
    rule: &dyn GradRule,
) -> Vec<f32> {
    let (saved, mask) = (on(&layer.saved), on(&layer.mask));
    let rule = LhsRule {
        saved: &saved,
        mask: Some(&mask),
        rule,
    };
    (on(&layer.grad).gemm_through_rule(&on(&layer.weight), layer.input_dims, Some(rule))).to_vec()
}

/// What the GEMM cannot read through: a rule gemm.cu does not have (its elementwise kernel runs
/// first), and a product large enough for gemm_large (the rule written out first): the same
/// values as the CPU.
#[test]
fn products_the_gemm_cannot_read_through_take_the_rule_written_out() {
    let _turn = one_at_a_time();
    let unknown = Layer::new(33, 40, 20);
    check_layer(&unknown, &[&Product { slope: 0.0 }], "unknown rule");
    // ∂L/∂x of a 2048-wide layer at batch 1024: 8 × 16 tiles of 128 × 128, gemm_large's.
    let large = Layer::new(1024, 8, 2048);
    let rule = Tanh { slope: 0.0 };
    let cpu = input_gradient(&large, |v| CpuStorage::from_vec(v.to_vec()), &rule);
    for cuda in cuda_devices() {
        let on_cuda = |values: &[f32]| CudaStorage::from_vec(values.to_vec(), &cuda);
        let read = input_gradient(&large, on_cuda, &rule);
        assert_close(&format!("gemm_large on {cuda:?}"), &read, &cpu);
    }
}
