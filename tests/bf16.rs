//! The CPU's optional BF16 products (`set_allow_bf16`), on Intel AMX or with AVX512-BF16's dot
//! products, whichever the processor has (`bf16_support`): every product exactly the
//! FP32 sum of its BF16-rounded terms (within FP32's rounding of the sum), at the GAN's shapes
//! and ragged ones, in every layout; the same bits on any number of threads; a linear layer and
//! GAN steps close to FP32. In a test binary of its own: the switch is process-wide, and the
//! tests that turn it on hold a lock.
//!
//! Where the processor has neither the product tests skip and say why, unless
//! `FERROGRAD_REQUIRE_BF16=1` (CI sets it on a processor that reports AVX512-BF16), and
//! `FERROGRAD_REQUIRE_AMX=1` (set where it reports AMX-BF16) requires AMX. On a processor
//! with AMX, CI runs them a second time with `FERROGRAD_BF16_UNITS=avx512bf16`, on the dot
//! products.

mod common;

use std::sync::{Mutex, MutexGuard, PoisonError};

use common::{assert_within_scale, uniform, CPU};
use ferrograd::backend::cpu::{
    avx512_bf16_rate, bf16_allowed, bf16_support, enable_bf16, gemm, set_allow_bf16, Bf16Units,
    BF16_UNITS_ENV,
};
use ferrograd::backend::GemmDims;
use ferrograd::gan::{Gan, IMAGE_DIM};
use ferrograd::math::{from_bf16, to_bf16};
use ferrograd::nn::functional::linear;
use ferrograd::{manual_seed, Tensor};

/// Held while a test has BF16 products on; they are off again when it is dropped.
struct Bf16On(#[allow(dead_code)] MutexGuard<'static, ()>);

impl Drop for Bf16On {
    fn drop(&mut self) {
        set_allow_bf16(false);
    }
}

/// The switch, for the length of a test (`enable_bf16`); `None` (and why, on stderr) without
/// BF16 units.
fn bf16_on() -> Option<Bf16On> {
    static SWITCH: Mutex<()> = Mutex::new(());
    let required = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
    let on = Bf16On(SWITCH.lock().unwrap_or_else(PoisonError::into_inner));
    match enable_bf16() {
        Err(why) => {
            assert!(
                !required("FERROGRAD_REQUIRE_BF16") && !required("FERROGRAD_REQUIRE_AMX"),
                "BF16 products required but: {why}"
            );
            assert!(!bf16_allowed(), "enable_bf16 failed but turned BF16 on");
            eprintln!("skipped: {why}");
            None
        }
        Ok(units) => {
            assert_eq!(bf16_support(), Ok(units), "enable_bf16 names other units");
            assert!(
                units == Bf16Units::Amx || !required("FERROGRAD_REQUIRE_AMX"),
                "FERROGRAD_REQUIRE_AMX=1 but the products run on {units:?}"
            );
            let dot_asked = std::env::var(BF16_UNITS_ENV).is_ok_and(|v| v == "avx512bf16");
            assert!(
                units == Bf16Units::Avx512Bf16 || !dot_asked,
                "{BF16_UNITS_ENV}=avx512bf16 but the products run on {units:?}"
            );
            Some(on)
        }
    }
}

/// How the dot products' multiply-adds compare with FP32 FMAs (`avx512_bf16_rate`), which
/// `--bf16` reports and warns by: measured wherever there are BF16 units (every processor with
/// AMX has AVX512-BF16 too), and inside what the instructions allow. `VDPBF16PS` does twice
/// an FMA's multiply-adds: at the same issue rate the ratio is 2 (AMD Zen 4), at a quarter of
/// it 0.5 (a 5th-generation Xeon); a measurement that timed nothing, or the wrong instruction,
/// falls outside. `faster_than_fp32` and `description` say the same.
#[test]
fn the_dot_products_are_measured_against_fp32() {
    let Some(_on) = bf16_on() else { return };
    let rate = avx512_bf16_rate().expect("BF16 units here, yet no AVX512-BF16 rate");
    assert!(
        (0.2..=5.0).contains(&rate),
        "VDPBF16PS at {rate}× the multiply-adds a second of FP32 FMAs"
    );
    assert_eq!(Bf16Units::Avx512Bf16.faster_than_fp32(), rate > 1.0);
    assert!(Bf16Units::Amx.faster_than_fp32());
    assert_eq!(
        Bf16Units::Avx512Bf16.description(),
        format!("AVX512-BF16 at {rate:.1}× FP32's multiply-add rate")
    );
    assert_eq!(avx512_bf16_rate(), Some(rate), "measured once per process");
}

#[test]
fn bf16_rounds_to_nearest_even() {
    let one = 1.0f32.to_bits();
    let cases = [
        (1.0, 1.0),
        (f32::from_bits(one + 0x8000), 1.0), // halfway, kept part even: down
        (f32::from_bits(one + 0x18000), f32::from_bits(one + 0x20000)), // halfway, odd: up
        (f32::from_bits(one + 0x8001), f32::from_bits(one + 0x10000)), // past halfway: up
        (f32::from_bits(one + 0x7fff), 1.0),
        (-f32::MAX, f32::NEG_INFINITY), // past halfway from BF16's largest to 2^128
        (-3.0e38, f32::from_bits(0xff62_0000)), // 0xff61_b1e6 rounded up
        (f32::INFINITY, f32::INFINITY),
        (1.0e-40, f32::from_bits(0x0001_0000)), // subnormals round too (to the nearest, 2^-133·…)
    ];
    for (x, want) in cases {
        assert_eq!(from_bf16(to_bf16(x)), want, "to_bf16({x:e})");
    }
    assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
    assert!(from_bf16(to_bf16(-f32::NAN)).is_nan());
}

/// `op(A) · op(B)` of the stored operands, summed in f64 from their BF16 values, and the sum
/// of the terms' magnitudes (what an FP32 sum's rounding error scales with).
fn bf16_reference(a: &[f32], b: &[f32], dims: GemmDims) -> (Vec<f64>, Vec<f64>) {
    let GemmDims { m, k, n, .. } = dims;
    let op_a = |i: usize, p: usize| {
        if dims.lhs_transposed {
            a[p * m + i]
        } else {
            a[i * k + p]
        }
    };
    let op_b = |p: usize, j: usize| {
        if dims.rhs_transposed {
            b[j * k + p]
        } else {
            b[p * n + j]
        }
    };
    let rounded = |x: f32| f64::from(from_bf16(to_bf16(x)));
    let (mut sums, mut magnitudes) = (vec![0.0; m * n], vec![0.0; m * n]);
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                let term = rounded(op_a(i, p)) * rounded(op_b(p, j));
                sums[i * n + j] += term;
                magnitudes[i * n + j] += term.abs();
            }
        }
    }
    (sums, magnitudes)
}

