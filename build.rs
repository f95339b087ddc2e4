//! Build script: turns `kernels/*.cu` into
//! 1. `kernel_table.rs` (in OUT_DIR): every kernel file's source, embedded, and the names of
//!    the kernels it defines, so that a kernel's name is written once, in its `FG_KERNEL(...)`;
//! 2. `libferrograd_emulator.a`: the same kernel files compiled by the host C++ compiler
//!    against `kernels/emulator/emulator.h`, the CPU emulation of the CUDA path, and `gemm.cu`
//!    again for each variant of its compile-time parameters that `kernels/sweep.txt` lists
//!    (the GPU benchmark's sweep), each registered under its definitions
//!    (`emulator::set_kernel_defines`), and once more as sm_75 compiles it
//!    ([`EMULATED_SM75`]). Built where it can be (see [`emulator_unsupported`]);
//!    and `libferrograd_emulator_traced.a`, the kernel files once more with every load and
//!    store reported to the emulator, which counts their shared-memory bank conflicts
//!    ([`build_traced_kernels`]);
//!    elsewhere, or without a C++17 compiler, the crate builds without it: a warning, and
//!    `Device::cuda_emulator()` says why it is missing. `FERROGRAD_REQUIRE_EMULATOR=1` (CI)
//!    makes a missing emulator a build error.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// The definitions that compile `gemm.cu` for the emulator as for a Turing GPU (sm_75: no
/// `cp.async`, no TF32 tensor cores), which `CudaDevice::emulator_sm75` runs.
const EMULATED_SM75: &str = "-DFG_EMULATED_ARCH=750";

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let kernels = root.join("kernels");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", kernels.display());

    let mut files: Vec<PathBuf> = fs::read_dir(&kernels)
        .expect("kernels/ exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "cu"))
        .collect();
    files.sort();
    for path in files.iter().chain([&kernels.join("common.cuh")]) {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let sweep = sweep_variants(&kernels.join("sweep.txt"));
    write_kernel_table(&kernels, &files, &sweep, &out_dir);
    println!("cargo::rustc-check-cfg=cfg(ferrograd_emulator)");
    println!("cargo:rerun-if-env-changed=FERROGRAD_REQUIRE_EMULATOR");
    let built = match emulator_unsupported() {
        Some(reason) => Err(reason),
        None => build_emulator(&kernels, &files, &sweep, &out_dir),
    };
    match built {
        Ok(()) => println!("cargo:rustc-cfg=ferrograd_emulator"),
        Err(reason) => {
            // One line (a compiler's message may have many), as cargo's directives need.
            let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
            let required = std::env::var("FERROGRAD_REQUIRE_EMULATOR").is_ok_and(|v| v == "1");
            assert!(!required, "FERROGRAD_REQUIRE_EMULATOR=1, but {reason}");
            println!("cargo:warning=ferrograd is built without its CUDA emulator: {reason}");
            // What `Device::cuda_emulator()` tells whoever asks for it.
            println!("cargo:rustc-env=FERROGRAD_EMULATOR_MISSING={reason}");
        }
    }
}

/// Why the emulator cannot be built for the target, if it cannot (or is not to be): it keeps
/// the `__shared__` variables of the block it runs in a named ELF section, found through the
/// linker's `__start_`/`__stop_` symbols, and runs a block's threads as `ucontext` fibers —
/// glibc on Linux. (Mach-O names sections differently, Windows has no `ucontext`, musl no
/// `swapcontext`.)
fn emulator_unsupported() -> Option<String> {
    // To build and test here what a machine without the emulator gets (CI checks it compiles).
    println!("cargo:rerun-if-env-changed=FERROGRAD_SKIP_EMULATOR");
    if std::env::var("FERROGRAD_SKIP_EMULATOR").is_ok_and(|v| v == "1") {
        return Some("FERROGRAD_SKIP_EMULATOR=1 leaves it out".into());
    }
    let target = |key| std::env::var(key).unwrap_or_default();
    let (os, env) = (
        target("CARGO_CFG_TARGET_OS"),
        target("CARGO_CFG_TARGET_ENV"),
    );
    (os != "linux" || env != "gnu")
        .then(|| format!("it runs on Linux with glibc only (this target: os {os:?}, env {env:?})"))
}

/// The variants of `kernels/sweep.txt`: each line that is not blank or a comment, its
/// definitions (`-DNAME` or `-DNAME=VALUE`) separated by spaces.
fn sweep_variants(path: &Path) -> Vec<String> {
    println!("cargo:rerun-if-changed={}", path.display());
    let text = fs::read_to_string(path).expect("kernels/sweep.txt exists");
    let variants: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for definition in variants.iter().flat_map(|variant| variant.split(' ')) {
        macro_definition(definition); // asserts it is one
    }
    variants
}

/// `-DNAME=VALUE` as (NAME, VALUE), `-DNAME` as (NAME, "").
fn macro_definition(definition: &str) -> (&str, &str) {
    let body = definition.strip_prefix("-D").unwrap_or("");
    let (name, value) = body.split_once('=').unwrap_or((body, ""));
    assert!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "kernels/sweep.txt: {definition:?} is not -DNAME or -DNAME=VALUE"
    );
    (name, value)
}

