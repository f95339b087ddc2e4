//! The emulator's count of shared-memory bank conflicts (`kernels/emulator/shared_trace.cpp`):
//! the wavefronts of known access patterns (check kernels' strided and diverged loads, the
//! teaching GEMM steps' tiles, whose comments work them out), every load of `gemm`'s k-loop
//! counted, a layer's products without conflicts, and a traced run computing the very bits of
//! an untraced one.
#![cfg(ferrograd_emulator)] // an emulator test: none in a build without it (build.rs)

mod common;

use common::uniform;
use ferrograd::backend::cuda::args::UnaryArgs;
use ferrograd::backend::cuda::emulator;
use ferrograd::backend::cuda::gemm_steps::{gemm_step, GemmStep};
use ferrograd::backend::cuda::launch::{Dim3, LaunchConfig};
use ferrograd::backend::cuda::{
    set_allow_tf32, set_small_tiles, BankTraffic, CudaDevice, CudaStorage, SharedMemoryTraffic,
};
use ferrograd::backend::{BackendStorage, BinaryKernel, GemmDims, LhsRule};
use ferrograd::gan::{Gan, IMAGE_DIM};
use ferrograd::nn::{Linear, Module, Sequential, Tanh};
use ferrograd::{manual_seed, Device, Tensor};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Tracing is the emulator device's, process-wide: the tests of this file take turns.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One warp of `emulator_check_bank_stride`, traced: each lane loads `floats` floats at
/// element lane · `stride`. Returns the traffic and y.
fn strided_loads(floats: u64, stride: u32) -> Result<(SharedMemoryTraffic, Vec<f32>), String> {
    let x: Vec<f32> = (0..32).map(|i| i as f32).collect();
    let mut y = vec![f32::NAN; 32];
    let args = UnaryArgs {
        x: x.as_ptr() as u64,
        y: y.as_mut_ptr() as u64,
        n: floats,
        p: stride as f32,
    };
    let config = LaunchConfig {
        grid: Dim3::x(1),
        block: Dim3::x(32),
    };
    // SAFETY: the kernel reads x[..32] and writes y[..32], both that long.
    let traffic = unsafe { emulator::launch_traced("emulator_check_bank_stride", config, &args) }?;
    Ok((traffic, y))
}

/// Traffic of `requests` requests taking `wavefronts` wavefronts, ideally `ideal`.
fn traffic(requests: u64, wavefronts: u64, ideal: u64) -> BankTraffic {
    BankTraffic {
        requests,
        wavefronts,
        ideal_wavefronts: ideal,
    }
}

#[test]
fn strided_loads_take_the_wavefronts_of_their_busiest_bank() {
    let _turn = one_at_a_time();
    // (floats per lane, stride in floats, wavefronts): 4-byte loads take as many wavefronts
    // as the most distinct words one bank is asked for; 8- and 16-byte loads go by half and
    // quarter warps (2 and 4 at best), each counted so.
    let cases = [
        (1, 1, 1),
        (1, 0, 1),   // one word for all: a broadcast
        (1, 2, 2),   // lanes l and l + 16 in one bank
        (1, 32, 32), // a column of a 32-wide tile: every lane in bank 0
        (1, 33, 1),  // padded by one: every lane in a bank of its own
        (2, 2, 2),
        (2, 4, 4), // 16 lanes' 8 bytes 16 bytes apart: two words a bank in each half
        (4, 4, 4),
        (4, 0, 4),
        (4, 8, 8), // 8 lanes' 16 bytes 32 bytes apart: two words a bank in each quarter
    ];
    for (floats, stride, wavefronts) in cases {
        let (traffic_seen, y) = strided_loads(floats, stride).expect("the check kernel runs");
        let ideal = floats.max(1);
        assert_eq!(
            traffic_seen.loads,
            traffic(1, wavefronts, ideal),
            "{floats} floats a lane, {stride} apart"
        );
        // The fill: 33 requests of 32 consecutive floats and one of the last 4, one wavefront
        // each; no copies.
        assert_eq!(traffic_seen.stores, traffic(34, 34, 34));
        assert_eq!(traffic_seen.copies, BankTraffic::default());
        // The loads read what the fill wrote: value i % 32 at element i.
        for (lane, sum) in y.iter().enumerate() {
            let at = lane as u64 * stride as u64;
            let expected: f32 = (at..at + floats).map(|i| (i % 32) as f32).sum();
            assert_eq!(
                *sum, expected,
                "lane {lane}, {floats} floats {stride} apart"
            );
        }
    }
}

