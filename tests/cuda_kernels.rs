//! The CUDA kernels, run by the CPU emulator, against the CPU backend: every forward map, every
//! backward rule (against the gradients autograd computes on the CPU), the reductions, the
//! GEMM in all transpose combinations, the Philox fills and Adam. Also the argument structs'
//! layout against the C compiler's.

#![cfg(ferrograd_emulator)] // an emulator test: none in a build without it (build.rs)

mod common;

use common::{away_from_zero, uniform, CPU};
use ferrograd::backend::cpu::gemm;
use ferrograd::backend::cpu::CpuStorage;
use ferrograd::backend::cuda::args::*;
use ferrograd::backend::cuda::emulator::{self, c_args_size, BlockOrder};
use ferrograd::backend::cuda::kernels::MODULES;
use ferrograd::backend::cuda::launch::{GemmPlan, LaunchConfig, SPLIT_K_MAX_TILES};
use ferrograd::backend::cuda::{set_split_k_for, CudaStorage};
use ferrograd::backend::{BackendStorage, GemmDims, Identity};
use ferrograd::gan::{Gan, IMAGE_DIM};
use ferrograd::nn::functional::{binary_cross_entropy, dropout_with};
use ferrograd::nn::Module;
use ferrograd::optim::{Adam, AdamConfig};
use ferrograd::rng::Generator;
use ferrograd::{manual_seed, Device, Tensor};

fn ptr(values: &[f32]) -> u64 {
    values.as_ptr() as u64
}

fn ptr_mut(values: &mut [f32]) -> u64 {
    values.as_mut_ptr() as u64
}

/// Runs a kernel in the emulator; the buffers behind `args` are the caller's live vectors.
fn launch<A: KernelArgs>(name: &str, config: LaunchConfig, args: A) {
    // SAFETY: every test builds `args` from vectors that outlive the call and hold the
    // lengths the arguments name.
    unsafe { emulator::launch(name, config, &args) }.unwrap();
}

fn assert_close(what: &str, actual: &[f32], expected: &[f32], tol: f32) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol * (1.0 + e.abs()),
            "{what}[{i}]: emulator {a}, cpu {e}"
        );
    }
}

fn unary(name: &str, x: &[f32], p: f32) -> Vec<f32> {
    let mut y = vec![f32::NAN; x.len()];
    let n = x.len() as u64;
    launch(
        name,
        LaunchConfig::for_items(n),
        UnaryArgs {
            x: ptr(x),
            y: ptr_mut(&mut y),
            n,
            p,
        },
    );
    y
}

fn binary(name: &str, a: &[f32], b: &[f32], p: f32, broadcast: i32) -> Vec<f32> {
    let mut out = vec![f32::NAN; a.len()];
    let n = a.len() as u64;
    let args = BinaryArgs {
        a: ptr(a),
        b: ptr(b),
        out: ptr_mut(&mut out),
        n,
        cols: b.len() as u64,
        p,
        broadcast,
    };
    launch(name, LaunchConfig::for_items(n), args);
    out
}

/// `f(a[i], b[i], c, p)`, `c` one value.
fn ternary_with_scalar(name: &str, a: &[f32], b: &[f32], c: f32, p: f32) -> Vec<f32> {
    let mut out = vec![f32::NAN; a.len()];
    let n = a.len() as u64;
    let c = [c];
    let args = TernaryArgs {
        a: ptr(a),
        b: ptr(b),
        c: ptr(&c),
        out: ptr_mut(&mut out),
        n,
        p,
    };
    launch(name, LaunchConfig::for_items(n), args);
    out
}

/// Asserts that the Rust mirror `A` has the size of the C struct it mirrors.
fn assert_c_layout<A: KernelArgs>() {
    assert_eq!(
        std::mem::size_of::<A>(),
        c_args_size::<A>(),
        "{}: Rust and C sizes differ",
        A::C_NAME
    );
}

#[test]
fn argument_structs_have_the_c_layout() {
    assert_c_layout::<UnaryArgs>();
    assert_c_layout::<BinaryArgs>();
    assert_c_layout::<TernaryArgs>();
    assert_c_layout::<SumArgs>();
    assert_c_layout::<SumRowsArgs>();
    assert_c_layout::<GemmArgs>();
    assert_c_layout::<GemmPairArgs>();
    assert_c_layout::<GemmStepArgs>();
    assert_c_layout::<ConcatArgs>();
    assert_c_layout::<PhiloxDraw>();
    assert_c_layout::<RandomArgs>();
    assert_c_layout::<PhiloxAdvanceArgs>();
    assert_c_layout::<AdamStepArgs>();
}

#[test]
fn the_kernel_table_lists_every_file_and_kernel() {
    let files: Vec<&str> = MODULES.iter().map(|m| m.file).collect();
    assert_eq!(
        files,
        [
            "adam.cu",
            "elementwise.cu",
            "gemm.cu",
            "gemm_steps.cu",
            "random.cu",
            "reduce.cu"
        ]
    );
    let count: usize = MODULES.iter().map(|m| m.kernels.len()).sum();
    assert_eq!(count, 37);
}

