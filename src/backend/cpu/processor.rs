//! What the CPU backend runs on, for a benchmark's report: the processor's name and the
//! matrix product's microkernel. A figure means little without them (`gan_bench` prints both
//! in its first line, as it prints a GPU's name).

use super::microkernel::Microkernel;

/// The processor's model name as Linux reports it (`model name` in `/proc/cpuinfo`, e.g.
/// "Intel(R) Xeon(R) Processor"); `None` on other systems, or where it names none (Linux on
/// ARM reports part numbers instead).
pub fn processor_name() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    model_name(&cpuinfo)
}

/// The first `model name` of a `/proc/cpuinfo` text.
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
    use super::model_name;

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
