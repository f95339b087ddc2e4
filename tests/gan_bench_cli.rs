//! The `gan_bench` example on the CPU: its quick run reports every figure it promises, and
//! what a user can get wrong is an error, not a panic. (Its figures are judged in
//! benches/RESULTS.md, never here.)

mod common;

use std::process::Command;

use common::example;

/// The numbers in a report line `…: 123.4 us/iter, 5678 images/s`: each one after a colon or
/// a comma, before its unit.
fn figures(line: &str) -> Vec<f64> {
    line.rsplit(':')
        .next()
        .unwrap()
        .split(',')
        .map(|figure| figure.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn a_quick_cpu_run_reports_the_iteration_the_products_and_tanh() {
    let output = Command::new(example("gan_bench"))
        .arg("--quick")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let report = |prefix: &str| -> Vec<&str> {
        lines
            .iter()
            .copied()
            .filter(|line| line.starts_with(prefix))
            .collect()
    };
    // The first line names what the figures were measured on: the processor (where the
    // system says) and the product's microkernel, as it names a GPU.
    assert!(lines[0].contains("on cpu ("), "{stdout}");
    assert!(
        lines[0].ends_with(&ferrograd::backend::cpu::describe_processor()),
        "{stdout}"
    );
    let kernel = ferrograd::backend::cpu::Microkernel::selected();
    assert!(
        lines[0].contains(&format!("GEMM microkernel {}", kernel.name())),
        "{stdout}"
    );
    if let Some(processor) = ferrograd::backend::cpu::processor_name() {
        assert!(lines[0].contains(&processor), "{stdout}");
    }
    let iterations = report("training iteration (batch 64");
    let products = report("gemm ");
    let tanh = report("tanh over 65536 floats");
    assert!(
        !iterations.is_empty() && products.len() >= 8 && tanh.len() == 1,
        "{stdout}"
    );
    for line in iterations.iter().chain(&products).chain(&tanh) {
        let figures = figures(line);
        assert!(
            figures.len() == 2 && figures.iter().all(|&f| f.is_finite() && f > 0.0),
            "{line}"
        );
    }
    // Each iteration line's two figures agree: images/s = 64 / (µs/iter) · 10⁶.
    for line in iterations {
        let [micros, images] = figures(line)[..] else {
            unreachable!()
        };
        let implied = 64.0e6 / micros;
        assert!((images - implied).abs() <= 0.01 * implied + 1.0, "{line}");
    }
}

#[test]
fn mistakes_are_errors_not_panics() {
    let run = |args: &[&str]| {
        Command::new(example("gan_bench"))
            .args(args)
            .output()
            .unwrap()
    };
    let output = run(&["--repeats", "0"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("--repeats") && !stderr.contains("panicked"),
        "{stderr}"
    );
    if let Err(err) = ferrograd::Device::cuda(0) {
        let output = run(&["--device", "cuda", "--quick"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.starts_with(&format!("error: {err}")) && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}

/// A variable that names a GEMM microkernel or BF16 units this machine lacks (or none at all)
/// is warned about, naming what runs instead as the variable would name it, and the run goes
/// on.
#[test]
fn unknown_kernel_and_unit_names_are_warned_about_and_replaced() {
    let run = |variable: &str, args: &[&str]| {
        let output = Command::new(example("gan_bench"))
            .args(["--device", "cpu", "--iteration-only", "--repeats", "1"])
            .args(args)
            .env(variable, "bogus")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        stderr
    };
    let kernel = ferrograd::backend::cpu::Microkernel::selected().name();
    let stderr = run(ferrograd::backend::cpu::KERNEL_ENV, &[]);
    assert!(
        stderr.contains(&format!(
            "FERROGRAD_GEMM_KERNEL=bogus is not a supported kernel here; using {kernel}"
        )),
        "{stderr}"
    );
    if ferrograd::backend::cpu::bf16_support().is_ok() {
        let stderr = run(ferrograd::backend::cpu::BF16_UNITS_ENV, &["--bf16"]);
        let warning = "FERROGRAD_BF16_UNITS=bogus is not supported here; using";
        assert!(
            [" amx\n", " avx512bf16\n"]
                .iter()
                .any(|units| stderr.contains(&format!("{warning}{units}"))),
            "{stderr}"
        );
    }
}