/// Each activation's forward kernel against the CPU op, and its backward kernel
/// `f(saved, g)` against the gradient autograd computes for `Σ op(x)·g`.
#[test]
fn activations_forward_and_backward_match_the_cpu() {
    let n = 1500;
    let x = away_from_zero(n, 1);
    let g = uniform(n, -1.0, 1.0, 2);
    type Op = fn(&Tensor) -> Tensor;
    let cases: [(&str, Op, f32, bool); 4] = [
        ("relu", Tensor::relu, 0.0, true),
        ("leaky_relu", |t| t.leaky_relu(0.2), 0.2, false),
        ("tanh", Tensor::tanh, 0.0, true),
        ("sigmoid", Tensor::sigmoid, 0.0, true),
    ];
    for (name, op, p, saves_output) in cases {
        let input = Tensor::from_vec(x.clone(), &[n], &CPU);
        input.set_requires_grad(true);
        let y_cpu = op(&input);
        (&y_cpu * &Tensor::from_vec(g.clone(), &[n], &CPU))
            .sum()
            .backward();
        let y = unary(&format!("unary_{name}"), &x, p);
        assert_close(name, &y, &y_cpu.to_vec(), 1e-6);
        let saved = if saves_output { &y } else { &x };
        let grad = binary(&format!("binary_{name}_backward"), saved, &g, p, 0);
        assert_close(
            &format!("{name} backward"),
            &grad,
            &input.grad().unwrap().to_vec(),
            1e-6,
        );
    }
}

#[test]
fn arithmetic_with_every_broadcast_matches_the_cpu() {
    let (rows, cols) = (7, 33);
    let a = uniform(rows * cols, -2.0, 2.0, 3);
    let lhs = Tensor::from_vec(a.clone(), &[rows, cols], &CPU);
    for (broadcast, shape) in [(0, vec![rows, cols]), (1, vec![cols]), (2, vec![1])] {
        let b = uniform(shape.iter().product(), -2.0, 2.0, 4);
        let rhs = Tensor::from_vec(b.clone(), &shape, &CPU);
        assert_eq!(
            binary("binary_add", &a, &b, 0.0, broadcast),
            (&lhs + &rhs).to_vec()
        );
        assert_eq!(
            binary("binary_sub", &a, &b, 0.0, broadcast),
            (&lhs - &rhs).to_vec()
        );
        assert_eq!(
            binary("binary_mul", &a, &b, 0.0, broadcast),
            (&lhs * &rhs).to_vec()
        );
    }
    assert_eq!(
        unary("unary_add_scalar", &a, 1.5),
        lhs.add_scalar(1.5).to_vec()
    );
    assert_eq!(
        unary("unary_mul_scalar", &a, -0.5),
        lhs.mul_scalar(-0.5).to_vec()
    );
    let mut expanded = vec![0.0; 10];
    let one = [3.0f32];
    launch(
        "expand_scalar",
        LaunchConfig::for_items(10),
        UnaryArgs {
            x: ptr(&one),
            y: ptr_mut(&mut expanded),
            n: 10,
            p: 0.5,
        },
    );
    assert_eq!(expanded, [1.5; 10]);
}

/// `scale · Σ bce(pᵢ, tᵢ)` as the CUDA backend runs it: `sum_bce_loss`, then `sum_finish` when
/// there is more than one block.
fn summed_bce_loss(p: &[f32], t: &[f32], scale: f32) -> f32 {
    let n = p.len() as u64;
    let blocks = n.div_ceil(4096);
    let mut partials = vec![f64::NAN; blocks as usize];
    let mut out = [f32::NAN];
    let args = SumArgs {
        x: ptr(p),
        y: ptr(t),
        partials: partials.as_mut_ptr() as u64,
        out: ptr_mut(&mut out),
        n,
        blocks,
        scale,
    };
    launch("sum_bce_loss", LaunchConfig::sum_partials(n), args);
    if blocks > 1 {
        launch("sum_finish", LaunchConfig::single_block(), args);
    }
    out[0]
}

/// Over several blocks of the first pass too (a loss over more than 4096 elements).
#[test]
fn long_binary_cross_entropy_losses_match_the_cpu() {
    let n = 10_000;
    let p = uniform(n, 0.0, 1.0, 8);
    let t = uniform(n, 0.0, 1.0, 9);
    let loss = binary_cross_entropy(
        &Tensor::from_vec(p.clone(), &[n], &CPU),
        &Tensor::from_vec(t.clone(), &[n], &CPU),
    );
    assert_eq!(
        summed_bce_loss(&p, &t, 1.0 / n as f32).to_bits(),
        loss.item().to_bits()
    );
}

#[test]
fn binary_cross_entropy_loss_and_gradients_match_the_cpu() {
    let n = 640;
    let mut p = uniform(n, 0.01, 0.99, 5);
    p[..4].copy_from_slice(&[0.0, 1.0, 0.0, 1.0]); // the clamped edges
    let t = uniform(n, 0.0, 1.0, 6);
    let pred = Tensor::from_vec(p.clone(), &[n], &CPU);
    let target = Tensor::from_vec(t.clone(), &[n], &CPU);
    pred.set_requires_grad(true);
    target.set_requires_grad(true);
    let loss = binary_cross_entropy(&pred, &target);
    (&loss * 0.7).backward(); // ∂L/∂loss = 0.7, the incoming gradient the kernels broadcast
    assert_eq!(
        summed_bce_loss(&p, &t, 1.0 / n as f32).to_bits(),
        loss.item().to_bits(),
        "the loss summed as it is computed: the CPU's bits"
    );
    let scale = 1.0 / n as f32;
    let grad_pred = ternary_with_scalar("ternary_bce_backward_pred", &p, &t, 0.7, scale);
    assert_close(
        "bce d/dpred",
        &grad_pred,
        &pred.grad().unwrap().to_vec(),
        1e-6,
    );
    let grad_target = ternary_with_scalar("ternary_bce_backward_target", &p, &t, 0.7, scale);
    assert_close(
        "bce d/dtarget",
        &grad_target,
        &target.grad().unwrap().to_vec(),
        1e-6,
    );
}

