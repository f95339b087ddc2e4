//! Shared test helpers: seeded test data, closeness checks, f64 reference implementations of
//! the ops, the finite-difference gradient check, and where the example binaries are.
#![allow(dead_code)] // each test binary uses a different subset

use ferrograd::nn::functional::Activation;
use ferrograd::rng::Generator;
use ferrograd::{Device, Tensor};

pub const CPU: Device = Device::Cpu;

/// Held by each test that draws from the process-wide generator (`manual_seed`, `Linear::new`,
/// dropout without a generator of its own): another test's draws cannot then fall between one
/// test's `manual_seed` and the draws it seeds. One lock per test binary, as the generator is
/// one per process.
pub fn process_wide_generator() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The CUDA devices here: the emulator, and the GPU if there is one. Under
/// `FERROGRAD_REQUIRE_GPU=1` (the GPU check) the GPU must be there, and is the only one: CI has
/// run the emulator, and the GPU machine's time is short.
pub fn cuda_devices() -> Vec<Device> {
    let required = std::env::var("FERROGRAD_REQUIRE_GPU").is_ok_and(|v| v == "1");
    let mut devices = if required {
        Vec::new()
    } else {
        emulator().into_iter().collect()
    };
    match Device::cuda(0) {
        Ok(gpu) => devices.push(gpu),
        Err(err) => assert!(!required, "FERROGRAD_REQUIRE_GPU=1 but: {err}"),
    }
    devices
}

/// Eighths between -6.25 and 6.25 in a scattered order: exact in f32, the same in PyTorch
/// (`[((i * 37) % 101 - 50) / 8 for i in range(n)]`), for texts PyTorch printed.
pub fn eighths_pattern(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 37) % 101) as f32 / 8.0 - 6.25)
        .collect()
}

/// The CUDA emulator, or `None` (and why, on stderr) in a build without it (build.rs; CI's
/// build must have it: `FERROGRAD_REQUIRE_EMULATOR=1`).
pub fn emulator() -> Option<Device> {
    Device::cuda_emulator()
        .map_err(|err| eprintln!("skipped: {err}"))
        .ok()
}

/// `activation` as its own op on `x`: what a fused linear layer's epilogue and backward rule
/// are held to.
pub fn activate(x: &Tensor, activation: Activation) -> Tensor {
    match activation {
        Activation::Relu => x.relu(),
        Activation::LeakyRelu(slope) => x.leaky_relu(slope),
        Activation::Tanh => x.tanh(),
        Activation::Sigmoid => x.sigmoid(),
    }
}

/// `len` values uniform in `[low, high)` from a seeded generator.
pub fn uniform(len: usize, low: f32, high: f32, seed: u64) -> Vec<f32> {
    Tensor::uniform_with(&[len], low, high, &CPU, &mut Generator::new(seed)).to_vec()
}

/// Values in `±[0.1, 2.1)`: away from 0, where ReLU-like ops have their kink.
pub fn away_from_zero(len: usize, seed: u64) -> Vec<f32> {
    uniform(len, -2.0, 2.0, seed)
        .into_iter()
        .map(|v| v.signum() * (0.1 + v.abs()))
        .collect()
}

/// Asserts `|got − want| ≤ tol · max|want|` everywhere: for reduced-precision products
/// (TF32, BF16), whose error scales with the magnitude of the terms summed, not with the
/// (possibly cancelled) result.
pub fn assert_within_scale(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0.0f32, |m, w| m.max(w.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}[{i}]: {g} vs {w} (scale {scale})"
        );
    }
}

/// Asserts `|actual − expected| ≤ atol + rtol·|expected|` elementwise, naming the first failure.
pub fn assert_close(what: &str, actual: &[f32], expected: &[f64], rtol: f64, atol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let err = (f64::from(a) - e).abs();
        assert!(
            err <= atol + rtol * e.abs(),
            "{what}[{i}]: got {a}, expected {e} (error {err:.3e}, allowed {:.3e})",
            atol + rtol * e.abs()
        );
    }
}

pub fn to_f64(values: &[f32]) -> Vec<f64> {
    values.iter().map(|&v| f64::from(v)).collect()
}

/// f64 reference implementations, written as plainly as possible.
pub mod reference {
    pub fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    /// `x · Wᵀ + b`, `x: [batch, in]`, `w: [out, in]`.
    pub fn linear(
        x: &[f64],
        w: &[f64],
        b: Option<&[f64]>,
        batch: usize,
        inp: usize,
        out: usize,
    ) -> Vec<f64> {
        let mut y = vec![0.0; batch * out];
        for i in 0..batch {
            for o in 0..out {
                let dot: f64 = (0..inp).map(|p| x[i * inp + p] * w[o * inp + p]).sum();
                y[i * out + o] = dot + b.map_or(0.0, |b| b[o]);
            }
        }
        y
    }

