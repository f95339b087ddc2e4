//! Shared-memory bank conflicts of our CUDA kernels, counted on the CPU emulator: every load
//! and store each kernel makes to shared memory, grouped into a warp's requests and the
//! wavefronts (passes through the 32 banks) a GPU needs for them. A wavefront beyond the ideal
//! is a bank conflict: the warp waits for it. What `ncu`'s "shared memory" section reports on
//! a GPU, seen here on any Linux machine, for the launches of:
//!
//! - the GAN's training step in FP32, with TF32 tensor cores, and with the 32 × 32 tiles;
//! - a product large enough for `gemm_large` (1536 × 64 · 64 × 1536);
//! - the three teaching steps of `kernels/gemm_steps.cu` (128 × 128 × 128).
//!
//! `cargo run --release --example bank_conflicts`

use std::process::ExitCode;

use ferrograd::backend::cuda::gemm_steps::{gemm_step, GemmStep};
use ferrograd::backend::cuda::launch::Dim3;
use ferrograd::backend::cuda::{
    set_allow_tf32, set_small_tiles, BankTraffic, CudaDevice, CudaStorage, TracedLaunch,
};
use ferrograd::gan::{Gan, IMAGE_DIM};
use ferrograd::{manual_seed, Device, Tensor};

fn main() -> ExitCode {
    let cuda = match CudaDevice::emulator() {
        Ok(cuda) => cuda,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(err) = cuda.trace_shared_memory(true) {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    let device = Device::Cuda(cuda.clone());
    manual_seed(0);
    let real = Tensor::randn(&[64, IMAGE_DIM], &device);
    for (what, tf32, small_tiles) in [
        ("GAN training step, FP32", false, false),
        ("GAN training step, TF32 tensor cores", true, false),
        ("GAN training step, FP32 in 32 x 32 tiles", false, true),
    ] {
        set_allow_tf32(tf32);
        set_small_tiles(small_tiles);
        let mut gan = Gan::new(&device, 2e-4);
        gan.train_step(&real);
        print_launches(what, &cuda.take_shared_memory_traffic());
    }
    set_allow_tf32(false);
    set_small_tiles(false);

    let (m, k, n) = (1536, 64, 1536);
    let a = Tensor::randn(&[m, k], &device);
    let b = Tensor::randn(&[k, n], &device);
    let _ = a.matmul(&b).to_vec();
    print_launches(
        &format!("a {m} x {k} . {k} x {n} product"),
        &cuda.take_shared_memory_traffic(),
    );

    let size = 128;
    let a = CudaStorage::from_vec(vec![0.5; size * size], &cuda);
    let b = CudaStorage::from_vec(vec![0.25; size * size], &cuda);
    for step in GemmStep::ALL {
        gemm_step(step, &a, &b, size, size, size);
    }
    print_launches(
        &format!("the teaching steps of gemm_steps.cu, {size}^3"),
        &cuda.take_shared_memory_traffic(),
    );
    ExitCode::SUCCESS
}

/// Prints `launches` grouped by kernel and launch geometry, in the order first launched: for
/// loads, stores and copies, the warp's requests and the conflict factor (wavefronts over
/// the ideal: 1.00 without bank conflicts).
fn print_launches(what: &str, launches: &[TracedLaunch]) {
    // (name, grid, block) → (launches, [loads, stores, copies])
    type Group = ((String, Dim3, Dim3), usize, [BankTraffic; 3]);
    let mut groups: Vec<Group> = Vec::new();
    for launch in launches {
        let key = (launch.name.clone(), launch.config.grid, launch.config.block);
        let index = match groups.iter().position(|group| group.0 == key) {
            Some(index) => index,
            None => {
                groups.push((key, 0, [BankTraffic::default(); 3]));
                groups.len() - 1
            }
        };
        let (_, count, traffic) = &mut groups[index];
        *count += 1;
        let t = &launch.traffic;
        for (sum, kind) in traffic.iter_mut().zip([&t.loads, &t.stores, &t.copies]) {
            sum.add(kind);
        }
    }
    println!("\n{what}: {} launches", launches.len());
    println!(
        "{:<20} {:>10} {:>7} {:>3} | {:>9} {:>5} | {:>9} {:>5} | {:>9} {:>5}",
        "kernel", "grid", "block", "n", "loads", "x", "stores", "x", "copies", "x"
    );
    let mut total = BankTraffic::default();
    for (_, _, traffic) in &groups {
        traffic.iter().for_each(|kind| total.add(kind));
    }
    for ((name, grid, block), count, traffic) in groups {
        if traffic.iter().all(|t| t.requests == 0) {
            continue; // no shared memory
        }
        let [loads, stores, copies] = traffic.map(|t| (t.requests, t.conflict_factor()));
        println!(
            "{:<20} {:>10} {:>7} {:>3} | {:>9} {:>5.2} | {:>9} {:>5.2} | {:>9} {:>5.2}",
            name,
            format!("{}x{}x{}", grid.x, grid.y, grid.z),
            format!("{}x{}", block.x, block.y),
            count,
            loads.0,
            loads.1,
            stores.0,
            stores.1,
            copies.0,
            copies.1,
        );
    }
    println!(
        "all of it: {} wavefronts for {} ideal ({:.2})",
        total.wavefronts,
        total.ideal_wavefronts,
        total.conflict_factor()
    );
}