#[test]
fn reductions_match_the_cpu() {
    for n in [1usize, 255, 4096, 4097, 50_000] {
        let x = uniform(n, -1.0, 1.0, n as u64);
        let cpu = Tensor::from_vec(x.clone(), &[n], &CPU);
        for (scale, expected) in [(1.0, cpu.sum().item()), (1.0 / n as f32, cpu.mean().item())] {
            // As the CUDA backend runs it: one pass when one block holds everything.
            let blocks = (n as u64).div_ceil(4096);
            let mut partials = vec![f64::NAN; blocks as usize];
            let mut out = [f32::NAN];
            let args = SumArgs {
                x: ptr(&x),
                y: 0,
                partials: partials.as_mut_ptr() as u64,
                out: ptr_mut(&mut out),
                n: n as u64,
                blocks,
                scale,
            };
            launch("sum_partials", LaunchConfig::sum_partials(n as u64), args);
            if blocks > 1 {
                launch("sum_finish", LaunchConfig::single_block(), args);
            }
            assert!(
                (out[0] - expected).abs() <= 1e-6 * (1.0 + expected.abs()),
                "n = {n}, scale {scale}: {} vs {expected}",
                out[0]
            );
        }
    }
    let (rows, cols) = (37, 300);
    let x = uniform(rows * cols, -1.0, 1.0, 7);
    let mut out = vec![f32::NAN; cols];
    let args = SumRowsArgs {
        x: ptr(&x),
        out: ptr_mut(&mut out),
        rows: rows as u64,
        cols: cols as u64,
    };
    launch("sum_rows", LaunchConfig::for_items(cols as u64), args);
    let expected: Vec<f32> = (0..cols)
        .map(|c| (0..rows).map(|r| x[r * cols + c]).sum())
        .collect();
    assert_eq!(
        out, expected,
        "the same order of additions as the CPU backend"
    );
}

/// A copy of `values` at a 16-byte aligned address, as device allocations are (the large GEMM
/// reads float4s).
fn aligned(values: &[f32]) -> Vec<[f32; 4]> {
    let mut quads = aligned_filled(values.len(), 0.0);
    quads.as_flattened_mut()[..values.len()].copy_from_slice(values);
    quads
}

/// `len` floats of `value` at a 16-byte aligned address: an output buffer (the GEMMs store
/// and read partial sums as float4s).
fn aligned_filled(len: usize, value: f32) -> Vec<[f32; 4]> {
    vec![[value; 4]; len.div_ceil(4).max(1)]
}

/// The first `len` floats of an aligned buffer.
fn first(quads: &[[f32; 4]], len: usize) -> Vec<f32> {
    quads.as_flattened()[..len].to_vec()
}

fn ptr_quads(quads: &mut [[f32; 4]]) -> u64 {
    quads.as_mut_ptr() as u64
}

/// A 16-byte copy needs 16-byte aligned addresses; a GPU stops the kernel otherwise, and so
/// does the emulator: B one float past an aligned address, read in quads along n (n = 8).
#[test]
fn a_misaligned_16_byte_copy_is_an_error_as_on_a_gpu() {
    let (m, k, n) = (4, 16, 8);
    let a = aligned(&uniform(m * k, -1.0, 1.0, 1));
    let b = aligned(&uniform(k * n + 1, -1.0, 1.0, 2));
    let mut c = aligned_filled(m * n, f32::NAN);
    let args = |b: u64, c: u64| {
        GemmArgs::product(
            a.as_ptr() as u64,
            b,
            c,
            GemmDims {
                m,
                k,
                n,
                lhs_transposed: false,
                rhs_transposed: false,
            },
        )
    };
    let config = LaunchConfig::gemm(m, n, 1);
    let aligned_b = b.as_ptr() as u64;
    let c_pointer = ptr_quads(&mut c);
    // SAFETY: a, b and c hold m·k, k·n + 1 and m·n floats, which is all the kernel reads or
    // writes from either address of B.
    let launch_with = |b| unsafe { emulator::launch("gemm", config, &args(b, c_pointer)) };
    launch_with(aligned_b).expect("aligned operands");
    let err = launch_with(aligned_b + 4).unwrap_err();
    assert!(err.contains("gemm: misaligned address"), "{err}");
}

/// Runs one of gemm.cu's plans on the emulator and returns C.
fn emulated_gemm(a: &[f32], b: &[f32], bias: &[f32], dims: GemmDims, plan: GemmPlan) -> Vec<f32> {
    emulated_gemm_dropout(a, b, bias, dims, plan, None).0
}

