//! The kernel sources, embedded at build time, and the kernels each one defines (collected by
//! `build.rs` from their `FG_KERNEL(name, Args)` lines).

/// One `kernels/*.cu` file.
#[derive(Debug)]
pub struct KernelModule {
    /// The file's name, such as `gemm.cu`.
    pub file: &'static str,
    /// Its text.
    pub source: &'static str,
    /// The kernels it defines, by name.
    pub kernels: &'static [&'static str],
}

include!(concat!(env!("OUT_DIR"), "/kernel_table.rs"));

impl KernelModule {
    /// The source NVRTC compiles: `kernels/common.cuh` followed by the file.
    pub fn full_source(&self) -> String {
        format!(
            "{COMMON_SOURCE}\n#line 1 \"{}\"\n{}",
            self.file, self.source
        )
    }
}