fn dims(m: usize, k: usize, n: usize, lhs_transposed: bool, rhs_transposed: bool) -> GemmDims {
    GemmDims {
        m,
        k,
        n,
        lhs_transposed,
        rhs_transposed,
    }
}

#[test]
fn bf16_products_sum_the_bf16_terms() {
    let Some(_on) = bf16_on() else { return };
    // The GAN's products (forward X·Wᵀ, input gradient dY·W, weight gradient dYᵀ·X, the
    // 128-row discriminator batch), then ragged shapes in all four layouts.
    let mut shapes = vec![
        dims(64, 100, 256, false, true),
        dims(64, 784, 1024, false, true),
        dims(128, 1024, 512, false, true),
        dims(128, 256, 1, false, true),
        dims(64, 1024, 784, false, false),
        dims(1024, 64, 784, true, false),
        dims(256, 64, 100, true, false),
    ];
    for (lhs_transposed, rhs_transposed) in
        [(false, false), (false, true), (true, false), (true, true)]
    {
        shapes.push(dims(37, 45, 53, lhs_transposed, rhs_transposed));
        shapes.push(dims(1, 1, 1, lhs_transposed, rhs_transposed));
        shapes.push(dims(33, 65, 17, lhs_transposed, rhs_transposed));
        shapes.push(dims(3, 0, 5, lhs_transposed, rhs_transposed));
    }
    for (seed, d) in shapes.into_iter().enumerate() {
        let a = uniform(d.m * d.k, -1.0, 1.0, 2 * seed as u64);
        let b = uniform(d.k * d.n, -1.0, 1.0, 2 * seed as u64 + 1);
        let got = gemm(&a, &b, None, d);
        let (want, magnitudes) = bf16_reference(&a, &b, d);
        // An FP32 sum of k terms is within about k · 2^-24 of their magnitude.
        let allowed = (d.k as f64 + 2.0) * f64::from(f32::EPSILON) / 2.0;
        for (i, ((&g, w), size)) in got.iter().zip(&want).zip(&magnitudes).enumerate() {
            assert!(
                (f64::from(g) - w).abs() <= allowed * size + 1e-30,
                "{d:?}: C[{}, {}] = {g}, the BF16 terms sum to {w}",
                i / d.n,
                i % d.n
            );
        }
        if d.k >= 32 {
            let mut fp32 = vec![0.0; d.m * d.n];
            set_allow_bf16(false);
            ferrograd::backend::cpu::gemm_into(
                ferrograd::backend::cpu::Microkernel::selected(),
                &a,
                &b,
                None,
                d,
                &mut fp32,
            );
            set_allow_bf16(true);
            assert_ne!(got, fp32, "{d:?}: BF16's rounding should show");
        }
    }
}

