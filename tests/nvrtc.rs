//! Every kernel file compiles under NVRTC: to PTX, and to cubin for every architecture of
//! `CHECKED_ARCHITECTURES` (sm_75 to sm_120) without register spills, and with the blocks its
//! `__launch_bounds__` promise fitting an SM's shared memory; a broken kernel's error names its
//! file and carries NVRTC's log; compiled kernels are cached on disk.
//!
//! Needs libnvrtc (see README). Without it these tests skip with a message, unless
//! `FERROGRAD_REQUIRE_NVRTC=1`, as CI sets, makes its absence a failure.

use ferrograd::backend::cuda::kernel_cache::{self, Source};
use ferrograd::backend::cuda::kernels::{KernelModule, MODULES, SWEEP_VARIANTS};
use ferrograd::backend::cuda::nvrtc::{self, parse_ptxas_report, Output, CHECKED_ARCHITECTURES};

fn nvrtc_present() -> bool {
    if nvrtc::is_available() {
        return true;
    }
    assert!(
        std::env::var("FERROGRAD_REQUIRE_NVRTC").map_or(true, |v| v != "1"),
        "FERROGRAD_REQUIRE_NVRTC=1 but libnvrtc cannot be loaded (is it on LD_LIBRARY_PATH?)"
    );
    eprintln!("skipped: libnvrtc not found");
    false
}

#[test]
fn every_module_compiles_to_ptx_and_spill_free_cubins() {
    if !nvrtc_present() {
        return;
    }
    for module in MODULES {
        let ptx = nvrtc::compile(module, 9, 0, Output::Ptx).unwrap();
        let text = String::from_utf8(ptx.image).unwrap();
        for kernel in module.kernels {
            assert!(
                text.contains(&format!(".entry {kernel}(")),
                "{}: no entry {kernel}",
                module.file
            );
        }
        // Every kernel waits for the one before it first (programmatic dependent launch, an
        // sm_90 instruction that sm_80 code goes without).
        let entries = text.matches(".entry ").count();
        assert_eq!(
            text.matches("griddepcontrol.wait").count(),
            entries,
            "{}",
            module.file
        );
        let sm80 = nvrtc::compile(module, 8, 0, Output::Ptx).unwrap();
        let sm80 = String::from_utf8(sm80.image).unwrap();
        assert!(!sm80.contains("griddepcontrol"), "{}", module.file);
        // Turing (sm_75: a T4, an RTX 20-series) has neither cp.async nor TF32 tensor cores,
        // and ptxas refuses their instructions there: its cubin compiles only if the copies
        // are plain loads and stores and the TF32 kernels, which the host does not launch
        // there, hold no tensor-core instruction.
        for (major, minor) in CHECKED_ARCHITECTURES {
            let cubin =
                nvrtc::compile(module, major, minor, Output::Cubin { report: true }).unwrap();
            assert_eq!(&cubin.image[..4], b"\x7fELF", "a cubin is an ELF file");
            let report = parse_ptxas_report(&cubin.log);
            let mut reported: Vec<&str> = report.iter().map(|k| k.kernel.as_str()).collect();
            reported.sort_unstable();
            let mut expected = module.kernels.to_vec();
            expected.sort_unstable();
            assert_eq!(
                reported, expected,
                "{}: ptxas reported other kernels",
                module.file
            );
            for kernel in &report {
                assert!(kernel.registers > 0, "{kernel:?}");
                assert_eq!(
                    kernel.spill_stores + kernel.spill_loads,
                    0,
                    "sm_{major}{minor}: {kernel:?}"
                );
                // The GEMMs and the GEMV keep their results in registers to the stores (no
                // array indexed at run time: no local memory on the way out of a block).
                if kernel.kernel.starts_with("gem") {
                    assert_eq!(kernel.stack_bytes, 0, "sm_{major}{minor}: {kernel:?}");
                }
            }
            // ptxas keeps a kernel's registers within its __launch_bounds__(threads, blocks),
            // but not its shared memory: check that the blocks promised fit an SM there.
            let (shared_per_sm, reserved_per_block, threads_per_sm) = sm_limits(major, minor);
            for (name, threads, blocks) in launch_bounds(module) {
                let kernel = report.iter().find(|k| k.kernel == name).unwrap();
                let shared = blocks * (kernel.shared_bytes + reserved_per_block);
                assert!(
                    shared <= shared_per_sm && blocks * threads <= threads_per_sm,
                    "sm_{major}{minor}: the {blocks} blocks of {name} an SM holds by its \
                     __launch_bounds__ do not fit its {shared_per_sm} bytes of shared memory \
                     and {threads_per_sm} threads ({} bytes a block, {reserved_per_block} more \
                     reserved; {threads} threads)",
                    kernel.shared_bytes
                );
            }
        }
    }
    let bounded = launch_bounds(MODULES.iter().find(|m| m.file == "gemm.cu").unwrap());
    let names: Vec<&str> = bounded.iter().map(|(name, ..)| *name).collect();
    assert_eq!(names, ["gemm", "gemm_pair", "gemm_large"]);
}