    pub fn relu(x: f64) -> f64 {
        x.max(0.0)
    }

    pub fn leaky_relu(x: f64, slope: f64) -> f64 {
        if x > 0.0 {
            x
        } else {
            slope * x
        }
    }

    pub fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// Mean binary cross-entropy with PyTorch's clamp of each log at −100.
    pub fn bce(p: &[f64], t: &[f64]) -> f64 {
        let ln = |x: f64| x.ln().max(-100.0);
        let total: f64 = p
            .iter()
            .zip(t)
            .map(|(&p, &t)| -(t * ln(p) + (1.0 - t) * ln(1.0 - p)))
            .sum();
        total / p.len() as f64
    }

    /// `Σᵢ f(xᵢ) · wᵢ`: a scalar that weighs every element of an elementwise op differently.
    pub fn weighted_sum(y: &[f64], w: &[f64]) -> f64 {
        y.iter().zip(w).map(|(a, b)| a * b).sum()
    }
}

/// One input of a gradient check: its shape and values.
pub struct Input {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl Input {
    pub fn new(shape: &[usize], values: Vec<f32>) -> Self {
        Input {
            shape: shape.to_vec(),
            values,
        }
    }
}

/// Tolerance of a gradient check: `|analytic − numeric| ≤ ATOL + RTOL·|numeric|`. The analytic
/// gradient is computed in f32, the numeric one by central differences of an f64 reference
/// with step `H`, whose own error (~H²) is negligible; what remains is f32 rounding.
pub const RTOL: f64 = 1e-4;
pub const ATOL: f64 = 2e-5;
const H: f64 = 1e-6;

/// Checks the forward value and every gradient of `engine` (a scalar function of tensors that
/// require grad) against `reference` (the same function in f64) and its central differences.
pub fn check_gradients(
    inputs: &[Input],
    engine: impl Fn(&[Tensor]) -> Tensor,
    reference: impl Fn(&[Vec<f64>]) -> f64,
) {
    let tensors: Vec<Tensor> = inputs
        .iter()
        .map(|input| {
            let t = Tensor::from_vec(input.values.clone(), &input.shape, &CPU);
            t.set_requires_grad(true);
            t
        })
        .collect();
    let loss = engine(&tensors);
    let mut point: Vec<Vec<f64>> = inputs.iter().map(|input| to_f64(&input.values)).collect();
    let expected = reference(&point);
    assert_close("forward value", &[loss.item()], &[expected], RTOL, ATOL);
    loss.backward();
    for (i, tensor) in tensors.iter().enumerate() {
        let numeric: Vec<f64> = (0..point[i].len())
            .map(|j| {
                let original = point[i][j];
                point[i][j] = original + H;
                let plus = reference(&point);
                point[i][j] = original - H;
                let minus = reference(&point);
                point[i][j] = original;
                (plus - minus) / (2.0 * H)
            })
            .collect();
        let analytic = tensor.grad().expect("every input requires grad").to_vec();
        assert_close(
            &format!("gradient of input {i}"),
            &analytic,
            &numeric,
            RTOL,
            ATOL,
        );
    }
}

/// `../shared/data/mnist`, where tests find MNIST. Missing, it fails the test under CI (where it
/// must be present) and skips it elsewhere.
pub fn shared_mnist() -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: CI needs the shared MNIST files",
        dir.display()
    );
    eprintln!("skipped: {} is missing", dir.display());
    None
}

/// The example binary `name`, which `cargo test` builds into `examples/` beside the test's own
/// directory (`cargo test --test <name>` alone does not rebuild it).
pub fn example(name: &str) -> std::path::PathBuf {
    let test_exe = std::env::current_exe().unwrap();
    let profile_dir = test_exe.parent().unwrap().parent().unwrap(); // target/<profile>/deps/..
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} not built: run through `cargo test`",
        path.display()
    );
    path
}

/// The writing end of a pipe whose reader has quit (as `head` does): a child's standard output
/// that every write fails on (or, on Unix, kills it with SIGPIPE where it has not ignored it).
pub fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

/// The message of the panic `f` must raise (a formatted one, as every panic of the crate's).
pub fn panic_message<R>(f: impl FnOnce() -> R + std::panic::UnwindSafe) -> String {
    let payload = std::panic::catch_unwind(f)
        .map(|_| ())
        .expect_err("expected a panic");
    *payload.downcast::<String>().expect("a formatted message")
}