/// The names declared by `FG_KERNEL(name, Args)` at the start of a line.
fn kernel_names(path: &Path, source: &str) -> Vec<String> {
    source
        .lines()
        .filter_map(|line| line.strip_prefix("FG_KERNEL("))
        .map(|rest| {
            let name = rest.split(',').next().unwrap_or("").trim();
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{}: malformed FG_KERNEL name {name:?}",
                path.display()
            );
            name.to_string()
        })
        .collect()
}

fn write_kernel_table(kernels: &Path, files: &[PathBuf], sweep: &[String], out_dir: &Path) {
    let mut table = String::new();
    let common = kernels.join("common.cuh");
    writeln!(
        table,
        "/// `common.cuh`, which every kernel file includes.\n\
         pub const COMMON_SOURCE: &str = include_str!({:?});",
        common.display()
    )
    .unwrap();
    writeln!(table, "/// Every `kernels/*.cu` file.").unwrap();
    writeln!(table, "pub const MODULES: &[KernelModule] = &[").unwrap();
    let mut seen = Vec::new();
    for path in files {
        let source = fs::read_to_string(path).unwrap();
        let names = kernel_names(path, &source);
        for name in &names {
            assert!(
                !seen.contains(name),
                "kernel {name} is defined twice ({})",
                path.display()
            );
            seen.push(name.clone());
        }
        writeln!(
            table,
            "    KernelModule {{ file: {:?}, source: include_str!({:?}), kernels: &{:?} }},",
            path.file_name().unwrap().to_string_lossy(),
            path.display(),
            names
        )
        .unwrap();
    }
    writeln!(table, "];").unwrap();
    writeln!(
        table,
        "/// The compile-time variants of `kernels/sweep.txt`, one line each.\n\
         pub const SWEEP_VARIANTS: &[&str] = &{sweep:?};\n\
         /// The definitions of the emulator's `gemm.cu` as compiled for sm_75 (build.rs).\n\
         pub const EMULATED_SM75_DEFINES: &str = {EMULATED_SM75:?};"
    )
    .unwrap();
    fs::write(out_dir.join("kernel_table.rs"), table).unwrap();
}

/// Compiles the emulator, or says why it could not (no C++17 compiler, most likely).
fn build_emulator(
    kernels: &Path,
    files: &[PathBuf],
    sweep: &[String],
    out_dir: &Path,
) -> Result<(), String> {
    // One translation unit: the kernels' start-up registrars must be linked with the launcher.
    let mut unit = String::new();
    let emulator = kernels.join("emulator");
    writeln!(
        unit,
        "#define TRACE_SHARED_MEMORY_VARIANT {TRACE_SHARED_MEMORY:?}"
    )
    .unwrap();
    for header in [emulator.join("emulator.h"), kernels.join("common.cuh")] {
        writeln!(unit, "#include {:?}", header.display()).unwrap();
    }
    for path in files {
        writeln!(unit, "#include {:?}", path.display()).unwrap();
    }
    for part in [
        "layout.cpp",
        "checks.cpp",
        "shared_trace.cpp",
        "runtime.cpp",
    ] {
        writeln!(unit, "#include {:?}", emulator.join(part).display()).unwrap();
    }
    println!("cargo:rerun-if-changed={}", emulator.display());
    let unit_path = out_dir.join("emulator_unit.cpp");
    fs::write(&unit_path, unit).unwrap();
    let mut build = cc::Build::new();
    build.file(&unit_path);
    // Each sweep variant of gemm.cu, and gemm.cu as sm_75 compiles it: a unit of its own, its
    // definitions first, its kernels registered under them (FG_EMULATOR_VARIANT), everything
    // in a namespace of its own, so that no inline function or template of one variant stands
    // in for another's at link time.
    let sm75 = EMULATED_SM75.to_string();
    for (n, variant) in sweep.iter().chain([&sm75]).enumerate() {
        let mut unit = String::new();
        writeln!(
            unit,
            "#define FG_SHARED_SECTION_NAME ferrograd_shared_variant_{n}"
        )
        .unwrap();
        writeln!(unit, "#define FG_EMULATOR_VARIANT {variant:?}").unwrap();
        for header in [emulator.join("emulator.h"), kernels.join("common.cuh")] {
            writeln!(unit, "#include {:?}", header.display()).unwrap();
        }
        for (name, value) in variant.split(' ').map(macro_definition) {
            writeln!(unit, "#define {name} {value}").unwrap();
        }
        writeln!(unit, "namespace ferrograd_sweep_variant_{n} {{").unwrap();
        writeln!(unit, "#include {:?}", kernels.join("gemm.cu").display()).unwrap();
        writeln!(unit, "}}").unwrap();
        let path = out_dir.join(format!("emulator_variant_{n}.cpp"));
        fs::write(&path, unit).unwrap();
        build.file(path);
    }
    // FERROGRAD_EMULATOR_ASAN set (scripts/emulator-asan.sh): the kernels compiled with
    // AddressSanitizer and UndefinedBehaviorSanitizer, so that a read or write past a buffer
    // (on a GPU an illegal address, which ends the process's CUDA context), a float4 access to
    // an address not a multiple of 16 (a GPU's misaligned address, as fatal) or an int
    // overflow in an index stops the emulated launch with a report.
    println!("cargo:rerun-if-env-changed=FERROGRAD_EMULATOR_ASAN");
    let asan = std::env::var_os("FERROGRAD_EMULATOR_ASAN").is_some();
    if asan {
        build
            .flag("-fsanitize=address,undefined")
            .flag("-fno-sanitize-recover=undefined")
            .flag("-fno-omit-frame-pointer");
        println!("cargo:rustc-link-lib=dylib=asan");
        println!("cargo:rustc-link-lib=dylib=ubsan");
    }
    build
        // The variants' objects hold only start-up registrars, which nothing names: linked
        // whole, or the linker would leave them out.
        .link_lib_modifier("+whole-archive")
        .cpp(true)
        .std("c++17")
        .opt_level(2)
        // `__fmul_rn(a, b)` is `a * b` here (emulator.h), and CUDA promises it is never fused
        // into an FMA; GCC fuses `a * b + c` wherever the target has FMAs (aarch64 always), so
        // it must not fuse at all, as on x86-64's baseline, which has none.
        .flag_if_supported("-ffp-contract=off")
        .warnings(false) // CUDA idioms (unused lambda parameters) are not host-compiler warnings
        .try_compile("ferrograd_emulator")
        .map_err(|err| format!("the C++17 compiler failed or is missing: {err}"))?;
    // ThreadSanitizer's instrumentation and AddressSanitizer's exclude each other.
    if !asan {
        build_traced_kernels(kernels, files, out_dir);
    }
    Ok(())
}