/// Subnormal values (below 2⁻¹²⁶) count as zero, in the operands (whichever way they were
/// rounded: the odd step of an odd `k` goes through `math::to_bf16`, the rest through
/// `VCVTNE2PS2BF16`) and in the results, as `TDPBF16PS` and `VDPBF16PS` treat them.
#[test]
fn bf16_products_read_and_write_subnormals_as_zero() {
    let Some(_on) = bf16_on() else { return };
    let tiny = 1.0e-39; // subnormal in FP32 and BF16
    for (lhs_transposed, rhs_transposed) in
        [(false, false), (false, true), (true, false), (true, true)]
    {
        for k in [1, 2, 33] {
            let d = dims(2, k, 2, lhs_transposed, rhs_transposed);
            let ones = vec![1.0; 2 * k];
            let tinies = vec![tiny; 2 * k];
            assert_eq!(gemm(&ones, &tinies, None, d), [0.0; 4], "{d:?}: 1 · 1e-39");
            assert_eq!(gemm(&tinies, &ones, None, d), [0.0; 4], "{d:?}: 1e-39 · 1");
            // Normal operands, a subnormal product: 1e-20 · 1e-20 = 1e-40 per term.
            let small = vec![1.0e-20; 2 * k];
            assert_eq!(
                gemm(&small, &small, None, d),
                [0.0; 4],
                "{d:?}: 1e-20 · 1e-20"
            );
            // and normal values in the same places are not lost.
            let twos = vec![2.0; 2 * k];
            let want = 2.0 * k as f32;
            assert_eq!(gemm(&ones, &twos, None, d), [want; 4], "{d:?}: 1 · 2");
        }
    }
}

#[test]
fn bf16_products_do_not_depend_on_the_thread_count() {
    let Some(_on) = bf16_on() else { return };
    let d = dims(128, 784, 1024, false, true);
    let a = uniform(d.m * d.k, -1.0, 1.0, 7);
    let b = uniform(d.k * d.n, -1.0, 1.0, 8);
    let bias = uniform(d.n, -1.0, 1.0, 9);
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| gemm(&a, &b, Some(&bias), d))
    };
    let one = on(1);
    assert_eq!(one, on(2));
    assert_eq!(one, on(3));
}

#[test]
fn bf16_linear_layers_and_gan_steps_stay_close_to_fp32() {
    // A linear layer, forward with bias and activation, and all three products backward.
    let layer = || {
        let leaf = |values: Vec<f32>, shape: &[usize]| {
            let t = Tensor::from_vec(values, shape, &CPU);
            t.set_requires_grad(true);
            t
        };
        let x = leaf(uniform(48 * 200, -1.0, 1.0, 1), &[48, 200]);
        let w = leaf(uniform(70 * 200, -0.1, 0.1, 2), &[70, 200]);
        let b = leaf(uniform(70, -0.1, 0.1, 3), &[70]);
        let y = linear(&x, &w, Some(&b)).tanh();
        (y.clone() * 3.0).sum().backward();
        [
            y.to_vec(),
            x.grad().unwrap().to_vec(),
            w.grad().unwrap().to_vec(),
        ]
    };
    // A GAN step at batch 8.
    let gan_step = || {
        manual_seed(21);
        let mut gan = Gan::new(&CPU, 2e-4);
        let real = Tensor::uniform(&[8, IMAGE_DIM], -1.0, 1.0, &CPU);
        let s = gan.train_step(&real);
        [s.d_loss, s.g_loss, s.d_real, s.d_fake]
    };
    let (fp32_layer, fp32_step) = {
        let _lock = bf16_on(); // held: no other test turns BF16 on meanwhile
        set_allow_bf16(false);
        (layer(), gan_step())
    };
    let Some(_on) = bf16_on() else { return };
    for (what, (got, want)) in ["output", "input gradient", "weight gradient"]
        .iter()
        .zip(layer().iter().zip(&fp32_layer))
    {
        assert_within_scale(what, got, want, 1e-2);
        assert_ne!(got, want, "{what}: BF16's rounding should show");
    }
    assert_within_scale("GAN statistics", &gan_step(), &fp32_step, 1e-2);
}