/// A warp whose lanes go different ways (`emulator_check_bank_divergent`, n = 2): each
/// place in the code, and each time one place is run again, is a request of the lanes that
/// ran it.
#[test]
fn diverged_lanes_make_a_request_of_each_place_and_time() {
    let _turn = one_at_a_time();
    let x: Vec<f32> = (0..32).map(|i| i as f32).collect();
    let mut y = vec![f32::NAN; 32];
    let args = UnaryArgs {
        x: x.as_ptr() as u64,
        y: y.as_mut_ptr() as u64,
        n: 2,
        p: 0.0,
    };
    let config = LaunchConfig {
        grid: Dim3::x(1),
        block: Dim3::x(32),
    };
    // SAFETY: the kernel reads x[..32] and writes y[..32], both that long.
    let traffic_seen =
        unsafe { emulator::launch_traced("emulator_check_bank_divergent", config, &args) }
            .expect("the check kernel runs");
    // Lanes 0-15's float2s, the first time 1 wavefront, the second 2; lanes 16-31's column 16;
    // every lane's last load 1.
    assert_eq!(traffic_seen.loads, traffic(4, 1 + 2 + 16 + 1, 4));
    assert_eq!(traffic_seen.stores, traffic(34, 34, 34));
    // What each lane loaded: value i % 32 at element i.
    for (lane, sum) in y.iter().enumerate() {
        let value = |i: usize| (i % 32) as f32;
        let loaded: f32 = if lane < 16 {
            (1..=2)
                .map(|times| value(2 * lane * times) + value(2 * lane * times + 1))
                .sum()
        } else {
            value(32 * (lane - 16))
        };
        assert_eq!(*sum, loaded + value(lane), "lane {lane}");
    }
}

/// The traffic of each launch `work` makes on the emulator, tracing.
fn traced(cuda: &CudaDevice, work: impl FnOnce()) -> Vec<(String, SharedMemoryTraffic)> {
    cuda.trace_shared_memory(true).expect("the emulator traces");
    work();
    let launches = cuda.take_shared_memory_traffic();
    cuda.trace_shared_memory(false)
        .expect("stopping never fails");
    launches.into_iter().map(|l| (l.name, l.traffic)).collect()
}

#[test]
fn the_teaching_steps_conflict_where_their_comments_say() {
    let _turn = one_at_a_time();
    let cuda = CudaDevice::emulator().expect("an emulator build");
    let n = 128;
    let a = CudaStorage::from_vec(uniform(n * n, -1.0, 1.0, 1), &cuda);
    let b = CudaStorage::from_vec(uniform(n * n, -1.0, 1.0, 2), &cuda);
    let launches = traced(&cuda, || {
        for step in [GemmStep::SharedTiles, GemmStep::RegisterTiles] {
            gemm_step(step, &a, &b, n, n, n);
        }
    });
    let [(shared_name, shared), (registers_name, registers)] = &launches[..] else {
        panic!("two launches, not {launches:?}")
    };
    assert_eq!(
        (shared_name.as_str(), registers_name.as_str()),
        ("gemm_step_shared", "gemm_step_registers")
    );
    // Step 2: 8 × 8 blocks of 8 warps, 8 slices of 16: per slice each warp stores one float
    // of each tile, then loads 16 of each (a broadcast of A's row, a row of B). No conflicts.
    let slices = 64 * 8 * 8;
    assert_eq!(shared.stores, traffic(2 * slices, 2 * slices, 2 * slices));
    assert_eq!(shared.loads, traffic(32 * slices, 32 * slices, 32 * slices));
    // Step 3: 2 × 2 blocks of 8 warps, 8 slices: per slice 4 stores of each tile, and 16 float4
    // loads of each (4 wavefronts, none more). A's stores are transposed into rows 68 floats
    // apart: the 16 lanes of a row of A in 8 banks, two words each — 2 wavefronts, as its
    // comment works out; B's rows go in whole.
    let slices = 4 * 8 * 8;
    assert_eq!(
        registers.stores,
        traffic(8 * slices, 4 * slices * 2 + 4 * slices, 8 * slices)
    );
    assert_eq!(
        registers.loads,
        traffic(32 * slices, 4 * 32 * slices, 4 * 32 * slices)
    );
}