/// The variant the traced kernels are registered under, and the emulator's runtime looks them
/// up by (`TRACE_SHARED_MEMORY_VARIANT` in its unit: kernels/emulator/shared_trace.cpp).
const TRACE_SHARED_MEMORY: &str = "-DFG_TRACE_SHARED_MEMORY";

/// Compiles every kernel file, and the emulator's check kernels, once more into
/// `libferrograd_emulator_traced.a`, registered under [`TRACE_SHARED_MEMORY`], with GCC's
/// ThreadSanitizer instrumentation: a call to `__tsan_read4(address)` before each 4-byte
/// load, and so on. Not its runtime: the emulator's `shared_trace.cpp` defines those
/// functions, and records the accesses to shared memory to count bank conflicts as a GPU
/// meets them. Each `float4` load stays one 16-byte access (no scalar replacement of
/// aggregates, no vectorising), as the GPU's `LDS.128`. Where the compiler cannot, the
/// emulator runs without it (`CudaDevice::trace_shared_memory` says so), with a warning.
fn build_traced_kernels(kernels: &Path, files: &[PathBuf], out_dir: &Path) {
    let emulator = kernels.join("emulator");
    let mut unit = String::new();
    let name = TRACE_SHARED_MEMORY.trim_start_matches("-D");
    writeln!(unit, "#define {name} 1").unwrap();
    writeln!(unit, "#define FG_EMULATOR_VARIANT {TRACE_SHARED_MEMORY:?}").unwrap();
    writeln!(
        unit,
        "#define FG_SHARED_SECTION_NAME ferrograd_shared_traced"
    )
    .unwrap();
    writeln!(unit, "#include {:?}", emulator.join("emulator.h").display()).unwrap();
    // A namespace of its own, so that no inline function of these stands in for the
    // uninstrumented one at link time, or the other way round.
    writeln!(unit, "namespace ferrograd_traced {{").unwrap();
    for path in [kernels.join("common.cuh")]
        .iter()
        .chain(files)
        .chain([&emulator.join("checks.cpp")])
    {
        writeln!(unit, "#include {:?}", path.display()).unwrap();
    }
    writeln!(unit, "}}").unwrap();
    let unit_path = out_dir.join("emulator_traced.cpp");
    fs::write(&unit_path, unit).unwrap();
    let compiled = cc::Build::new()
        .file(&unit_path)
        .link_lib_modifier("+whole-archive")
        .cpp(true)
        .std("c++17")
        .opt_level(2)
        .flag("-fsanitize=thread")
        .flag_if_supported("-fno-tree-sra")
        .flag_if_supported("-fno-tree-vectorize")
        .flag_if_supported("-ffp-contract=off")
        .warnings(false)
        .try_compile("ferrograd_emulator_traced");
    if let Err(err) = compiled {
        let reason = err
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        println!("cargo:warning=the CUDA emulator cannot count bank conflicts: {reason}");
    }
}