/// [`emulated_gemm`] with the dropout epilogue where `dropout` (probability, draw) is given:
/// `(C, mask)`, the mask empty without dropout.
fn emulated_gemm_dropout(
    a: &[f32],
    b: &[f32],
    bias: &[f32],
    dims: GemmDims,
    plan: GemmPlan,
    dropout: Option<(f32, PhiloxDraw)>,
) -> (Vec<f32>, Vec<f32>) {
    let (m, n) = (dims.m, dims.n);
    let (a, b) = (aligned(a), aligned(b));
    let mut c = aligned_filled(m * n, f32::NAN);
    let mut mask = aligned_filled(m * n, f32::NAN);
    let mut counters = vec![0u32; SPLIT_K_MAX_TILES];
    let mut args = GemmArgs {
        bias: ptr(bias),
        epilogue: epilogue_code("leaky_relu"),
        p: 0.25,
        ..GemmArgs::product(
            a.as_ptr() as u64,
            b.as_ptr() as u64,
            ptr_quads(&mut c),
            dims,
        )
    };
    if let Some((p, draw)) = dropout {
        (args.dropout_p, args.mask, args.dropout) = (p, ptr_quads(&mut mask), draw);
    }
    match plan {
        GemmPlan::Large => launch("gemm_large", LaunchConfig::gemm_large(m, n), args),
        GemmPlan::Tiled { splits, k_chunk } => {
            let mut partials = aligned_filled(splits * m * n, f32::NAN);
            if splits > 1 {
                args.partials = ptr_quads(&mut partials);
                args.tile_counters = counters.as_mut_ptr() as u64;
                args.k_chunk = k_chunk as i32;
            }
            launch("gemm", LaunchConfig::gemm(m, n, splits), args);
        }
    }
    assert!(
        counters.iter().all(|&c| c == 0),
        "split-K leaves its counters at 0"
    );
    let mask_len = if dropout.is_some() { m * n } else { 0 };
    (first(&c, m * n), first(&mask, mask_len))
}

/// Shapes for each of gemm.cu's plans: 64-tiles, split-K (3 and 4 chunks), 128-tiles, with
/// ragged edges and lengths that do and do not allow 16-byte loads and stores.
const GEMM_CASES: [((usize, usize, usize), GemmPlan); 12] = {
    const SINGLE: GemmPlan = GemmPlan::Tiled {
        splits: 1,
        k_chunk: 0,
    };
    [
        ((1, 1, 1), SINGLE),
        ((7, 13, 5), SINGLE),
        ((64, 100, 65), SINGLE),
        ((65, 17, 64), SINGLE),
        ((3, 0, 4), SINGLE),
        ((33, 20, 132), SINGLE),
        (
            (70, 200, 68),
            GemmPlan::Tiled {
                splits: 4,
                k_chunk: 64,
            },
        ),
        (
            (64, 300, 70),
            GemmPlan::Tiled {
                splits: 3,
                k_chunk: 112,
            },
        ),
        (
            (9, 40, 5),
            GemmPlan::Tiled {
                splits: 3,
                k_chunk: 16,
            },
        ),
        ((130, 20, 131), GemmPlan::Large),
        ((132, 36, 140), GemmPlan::Large),
        ((5, 7, 3), GemmPlan::Large),
    ]
};

/// Every GEMM kernel (64-tiles, split-K, 128-tiles) in every layout, on shapes with ragged
/// edges and lengths that do and do not allow 16-byte loads, against the CPU with the same
/// bias and LeakyReLU epilogue.
#[test]
fn gemm_matches_the_cpu_in_every_layout_and_plan() {
    for ((m, k, n), plan) in GEMM_CASES {
        for (lhs_transposed, rhs_transposed) in
            [(false, false), (false, true), (true, false), (true, true)]
        {
            let a = uniform(m * k, -1.0, 1.0, 8);
            let b = uniform(k * n, -1.0, 1.0, 9);
            let bias = uniform(n, -1.0, 1.0, 10);
            let dims = GemmDims {
                m,
                k,
                n,
                lhs_transposed,
                rhs_transposed,
            };
            let expected: Vec<f32> = gemm(&a, &b, Some(&bias), dims)
                .into_iter()
                .map(|x| if x > 0.0 { x } else { 0.25 * x })
                .collect();
            assert_close(
                &format!("gemm {dims:?} {plan:?}"),
                &emulated_gemm(&a, &b, &bias, dims, plan),
                &expected,
                1e-5,
            );
        }
    }
}

/// The dropout epilogue, in every plan: the mask is the one the CPU draws from the same stream (as `random_fill` does), and
/// C is the plain product's result times it, bit for bit.
#[test]
fn gemm_dropout_epilogue_draws_the_cpu_mask() {
    let (seed, offset, p) = (0x0123_4567_89ab_cdefu64, 7, 0.3);
    for ((m, k, n), plan) in GEMM_CASES {
        let dims = every_layout(m, k, n).next().unwrap();
        let (a, b, bias) = (
            uniform(m * k, -1.0, 1.0, 1),
            uniform(k * n, -1.0, 1.0, 2),
            uniform(n, -1.0, 1.0, 3),
        );
        let mut generator = Generator::from_state(seed, offset);
        let cpu_mask = dropout_with(&Tensor::ones(&[m * n], &CPU), p, true, &mut generator);
        let draw = PhiloxDraw {
            first_block: offset,
            generator: 0,
            key0: seed as u32,
            key1: (seed >> 32) as u32,
        };
        let (c, mask) = emulated_gemm_dropout(&a, &b, &bias, dims, plan, Some((p, draw)));
        assert_eq!(mask, cpu_mask.to_vec(), "{dims:?} {plan:?}: mask");
        let plain = emulated_gemm(&a, &b, &bias, dims, plan);
        let expected: Vec<f32> = plain.iter().zip(&mask).map(|(x, keep)| x * keep).collect();
        assert_eq!(c, expected, "{dims:?} {plan:?}: output");
        if m * n >= 1000 {
            let dropped = mask.iter().filter(|&&keep| keep == 0.0).count() as f32 / (m * n) as f32;
            assert!(
                (0.25..0.35).contains(&dropped),
                "{plan:?}: {dropped} dropped"
            );
        }
    }
}