#[test]
fn every_load_of_gemms_k_loop_is_counted() {
    let _turn = one_at_a_time();
    let cuda = CudaDevice::emulator().expect("an emulator build");
    let device = Device::Cuda(cuda.clone());
    // One 64 × 64 tile, k = 64: one block of `gemm`, 8 warps, 4 slices of 16, each k step of
    // a slice two float4 loads (A's 4 rows, B's 4 columns). Counted only if its stages lie in
    // the emulator's __shared__ section — the one it poisons and keeps per block, which GCC
    // ignores on a function template's statics (emulator.h).
    let a = Tensor::from_vec(uniform(64 * 64, -1.0, 1.0, 3), &[64, 64], &device);
    let b = Tensor::from_vec(uniform(64 * 64, -1.0, 1.0, 4), &[64, 64], &device);
    let launches = traced(&cuda, || drop(a.matmul(&b).to_vec()));
    let [(name, product)] = &launches[..] else {
        panic!("one launch, not {launches:?}")
    };
    assert_eq!(name, "gemm");
    let requests = 8 * 4 * 16 * 2;
    assert_eq!(product.loads, traffic(requests, 4 * requests, 4 * requests));
    assert_eq!(product.stores, BankTraffic::default());
    // Per slice a quad of each operand per thread: A's along k, four 4-byte copies into four
    // rows of its tile; B's along n, one 16-byte copy.
    assert_eq!(product.copies.requests, 8 * 4 * (4 + 1));
}

/// Tanh's backward rule, by the name the CUDA backend picks its GEMM rule by.
struct TanhRule;
impl BinaryKernel for TanhRule {
    const NAME: &'static str = "tanh_backward";
    fn apply(&self, y: f32, g: f32) -> f32 {
        g * (1.0 - y * y)
    }
}

#[test]
fn a_layers_products_have_no_bank_conflicts() {
    let _turn = one_at_a_time();
    let cuda = CudaDevice::emulator().expect("an emulator build");
    // A layer of 256 inputs and 128 outputs, tanh after it, on a batch of 64.
    let (batch, outputs, inputs) = (64, 128, 256);
    let on = |len, seed| CudaStorage::from_vec(uniform(len, -0.9, 0.9, seed), &cuda);
    let (x, w) = (on(batch * inputs, 1), on(outputs * inputs, 2));
    let (grad, saved) = (on(batch * outputs, 3), on(batch * outputs, 4));
    let dims = |m, k, n, lhs_transposed, rhs_transposed| GemmDims {
        m,
        k,
        n,
        lhs_transposed,
        rhs_transposed,
    };
    // The forward product X · Wᵀ: both operands stored along k, copied 4 bytes an element
    // into their tiles' columns (SliceQuad).
    let forward = (&x, &w, dims(batch, inputs, outputs, false, true));
    // ∂L/∂x = ∂L/∂z · W with ∂L/∂z = tanh's rule of ∂L/∂y read in the GEMM: A stored along
    // k, the rule applied to its columns in place; B copied along its rows (16-byte copies).
    let input_gradient = (&grad, &w, dims(batch, outputs, inputs, false, false));
    // ∂L/∂W = (∂L/∂z)ᵀ · x: both copied along their rows, the rule applied 16 bytes at a time.
    let weight_gradient = (&grad, &x, dims(outputs, batch, inputs, true, false));
    let rule = LhsRule {
        saved: &saved,
        mask: None,
        rule: &TanhRule,
    };
    // (TF32, 32 × 32 tiles, the kernel that runs them)
    let kernels = [
        (false, false, "gemm"),
        (true, false, "gemm_tf32"),
        (false, true, "gemm_small"),
    ];
    for (tf32, small, kernel) in kernels {
        set_allow_tf32(tf32);
        set_small_tiles(small);
        let launches = traced(&cuda, || {
            let (a, b, product) = forward;
            drop(a.gemm_through_rule(b, product, None).to_vec());
            for (a, b, product) in [input_gradient, weight_gradient] {
                drop(a.gemm_through_rule(b, product, Some(rule)).to_vec());
            }
        });
        set_allow_tf32(false);
        set_small_tiles(false);
        assert_eq!(launches.len(), 3, "{launches:?}");
        for (name, product) in &launches {
            assert_eq!(name, kernel);
            for (what, kind) in [
                ("loads", product.loads),
                ("stores", product.stores),
                ("copies", product.copies),
            ] {
                assert!(kind.requests > 0, "{name}: no {what}");
                assert_eq!(
                    kind.wavefronts, kind.ideal_wavefronts,
                    "{name}'s {what}: {kind:?}"
                );
            }
        }
    }
}

