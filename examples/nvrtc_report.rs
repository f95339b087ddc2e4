//! Compiles every kernel in `kernels/*.cu` with NVRTC for each architecture of
//! `nvrtc::CHECKED_ARCHITECTURES` (sm_75, a T4, to sm_120, an RTX 50-series) to cubin and prints
//! ptxas's report: registers, spills and shared memory per kernel; then counts the 16-byte copies
//! in the two FP32 GEMMs' PTX (global and shared). Exits non-zero on a compile error, on any spill,
//! or if a GEMM lost its vector copies. Needs only NVRTC (`pip install nvidia-cuda-nvrtc`, with its
//! `lib` directory on `LD_LIBRARY_PATH`), not a GPU.
//!
//! `cargo run --release --example nvrtc_report [-- --cubin-dir DIR] [--arch sm_XY]...`
//!
//! With `--cubin-dir`, also writes each module's cubin there (`gemm.sm_90.cubin`, …) for
//! reading the machine code: `cuobjdump -sass DIR/gemm.sm_90.cubin` (pip package
//! `nvidia-cuda-cuobjdump`). `--arch` (repeatable) compiles for those architectures only, such
//! as a GPU machine's own (the GPU check): 12 s for sm_90 on the 2-core VM, the whole list 45.
//!
//! Without NVRTC it says so and exits 0, unless `FERROGRAD_REQUIRE_NVRTC=1` (as CI sets).

mod closed_pipe;

use std::path::PathBuf;
use std::process::ExitCode;

use ferrograd::backend::cuda::kernels::MODULES;
use ferrograd::backend::cuda::nvrtc::{self, parse_ptxas_report, Output, CHECKED_ARCHITECTURES};

fn main() -> ExitCode {
    closed_pipe::end_quietly_when_the_reader_quits();
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
    let Options {
        cubin_dir,
        architectures,
    } = match options() {
        Ok(options) => options,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    println!("include paths: {:?}", nvrtc::include_paths());
    println!(
        "{:<8} {:<14} {:<28} {:>5} {:>8} {:>7} {:>6}",
        "arch", "file", "kernel", "regs", "smem", "spills", "stack"
    );
    let mut failed = false;
    for &(major, minor) in &architectures {
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
            if let Some(dir) = &cubin_dir {
                let stem = module.file.trim_end_matches(".cu");
                let path = dir.join(format!("{stem}.sm_{major}{minor}.cubin"));
                if let Err(err) = std::fs::write(&path, &compiled.image) {
                    eprintln!("cannot write {}: {err}", path.display());
                    failed = true;
                }
            }
            for kernel in parse_ptxas_report(&compiled.log) {
                let spills = kernel.spill_stores + kernel.spill_loads;
                println!(
                    "{:<8} {:<14} {:<28} {:>5} {:>8} {:>7} {:>6}",
                    format!("sm_{major}{minor}"),
                    module.file,
                    kernel.kernel,
                    kernel.registers,
                    kernel.shared_bytes,
                    spills,
                    kernel.stack_bytes
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
    // Both copy global memory to shared with 16-byte cp.async where the layout allows.
    for kernel in ["gemm", "gemm_large"] {
        failed |= !gemm_moves_16_bytes(kernel, "cp.async.cg.shared.global");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        let architectures: Vec<String> = architectures
            .iter()
            .map(|(major, minor)| format!("sm_{major}{minor}"))
            .collect();
        println!(
            "every kernel compiled for {} without spills",
            architectures.join(", ")
        );
        ExitCode::SUCCESS
    }
}

/// What the command line asks for.
struct Options {
    /// `--cubin-dir DIR`, created if missing.
    cubin_dir: Option<PathBuf>,
    /// Each `--arch sm_XY` as (X, Y); `CHECKED_ARCHITECTURES` where none is given.
    architectures: Vec<(u32, u32)>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        cubin_dir: None,
        architectures: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cubin-dir" => {
                let dir = PathBuf::from(args.next().ok_or("--cubin-dir needs a directory")?);
                std::fs::create_dir_all(&dir)
                    .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
                options.cubin_dir = Some(dir);
            }
            "--arch" => {
                let arch = args
                    .next()
                    .ok_or("--arch needs an architecture, such as sm_90")?;
                options.architectures.push(architecture(&arch)?);
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}: nvrtc_report [--cubin-dir DIR] [--arch sm_XY]..."
                ))
            }
        }
    }
    if options.architectures.is_empty() {
        options.architectures = CHECKED_ARCHITECTURES.to_vec();
    }
    Ok(options)
}

/// `sm_90` as (9, 0), `sm_120` as (12, 0): the last digit is the minor version.
fn architecture(text: &str) -> Result<(u32, u32), String> {
    let digits = text
        .strip_prefix("sm_")
        .filter(|digits| digits.len() >= 2 && digits.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            format!("--arch {text}: not an architecture such as sm_75, sm_90, sm_120")
        })?;
    let (major, minor) = digits.split_at(digits.len() - 1);
    let number = |text: &str| {
        text.parse::<u32>()
            .map_err(|err| format!("--arch {text}: {err}"))
    };
    Ok((number(major)?, number(minor)?))
}

/// Whether GEMM `kernel` moves global and shared memory 16 bytes at a time, as designed: its
/// PTX (sm_90) holds 16-byte `global_copy` instructions (`cp.async…, 16`) and
/// `ld.shared.v4.f32`.
fn gemm_moves_16_bytes(kernel: &str, global_copy: &str) -> bool {
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
    let sixteen_bytes = |line: &str| line.contains(".v4.f32") || line.contains(", 16,");
    let count = |pattern: &str| {
        body.lines()
            .filter(|line| line.contains(pattern) && sixteen_bytes(line))
            .count()
    };
    let (global, shared) = (count(global_copy), count("ld.shared"));
    println!("{kernel} PTX (sm_90): {global} 16-byte {global_copy}, {shared} 16-byte ld.shared");
    if global == 0 || shared == 0 {
        eprintln!("FAILED: {kernel} lost its 16-byte copies");
    }
    global > 0 && shared > 0
}