/// Each kernel of `module` that declares `__launch_bounds__(threads, blocks per SM)` (in its
/// `FG_KERNEL` line), with those numbers (blocks 1 where it gives only threads). A bound that
/// is no number (a macro, say) fails here rather than go unchecked.
fn launch_bounds(module: &KernelModule) -> Vec<(&str, u32, u32)> {
    let number = |text: &str| -> u32 {
        let text = text.trim();
        let parsed = text.parse();
        parsed
            .unwrap_or_else(|_| panic!("{}: __launch_bounds__ {text:?} is no number", module.file))
    };
    module
        .source
        .lines()
        .filter_map(|line| {
            let declared = line.strip_prefix("FG_KERNEL(")?;
            let name = declared.split(',').next()?.trim();
            let bounds = declared
                .split("__launch_bounds__(")
                .nth(1)?
                .split(')')
                .next()?;
            let mut numbers = bounds.split(',');
            let threads = number(numbers.next()?);
            let blocks = numbers.next().map_or(1, number);
            Some((name, threads, blocks))
        })
        .collect()
}

/// An SM's shared memory, the part of it the driver reserves for each block, and its most
/// resident threads, in the architectures we compile for (CUDA C++ Programming Guide,
/// "Technical Specifications per Compute Capability"): Turing has 64 KiB, the A100 164, the
/// consumer GPUs since Ampere 100, the H100 228.
fn sm_limits(major: u32, minor: u32) -> (u32, u32, u32) {
    match (major, minor) {
        (7, 5) => (64 * 1024, 0, 1024),
        (8, 0) => (164 * 1024, 1024, 2048),
        (8, 6) | (8, 9) | (12, 0) => (100 * 1024, 1024, 1536),
        (9, 0) => (228 * 1024, 1024, 2048),
        _ => unreachable!("sm_{major}{minor}: no limits written down for it here"),
    }
}

#[test]
fn a_compile_error_names_the_file_and_shows_the_log() {
    if !nvrtc_present() {
        return;
    }
    let broken = KernelModule {
        file: "broken.cu",
        source: "FG_KERNEL(broken, UnaryArgs) { args.y[0] = no_such_function(args.x[0]); }\n",
        kernels: &["broken"],
    };
    let err = nvrtc::compile(&broken, 9, 0, Output::Ptx).unwrap_err();
    assert!(
        err.starts_with("kernels/broken.cu failed to compile"),
        "{err}"
    );
    assert!(
        err.contains("no_such_function") && err.contains("broken.cu(1)"),
        "{err}"
    );
}