/// `gemm` summing the rows of `op(A)` (A stored [k, m]) beside the product, for the bias
/// gradient: the product as without, the sums those of `sum_rows` (f32, in k order) exactly.
#[test]
fn gemm_row_sums_are_the_bias_gradient() {
    for (m, k, n) in [
        (1, 1, 1),
        (7, 13, 5),
        (64, 100, 65),
        (130, 64, 70),
        (70, 36, 132),
        (5, 0, 3),
    ] {
        let dims = GemmDims {
            m,
            k,
            n,
            lhs_transposed: true,
            rhs_transposed: false,
        };
        let (a, b) = (uniform(k * m, -1.0, 1.0, 31), uniform(k * n, -1.0, 1.0, 32));
        let (a_quads, b_quads) = (aligned(&a), aligned(&b));
        let mut c = aligned_filled(m * n, f32::NAN);
        let mut sums = vec![f32::NAN; m];
        let args = GemmArgs {
            row_sums: ptr_mut(&mut sums),
            ..GemmArgs::product(
                a_quads.as_ptr() as u64,
                b_quads.as_ptr() as u64,
                ptr_quads(&mut c),
                dims,
            )
        };
        launch("gemm", LaunchConfig::gemm(m, n, 1), args);
        let c = first(&c, m * n);
        assert_close(&format!("{dims:?}"), &c, &gemm(&a, &b, None, dims), 1e-5);
        let column_sums: Vec<f32> = (0..m)
            .map(|col| (0..k).fold(0.0f32, |sum, row| sum + a[row * m + col]))
            .collect();
        assert_eq!(sums, column_sums, "{dims:?}");
    }
}

/// `gemm_tf32` on the emulator (the m16n8k8 MMA emulated lane by lane), `splits` chunks of k.
fn emulated_tf32_gemm(
    a: &[f32],
    b: &[f32],
    bias: &[f32],
    dims: GemmDims,
    splits: usize,
) -> Vec<f32> {
    let (m, k, n) = (dims.m, dims.k, dims.n);
    let k_chunk = k.div_ceil(splits).next_multiple_of(16).max(16);
    let splits = k.div_ceil(k_chunk).max(1);
    let (a, b) = (aligned(a), aligned(b));
    let mut c = aligned_filled(m * n, f32::NAN);
    let mut partials = aligned_filled(splits * m * n, f32::NAN);
    let mut counters = vec![0u32; SPLIT_K_MAX_TILES];
    let (partials, tile_counters) = if splits > 1 {
        (ptr_quads(&mut partials), counters.as_mut_ptr() as u64)
    } else {
        (0, 0)
    };
    let args = GemmArgs {
        bias: ptr(bias),
        partials,
        tile_counters,
        k_chunk: k_chunk as i32,
        ..GemmArgs::product(
            a.as_ptr() as u64,
            b.as_ptr() as u64,
            ptr_quads(&mut c),
            dims,
        )
    };
    launch("gemm_tf32", LaunchConfig::gemm_tf32(m, n, splits), args);
    assert!(
        counters.iter().all(|&c| c == 0),
        "split-K leaves its counters at 0"
    );
    first(&c, m * n)
}

fn every_layout(m: usize, k: usize, n: usize) -> impl Iterator<Item = GemmDims> {
    [(false, false), (false, true), (true, false), (true, true)]
        .into_iter()
        .map(move |(lhs_transposed, rhs_transposed)| GemmDims {
            m,
            k,
            n,
            lhs_transposed,
            rhs_transposed,
        })
}

/// With operands that TF32 holds exactly (multiples of 1/4 up to 4), the tensor-core kernel
/// must give the exact products: this checks every fragment's mapping, in every layout, on
/// ragged shapes, with split-K.
#[test]
fn tf32_gemm_is_exact_on_exactly_representable_operands() {
    let quarters = |len: usize, seed: u64| -> Vec<f32> {
        uniform(len, -16.0, 16.0, seed)
            .into_iter()
            .map(|x| x.round() / 4.0)
            .collect()
    };
    for ((m, k, n), splits) in [
        ((1, 1, 1), 1),
        ((17, 24, 9), 1),
        ((70, 40, 65), 1),
        ((64, 100, 33), 3),
        ((70, 72, 68), 4),
    ] {
        for dims in every_layout(m, k, n) {
            let (a, b, bias) = (quarters(m * k, 1), quarters(k * n, 2), quarters(n, 3));
            let got = emulated_tf32_gemm(&a, &b, &bias, dims, splits);
            assert_eq!(
                got,
                gemm(&a, &b, Some(&bias), dims),
                "{dims:?}, {splits} splits"
            );
        }
    }
}

/// On random operands TF32 rounds each to 11 significant bits: every result within 2⁻¹⁰ of
/// Σ|aᵢ·bᵢ| of the FP32 product (and not equal to it: the rounding does happen).
#[test]
fn tf32_gemm_accuracy_against_fp32() {
    let (m, k, n) = (64, 256, 72);
    let a = uniform(m * k, -1.0, 1.0, 11);
    let b = uniform(k * n, -1.0, 1.0, 12);
    let bias = vec![0.0; n];
    for dims in every_layout(m, k, n) {
        let fp32 = gemm(&a, &b, None, dims);
        let abs_a: Vec<f32> = a.iter().map(|x| x.abs()).collect();
        let abs_b: Vec<f32> = b.iter().map(|x| x.abs()).collect();
        let magnitude = gemm(&abs_a, &abs_b, None, dims);
        let tf32 = emulated_tf32_gemm(&a, &b, &bias, dims, 1);
        let worst = tf32
            .iter()
            .zip(&fp32)
            .zip(&magnitude)
            .map(|((t, f), mag)| (t - f).abs() / mag)
            .fold(0.0f32, f32::max);
        eprintln!("TF32 {dims:?}: largest error {worst:.2e} of Σ|a·b|");
        assert!(worst <= 1.0 / 1024.0, "{dims:?}: {worst}");
        assert!(worst > 1e-6, "{dims:?}: no TF32 rounding seen ({worst})");
    }
}

