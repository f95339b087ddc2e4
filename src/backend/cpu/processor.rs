//! What the CPU backend runs on, for a benchmark's report: the processor's name and the
//! matrix product's microkernel. A figure means little without them (`gan_bench` prints both
//! in its first line, as it prints a GPU's name).

use super::microkernel::Microkernel;

/// The processor's model name, e.g. "Intel(R) Xeon(R) Processor": on x86-64 the brand string
/// the processor itself reports (CPUID), on any system; elsewhere macOS's
/// `machdep.cpu.brand_string` ("Apple M2") or Linux's `model name` in `/proc/cpuinfo`, and
/// where Linux on ARM lists only the core's implementer and part numbers, the core they name
/// ("Arm Neoverse V2") or the numbers themselves. `None` where none is reported.
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
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    model_name(&cpuinfo).or_else(|| arm_core_name(&cpuinfo))
}

/// A name's bytes up to its first NUL, without the spaces around it (older Intel brand strings
/// are right-aligned); `None` if nothing is left or it is not UTF-8.
#[cfg(any(target_arch = "x86_64", target_os = "macos", test))]
fn trimmed_name(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let name = std::str::from_utf8(&bytes[..end]).ok()?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// The first `model name` of a `/proc/cpuinfo` text.
#[cfg(any(not(target_os = "macos"), test))]
fn model_name(cpuinfo: &str) -> Option<String> {
    first_value(cpuinfo, "model name").map(str::to_string)
}

/// The first value of `key` in a `/proc/cpuinfo` text, if not empty.
#[cfg(any(not(target_os = "macos"), test))]
fn first_value<'a>(cpuinfo: &'a str, key: &str) -> Option<&'a str> {
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim() == key)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// The first core of a `/proc/cpuinfo` text from Linux on ARM, which gives its `CPU
/// implementer` and `CPU part` numbers (the MIDR register's fields) where x86 gives a name:
/// the name for Arm's own cores in servers and boards people benchmark on (Graviton 2–4,
/// Ampere Altra and Grace are Neoverse cores; a Raspberry Pi 4 or 5 a Cortex-A72 or A76; the
/// numbers as Arm's manuals and `lscpu` list them), else the numbers.
#[cfg(any(not(target_os = "macos"), test))]
fn arm_core_name(cpuinfo: &str) -> Option<String> {
    const ARM_LTD: &str = "0x41";
    const ARM_CORES: [(&str, &str); 8] = [
        ("0xd03", "Cortex-A53"),
        ("0xd05", "Cortex-A55"),
        ("0xd08", "Cortex-A72"),
        ("0xd0b", "Cortex-A76"),
        ("0xd0c", "Neoverse N1"),
        ("0xd40", "Neoverse V1"),
        ("0xd49", "Neoverse N2"),
        ("0xd4f", "Neoverse V2"),
    ];
    let implementer = first_value(cpuinfo, "CPU implementer")?;
    let part = first_value(cpuinfo, "CPU part")?;
    let known = ARM_CORES
        .iter()
        .find(|(number, _)| implementer == ARM_LTD && part.eq_ignore_ascii_case(number));
    Some(match known {
        Some((_, core)) => format!("Arm {core}"),
        None => format!("ARM CPU implementer {implementer}, part {part}"),
    })
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
    use super::{arm_core_name, model_name, trimmed_name};

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

    /// `/proc/cpuinfo` as Linux on ARM writes it: each core's implementer and part, no model
    /// name (the first core's fields an AWS Graviton3's Neoverse V1; the second core another
    /// part, as boards with two kinds of core list them, to show the first is named).
    #[test]
    fn an_arm_core_is_named_from_its_implementer_and_part() {
        let two_kinds = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve\n\
                         CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\n\
                         CPU part\t: 0xd40\nCPU revision\t: 1\n\nprocessor\t: 1\n\
                         CPU implementer\t: 0x41\nCPU part\t: 0xd0c\n";
        assert_eq!(model_name(two_kinds), None);
        assert_eq!(arm_core_name(two_kinds).as_deref(), Some("Arm Neoverse V1"));
        // A core not in the table (AmpereOne), or another implementer's: the numbers.
        let ampere_one = "CPU implementer\t: 0xc0\nCPU part\t: 0xac3\n";
        assert_eq!(
            arm_core_name(ampere_one).as_deref(),
            Some("ARM CPU implementer 0xc0, part 0xac3")
        );
        assert_eq!(
            arm_core_name("CPU implementer\t: 0x61\nCPU part\t: 0xd0c\n").as_deref(),
            Some("ARM CPU implementer 0x61, part 0xd0c")
        );
        // x86's text has neither.
        assert_eq!(arm_core_name("model name\t: Intel(R) Xeon(R)\n"), None);
    }
}
