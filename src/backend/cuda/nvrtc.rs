//! Compiling the kernels with NVRTC (loaded at run time, so nothing CUDA is needed to build):
//! to PTX for loading on a GPU, and to cubin with ptxas's resource report, which CI reads for
//! register counts and spills.

use std::ffi::{c_char, CStr, CString};

use cudarc::nvrtc::{result, sys};

use super::kernels::KernelModule;

/// The architectures every kernel is compiled for without a GPU, by `tests/nvrtc.rs` and the
/// `nvrtc_report` example (and so in CI), to check that ptxas accepts them without spills:
/// sm_75 (Turing: T4, RTX 20-series; the oldest NVRTC 13 compiles for), sm_80 (A100),
/// sm_86 (RTX 30-series, A10, A40), sm_89 (RTX 40-series, L4, L40S), sm_90 (H100, H200) and
/// sm_120 (RTX 50-series). A GPU compiles the kernels for its own at run time.
pub const CHECKED_ARCHITECTURES: [(u32, u32); 6] =
    [(7, 5), (8, 0), (8, 6), (8, 9), (9, 0), (12, 0)];

/// The environment variable naming CUDA's include directory (for `cuda_fp16.h` and friends).
pub const INCLUDE_ENV: &str = "FERROGRAD_CUDA_INCLUDE";

/// NVRTC's version, `major.minor`.
pub fn version() -> Result<String, String> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: both are valid out-pointers; the call only writes them.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|err| format!("{err:?}"))?;
    Ok(format!("{major}.{minor}"))
}

/// Whether `libnvrtc` can be loaded (probing never panics, unlike a first call would).
pub fn is_available() -> bool {
    // SAFETY: only tries to open the library by its candidate names.
    unsafe { sys::is_culib_present() }
}

/// NVRTC's `-I` directories: `$FERROGRAD_CUDA_INCLUDE` if set, else `/usr/local/cuda/include`
/// where it exists. NVRTC does not find CUDA's headers by itself.
pub fn include_paths() -> Vec<String> {
    match std::env::var(INCLUDE_ENV) {
        Ok(dir) if !dir.is_empty() => vec![dir],
        _ => ["/usr/local/cuda/include"]
            .into_iter()
            .filter(|dir| std::path::Path::new(dir).is_dir())
            .map(String::from)
            .collect(),
    }
}

/// The environment variable holding macro definitions for the kernels, for tuning sweeps
/// (`FERROGRAD_KERNEL_DEFINES="-DGEMM_STAGES=3"`): the kernels' compile-time parameters that
/// `#ifndef` guards (kernels/README.md), tried on a GPU without rebuilding. The emulator and
/// the tests use the defaults.
pub const DEFINES_ENV: &str = "FERROGRAD_KERNEL_DEFINES";

/// The macro definitions in `$FERROGRAD_KERNEL_DEFINES` (see [`parse_kernel_defines`]).
pub fn kernel_defines() -> Result<Vec<String>, String> {
    parse_kernel_defines(&std::env::var(DEFINES_ENV).unwrap_or_default())
}

/// The `-DNAME` / `-DNAME=VALUE` options in `defines` (whitespace-separated); anything else
/// there is an error, not silently passed to the compiler.
pub fn parse_kernel_defines(defines: &str) -> Result<Vec<String>, String> {
    defines
        .split_whitespace()
        .map(|option| match option.strip_prefix("-D") {
            Some(definition) if !definition.is_empty() => Ok(option.to_string()),
            _ => Err(format!(
                "{DEFINES_ENV}: {option:?} is not a macro definition (-DNAME or -DNAME=VALUE)"
            )),
        })
        .collect()
}

/// What NVRTC produced: the image (PTX text or cubin) and the compiler's log.
#[derive(Debug)]
pub struct Compiled {
    /// PTX text or a cubin, as asked for.
    pub image: Vec<u8>,
    /// NVRTC's log (warnings; with a ptxas report asked for, the report).
    pub log: String,
}

/// The output NVRTC is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// PTX for the virtual architecture `compute_XY` (the driver JIT-compiles it).
    Ptx,
    /// A cubin for the real architecture `sm_XY`; with `report`, ptxas's `-v` resource
    /// report is in the log.
    Cubin {
        /// Whether the log holds ptxas's resource report.
        report: bool,
    },
}

/// Compiles `module` for compute capability `major.minor`, with the macro definitions of
/// `$FERROGRAD_KERNEL_DEFINES`. An error carries the file name and NVRTC's log.
pub fn compile(
    module: &KernelModule,
    major: u32,
    minor: u32,
    output: Output,
) -> Result<Compiled, String> {
    compile_with_defines(module, major, minor, output, &kernel_defines()?)
}