/// The plans the host picks: 128-tiles only when they fill a large GPU, split-K for a batch-64
/// layer's long k, chunks in whole k-slices covering k exactly once.
#[test]
fn gemm_plans_suit_the_shapes() {
    assert_eq!(GemmPlan::choose(4096, 4096, 4096), GemmPlan::Large);
    assert_ne!(GemmPlan::choose(1024, 1024, 1024), GemmPlan::Large);
    for (m, k, n) in [
        (64, 1024, 784),
        (64, 784, 1024),
        (64, 512, 1024),
        (64, 100, 256),
        (1, 1, 1),
    ] {
        let GemmPlan::Tiled { splits, k_chunk } = GemmPlan::choose(m, k, n) else {
            panic!("{m}x{k}x{n}: batch-64 layers use 64-tiles");
        };
        assert!(k_chunk % 16 == 0 && splits * k_chunk >= k && (splits - 1) * k_chunk < k.max(1));
        let tiles = m.div_ceil(64) * n.div_ceil(64);
        assert!(
            splits == 1 || tiles <= SPLIT_K_MAX_TILES,
            "{m}x{k}x{n}: counters"
        );
        if k >= 512 {
            assert!(splits >= 4, "{m}x{k}x{n}: {splits} splits");
        }
    }
}

/// A forced split (`gan_bench --gemm-sweep`): chunks of whole 16-deep k-slices covering k
/// exactly once, no more of them than asked, and exactly as many where they divide k evenly.
#[test]
fn forced_splits_cover_k_once() {
    for k in [1, 15, 16, 17, 64, 100, 128, 784, 1024] {
        for asked in 1..=40 {
            let GemmPlan::Tiled { splits, k_chunk } = GemmPlan::with_splits(k, asked) else {
                panic!("with_splits gives a tiled plan");
            };
            assert!(
                k_chunk % 16 == 0 && splits * k_chunk >= k && (splits - 1) * k_chunk < k.max(1)
            );
            assert!(splits <= asked, "k {k}: {splits} splits for {asked} asked");
            if k % (16 * asked) == 0 {
                assert_eq!(splits, asked, "k {k}: {asked} chunks of whole slices");
            }
        }
    }
}

/// A split given to one product (`set_split_k_for`, the sweep's tuned run) applies to that
/// shape and layout only, and is forgotten on `None`. (A shape no other test here uses: the
/// table is process-wide.)
#[test]
fn a_product_can_be_given_a_split_of_its_own() {
    let dims = GemmDims {
        m: 48,
        k: 1008,
        n: 72,
        lhs_transposed: false,
        rhs_transposed: true,
    };
    let planned = GemmPlan::for_product(dims);
    assert_eq!(planned, GemmPlan::choose(48, 1008, 72));
    set_split_k_for(dims, Some(3));
    assert_eq!(GemmPlan::for_product(dims), GemmPlan::with_splits(1008, 3));
    let other_layout = GemmDims {
        rhs_transposed: false,
        ..dims
    };
    assert_eq!(GemmPlan::for_product(other_layout), planned);
    set_split_k_for(dims, None);
    assert_eq!(GemmPlan::for_product(dims), planned);
}

#[test]
fn philox_fills_match_the_cpu_stream() {
    let n = 1003;
    let seed = 0x1234_5678_9abc_def0u64;
    let fill = |distribution: i32, a: f32, b: f32, first_block: u64| {
        let mut out = vec![f32::NAN; n];
        let args = RandomArgs {
            out: ptr_mut(&mut out),
            n: n as u64,
            draw: PhiloxDraw {
                first_block,
                generator: 0,
                key0: seed as u32,
                key1: (seed >> 32) as u32,
            },
            distribution,
            a,
            b,
        };
        launch(
            "random_fill",
            LaunchConfig::for_items((n as u64).div_ceil(4)),
            args,
        );
        out
    };
    let mut generator = Generator::new(seed);
    let uniform_cpu = Tensor::uniform_with(&[n], -2.0, 3.0, &CPU, &mut generator).to_vec();
    assert_eq!(fill(0, -2.0, 3.0, 0), uniform_cpu);
    let first_block = generator.offset();
    let normal_cpu = Tensor::randn_with(&[n], &CPU, &mut generator).to_vec();
    assert_close("normal", &fill(1, 0.0, 1.0, first_block), &normal_cpu, 1e-6);
    let first_block = generator.offset();
    let mask_cpu = dropout_with(&Tensor::ones(&[n], &CPU), 0.3, true, &mut generator).to_vec();
    assert_eq!(fill(2, 0.3, 0.0, first_block), mask_cpu);
}

