//! Compiles every kernel in `kernels/*.cu` with NVRTC for sm_80 (A100) and sm_90 (H100/H200)
//! to cubin and prints ptxas's report: registers, spills and shared memory per kernel. Exits
//! non-zero on a compile error or on any spill. Needs only NVRTC (`pip install
//! nvidia-cuda-nvrtc`, with its `lib` directory on `LD_LIBRARY_PATH`), not a GPU.
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
    if failed {
        ExitCode::FAILURE
    } else {
        println!("every kernel compiled for sm_80 and sm_90 without spills");
        ExitCode::SUCCESS
    }
}