/// [`compile`] with the macro definitions `defines` (`-DNAME=VALUE`) instead of the
/// environment's.
pub fn compile_with_defines(
    module: &KernelModule,
    major: u32,
    minor: u32,
    output: Output,
    defines: &[String],
) -> Result<Compiled, String> {
    // One compile at a time. On the H200 machine's NVRTC (CUDA 13.0), a module compiled while
    // other threads compiled came back with an empty ptxas report (2026-11-28); compiles are
    // rare (once per module and process), so nothing is lost by taking turns.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let source =
        CString::new(module.full_source()).map_err(|_| format!("{}: contains NUL", module.file))?;
    let name = CString::new(module.file).expect("file names have no NUL");
    let mut options = vec!["--std=c++17".to_string()];
    options.extend(defines.iter().cloned());
    options.extend(
        include_paths()
            .into_iter()
            .map(|dir| format!("--include-path={dir}")),
    );
    match output {
        Output::Ptx => options.push(format!("--gpu-architecture=compute_{major}{minor}")),
        Output::Cubin { report } => {
            options.push(format!("--gpu-architecture=sm_{major}{minor}"));
            if report {
                options.push("--ptxas-options=-v".to_string());
            }
        }
    }
    let program = result::create_program(&source, Some(&name)).map_err(|err| {
        format!(
            "kernels/{}: NVRTC could not create the program: {err:?}",
            module.file
        )
    })?;
    // SAFETY: `program` was just created and is destroyed exactly once, below; `source` and
    // `name` outlive it.
    let compiled = unsafe {
        let status = result::compile_program(program, &options);
        let log = program_log(program);
        let image = status
            .map_err(|err| {
                format!(
                    "kernels/{} failed to compile ({err:?}):\n{log}",
                    module.file
                )
            })
            .and_then(|()| match output {
                Output::Ptx => result::get_ptx(program)
                    .map(|ptx| {
                        ptx.into_iter()
                            .map(|c| c.to_ne_bytes()[0]) // c_char: i8 or u8, by target
                            .take_while(|&b| b != 0)
                            .collect()
                    })
                    .map_err(|err| format!("kernels/{}: no PTX: {err:?}", module.file)),
                Output::Cubin { .. } => cubin(program)
                    .map_err(|err| format!("kernels/{}: no cubin: {err}", module.file)),
            });
        let _ = result::destroy_program(program);
        image.map(|image| Compiled { image, log })
    };
    compiled
}

/// # Safety
/// `program` must be a live NVRTC program.
unsafe fn program_log(program: sys::nvrtcProgram) -> String {
    // SAFETY: the caller guarantees `program` is live.
    match unsafe { result::get_program_log(program) } {
        Ok(raw) => {
            // The log ends at its NUL (which NVRTC counts in its size), read without `unsafe`.
            let bytes: &[u8] = bytemuck::cast_slice(&raw);
            let text = CStr::from_bytes_until_nul(bytes).map_or(bytes, CStr::to_bytes);
            String::from_utf8_lossy(text).into_owned()
        }
        Err(err) => format!("(no log: {err:?})"),
    }
}

/// # Safety
/// `program` must be a live NVRTC program compiled for a real architecture.
unsafe fn cubin(program: sys::nvrtcProgram) -> Result<Vec<u8>, String> {
    let mut size = 0usize;
    // SAFETY: the caller guarantees `program` is live; `size` is a valid out-pointer.
    unsafe { sys::nvrtcGetCUBINSize(program, &mut size) }
        .result()
        .map_err(|err| format!("{err:?}"))?;
    let mut image = vec![0u8; size];
    // SAFETY: `image` has the `size` bytes NVRTC asked for.
    unsafe { sys::nvrtcGetCUBIN(program, image.as_mut_ptr() as *mut c_char) }
        .result()
        .map_err(|err| format!("{err:?}"))?;
    Ok(image)
}

/// One kernel's resources, from ptxas's `-v` report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelResources {
    /// The kernel's name.
    pub kernel: String,
    /// Registers per thread.
    pub registers: u32,
    /// Local memory for arrays the code indexes at run time (or too big for registers): each
    /// use a round trip through the L1 cache instead of a register read.
    pub stack_bytes: u32,
    /// Bytes stored to local memory because the registers ran out: a CI failure.
    pub spill_stores: u32,
    /// Bytes of those spills loaded back.
    pub spill_loads: u32,
    /// Static shared memory per block, in bytes.
    pub shared_bytes: u32,
}

/// Reads ptxas's report out of an NVRTC log:
///
/// ```text
/// ptxas info    : Compiling entry function 'gemm' for 'sm_90'
/// ptxas info    : Function properties for gemm
///     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
/// ptxas info    : Used 40 registers, used 1 barriers, 8192 bytes smem, 432 bytes cmem[0]
/// ```
pub fn parse_ptxas_report(log: &str) -> Vec<KernelResources> {
    let number_before = |line: &str, unit: &str| -> Option<u32> {
        let end = line.find(unit)?;
        line[..end]
            .split([' ', ','])
            .rev()
            .find(|w| !w.is_empty())?
            .parse()
            .ok()
    };
    let mut kernels: Vec<KernelResources> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let kernel = rest.split('\'').next().unwrap_or("").to_string();
            kernels.push(KernelResources {
                kernel,
                ..KernelResources::default()
            });
        } else if let Some(current) = kernels.last_mut() {
            if line.contains("bytes stack frame") {
                current.stack_bytes = number_before(line, " bytes stack frame").unwrap_or(0);
            }
            if line.contains("spill stores") {
                current.spill_stores = number_before(line, " bytes spill stores").unwrap_or(0);
                current.spill_loads = number_before(line, " bytes spill loads").unwrap_or(0);
            }
            if line.contains("Used ") {
                current.registers = number_before(line, " registers").unwrap_or(0);
                current.shared_bytes = number_before(line, " bytes smem").unwrap_or(0);
            }
        }
    }
    kernels
}