/// Two Adam steps over three parameters, one `adam_step` launch each, against the CPU
/// optimiser, bit for bit — whole quads (16-byte loads) and ragged ends alike; the step count
/// and the block counter in device memory.
#[test]
fn fused_adam_matches_the_cpu_optimizer() {
    let sizes = [999, 17, 1024];
    let config = AdamConfig {
        lr: 0.01,
        betas: (0.5, 0.999),
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let starts: Vec<Vec<f32>> = sizes
        .iter()
        .map(|&n| uniform(n, -1.0, 1.0, n as u64))
        .collect();
    let grads: Vec<Vec<f32>> = sizes
        .iter()
        .map(|&n| uniform(n, -1.0, 1.0, 100 + n as u64))
        .collect();

    let params: Vec<Tensor> = starts
        .iter()
        .zip(sizes)
        .map(|(v, n)| Tensor::from_vec(v.clone(), &[n], &CPU))
        .collect();
    params.iter().for_each(|p| p.set_requires_grad(true));
    let mut adam = Adam::new(params.clone(), config);
    for _ in 0..2 {
        adam.zero_grad();
        for (param, grad) in params.iter().zip(&grads) {
            (param * &Tensor::from_vec(grad.clone(), param.shape(), &CPU))
                .sum()
                .backward(); // ∂/∂θ = grad
        }
        adam.step();
    }

    // Device buffers are 16-byte aligned: so are these.
    let mut thetas: Vec<Vec<[f32; 4]>> = starts.iter().map(|v| aligned(v)).collect();
    let grads: Vec<Vec<[f32; 4]>> = grads.iter().map(|v| aligned(v)).collect();
    let mut ms: Vec<Vec<[f32; 4]>> = sizes.iter().map(|&n| aligned_filled(n, 0.0)).collect();
    let mut vs = ms.clone();
    let mut scalars = [0.0f32; 4];
    let mut tensors = [0u64; 4 * ADAM_MAX_TENSORS];
    let (mut offsets, mut lengths) = ([0u64; ADAM_MAX_TENSORS + 1], [0u64; ADAM_MAX_TENSORS]);
    for (i, &n) in sizes.iter().enumerate() {
        tensors[4 * i..4 * i + 4].copy_from_slice(&[
            ptr_quads(&mut thetas[i]),
            grads[i].as_ptr() as u64,
            ptr_quads(&mut ms[i]),
            ptr_quads(&mut vs[i]),
        ]);
        lengths[i] = n as u64;
        offsets[i + 1] = offsets[i] + (n as u64).div_ceil(4); // quads
    }
    for _ in 0..2 {
        let step = AdamStepArgs {
            tensors,
            offsets,
            lengths,
            scalars: ptr_mut(&mut scalars),
            count: 3,
            advance: 1,
            lr: 0.01,
            beta1: 0.5,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        launch("adam_step", LaunchConfig::for_items(offsets[3]), step);
    }
    assert_eq!(
        scalars[0].to_bits(),
        2,
        "the step count lives in device memory, an integer in a float's bits"
    );
    assert_eq!(scalars[3], 0.0, "the block counter is back at 0");
    assert_eq!(adam.step_count(), 2);
    for (i, &n) in sizes.iter().enumerate() {
        assert_eq!(first(&thetas[i], n), params[i].to_vec());
        assert_eq!(first(&ms[i], n), adam.states()[i].exp_avg.to_vec());
        assert_eq!(first(&vs[i], n), adam.states()[i].exp_avg_sq.to_vec());
    }
}

/// `gemm_pair`: a layer's input gradient beside its weight and bias gradients in one launch —
/// bit for bit what the two products give launched one by one, and the CPU's values — whichever
/// of the two splits k (then the bias gradient is summed apart), under shuffled block orders.
#[test]
fn a_gemm_pair_gives_each_products_own_bits() {
    let Device::Cuda(cuda) = Device::cuda_emulator().expect("the emulator is built") else {
        unreachable!("the emulator is a CUDA device")
    };
    // (batch, out, in): ∂L/∂x = g · W, [batch, out] · [out, in]; ∂L/∂W = gᵀ · x, k = batch.
    // Split: the input gradient, neither, the weight gradient, both.
    for (batch, outputs, inputs) in [(64, 300, 70), (9, 20, 130), (1100, 12, 9), (600, 700, 8)] {
        let (g, w, x) = (
            uniform(batch * outputs, -1.0, 1.0, 51),
            uniform(outputs * inputs, -1.0, 1.0, 52),
            uniform(batch * inputs, -1.0, 1.0, 53),
        );
        let input_dims = GemmDims {
            m: batch,
            k: outputs,
            n: inputs,
            lhs_transposed: false,
            rhs_transposed: false,
        };
        let weight_dims = GemmDims {
            m: outputs,
            k: batch,
            n: inputs,
            lhs_transposed: true,
            rhs_transposed: false,
        };
        let on_cuda = |values: &[f32]| CudaStorage::from_vec(values.to_vec(), &cuda);
        let (cg, cw, cx) = (on_cuda(&g), on_cuda(&w), on_cuda(&x));
        let bits = |s: &CudaStorage| s.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let one_by_one = {
            let grad_input = cg.gemm(&cw, None, input_dims, &Identity);
            let (grad_weight, grad_bias) = cg.gemm_with_lhs_row_sums(&cx, weight_dims, None);
            [grad_input, grad_weight, grad_bias].map(|s| bits(&s))
        };
        for order in [BlockOrder::Grid, BlockOrder::Shuffled(5)] {
            emulator::set_block_order(order);
            let (grad_input, (grad_weight, grad_bias)) =
                cg.gemm_pair_with_lhs_row_sums(None, (&cw, input_dims), (&cx, weight_dims));
            emulator::set_block_order(BlockOrder::Grid);
            let paired = [&grad_input, &grad_weight, &grad_bias].map(bits);
            assert!(
                paired == one_by_one,
                "{batch}x{outputs}x{inputs}, {order:?}"
            );
        }
        let cpu = CpuStorage::from_vec(g.clone());
        let (cpu_input, (cpu_weight, cpu_bias)) = cpu.gemm_pair_with_lhs_row_sums(
            None,
            (&CpuStorage::from_vec(w.clone()), input_dims),
            (&CpuStorage::from_vec(x.clone()), weight_dims),
        );
        let from_bits = |b: &[u32]| b.iter().map(|&b| f32::from_bits(b)).collect::<Vec<_>>();
        for (what, (got, expected)) in ["grad input", "grad weight", "grad bias"]
            .iter()
            .zip(one_by_one.iter().zip([cpu_input, cpu_weight, cpu_bias]))
        {
            assert_close(what, &from_bits(got), &expected.to_vec(), 1e-5);
        }
    }
}

/// One-column products (`gemv`, a warp per row): against the CPU with and without bias, both
/// layouts of B, rows past a block's 8 and k past a warp's 32; A stored transposed goes to
/// `gemm` and must agree too.
#[test]
fn one_column_products_match_the_cpu() {
    let Device::Cuda(cuda) = Device::cuda_emulator().expect("the emulator is built") else {
        unreachable!("the emulator is a CUDA device")
    };
    for (m, k) in [(130, 256), (7, 1000), (1, 1), (9, 31), (3, 0)] {
        let (a, b, bias) = (
            uniform(m * k, -1.0, 1.0, 61),
            uniform(k, -1.0, 1.0, 62),
            uniform(1, -1.0, 1.0, 63),
        );
        for (lhs_transposed, rhs_transposed, with_bias) in [
            (false, true, true),
            (false, false, false),
            (true, false, true),
        ] {
            let dims = GemmDims {
                m,
                k,
                n: 1,
                lhs_transposed,
                rhs_transposed,
            };
            let on_cuda = |v: &[f32]| CudaStorage::from_vec(v.to_vec(), &cuda);
            let on_cpu = |v: &[f32]| CpuStorage::from_vec(v.to_vec());
            let (cuda_bias, cpu_bias) = (on_cuda(&bias), on_cpu(&bias));
            let got = on_cuda(&a)
                .gemm(
                    &on_cuda(&b),
                    with_bias.then_some(&cuda_bias),
                    dims,
                    &Identity,
                )
                .to_vec();
            let expected = on_cpu(&a)
                .gemm(&on_cpu(&b), with_bias.then_some(&cpu_bias), dims, &Identity)
                .to_vec();
            assert_close(&format!("{dims:?}"), &got, &expected, 1e-5);
        }
    }
}

/// A GPU runs a launch's blocks in no promised order, so which block of a split tile arrives
/// last (and adds the partial sums) or which block of Adam's step advances its count varies
/// from run to run. The results must not: the same bits under the grid's order, shuffled
/// ones, and blocks interleaved at their rendezvous (a block counting itself in while another
/// finishes the tile), for split-K in both GEMM kernels (with dropout) and for a GAN step's
/// Adam updates.
#[test]
fn results_do_not_depend_on_the_order_blocks_run_in() {
    let (m, k, n) = (70, 200, 68);
    let dims = every_layout(m, k, n).nth(1).unwrap();
    let (a, b, bias) = (
        uniform(m * k, -1.0, 1.0, 41),
        uniform(k * n, -1.0, 1.0, 42),
        uniform(n, -1.0, 1.0, 43),
    );
    let plan = GemmPlan::Tiled {
        splits: 4,
        k_chunk: 64,
    };
    let draw = PhiloxDraw {
        first_block: 3,
        generator: 0,
        key0: 7,
        key1: 9,
    };
    let run = || {
        let (c, mask) = emulated_gemm_dropout(&a, &b, &bias, dims, plan, Some((0.3, draw)));
        let tf32 = emulated_tf32_gemm(&a, &b, &bias, dims, 4);
        let step = gan_step_weights();
        [c, mask, tf32, step].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>())
    };
    emulator::set_block_order(BlockOrder::Grid);
    let in_grid_order = run();
    for order in [
        BlockOrder::Shuffled(1),
        BlockOrder::Shuffled(2),
        BlockOrder::Interleaved(3),
        BlockOrder::Interleaved(4),
    ] {
        emulator::set_block_order(order);
        let reordered = run();
        emulator::set_block_order(BlockOrder::Grid);
        for (what, (got, expected)) in ["gemm", "mask", "tf32", "GAN step"]
            .iter()
            .zip(reordered.iter().zip(&in_grid_order))
        {
            assert!(got == expected, "{what}: blocks run {order:?}");
        }
    }
}

/// The parameters of a small GAN after one step on the emulator (every GEMM plan of the step,
/// split-K included, and its two Adam launches). No other test here draws from the
/// process-wide generator; every other test must pass under any block order anyway.
fn gan_step_weights() -> Vec<f32> {
    let device = ferrograd::Device::cuda_emulator().expect("the emulator is built");
    manual_seed(5);
    let mut gan = Gan::new(&device, 2e-4);
    gan.train_step(&Tensor::uniform(&[8, IMAGE_DIM], -1.0, 1.0, &device));
    let nets = [&gan.generator, &gan.discriminator];
    nets.iter()
        .flat_map(|net| net.parameters())
        .flat_map(|p| p.to_vec())
        .collect()
}