#[test]
fn a_traced_step_computes_what_an_untraced_one_does() {
    let _turn = one_at_a_time();
    let cuda = CudaDevice::emulator().expect("an emulator build");
    let device = Device::Cuda(cuda.clone());
    let step = |trace: bool| {
        manual_seed(7);
        let real = Tensor::randn(&[64, IMAGE_DIM], &device);
        let mut gan = Gan::new(&device, 2e-4);
        cuda.trace_shared_memory(trace)
            .expect("the emulator traces");
        cuda.set_kernel_timing(true);
        let stats = gan.train_step(&real);
        let traced: Vec<String> = cuda
            .take_shared_memory_traffic()
            .into_iter()
            .map(|launch| launch.name)
            .collect();
        let launched: Vec<String> = cuda
            .take_kernel_times()
            .into_iter()
            .map(|time| time.name)
            .collect();
        cuda.set_kernel_timing(false);
        cuda.trace_shared_memory(false)
            .expect("stopping never fails");
        let samples = gan.generator.forward(&gan.noise(4)).to_vec();
        (stats, samples, traced, launched)
    };
    let (plain, plain_samples, none, plain_launches) = step(false);
    let (traced, traced_samples, traced_launches, launches) = step(true);
    assert!(none.is_empty(), "nothing traced with tracing off: {none:?}");
    // Every launch of the step traced, once, in order: the same launches an untraced step
    // makes.
    assert!(launches.len() > 30, "a GAN step's launches: {launches:?}");
    assert_eq!(traced_launches, launches);
    assert_eq!(launches, plain_launches);
    let bits = |x: f32| x.to_bits();
    assert_eq!(
        (bits(plain.d_loss), bits(plain.g_loss)),
        (bits(traced.d_loss), bits(traced.g_loss))
    );
    assert_eq!(
        plain_samples
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>(),
        traced_samples
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_traced_tf32_product_computes_what_an_untraced_one_does() {
    let _turn = one_at_a_time();
    let cuda = CudaDevice::emulator().expect("an emulator build");
    let device = Device::Cuda(cuda.clone());
    set_allow_tf32(true);
    // A layer's forward product and its two backward ones (a pair, one with row sums).
    manual_seed(5);
    let layer = Sequential::new()
        .add(Linear::new(256, 128, &device))
        .add(Tanh);
    let x = Tensor::from_vec(uniform(64 * 256, -1.0, 1.0, 5), &[64, 256], &device);
    x.set_requires_grad(true);
    let run = |trace: bool| {
        cuda.trace_shared_memory(trace)
            .expect("the emulator traces");
        let y = layer.forward(&x);
        y.sum().backward();
        let traced = cuda.take_shared_memory_traffic();
        cuda.trace_shared_memory(false)
            .expect("stopping never fails");
        let mut grads = x.grad().expect("a gradient").to_vec();
        for parameter in layer.parameters() {
            grads.extend(parameter.grad().expect("a gradient").to_vec());
            parameter.zero_grad();
        }
        x.zero_grad();
        (y.to_vec(), grads, traced)
    };
    let (plain_y, plain_grad, _) = run(false);
    let (traced_y, traced_grad, launches) = run(true);
    set_allow_tf32(false);
    assert!(
        launches.iter().any(|l| l.name == "gemm_tf32"),
        "{launches:?}"
    );
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&plain_y), bits(&traced_y));
    assert_eq!(bits(&plain_grad), bits(&traced_grad));
}

#[test]
fn only_the_default_kernels_are_traced() {
    let _turn = one_at_a_time();
    let turing = CudaDevice::emulator_sm75().expect("an emulator build");
    let err = turing.trace_shared_memory(true).unwrap_err().to_string();
    assert!(err.contains("not of those compiled with"), "{err}");
    emulator::set_kernel_defines(ferrograd::backend::cuda::kernels::SWEEP_VARIANTS[0])
        .expect("a sweep variant");
    let traced = strided_loads(1, 1);
    emulator::set_kernel_defines("").expect("the defaults");
    let err = traced.unwrap_err();
    assert!(err.contains("no build of it traces shared memory"), "{err}");
    assert!(strided_loads(1, 1).is_ok());
}