#[test]
fn the_ptxas_report_parser_reads_each_kernel() {
    let log = "ptxas info    : 0 bytes gmem\n\
        ptxas info    : Compiling entry function 'gemm' for 'sm_90'\n\
        ptxas info    : Function properties for gemm\n\
        \x20   24 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads\n\
        ptxas info    : Used 80 registers, used 1 barriers, 8192 bytes smem, 432 bytes cmem[0]\n\
        ptxas info    : Compiling entry function 'unary_relu' for 'sm_90'\n\
        ptxas info    : Used 14 registers, 400 bytes cmem[0]\n";
    let report = parse_ptxas_report(log);
    assert_eq!(report.len(), 2);
    assert_eq!(
        (
            report[0].kernel.as_str(),
            report[0].registers,
            report[0].stack_bytes,
            report[0].spill_stores,
            report[0].spill_loads,
            report[0].shared_bytes
        ),
        ("gemm", 80, 24, 8, 12, 8192)
    );
    assert_eq!(
        (
            report[1].kernel.as_str(),
            report[1].registers,
            report[1].shared_bytes
        ),
        ("unary_relu", 14, 0)
    );
}

/// The GEMMs' pipeline depths (and gemm_large's slice depth) are compile-time parameters a
/// tuning sweep may set (`FERROGRAD_KERNEL_DEFINES`): every allowed setting compiles without
/// spills and with the shared memory it implies; one out of range is refused by the kernel
/// itself; and the variable takes macro definitions only.
#[test]
fn the_pipeline_depth_can_be_set_at_compile_time() {
    assert_eq!(
        nvrtc::parse_kernel_defines(" -DGEMM_STAGES=3  -DFOO ").unwrap(),
        ["-DGEMM_STAGES=3", "-DFOO"]
    );
    assert!(nvrtc::parse_kernel_defines("-O3").is_err());
    assert!(nvrtc::parse_kernel_defines("-D").is_err());
    if !nvrtc_present() {
        return;
    }
    let gemm = MODULES.iter().find(|m| m.file == "gemm.cu").unwrap();
    // Each setting of gemm's pipeline beside one of gemm_large's slice and pipeline depths:
    // one compile checks both kernels (each depends on its own parameters only), half the
    // compiles of gemm.cu, each several seconds.
    let large_settings = [(8, 2), (8, 4), (8, 6), (16, 3)];
    for (stages, (large_depth, large_stages)) in (2..=5).zip(large_settings) {
        let defines = [
            format!("-DGEMM_STAGES={stages}"),
            format!("-DLARGE_BK={large_depth}"),
            format!("-DLARGE_STAGES={large_stages}"),
        ];
        let cubin =
            nvrtc::compile_with_defines(gemm, 9, 0, Output::Cubin { report: true }, &defines)
                .unwrap();
        let report = parse_ptxas_report(&cubin.log);
        let gemm_kernel = report.iter().find(|k| k.kernel == "gemm").unwrap();
        assert_eq!(gemm_kernel.spill_stores + gemm_kernel.spill_loads, 0);
        assert_eq!(gemm_kernel.stack_bytes, 0);
        // Two 16 × 64 float tiles per stage in rows padded to 72 floats (GEMM_ROW_PAD), and
        // split-K's flag (4 bytes, aligned to 16).
        let tiles = stages * 2 * 16 * 72 * 4;
        assert!(
            (tiles + 4..=tiles + 16).contains(&gemm_kernel.shared_bytes),
            "{stages} stages: {} bytes",
            gemm_kernel.shared_bytes
        );
        let large = report.iter().find(|k| k.kernel == "gemm_large").unwrap();
        assert_eq!(large.spill_stores + large.spill_loads, 0, "{defines:?}");
        assert_eq!(large.stack_bytes, 0, "{defines:?}");
        assert_eq!(
            large.shared_bytes,
            large_stages * 2 * large_depth * 128 * 4,
            "{defines:?}"
        );
    }
    let too_deep = ["-DGEMM_STAGES=6".to_string()];
    let err = nvrtc::compile_with_defines(gemm, 9, 0, Output::Ptx, &too_deep).unwrap_err();
    assert!(err.contains("GEMM_STAGES is 2 to 5"), "{err}");
    let too_much = ["-DLARGE_BK=16".to_string(), "-DLARGE_STAGES=4".to_string()];
    let err = nvrtc::compile_with_defines(gemm, 9, 0, Output::Ptx, &too_much).unwrap_err();
    assert!(err.contains("LARGE_BK is 8 or 16"), "{err}");
    let odd_pad = ["-DGEMM_ROW_PAD=4".to_string()];
    let err = nvrtc::compile_with_defines(gemm, 9, 0, Output::Ptx, &odd_pad).unwrap_err();
    assert!(err.contains("GEMM_ROW_PAD is 0 or 8"), "{err}");
}

