//! Compiles every kernel in `kernels/*.cu` with NVRTC for sm_80 (A100) and sm_90 (H100/H200)
//! to cubin and prints ptxas's report: registers, spills and shared memory per kernel; then
//! counts the 16-byte loads in the two FP32 GEMMs' PTX (global and shared). Exits non-zero on
//! a compile error, on any spill, or if a GEMM lost its vector loads. Needs only NVRTC (`pip
//! install nvidia-cuda-nvrtc`, with its `lib` directory on `LD_LIBRARY_PATH`), not a GPU.
//!
//! `cargo run --release --example nvrtc_report`
//!
//! Without NVRTC it says so and exits 0, unless `FERROGRAD_REQUIRE_NVRTC=1` (as CI sets).

use std::process::ExitCode;

use ferrograd::backend::cuda::kernels::MODULES;
use ferrograd::backend::cuda::nvrtc::{self, parse_ptxas_report, Output};

const ARCHITECTURES: [(u32, u32); 2] = [(8, 0), (9, 0)];

fn main() -> ExitCode {
    if !nvrtc::is_available() {
        let required = std::env::var("FERROGRAD_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
        eprintln!(
            "NVRTC (libnvrtc) not found{}",
            if required {
                ", but it is required"
            } else {
                ": skipped"
            }
        );
        return if required {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    println!("include paths: {:?}", nvrtc::include_paths());
    println!(
        "{:<8} {:<14} {:<28} {:>5} {:>8} {:>7}",
        "arch", "file", "kernel", "regs", "smem", "spills"
    );
    let mut failed = false;
    for (major, minor) in ARCHITECTURES {
        for module in MODULES {
            let compiled =
                match nvrtc::compile(module, major, minor, Output::Cubin { report: true }) {
                    Ok(compiled) => compiled,
                    Err(err) => {
                        eprintln!("{err}");
                        failed = true;
                        continue;
                    }
                };
            for kernel in parse_ptxas_report(&compiled.log) {
                let spills = kernel.spill_stores + kernel.spill_loads;
                println!(
                    "sm_{major}{minor}    {:<14} {:<28} {:>5} {:>8} {:>7}",
                    module.file, kernel.kernel, kernel.registers, kernel.shared_bytes, spills
                );
                if spills > 0 {
                    eprintln!(
                        "FAILED: {} spills {spills} bytes on sm_{major}{minor}",
                        kernel.kernel
                    );
                    failed = true;
                }
            }
        }
    }
    for kernel in ["gemm", "gemm_large"] {
        failed |= !gemm_loads_16_bytes(kernel);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        println!("every kernel compiled for sm_80 and sm_90 without spills");
        ExitCode::SUCCESS
    }
}

/// Whether GEMM `kernel` reads global and shared memory 16 bytes at a time, as designed: its
/// PTX (sm_90) holds `ld.global…v4.f32` and `ld.shared.v4.f32` instructions.
fn gemm_loads_16_bytes(kernel: &str) -> bool {
    let Some(module) = MODULES.iter().find(|m| m.kernels.contains(&kernel)) else {
        eprintln!("FAILED: no {kernel} kernel");
        return false;
    };
    let ptx = match nvrtc::compile(module, 9, 0, Output::Ptx) {
        Ok(compiled) => String::from_utf8_lossy(&compiled.image).into_owned(),
        Err(err) => {
            eprintln!("{err}");
            return false;
        }
    };
    // The kernel's body: from its entry to the next entry (or the end).
    let entry = format!("{kernel}(");
    let body = ptx
        .split(".entry ")
        .find(|body| body.starts_with(&entry))
        .unwrap_or("");
    let count = |pattern: &str| {
        body.lines()
            .filter(|line| line.contains(pattern) && line.contains(".v4.f32"))
            .count()
    };
    let (global, shared) = (count("ld.global"), count("ld.shared"));
    println!("{kernel} PTX (sm_90): {global} 16-byte global loads, {shared} 16-byte shared loads");
    if global == 0 || shared == 0 {
        eprintln!("FAILED: {kernel} lost its 16-byte loads");
    }
    global > 0 && shared > 0
}
