//! The teaching matrix products of `backend::cpu::gemm_steps`: each step computes `A · B`
//! within f32 rounding of an f64 reference, on shapes with every kind of edge (smaller than a
//! register block, between blocks, past one packed block of rows, of k and of columns, and
//! empty); and the steps that sum each result over k in the same order give the same bits.

mod common;

use common::{assert_close, reference, to_f64, uniform};
use ferrograd::backend::cpu::gemm_steps::{gemm_step, GemmStep};

/// (m, k, n): one element; under one 4 × 8 register block; ragged blocks both ways; more rows
/// than a packed block of A (96) and more k than a packed block (256); more columns than a
/// packed block of B (512); nothing to sum; nothing to compute.
const SHAPES: [(usize, usize, usize); 7] = [
    (1, 1, 1),
    (5, 7, 3),
    (37, 53, 29),
    (130, 300, 70),
    (9, 20, 530),
    (6, 0, 10),
    (0, 4, 3),
];

fn product(step: GemmStep, (m, k, n): (usize, usize, usize)) -> Vec<f32> {
    let a = uniform(m * k, -1.0, 1.0, 3);
    let b = uniform(k * n, -1.0, 1.0, 4);
    gemm_step(step, &a, &b, m, k, n)
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn every_step_computes_the_product() {
    for step in GemmStep::ALL {
        for (m, k, n) in SHAPES {
            let a = to_f64(&uniform(m * k, -1.0, 1.0, 3));
            let b = to_f64(&uniform(k * n, -1.0, 1.0, 4));
            let expected = reference::matmul(&a, &b, m, k, n);
            // Terms of magnitude ≤ 1: f32 sums of k of them err by ~k · 2⁻²⁴ at most.
            let atol = k as f64 * 1e-7;
            let what = format!("{step:?} {m}x{k}x{n}");
            assert_close(&what, &product(step, (m, k, n)), &expected, 1e-6, atol);
        }
    }
}

#[test]
fn steps_that_sum_in_the_same_order_give_the_same_bits() {
    for shape in SHAPES {
        let naive = bits(&product(GemmStep::Naive, shape));
        // Steps 2 and 3 add the terms of each result in order of k, as step 1 does.
        for step in [GemmStep::RowOrder, GemmStep::RegisterBlocks] {
            assert!(
                bits(&product(step, shape)) == naive,
                "{step:?} {shape:?}: other bits than the naive loops"
            );
        }
        // Step 4 too while k fits in one packed block; past it, it adds each block's sum.
        let packed = bits(&product(GemmStep::PackedBlocks, shape));
        assert_eq!(
            packed == naive,
            shape.1 <= 256,
            "PackedBlocks {shape:?}: the same bits as the naive loops exactly when k ≤ 256"
        );
    }
}

#[test]
#[should_panic(expected = "gemm_step: A holds 6 values and B 6, not 2 × 3 and 3 × 3")]
fn operands_of_the_wrong_size_panic_naming_the_shapes() {
    gemm_step(GemmStep::RowOrder, &[0.0; 6], &[0.0; 6], 2, 3, 3);
}
