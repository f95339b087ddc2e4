//! # ferrograd
//!
//! A small tensor engine with reverse-mode automatic differentiation, written from scratch to be
//! run, measured and read. It has the ops an MLP GAN needs (linear layers, ReLU, LeakyReLU,
//! dropout, tanh, sigmoid, binary cross-entropy), Adam, a CPU backend on rayon, and a CUDA
//! backend with our own kernels behind the same API ([`Device::cuda`]; without a GPU,
//! [`Device::cuda_emulator`] runs the same kernels on the CPU).
//!
//! This page walks through the engine in the order a learner needs it.
//!
//! ## 1. A derivative, one number at a time
//!
//! Take `y = tanh(w · x)` with `x = 0.5` and `w = 2`. The chain rule gives
//! `∂y/∂w = (1 − y²) · x`. ferrograd finds the same number without being told the formula:
//!
//! ```
//! use ferrograd::{Device, Tensor};
//! let dev = Device::Cpu;
//! let x = Tensor::scalar(0.5, &dev);
//! let w = Tensor::scalar(2.0, &dev);
//! w.set_requires_grad(true); // "I want ∂(something)/∂w"
//! let y = (&w * &x).tanh();
//! y.backward();
//! let expected = (1.0 - y.item().powi(2)) * 0.5;
//! assert!((w.grad().unwrap().item() - expected).abs() < 1e-6);
//! ```
//!
//! ## 2. The graph
//!
//! Each op that sees an input requiring a gradient records a *node* on its result: the op's
//! local derivative rule and links to its inputs' nodes (`src/ops/mod.rs`, `record`). Nothing
//! is declared in advance; the graph is whatever the code did ("define by run", as PyTorch).
//! A node keeps only what its rule needs: `tanh` keeps its output `y`, since
//! `tanh'(x) = 1 − y²`; `matmul` keeps `A` only if `B` needs a gradient. A tensor printed
//! says which it has, as PyTorch's do, and [`Tensor::to_dot`] draws the whole graph (after a
//! backward pass, with the gradients of section 3 in its boxes):
//!
//! ```
//! # use ferrograd::{Device, Tensor};
//! # let dev = Device::Cpu;
//! # let x = Tensor::scalar(0.5, &dev);
//! # let w = Tensor::scalar(2.0, &dev);
//! # w.set_requires_grad(true);
//! let y = (&w * &x).tanh();
//! assert_eq!(w.to_string(), "tensor(2., requires_grad=True)"); // a leaf
//! assert_eq!(y.to_string(), "tensor(0.7616, grad_fn=<TanhBackward0>)"); // an op's node
//! let dot = y.to_dot();
//! assert!(dot.contains("tanh []") && dot.contains("mul []") && dot.contains("leaf []"));
//! ```
//!
//! The values print as PyTorch prints them, under the same options ([`set_print_options`]).
//!
//! ## 3. Backward
//!
//! [`Tensor::backward`] (`src/autograd.rs`, one screen) sorts the graph topologically and walks
//! it from the loss to the leaves. Each node turns `∂L/∂output` into `∂L/∂input` with its rule;
//! a tensor used twice receives the sum of both contributions; leaves add what they receive to
//! [`Tensor::grad`]. An intermediate's gradient is passed on and dropped, unless it asked to
//! keep it ([`Tensor::retain_grad`], as in PyTorch), which shows the chain rule at work:
//!
//! ```
//! # use ferrograd::{Device, Tensor};
//! # let dev = Device::Cpu;
//! # let x = Tensor::scalar(0.5, &dev);
//! # let w = Tensor::scalar(2.0, &dev);
//! # w.set_requires_grad(true);
//! let z = &w * &x;
//! z.retain_grad();
//! let y = z.tanh();
//! y.backward();
//! let dy_dz = z.grad().unwrap().item(); // 1 − y², tanh's local rule
//! assert!((dy_dz - (1.0 - y.item().powi(2))).abs() < 1e-6);
//! assert!((w.grad().unwrap().item() - dy_dz * 0.5).abs() < 1e-6); // times ∂z/∂w = x
//! ```
//!
//! Inside a [`no_grad`] scope nothing is recorded at all.
//!
//! ## 4. Tensors, layers and training
//!
//! The same machinery on matrices: [`nn::Linear`] holds `W: [out, in]` and `b: [out]` and
//! computes `x · Wᵀ + b`; [`nn::Sequential`] chains layers; [`optim::Adam`] updates the
//! parameters from their gradients.
//!
//! ```
//! use ferrograd::nn::{functional::binary_cross_entropy, LeakyReLU, Linear, Module, Sequential, Sigmoid};
//! use ferrograd::optim::{Adam, AdamConfig};
//! use ferrograd::{manual_seed, Device, Tensor};
//!
//! let dev = Device::Cpu;
//! manual_seed(1);
//! let model = Sequential::new()
//!     .add(Linear::new(2, 8, &dev))
//!     .add(LeakyReLU::new(0.2))
//!     .add(Linear::new(8, 1, &dev))
//!     .add(Sigmoid);
//! let mut adam = Adam::new(model.parameters(), AdamConfig { lr: 0.05, ..Default::default() });
//! // Learn XOR.
//! let x = Tensor::from_vec(vec![0., 0., 0., 1., 1., 0., 1., 1.], &[4, 2], &dev);
//! let t = Tensor::from_vec(vec![0., 1., 1., 0.], &[4, 1], &dev);
//! for _ in 0..300 {
//!     adam.zero_grad();
//!     let loss = binary_cross_entropy(&model.forward(&x), &t);
//!     loss.backward();
//!     adam.step();
//! }
//! let p = model.forward(&x).to_vec();
//! assert!(p[0] < 0.2 && p[1] > 0.8 && p[2] > 0.8 && p[3] < 0.2, "{p:?}");
//! ```
//!
//! ## 5. Down to the kernels
//!
//! An op never touches memory itself. `x.tanh()` (`src/ops/tanh.rs`) names two small kernels,
//! `y = tanh(x)` and `∂L/∂x = ∂L/∂y · (1 − y²)`, and hands them to the tensor's storage
//! (`src/storage.rs`), the one place that knows which device holds the data. The CPU backend
//! (`src/backend/cpu/`) maps the kernel over the buffer on the rayon pool; matrix products go to
//! a packed, cache-blocked GEMM (`src/backend/cpu/gemm/`), or, when asked for
//! ([`backend::cpu::set_allow_bf16`]), to Intel AMX's tile units in BF16, or to AVX512-BF16's dot
//! products where there is no AMX (`src/backend/cpu/amx/`). An op called from outside the pool
//! hands its work to the pool's threads and sleeps until they are done; a training step inside
//! [`Device::run`] runs as one task of the pool, its workers kept awake, and skips those
//! hand-offs. [`backend::cpu::start_thread_pool`] sizes the pool: by default one thread per
//! physical core, as PyTorch's (`mnist_gan` calls it). The CUDA backend (`src/backend/cuda/`)
//! launches `unary_tanh` and `binary_tanh_backward` from `kernels/elementwise.cu`, where the
//! same two formulas are written in CUDA C++. Results never depend on the number of threads:
//! reductions split their input at fixed boundaries, and random numbers come from a
//! counter-based generator ([`rng`], Philox4x32-10) that computes value `i` from `(seed, i)`
//! alone.
//!
//! A matrix product is where a kernel's craft shows. On the CPU, [`backend::cpu::gemm_steps`]
//! builds one in four steps, each adding one idea to the one before: the loops as written on
//! paper; reordered so that memory is read along its rows, in vectors; a block of C summed in
//! registers; those blocks fed from copies of A and B packed in the order they are read, in
//! blocks sized for the caches. On one core of an AMD Zen 4 at 512³ they run at 1.2, 23, 28
//! and 35 GFLOP/s; the engine's product, the fourth step's loops around an AVX-512
//! microkernel, at 109 (`cargo bench --bench ops -- gemm_steps`). On a GPU,
//! `kernels/gemm_steps.cu` builds one in three steps: a thread per element of C, reading
//! global memory with neighbouring threads at neighbouring addresses; tiles of A and B staged
//! in shared memory, so each element fetched serves a whole tile; a 4 × 4 patch of C per
//! thread in registers, so each value read from shared memory serves four multiply-adds
//! ([`backend::cuda::gemm_steps`] runs them; `cargo bench --bench cuda -- gemm_steps` times
//! them on a GPU). `kernels/gemm.cu`, which the engine runs, starts from the third.
//!
//! To add an op of your own, `docs/adding-an-op.md` takes one (softplus) through both
//! backends: the op's file, a gradient check, the CUDA kernels, and the test that holds the
//! two backends to each other.
//!
//! ## 6. Fewer launches: graphs
//!
//! On a GPU a small step is dominated by launching its kernels, not by running them. A
//! [`graph`] records a whole training step's launches once and replays them with one call; the
//! [`gan::Gan`] uses one when asked (`Gan::capture_train_step`). Replays draw the same random
//! numbers and compute the same values as eager steps: the CPU emulator checks it in CI.
//! Fewer launches still: work that would be two kernels becomes one where they read the same
//! data — a layer, its activation and its dropout; a loss and its mean; a layer's input
//! gradient and weight gradient, two independent products whose blocks share one launch
//! (`gemm_pair`); an activation's backward rule, which the layer's products apply to `∂L/∂y`
//! as they load it (`backend::LhsRule`), so `∂L/∂z` is never written. A GAN step is 39
//! launches.
//!
//! ## 7. Keeping the GPU busy
//!
//! Inside a kernel: a GEMM multiplies tiles of A and B out of shared memory, one 16-deep slice
//! of k at a time. Fetching a slice from global memory takes ~1 µs; multiplying it, at batch
//! 64, ~0.3 µs. So `kernels/gemm.cu` keeps the next slices on their way (`cp.async`, a
//! pipeline of 4 stages) while it multiplies one, and waits for memory once per product, not
//! once per slice; and since a thread copies the same places of every slice but for k, where
//! they come from is worked out once, before the loop, leaving the loop's instructions to the
//! multiply-adds. Between steps: the host's own work — uploading the next batch, reading the
//! losses — overlaps the GPU's. Uploads go through page-locked memory and return at once, and
//! [`Tensor::to_vecs_later`] reads values behind a step without waiting for the steps queued
//! after it: `mnist_gan` reads step s's losses while step s + 1 runs.
//!
//! ## 8. Measuring instead of guessing: autotuning
//!
//! How to run a batch-64 product fast depends on the GPU: 64 × 64 tiles of 256 threads leave
//! most SMs idle, 32 × 32 tiles of 128 threads use 4× as many with fewer warps each, and
//! cutting k into chunks (split-K) adds blocks at the price of summing partial results. Which
//! wins is a property of the machine, so the engine times it there
//! ([`backend::cuda::tuning`], `Gan::tune_products`): each product of a step runs a few times
//! in each configuration and keeps the fastest, as PyTorch's `cudnn.benchmark` does. Tiles
//! change only who computes a result, not the order of its sum, so tuning them keeps every
//! bit; splits change the order, so they are tuned only when asked.
//!
//! ## Errors
//!
//! Misusing an op — mismatched shapes, tensors on different devices, `backward` on a tensor
//! without a graph — panics with the op's name and the shapes involved, as PyTorch raises; so
//! does a hyper-parameter out of its range (Adam's, a dropout probability, a
//! [`Tensor::uniform`] range), with PyTorch's message. What a user can get wrong outside the
//! code — a file, a download, a checkpoint, a device that is not there — is an [`Error`]
//! instead, whose `Display` says what went wrong and where, and which loses nothing: a failed
//! checkpoint leaves the last one intact.

// Every public item has a doc comment and a Debug form (CI denies warnings).
#![warn(missing_debug_implementations)]
#![warn(missing_docs)]

pub mod atomic_file;
mod autograd;
pub mod backend;
pub mod checkpoint;
pub mod data;
mod device;
mod dot;
mod error;
pub mod gan;
mod grad_mode;
pub mod graph;
pub mod math;
pub mod nn;
mod ops;
pub mod optim;
pub mod rng;
mod storage;
mod tensor;

pub use device::Device;
pub use error::{Error, Result};
pub use grad_mode::{is_grad_enabled, no_grad, NoGradGuard};
pub use rng::manual_seed;
pub use storage::PendingValues;
pub use tensor::{print_options, set_print_options, PrintOptions, Tensor};

/// The README's code examples, compiled and run as doc tests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