/// Every variant the GPU benchmark sweeps (`kernels/sweep.txt`) compiles for sm_90 with no
/// kernel of gemm.cu spilling or keeping a stack: a sweep must time the kernels as they would
/// run as defaults, not ones slowed by local memory. (tests/kernel_variants.rs checks their
/// bits on the emulator.)
#[test]
fn every_swept_variant_compiles_without_spills() {
    if !nvrtc_present() {
        return;
    }
    let gemm = MODULES.iter().find(|m| m.file == "gemm.cu").unwrap();
    for variant in SWEEP_VARIANTS {
        let defines = nvrtc::parse_kernel_defines(variant).unwrap();
        let cubin =
            nvrtc::compile_with_defines(gemm, 9, 0, Output::Cubin { report: true }, &defines)
                .unwrap();
        let report = parse_ptxas_report(&cubin.log);
        assert_eq!(report.len(), gemm.kernels.len(), "{variant}: {report:?}");
        for kernel in &report {
            assert_eq!(
                (kernel.spill_stores, kernel.spill_loads, kernel.stack_bytes),
                (0, 0, 0),
                "{variant}: {}",
                kernel.kernel
            );
        }
    }
}

/// Compiled kernels kept on disk (`kernel_cache`): the first use compiles and stores, the next
/// reads back the same bytes; each architecture has its own entry; a damaged entry (cut short,
/// or a byte of its cubin changed) is compiled afresh and replaced; a cache that cannot be
/// written still gives the cubin.
#[test]
fn compiled_kernels_are_cached_on_disk() {
    if !nvrtc_present() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ferrograd-kernel-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let module = MODULES.iter().find(|m| m.file == "random.cu").unwrap();
    let use_cache = |major| kernel_cache::cubin(Some(&dir), module, major, 0).unwrap();
    let (compiled, source) = use_cache(9);
    assert_eq!(source, Source::Compiled);
    assert_eq!(&compiled[..4], b"\x7fELF");
    let (cached, source) = use_cache(9);
    assert!(cached == compiled && source == Source::Cache, "{source:?}");
    assert_eq!(
        use_cache(8).1,
        Source::Compiled,
        "sm_80: an entry of its own"
    );
    assert_eq!(use_cache(8).1, Source::Cache);
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let damages: [fn(&mut Vec<u8>); 2] = [
        |bytes| bytes.truncate(bytes.len() - 100), // cut short, past the key
        |bytes| *bytes.last_mut().unwrap() ^= 1,   // the cubin's last byte changed
    ];
    for damage in damages {
        for entry in &entries {
            let mut bytes = std::fs::read(entry).unwrap();
            damage(&mut bytes);
            std::fs::write(entry, &bytes).unwrap();
        }
        let (again, source) = use_cache(9);
        assert!(
            again == compiled && source == Source::Compiled,
            "{source:?}"
        );
        assert_eq!(use_cache(9).1, Source::Cache, "replaced");
    }
    // A file where the directory should be: nothing can be stored, the cubin still comes.
    let blocked = dir.join("blocked");
    std::fs::write(&blocked, b"not a directory").unwrap();
    let (cubin, source) = kernel_cache::cubin(Some(&blocked), module, 9, 0).unwrap();
    assert!(
        cubin == compiled && source == Source::Compiled,
        "{source:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
