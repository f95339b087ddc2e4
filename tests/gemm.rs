//! The CPU GEMM against a naive f64 product on awkward shapes, every transpose combination,
//! with and without bias, with each microkernel this processor supports forced in turn.

mod common;

use common::uniform;
use ferrograd::backend::cpu::{gemm, gemm_with_kernel, Microkernel};
use ferrograd::backend::GemmDims;

/// `op(A) · op(B) + bias` in f64, and `Σ|aᵢₚ·bₚⱼ|` per element (the scale of its rounding error).
fn reference(a: &[f32], b: &[f32], bias: Option<&[f32]>, d: GemmDims) -> (Vec<f64>, Vec<f64>) {
    let a_at = |i: usize, p: usize| {
        f64::from(if d.lhs_transposed {
            a[p * d.m + i]
        } else {
            a[i * d.k + p]
        })
    };
    let b_at = |p: usize, j: usize| {
        f64::from(if d.rhs_transposed {
            b[j * d.k + p]
        } else {
            b[p * d.n + j]
        })
    };
    let mut c = vec![0.0; d.m * d.n];
    let mut magnitude = vec![0.0; d.m * d.n];
    for i in 0..d.m {
        for j in 0..d.n {
            let terms = (0..d.k).map(|p| a_at(i, p) * b_at(p, j));
            c[i * d.n + j] = terms.clone().sum::<f64>() + bias.map_or(0.0, |b| f64::from(b[j]));
            magnitude[i * d.n + j] = terms.map(f64::abs).sum();
        }
    }
    (c, magnitude)
}

fn check(m: usize, k: usize, n: usize) {
    for (lhs_transposed, rhs_transposed) in
        [(false, false), (false, true), (true, false), (true, true)]
    {
        let d = GemmDims {
            m,
            k,
            n,
            lhs_transposed,
            rhs_transposed,
        };
        let a = uniform(m * k, -1.0, 1.0, (m * 31 + k) as u64);
        let b = uniform(k * n, -1.0, 1.0, (k * 17 + n) as u64);
        let bias = uniform(n, -1.0, 1.0, 5);
        for (bias, kernel) in [None, Some(bias.as_slice())].into_iter().flat_map(|bias| {
            Microkernel::supported()
                .into_iter()
                .map(move |kernel| (bias, kernel))
        }) {
            let c = gemm_with_kernel(kernel, &a, &b, bias, d);
            let (expected, magnitude) = reference(&a, &b, bias, d);
            assert_eq!(c.len(), m * n);
            for (e, ((&got, &want), &mag)) in c.iter().zip(&expected).zip(&magnitude).enumerate() {
                // f32 accumulation over k terms: error ≲ k·ε·Σ|terms|; allow a safety factor.
                let allowed = 2.0 * (k as f64 + 2.0) * f64::from(f32::EPSILON) * (mag + 1.0);
                assert!(
                    (f64::from(got) - want).abs() <= allowed,
                    "{kernel:?} {d:?} bias={} element {e}: got {got}, expected {want}",
                    bias.is_some()
                );
            }
        }
    }
}

#[test]
fn tiny_and_odd_shapes() {
    check(1, 1, 1);
    check(7, 13, 5);
    check(3, 1, 9); // k = 1
    check(1, 40, 1);
    check(5, 0, 4); // k = 0: the bias alone
    check(0, 3, 4); // an empty output
}

#[test]
fn one_past_every_block_size() {
    // Blocks: MR = 4 / 6 / 8, NR = 8 / 12 / 16 / 32, KC = 256, tiles at most 512 wide, all
    // rows in one row of tiles up to 128, else tiles of MC = 96 rows.
    check(9, 33, 33);
    check(9, 13, 13);
    check(7, 17, 17);
    check(97, 257, 513);
    check(96, 256, 512);
    check(128, 257, 100);
    check(129, 257, 100);
}

/// Each way a product is cut into tasks, at the smallest shape that reaches it: small enough
/// for Miri (README, "Undefined behaviour"), under which every product's tasks run on several
/// threads, so that it checks that their writes into one output never race and that every
/// read stays inside its operand.
#[test]
fn every_path_at_its_smallest() {
    check(129, 1, 2); // more rows than one row of tiles holds (128): tiles of MC = 96 rows
    check(1, 2, 513); // more columns than one tile holds (512)
                      // X·Wᵀ with W read in place (`direct`: k ≥ 768, or 8 under Miri, and n ≥ m), W's rows
                      // in tasks of whole MR blocks.
    check(2, if cfg!(miri) { 8 } else { 769 }, 9);
}

#[test]
fn this_processor_has_the_expected_kernels() {
    let supported = Microkernel::supported();
    assert_eq!(supported.last(), Some(&Microkernel::Portable));
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        assert_eq!(supported[0], Microkernel::Avx512);
        if std::env::var_os(ferrograd::backend::cpu::KERNEL_ENV).is_none() {
            assert_eq!(Microkernel::selected(), Microkernel::Avx512);
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        assert_eq!(supported[0], Microkernel::Neon);
        if std::env::var_os(ferrograd::backend::cpu::KERNEL_ENV).is_none() {
            assert_eq!(Microkernel::selected(), Microkernel::Neon);
        }
    }
}

#[test]
fn the_gans_shapes() {
    check(64, 100, 256);
    check(64, 1024, 784);
    check(1024, 64, 784);
    check(128, 512, 1024); // the discriminator's step: real and fake images as one batch
}

#[test]
fn result_does_not_depend_on_the_thread_count() {
    // 130 rows: tiles of MC rows; 120: one row of tiles; 100 and 33 rows with k = 800: a
    // small batch's X·Wᵀ, W read in place (`gemm/direct.rs`), X packed at 2 threads in
    // 32-wide panels by two tasks of 64 and 36 rows, or of 32 and 1.
    for (m, k) in [(130, 300), (120, 300), (100, 800), (33, 800)] {
        let d = GemmDims {
            m,
            k,
            n: 520,
            lhs_transposed: false,
            rhs_transposed: true,
        };
        let a = uniform(d.m * d.k, -1.0, 1.0, 1);
        let b = uniform(d.k * d.n, -1.0, 1.0, 2);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| gemm(&a, &b, None, d))
        };
        assert_eq!(run(1), run(2), "{d:?}");
    }
}

#[test]
#[should_panic(expected = "gemm: lhs has 5 elements")]
fn mismatched_buffer_panics() {
    let d = GemmDims {
        m: 2,
        k: 3,
        n: 1,
        lhs_transposed: false,
        rhs_transposed: false,
    };
    gemm(&[0.0; 5], &[0.0; 3], None, d);
}
