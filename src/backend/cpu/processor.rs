//! What the CPU backend runs on, for a benchmark's report: the processor's name and the
//! matrix product's microkernel. A figure means little without them (`gan_bench` prints both
//! in its first line, as it prints a GPU's name).

use super::microkernel::Microkernel;

/// The processor's model name, e.g. "Intel(R) Xeon(R) Processor": on x86-64 the brand string
/// the processor itself reports (CPUID), on any system; elsewhere macOS's
/// `machdep.cpu.brand_string` ("Apple M2") or Linux's `model name` in `/proc/cpuinfo`. `None`
/// where none is reported (Linux on ARM lists part numbers instead).
pub fn processor_name() -> Option<String> {
    brand_string().or_else(system_model_name)
}

/// CPUID's answer for `leaf` and `sub_leaf`.
// The intrinsic is a safe function in the Rust of CI (1.95), an unsafe one in the oldest Rust
// the crate supports (1.89, Cargo.toml's rust-version): the block is needed there only.
#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)]
pub(super) fn cpuid(leaf: u32, sub_leaf: u32) -> std::arch::x86_64::CpuidResult {
    // SAFETY: every x86-64 processor has the CPUID instruction.
    unsafe { std::arch::x86_64::__cpuid_count(leaf, sub_leaf) }
}

/// The processor brand string: 48 bytes of ASCII in CPUID leaves 0x8000_0002 to 0x8000_0004
/// (16 a leaf, in EAX, EBX, ECX, EDX), NUL-padded; where Linux's `model name` comes from.
#[cfg(target_arch = "x86_64")]
fn brand_string() -> Option<String> {
    const FIRST_LEAF: u32 = 0x8000_0002;
    const LAST_LEAF: u32 = 0x8000_0004;
    // Leaf 0x8000_0000 says which extended leaves the processor has.
    if cpuid(0x8000_0000, 0).eax < LAST_LEAF {
        return None;
    }
    let bytes: Vec<u8> = (FIRST_LEAF..=LAST_LEAF)
        .map(|leaf| cpuid(leaf, 0))
        .flat_map(|r| [r.eax, r.ebx, r.ecx, r.edx])
        .flat_map(u32::to_le_bytes)
        .collect();
    trimmed_name(&bytes)
}

#[cfg(not(target_arch = "x86_64"))]
fn brand_string() -> Option<String> {
    None
}

#[cfg(target_os = "macos")]
fn system_model_name() -> Option<String> {
    trimmed_name(super::sysctl::string(c"machdep.cpu.brand_string")?.as_bytes())
}

#[cfg(not(target_os = "macos"))]
fn system_model_name() -> Option<String> {
    model_name(&std::fs::read_to_string("/proc/cpuinfo").ok()?)
}

/// A name's bytes up to its first NUL, without the spaces around it (older Intel brand strings
/// are right-aligned); `None` if nothing is left or it is not UTF-8.
fn trimmed_name(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let name = std::str::from_utf8(&bytes[..end]).ok()?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// The first `model name` of a `/proc/cpuinfo` text.
#[cfg(any(not(target_os = "macos"), test))]
fn model_name(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == "model name")
        .map(|(_, name)| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

/// The processor and the microkernel the GEMM runs on it, in one line:
/// `Intel(R) Xeon(R) Processor, GEMM microkernel avx512 (8 × 32)`.
pub fn describe_processor() -> String {
    let kernel = Microkernel::selected();
    let kernel = format!(
        "GEMM microkernel {} ({} × {})",
        kernel.name(),
        kernel.mr(),
        kernel.nr()
    );
    match processor_name() {
        Some(name) => format!("{name}, {kernel}"),
        None => kernel,
    }
}

#[cfg(test)]
mod tests {
    use super::{model_name, trimmed_name};

    #[test]
    fn a_name_ends_at_its_first_nul_without_the_spaces_around_it() {
        let mut brand = *b"      Intel(R) Xeon(R) CPU E5-2680 0 @ 2.70GHz\0\0";
        assert_eq!(
            trimmed_name(&brand).as_deref(),
            Some("Intel(R) Xeon(R) CPU E5-2680 0 @ 2.70GHz")
        );
        brand.fill(0);
        assert_eq!(trimmed_name(&brand), None);
        assert_eq!(trimmed_name(b"   \0Apple"), None);
        assert_eq!(trimmed_name(b"Apple M2").as_deref(), Some("Apple M2"));
    }

    /// On Linux on x86-64, CPUID's brand string is what the kernel shows as `model name`.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn the_brand_string_is_linuxs_model_name() {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        assert_eq!(super::brand_string(), model_name(&cpuinfo));
        assert!(super::processor_name().is_some());
    }

    #[test]
    fn the_first_model_name_is_the_processor() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel\t\t: 207\n\
                       model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu\n\n\
                       processor\t: 1\nmodel name\t: another\n";
        assert_eq!(
            model_name(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        // ARM Linux: no model name, only parts.
        assert_eq!(model_name("processor\t: 0\nCPU part\t: 0xd0c\n"), None);
        assert_eq!(model_name("model name\t:   \n"), None);
    }
}
