//! The `mnist_gan` example end to end, on the shared MNIST files: a seeded smoke run, an exact
//! resume, kills during checkpointing, stopping on Ctrl-C, SIGTERM or a closed standard output,
//! the GPU's path on the CUDA emulator, and clear errors for what users get wrong; and, on a
//! tiny MNIST of its own, whole epochs, the animation of their sample grids, a checkpoint that
//! cannot be written, a run that diverges, and an epoch count past 2⁶⁴ iterations.
//!
//! `cargo test` builds the examples before it runs tests; the binary sits in `examples/` beside
//! this test's own directory.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{closed_pipe, example, shared_mnist};
use ferrograd::backend::cpu::{bf16_support, physical_cores, Bf16Units};
use ferrograd::checkpoint::Checkpoint;
use ferrograd::data::idx;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrograd-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn mnist_gan(data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut command = mnist_gan_default_out(data, &["--out", out.to_str().unwrap()]);
    command.args(extra);
    command
}

/// `mnist_gan` on `data` (an absolute path) with the seed and threads the tests use, and the
/// default `--out`.
fn mnist_gan_default_out(data: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(example("mnist_gan"));
    command
        .args(["--data", data.to_str().unwrap()])
        .args(["--seed", "1", "--threads", "2"])
        .args(extra);
    command
}

/// A run that would train for hours (from `resume`, if given), its stderr discarded.
fn spawn_long_run(
    data: &Path,
    out: &Path,
    resume: Option<&Path>,
    extra: &[&str],
    stdout: Stdio,
) -> Child {
    let mut args = vec!["--max-iters", "100000"];
    if let Some(checkpoint) = resume {
        args.extend(["--resume", checkpoint.to_str().unwrap()]);
    }
    args.extend(extra);
    mnist_gan(data, out, &args)
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn run_ok(mut command: Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A tiny MNIST in `dir`: `images` training images (stripes, not digits: enough for a run
/// and its files, two batches of 64 an epoch) and 10 test images, as plain IDX files.
fn tiny_mnist(dir: &Path, images: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let made = images.max(10);
    let pixels: Vec<u8> = (0..made * 784).map(|i| (i * 37 % 256) as u8).collect();
    let labels: Vec<u8> = (0..made).map(|i| (i % 10) as u8).collect();
    for (split, n) in [("train", images), ("t10k", 10)] {
        let images = idx::encode(&[n, 28, 28], &pixels[..n * 784]);
        std::fs::write(dir.join(format!("{split}-images-idx3-ubyte")), images).unwrap();
        let labels = idx::encode(&[n], &labels[..n]);
        std::fs::write(dir.join(format!("{split}-labels-idx1-ubyte")), labels).unwrap();
    }
}

/// A PNG's frames: each one's delay in ms and its pixels (a still PNG is one frame, delay 0).
fn png_frames(path: &Path) -> Vec<(u32, Vec<u8>)> {
    let file = BufReader::new(std::fs::File::open(path).unwrap());
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let count = reader
        .info()
        .animation_control()
        .map_or(1, |a| a.num_frames);
    (0..count)
        .map(|_| {
            let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
            reader.next_frame(&mut pixels).unwrap();
            let delay = reader.info().frame_control.map_or(0, |frame| {
                let den = if frame.delay_den == 0 {
                    100
                } else {
                    frame.delay_den
                };
                u32::from(frame.delay_num) * 1000 / u32::from(den)
            });
            (delay, pixels)
        })
        .collect()
}

/// (iter, d_loss, g_loss, D(x), D(G(z))) per row of losses.csv.
fn losses(out: &Path) -> Vec<[f32; 5]> {
    std::fs::read_to_string(out.join("losses.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<f32> = line
                .split(',')
                .skip(1)
                .map(|f| f.parse().unwrap())
                .collect();
            fields.try_into().unwrap()
        })
        .collect()
}

fn mean(rows: &[[f32; 5]], column: usize) -> f32 {
    rows.iter().map(|r| r[column]).sum::<f32>() / rows.len() as f32
}

/// 300 seeded iterations: finite losses, D telling real from fake, a decodable 8 × 8 grid, a
/// parsable samples file; then 150 + 150 iterations with a resume in between reproduce the
/// uninterrupted run's losses exactly, whether the resumed run goes on in the checkpoint's
/// directory (the default) or in another one given by `--out`, which starts with the losses
/// so far.
#[test]
fn smoke_run_trains_writes_its_outputs_and_resumes_exactly() {
    let Some(data) = shared_mnist() else { return };
    let out = scratch("smoke");
    let samples = out.join("samples.idx");
    run_ok(mnist_gan(
        &data,
        &out,
        &[
            "--max-iters",
            "300",
            "--samples-out",
            samples.to_str().unwrap(),
            "--num-samples",
            "200",
        ],
    ));

    let rows = losses(&out);
    assert_eq!(rows.len(), 300);
    assert!(rows.iter().flatten().all(|v| v.is_finite()));
    let last = &rows[250..];
    let (d_real, d_fake) = (mean(last, 3), mean(last, 4));
    assert!(
        d_real > d_fake,
        "D(x) {d_real} should exceed D(G(z)) {d_fake}"
    );

    {
        // In a block of its own: the reader holds the file open, which on Windows would keep
        // it from being removed at the end.
        let decoder = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(out.join("samples_latest.png")).unwrap(),
        ));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!(
            (info.width, info.height, info.color_type),
            (242, 242, png::ColorType::Grayscale)
        );
    }

    let parsed = idx::decode(&std::fs::read(&samples).unwrap()).unwrap();
    assert_eq!(parsed.dims, [200, 28, 28]);
    assert!(parsed.data.iter().any(|&p| p > 128) && parsed.data.iter().any(|&p| p < 128));
    assert!(std::fs::read_to_string(out.join("losses.svg"))
        .unwrap()
        .contains("<polyline"));
    let checkpoint = Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(checkpoint.metadata("step").unwrap(), "300");

    // gan_sample reads the generator back: a grid, and samples as IDX3.
    let (grid, sampled) = (out.join("grid.png"), out.join("sampled.idx"));
    let mut sample = Command::new(example("gan_sample"));
    sample.args([
        "--checkpoint",
        out.join("checkpoint.safetensors").to_str().unwrap(),
    ]);
    sample.args(["--grid", grid.to_str().unwrap()]);
    sample.args([
        "--samples-out",
        sampled.to_str().unwrap(),
        "--num-samples",
        "30",
    ]);
    // Into a pipe whose reader has quit (`gan_sample … | head -0`): the files are written all
    // the same.
    sample.stdout(closed_pipe());
    run_ok(sample);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&grid).unwrap()));
    assert_eq!(decoder.read_info().unwrap().info().width, 242);
    let parsed = idx::decode(&std::fs::read(&sampled).unwrap()).unwrap();
    assert_eq!(parsed.dims, [30, 28, 28]);
    assert!(parsed.data.iter().any(|&p| p > 128) && parsed.data.iter().any(|&p| p < 128));
    assert_walks_the_latent_space(&out.join("checkpoint.safetensors"), &out.join("walk.png"));

    let resumed = scratch("resumed");
    run_ok(mnist_gan(&data, &resumed, &["--max-iters", "150"]));
    assert_eq!(losses(&resumed).len(), 150);
    let checkpoint = resumed.join("checkpoint.safetensors");
    let resume_to_300 = [
        "--max-iters",
        "300",
        "--resume",
        checkpoint.to_str().unwrap(),
    ];

    let forked = scratch("forked");
    run_ok(mnist_gan(&data, &forked, &resume_to_300));
    assert_eq!(losses(&forked).len(), 300, "the log starts at iteration 1");
    assert_eq!(
        losses(&forked),
        rows,
        "resumed into another directory, the run reproduces the uninterrupted one's log"
    );

    // Without --out, from another working directory: the run goes on beside its checkpoint
    // (not in ./runs/mnist_gan).
    let elsewhere = scratch("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let data = data.canonicalize().unwrap();
    let mut in_place = mnist_gan_default_out(&data, &resume_to_300);
    in_place.current_dir(&elsewhere);
    run_ok(in_place);
    assert!(!elsewhere.join("runs").exists());
    assert_eq!(
        losses(&resumed).len(),
        300,
        "the run went on beside its checkpoint"
    );
    assert_eq!(
        losses(&resumed),
        rows,
        "the resumed run reproduces the uninterrupted one"
    );
    assert_eq!(step_of(&checkpoint), 300);

    // Resumed at its end: nothing trains, and the run says so.
    let again = run_ok(mnist_gan(&data, &resumed, &resume_to_300));
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        stdout
            .contains("nothing to train: the run is at iteration 300 already, and --max-iters 300"),
        "{stdout}"
    );
    assert_eq!(losses(&resumed), rows);
    // A resumed run keeps its learning rate unless told another, and its batch size (and
    // seed) whatever it is told, saying so.
    let relearn = [&resume_to_300[..], &["--lr", "0.001", "--batch-size", "32"]].concat();
    let again = run_ok(mnist_gan(&data, &resumed, &relearn));
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        stdout.contains("note: lr 0.001 instead of the checkpoint's 0.0002"),
        "{stdout}"
    );
    assert!(
        stdout.contains("note: continuing with the checkpoint's seed 1 and batch size 64"),
        "{stdout}"
    );

    for dir in [out, resumed, forked, elsewhere] {
        std::fs::remove_dir_all(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    }
}

/// Killed (SIGKILL) at arbitrary moments while it checkpoints after every iteration, the run
/// always leaves a checkpoint that loads, and resumes from it, with a loss log that has every
/// row up to the checkpoint's step.
/// `gan_sample --interpolate` writes a walk: each row of the grid ends with the image the next
/// row starts with, and moves there in small steps (neighbours differ far less than a row's two
/// ends, where in a grid of independent samples they would differ as much).
fn assert_walks_the_latent_space(checkpoint: &Path, grid: &Path) {
    let mut sample = Command::new(example("gan_sample"));
    sample.args(["--checkpoint", checkpoint.to_str().unwrap()]);
    sample.args(["--grid", grid.to_str().unwrap(), "--interpolate"]);
    run_ok(sample);
    let [(_, pixels)] = png_frames(grid).try_into().unwrap();
    let (side, width) = (28, 242);
    let cell = |row: usize, col: usize| -> Vec<f32> {
        let (top, left) = (2 + row * (side + 2), 2 + col * (side + 2));
        (0..side * side)
            .map(|i| f32::from(pixels[(top + i / side) * width + left + i % side]))
            .collect()
    };
    let distance = |a: &[f32], b: &[f32]| -> f32 {
        a.iter().zip(b).map(|(a, b)| (a - b).abs()).sum::<f32>() / a.len() as f32
    };
    let (mut steps, mut ends) = (0.0, 0.0);
    for row in 0..8 {
        if row < 7 {
            assert_eq!(
                cell(row, 7),
                cell(row + 1, 0),
                "row {row} ends where {} starts",
                row + 1
            );
        }
        steps += (0..7)
            .map(|col| distance(&cell(row, col), &cell(row, col + 1)))
            .sum::<f32>()
            / 7.0;
        ends += distance(&cell(row, 0), &cell(row, 7));
    }
    assert!(
        steps < 0.5 * ends,
        "mean step {} against mean distance between a row's ends {}",
        steps / 8.0,
        ends / 8.0
    );
}

#[test]
fn a_kill_during_checkpointing_leaves_a_loadable_checkpoint() {
    let Some(data) = shared_mnist() else { return };
    let out = scratch("kill");
    let checkpoint = out.join("checkpoint.safetensors");
    let mut last_step = 0;
    // What a kill during a checkpoint's write leaves: its temporary file, named after the
    // killed process (the previous round's). The next run removes it.
    let mut abandoned: Option<PathBuf> = None;
    for (round, delay_ms) in [350u64, 800, 1250].into_iter().enumerate() {
        let resume = (round > 0).then_some(checkpoint.as_path());
        if let Some(abandoned) = &abandoned {
            std::fs::write(abandoned, b"half a checkpoint").unwrap();
        }
        let mut child = spawn_long_run(
            &data,
            &out,
            resume,
            &["--checkpoint-every", "1"],
            Stdio::null(),
        );
        // This run's first new checkpoint, then a kill at an arbitrary point after it.
        wait_for_checkpoint_past(&checkpoint, last_step);
        thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        if let Some(abandoned) = &abandoned {
            assert_eq!(
                abandoned.exists(),
                !cfg!(any(unix, windows)),
                "round {round}: {} (removed on Unix and Windows)",
                abandoned.display()
            );
        }
        abandoned = Some(out.join(format!(".checkpoint.safetensors.{}.tmp", child.id())));
        let step = step_of(&checkpoint);
        assert!(
            step > last_step,
            "round {round}: checkpoint at {step}, before {last_step}"
        );
        let logged: Vec<u64> = losses(&out).iter().map(|row| row[0] as u64).collect();
        let contiguous = logged
            .iter()
            .zip(1..)
            .all(|(&iter, expected)| iter == expected);
        assert!(
            contiguous && logged.len() as u64 >= step,
            "round {round}: checkpoint at {step}, but losses.csv has {} rows, iterations {:?}..{:?}",
            logged.len(),
            logged.first(),
            logged.last()
        );
        last_step = step;
    }
    std::fs::remove_dir_all(&out).unwrap();
}

/// Ctrl-C (SIGINT) while training, then SIGTERM in the resumed run: each stops after its step
/// in flight with status 130, leaving a checkpoint at the step its loss log reaches and saying
/// how to resume; resumed, the twice-stopped run has the losses of one never stopped. (Each run
/// also checkpoints every 20 steps, so the test can wait for it to have trained.) Unix only:
/// the signals go through `kill`.
#[cfg(unix)]
#[test]
fn a_signal_stops_training_with_a_checkpoint_to_resume_from() {
    use std::io::Read;
    let Some(data) = shared_mnist() else { return };
    let out = scratch("signals");
    let checkpoint = out.join("checkpoint.safetensors");
    let mut last_step = 0;
    for (round, signal) in ["-INT", "-TERM"].into_iter().enumerate() {
        let resume = (round > 0).then_some(checkpoint.as_path());
        let mut child = spawn_long_run(
            &data,
            &out,
            resume,
            &["--checkpoint-every", "20"],
            Stdio::piped(),
        );
        let mut stdout = stdout_once_training(&mut child);
        // Signal once this run has trained (its first checkpoint), however slow the machine.
        wait_for_checkpoint_past(&checkpoint, last_step);
        thread::sleep(Duration::from_millis(150)); // and a few steps past it
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {signal} failed");
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(130),
            "round {round} ({signal}):\n{rest}"
        );

        let step = step_of(&checkpoint);
        assert!(
            step > last_step,
            "round {round}: checkpoint at {step}, before {last_step}"
        );
        assert_eq!(
            losses(&out).len() as u64,
            step,
            "the log reaches the checkpoint"
        );
        assert!(
            rest.contains(&format!(
                "stopped at iteration {step}; continue with --resume"
            )),
            "{rest}"
        );
        last_step = step;
    }

    let uninterrupted = scratch("signals-uninterrupted");
    run_ok(mnist_gan(
        &data,
        &uninterrupted,
        &["--max-iters", &last_step.to_string()],
    ));
    assert_eq!(losses(&out), losses(&uninterrupted));
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&uninterrupted).unwrap();
}

/// A run on the CPU says which of the GPU's options it ignores, rather than ignoring them
/// silently (with `--device auto` they are the sign that a GPU was expected).
#[test]
fn a_cpu_run_names_the_gpu_options_it_ignores() {
    let Some(data) = shared_mnist() else { return };
    let out = scratch("gpu-options");
    let cpu_run = |extra: &[&str]| {
        let mut args = vec!["--device", "cpu", "--max-iters", "1", "--overwrite"];
        args.extend(extra);
        String::from_utf8(run_ok(mnist_gan(&data, &out, &args)).stdout).unwrap()
    };
    let stdout = cpu_run(&["--tf32", "--eager", "--autotune", "off"]);
    assert!(
        stdout.contains(
            "note: training on the CPU, which ignores the GPU options --tf32, --eager, --autotune"
        ),
        "{stdout}"
    );
    let stdout = cpu_run(&["--tf32"]);
    assert!(
        stdout.contains("ignores the GPU option --tf32\n"),
        "{stdout}"
    );
    let stdout = cpu_run(&[]);
    assert!(!stdout.contains("ignores"), "{stdout}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// `mnist_gan` run to the end for `iters` steps at batch 8 (seconds a step on the emulator)
/// into a fresh scratch folder: the folder, and what the run printed.
fn short_run(data: &Path, name: &str, iters: &str, extra: &[&str]) -> (PathBuf, String) {
    let out = scratch(name);
    let mut args = vec!["--batch-size", "8", "--max-iters", iters];
    args.extend(extra);
    let stdout = String::from_utf8(run_ok(mnist_gan(data, &out, &args)).stdout).unwrap();
    (out, stdout)
}

/// `--device cuda-emulator` takes the GPU's path (the products tuned, the step captured as a
/// CUDA graph, our kernels) on the CPU emulator: it says each step as a GPU run does, and trains
/// as the CPU does, to float rounding; eager and untuned, bit for bit as captured and tuned
/// (tiles only change how a product is cut), and as on the emulated Turing GPU with `--tf32`.
/// Its checkpoint goes on on the CPU.
#[test]
fn the_gpu_path_on_the_emulator_trains_as_the_cpu_does() {
    let Some(data) = shared_mnist() else { return };
    if common::emulator().is_none() {
        return;
    }
    let run = |name: &str, iters: &str, extra: &[&str]| short_run(&data, name, iters, extra);
    let (cpu, _) = run("on-cpu", "3", &["--device", "cpu"]);
    let (captured, stdout) = run("emulator-captured", "2", &["--device", "cuda-emulator"]);
    for said in [
        "tuned the step's 28 matrix products for the emulator in ",
        "captured the training step as a CUDA graph (",
        "on cuda-emulator (our CUDA kernels run by the CPU emulator)",
    ] {
        assert!(stdout.contains(said), "no {said:?} in\n{stdout}");
    }
    let kernels: String = stdout
        .split("as a CUDA graph (")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(kernels.parse::<usize>().unwrap() > 28, "{stdout}");
    let (on_cpu, on_emulator) = (losses(&cpu), losses(&captured));
    assert_eq!(on_emulator.len(), 2);
    for (emulated, cpu_row) in on_emulator.iter().zip(&on_cpu) {
        for (e, c) in emulated.iter().zip(cpu_row) {
            assert!(
                (e - c).abs() <= 1e-5 * c.abs().max(1.0),
                "{emulated:?} vs {cpu_row:?}"
            );
        }
    }
    let grid = |out: &Path| png_frames(&out.join("samples_latest.png")).remove(0).1;
    let (cpu_grid, emulator_grid) = (grid(&cpu), grid(&captured));
    // The CPU's grid is a step further on: compare the emulator's with a CPU run of 2 steps.
    let (cpu_at_2, _) = run("on-cpu-2", "2", &["--device", "cpu"]);
    assert_ne!(cpu_grid, grid(&cpu_at_2));
    let off_by_more = grid(&cpu_at_2)
        .iter()
        .zip(&emulator_grid)
        .filter(|(c, e)| c.abs_diff(**e) > 1)
        .count();
    assert_eq!(off_by_more, 0, "pixels more than 1 apart");

    let (eager, stdout) = run(
        "emulator-eager",
        "2",
        &["--device", "cuda-emulator", "--eager", "--autotune", "off"],
    );
    assert!(
        !stdout.contains("tuned") && !stdout.contains("captured"),
        "{stdout}"
    );
    assert_eq!(losses(&eager), on_emulator);
    assert_eq!(grid(&eager), emulator_grid);

    // As a Turing GPU (a T4) runs it: no TF32 tensor cores, so --tf32 changes nothing (it says
    // so), and gemm.cu as sm_75 compiles it (plain copies instead of cp.async, a pipeline of
    // 3 stages instead of 4): the same bits.
    let turing = ["--device", "cuda-emulator-sm75", "--tf32"];
    let (on_turing, stdout) = run("emulator-sm75", "2", &turing);
    for said in [
        "note: --tf32 changes nothing on cuda-emulator-sm75 (our CUDA kernels run by the CPU \
         emulator as a Turing GPU (sm_75) runs them): TF32 tensor cores came with sm_80, so its \
         matrix products stay FP32",
        "tuned the step's 28 matrix products for the emulator in ",
        "captured the training step as a CUDA graph (",
    ] {
        assert!(stdout.contains(said), "no {said:?} in\n{stdout}");
    }
    assert_eq!(losses(&on_turing), on_emulator);
    assert_eq!(grid(&on_turing), emulator_grid);

    // Trained on the GPU's path, continued on the CPU.
    let checkpoint = captured.join("checkpoint.safetensors");
    let resume = ["--device", "cpu", "--max-iters", "3", "--resume"];
    let mut command = mnist_gan(&data, &captured, &resume);
    command.arg(&checkpoint);
    run_ok(command);
    let continued = losses(&captured);
    assert_eq!(continued[..2], on_emulator[..]);
    for (e, c) in continued[2].iter().zip(&on_cpu[2]) {
        assert!(
            (e - c).abs() <= 1e-5 * c.abs().max(1.0),
            "{continued:?} vs {on_cpu:?}"
        );
    }

    for dir in [cpu, cpu_at_2, captured, eager, on_turing] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// On the emulator as on a GPU, `--tf32` leaves the autotuner nothing to tune, and says so
/// (the tensor-core kernel has no tiles to choose), and trains within TF32's precision of the
/// CPU; `--bf16`, the CPU's, is refused.
#[test]
fn the_gpu_options_on_the_emulator() {
    let Some(data) = shared_mnist() else { return };
    if common::emulator().is_none() {
        return;
    }
    let out = scratch("emulator-options");
    fails_with(
        mnist_gan(&data, &out, &["--device", "cuda-emulator", "--bf16"]),
        &["--bf16 is for the CPU's products: add --device cpu, or use --tf32 on a GPU"],
    );
    assert!(!out.exists(), "refused, yet it wrote {out:?}");
    let (cpu, _) = short_run(&data, "tf32-cpu", "2", &["--device", "cpu"]);
    let emulator_tf32 = ["--device", "cuda-emulator", "--tf32"];
    let (tf32, said) = short_run(&data, "tf32-emulator", "2", &emulator_tf32);
    for line in [
        "note: nothing to tune: with --tf32 the matrix products run in the tensor-core kernel, \
         which has one configuration",
        "captured the training step as a CUDA graph (",
    ] {
        assert!(said.contains(line), "no {line:?} in\n{said}");
    }
    let (on_cpu, with_tf32) = (losses(&cpu), losses(&tf32));
    assert_eq!(with_tf32.len(), 2);
    assert_ne!(with_tf32, on_cpu, "TF32's rounding should show");
    for (row, cpu_row) in with_tf32.iter().zip(&on_cpu) {
        for (t, c) in row.iter().zip(cpu_row) {
            assert!(
                (t - c).abs() <= 1e-2 * c.abs().max(1.0),
                "{row:?} vs {cpu_row:?}"
            );
        }
    }
    for dir in [cpu, tf32] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// Without `--threads`, a CPU run takes `RAYON_NUM_THREADS` where it is set, else one thread
/// per physical core (PyTorch's default), and says how many; a `RAYON_NUM_THREADS` that is no
/// number of threads is ignored, with a word on stderr (as libgomp says of `OMP_NUM_THREADS`).
#[test]
fn a_cpu_run_has_one_thread_per_physical_core_unless_told() {
    let data = scratch("threads-mnist");
    tiny_mnist(&data, 128);
    let out = scratch("threads");
    let threads_said = |threads: Option<&str>, rayon_threads: Option<&str>| {
        let mut command = Command::new(example("mnist_gan"));
        command
            .args([
                "--data",
                data.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .args(["--device", "cpu", "--max-iters", "1", "--overwrite"])
            .env_remove("RAYON_NUM_THREADS");
        if let Some(threads) = threads {
            command.args(["--threads", threads]);
        }
        if let Some(rayon_threads) = rayon_threads {
            command.env("RAYON_NUM_THREADS", rayon_threads);
        }
        let output = run_ok(command);
        let stdout = String::from_utf8(output.stdout).unwrap();
        let said = stdout.split("on cpu (").nth(1).expect(&stdout);
        let count: String = said.chars().take_while(char::is_ascii_digit).collect();
        let stderr = String::from_utf8(output.stderr).unwrap();
        (count.parse::<usize>().expect(&stdout), stderr)
    };
    let ignored = |value: &str| format!("RAYON_NUM_THREADS={value:?} is not a number of threads");
    assert_eq!(threads_said(None, None).0, physical_cores());
    assert_eq!(threads_said(None, Some("3")).0, 3);
    // Spaces around the number: rayon alone would have ignored it, and started a thread per
    // logical CPU.
    assert_eq!(threads_said(None, Some(" 3 ")).0, 3);
    assert_eq!(threads_said(Some("1"), Some("3")).0, 1);
    for unusable in ["abc", "0", "-2"] {
        let (threads, stderr) = threads_said(None, Some(unusable));
        assert_eq!(threads, physical_cores(), "RAYON_NUM_THREADS={unusable}");
        assert!(stderr.contains(&ignored(unusable)), "{stderr}");
    }
    // Where --threads decides, the variable is not read: nothing to say.
    let (threads, stderr) = threads_said(Some("1"), Some("abc"));
    assert_eq!(threads, 1);
    assert!(!stderr.contains("RAYON_NUM_THREADS"), "{stderr}");
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&data).unwrap();
}

/// `--bf16` names the units that run its products, and warns where they are slower than FP32
/// (`Bf16Units::faster_than_fp32`: the dot products where `VDPBF16PS` runs less than half as
/// often as an FMA); without BF16 units it stops with the reason.
#[test]
fn a_bf16_run_names_its_units_and_warns_where_they_are_slower() {
    let Some(data) = shared_mnist() else { return };
    let out = scratch("bf16-units");
    let args = [
        "--device",
        "cpu",
        "--bf16",
        "--max-iters",
        "1",
        "--overwrite",
    ];
    let command = mnist_gan(&data, &out, &args);
    match bf16_support() {
        Ok(units) => {
            let stdout = String::from_utf8(run_ok(command).stdout).unwrap();
            // The rate's digits come from the run's own measurement: only their lead-in here.
            let named = match units {
                Bf16Units::Amx => ", BF16 matrix products (AMX)\n",
                Bf16Units::Avx512Bf16 => ", BF16 matrix products (AVX512-BF16 at ",
            };
            assert!(stdout.contains(named), "{stdout}");
            assert_eq!(
                stdout.contains("note: --bf16 trains slower than FP32 on this processor"),
                !units.faster_than_fp32(),
                "{stdout}"
            );
            std::fs::remove_dir_all(&out).unwrap();
        }
        Err(why) => fails_with(command, &["--bf16: ", why]),
    }
}

/// Standard output going away (the reader of a pipe quits, as `mnist_gan | head -n 2` does)
/// stops training as SIGTERM does, not with a panic: the next line that cannot be printed
/// (here the run's last, 300 steps after the reader quit; in a long run an epoch's) stops the
/// run with its checkpoint written, and status 141.
#[test]
fn a_closed_output_stops_training_with_a_checkpoint() {
    let Some(data) = shared_mnist() else { return };
    let out = scratch("closed-output");
    let mut child = mnist_gan(&data, &out, &["--max-iters", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(stdout_once_training(&mut child)); // nothing more is printed for 300 steps
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("standard output is gone") && stderr.contains("write a checkpoint"),
        "{stderr}"
    );
    let checkpoint = out.join("checkpoint.safetensors");
    assert_eq!(step_of(&checkpoint), 300);
    assert_eq!(losses(&out).len(), 300, "the log reaches the checkpoint");
    std::fs::remove_dir_all(&out).unwrap();

    // Gone before the first line: the run stops before training, and writes no checkpoint.
    let output = mnist_gan(&data, &out, &["--max-iters", "100000"])
        .stdout(closed_pipe())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(141), "{stderr}");
    assert!(
        stderr.contains("standard output is gone") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(!checkpoint.exists());
    let _ = std::fs::remove_dir_all(&out);
}

/// The standard output of a run spawned with it piped, read up to its line "training on …".
///
/// # Panics
/// If the run ends before it prints that line (naming what it printed).
fn stdout_once_training(child: &mut Child) -> BufReader<ChildStdout> {
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut said = String::new();
    let mut line = String::new();
    while !line.starts_with("training on") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the run ended before training:\n{said}"
        );
        said += &line;
    }
    stdout
}

/// Waits (up to 2 minutes) until the checkpoint at `path` is past `step`: a run has trained.
fn wait_for_checkpoint_past(path: &Path, step: u64) {
    let started = Instant::now();
    while step_of(path) <= step && started.elapsed() < Duration::from_secs(120) {
        thread::sleep(Duration::from_millis(20));
    }
}

/// The step stored in a checkpoint; 0 if there is none yet. Panics if it exists but does not
/// load, which is what the kill test guards against.
fn step_of(path: &Path) -> u64 {
    if !path.exists() {
        return 0;
    }
    let checkpoint = Checkpoint::load(path).unwrap_or_else(|err| panic!("torn checkpoint: {err}"));
    checkpoint.parse("step").unwrap()
}

/// Runs `command`, which must fail with an error (not a panic) containing each of `expected`.
fn fails_with(mut command: Command, expected: &[&str]) {
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{command:?} should fail");
    assert!(
        !stderr.contains("panicked"),
        "a panic instead of an error:\n{stderr}"
    );
    for text in expected {
        assert!(
            stderr.contains(text),
            "{command:?}: no {text:?} in\n{stderr}"
        );
    }
}

#[test]
fn user_errors_are_reported_without_panicking() {
    let out = scratch("errors");
    let Some(data) = shared_mnist() else { return };
    let run = |args: &[&str]| mnist_gan(&data, &out, args);
    if let Err(err) = ferrograd::Device::cuda(0) {
        let err = err.to_string();
        let reason = err.strip_prefix("cuda:0: ").unwrap_or(&err);
        fails_with(
            run(&["--device", "cuda"]),
            &[&format!("--device cuda:0: {reason}")],
        );
        fails_with(run(&["--device", "cuda:1"]), &["--device cuda:1: "]);
    }
    if let Err(err) = ferrograd::Device::cuda_emulator() {
        for emulator in ["cuda-emulator", "cuda-emulator-sm75"] {
            fails_with(
                run(&["--device", emulator]),
                &[&format!("--device {emulator}: {err}")],
            );
        }
    }
    fails_with(
        run(&["--device", "gpu"]),
        &["\"gpu\" is not auto, cpu, cuda, cuda:N, cuda-emulator or cuda-emulator-sm75"],
    );
    fails_with(run(&["--batch-size", "0"]), &["--batch-size"]);
    for lr in ["-1", "0", "nan", "inf", "2e-4x"] {
        fails_with(
            run(&["--lr", lr]),
            &["--lr", &format!("\"{lr}\" is not a positive number")],
        );
    }
    fails_with(
        run(&["--autotune", "always"]),
        &["--autotune", "tiles, splits"],
    );
    // IDX counts samples in 32 bits.
    for binary in [run(&[]), Command::new(example("gan_sample"))] {
        let mut command = binary;
        command.args(["--num-samples", "4294967296"]);
        fails_with(command, &["--num-samples", "not in 1..=4294967295"]);
    }

    // A truncated training file: the error names it, and nothing is downloaded over it.
    let broken = scratch("broken-data");
    std::fs::create_dir_all(&broken).unwrap();
    for name in [
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        // Read and written, not copied: a copy keeps the shared files' read-only mode, which
        // on Windows forbids removing them.
        std::fs::write(broken.join(name), std::fs::read(data.join(name)).unwrap()).unwrap();
    }
    let images = std::fs::read(data.join("train-images-idx3-ubyte.gz")).unwrap();
    std::fs::write(
        broken.join("train-images-idx3-ubyte.gz"),
        &images[..images.len() / 3],
    )
    .unwrap();
    fails_with(
        mnist_gan(&broken, &out, &["--max-iters", "1"]),
        &[
            "train-images-idx3-ubyte.gz",
            "truncated",
            "Remove it and run again: a missing file is downloaded",
        ],
    );
    // A file of the wrong kind in its place (the labels under the images' name), which would
    // stay in the way as well: the same remedy.
    let labels = std::fs::read(data.join("train-labels-idx1-ubyte.gz")).unwrap();
    std::fs::write(broken.join("train-images-idx3-ubyte.gz"), labels).unwrap();
    fails_with(
        mnist_gan(&broken, &out, &["--max-iters", "1"]),
        &[
            "train-images-idx3-ubyte.gz: expected an IDX file of images (3 dimensions), found \
             one with dims [60000]. Remove it and run again: a missing file is downloaded",
        ],
    );
    // No MNIST and no mirror answering (a closed port): the error says what to do.
    let empty = scratch("no-data");
    fails_with(
        mnist_gan(&empty, &out, &["--mirror", "http://127.0.0.1:9"]),
        &[
            "127.0.0.1:9/train-images-idx3-ubyte.gz failed",
            "could not download train-images-idx3-ubyte.gz from any mirror",
            &format!("Put the MNIST files in {}", empty.display()),
            "--mirror",
        ],
    );
    // An empty mirror (`MNIST_MIRROR=`) is refused as an empty --data is, not tried as a URL.
    let mut empty_mirror = mnist_gan(&empty, &out, &[]);
    empty_mirror.env("MNIST_MIRROR", "");
    fails_with(
        empty_mirror,
        &["a value is required for '--mirror <MIRROR>'"],
    );
    let _ = std::fs::remove_dir_all(&empty);
    // Valid MNIST files that hold no training images: refused, not "nothing to train".
    let no_images = scratch("no-images");
    tiny_mnist(&no_images, 0);
    fails_with(
        mnist_gan(&no_images, &out, &[]),
        &[&format!(
            "the training files in {} hold no images",
            no_images.display()
        )],
    );
    std::fs::remove_dir_all(&no_images).unwrap();
    let mut sample = Command::new(example("gan_sample"));
    sample.args(["--checkpoint", "/nonexistent/checkpoint.safetensors"]);
    fails_with(
        sample,
        &[
            "no checkpoint at /nonexistent/checkpoint.safetensors",
            "--example mnist_gan",
        ],
    );
    // The grid is written as PNG: a name that says another format is refused, not filled
    // with PNG bytes.
    let mut sample = Command::new(example("gan_sample"));
    sample.args(["--grid", "digits.JPG"]);
    fails_with(
        sample,
        &["the grid is a PNG image, not .JPG; name it digits.png"],
    );
    fails_with(
        run(&["--resume", "/nonexistent/checkpoint.safetensors"]),
        &["/nonexistent/checkpoint.safetensors"],
    );

    // A new run where another run's checkpoint is: refused, that run's checkpoint and loss
    // log left as they were, unless told to replace them.
    let earlier = scratch("earlier-run");
    run_ok(mnist_gan(&data, &earlier, &["--max-iters", "2"]));
    let checkpoint = earlier.join("checkpoint.safetensors");
    let files = [checkpoint.clone(), earlier.join("losses.csv")];
    let saved = files.clone().map(|file| std::fs::read(file).unwrap());
    // The command it suggests continues that run with this command's options (a forgotten
    // --resume).
    fails_with(
        mnist_gan(&data, &earlier, &["--max-iters", "1"]),
        &[
            "holds another run's checkpoint",
            &format!("continue that run with --resume {}", checkpoint.display()),
            "--max-iters 1, or start this one elsewhere",
            "--overwrite",
        ],
    );
    for (file, saved) in files.iter().zip(&saved) {
        assert!(
            &std::fs::read(file).unwrap() == saved,
            "{} is untouched",
            file.display()
        );
    }
    run_ok(mnist_gan(
        &data,
        &earlier,
        &["--max-iters", "1", "--overwrite"],
    ));
    assert_eq!(step_of(&checkpoint), 1);
    std::fs::remove_dir_all(&earlier).unwrap();

    // A --samples-out directory that cannot be made (a file in its place): refused before
    // training, naming it.
    let misplaced = scratch("misplaced-samples");
    std::fs::create_dir_all(&misplaced).unwrap();
    let file = misplaced.join("a-file");
    std::fs::write(&file, b"").unwrap();
    let samples = file.join("samples.idx");
    let samples_out_fails = |path: &Path, message: String| {
        let args = ["--max-iters", "1", "--samples-out", path.to_str().unwrap()];
        fails_with(mnist_gan(&data, &misplaced, &args), &[&message]);
    };
    samples_out_fails(
        &samples,
        format!(
            "--samples-out {}: cannot create {}: a file is in its place",
            samples.display(),
            file.display()
        ),
    );
    // A --samples-out that names a directory: refused before training, not after it.
    samples_out_fails(
        &misplaced,
        format!(
            "--samples-out {}: a directory; name the file to write in it",
            misplaced.display()
        ),
    );
    // --data naming a file, or a directory below one.
    for data in [file.clone(), file.join("mnist")] {
        fails_with(
            mnist_gan(&data, &misplaced, &["--max-iters", "1"]),
            &[&format!(
                "{}: a file where MNIST's directory should be",
                file.display()
            )],
        );
    }
    // The same for --out, a file above the directory.
    let out_under_file = file.join("run");
    fails_with(
        mnist_gan(&data, &out_under_file, &["--max-iters", "1"]),
        &[&format!(
            "--out {}: cannot create {}: {} is a file",
            out_under_file.display(),
            out_under_file.display(),
            file.display()
        )],
    );
    assert!(!misplaced.join("checkpoint.safetensors").exists());
    std::fs::remove_dir_all(&misplaced).unwrap();

    // The pictures and the loss curve cannot be written (directories in their place): the
    // error names the file.
    for name in ["samples_latest.png", "losses.svg"] {
        let blocked = scratch("blocked-picture");
        std::fs::create_dir_all(blocked.join(name).join("occupied")).unwrap();
        fails_with(mnist_gan(&data, &blocked, &["--max-iters", "1"]), &[name]);
        std::fs::remove_dir_all(&blocked).unwrap();
    }

    // A checkpoint that cannot be written (a directory in its place; `--overwrite`, or the run
    // would refuse the directory before training): written in the background, its failure
    // still ends the run with an error that names it, and says that there is none to continue
    // from.
    let blocked = scratch("blocked-checkpoint");
    std::fs::create_dir_all(blocked.join("checkpoint.safetensors/occupied")).unwrap();
    fails_with(
        mnist_gan(
            &data,
            &blocked,
            &["--max-iters", "3", "--checkpoint-every", "1", "--overwrite"],
        ),
        &[
            "the checkpoint of iteration 1 was not written",
            "checkpoint.safetensors",
            "no checkpoint to continue from",
        ],
    );
    std::fs::remove_dir_all(&blocked).unwrap();
    let _ = std::fs::remove_dir_all(&out); // where a run made it
    std::fs::remove_dir_all(&broken).unwrap();
}

/// After whole epochs, `samples_progress.png` plays every epoch's grid in order, the last held
/// longer; a run resumed in the same directory adds its epochs to it.
#[test]
fn whole_epochs_end_in_an_animation_of_their_grids() {
    let data = scratch("tiny-mnist");
    tiny_mnist(&data, 128);
    let out = scratch("animated");
    let said = run_ok(mnist_gan(&data, &out, &["--epochs", "3"]));
    let progress = out.join("samples_progress.png");
    assert!(String::from_utf8_lossy(&said.stdout)
        .contains(&format!("animated: {}", progress.display())));
    let frames = png_frames(&progress);
    let delays: Vec<u32> = frames.iter().map(|(delay, _)| *delay).collect();
    assert_eq!(delays, [120, 120, 2000]);
    for (epoch, (_, pixels)) in frames.iter().enumerate() {
        let grid = out.join(format!("samples_epoch_{:03}.png", epoch + 1));
        assert_eq!(
            pixels,
            &png_frames(&grid)[0].1,
            "frame {epoch}: {}",
            grid.display()
        );
    }
    assert_ne!(frames[0].1, frames[2].1, "the generator changed");

    // --sample-every: grids between epochs too, drawn without touching the training's random
    // stream (the same losses as a run without them).
    let sampled = scratch("sampled");
    run_ok(mnist_gan(
        &data,
        &sampled,
        &["--epochs", "3", "--sample-every", "3"],
    ));
    let mut iteration_grids: Vec<String> = std::fs::read_dir(&sampled)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("samples_iter_"))
        .collect();
    iteration_grids.sort();
    assert_eq!(
        iteration_grids,
        ["samples_iter_0000003.png", "samples_iter_0000006.png"]
    );
    let grid = |name: &str| png_frames(&sampled.join(name)).remove(0).1;
    assert_eq!(
        grid("samples_iter_0000006.png"),
        frames[2].1,
        "epoch 3 ends at 6"
    );
    let mid_epoch = grid("samples_iter_0000003.png");
    assert!(mid_epoch != frames[0].1 && mid_epoch != frames[1].1);
    assert_eq!(losses(&sampled), losses(&out));
    std::fs::remove_dir_all(&sampled).unwrap();

    let checkpoint = out.join("checkpoint.safetensors");
    let resume = ["--epochs", "4", "--resume", checkpoint.to_str().unwrap()];
    run_ok(mnist_gan(&data, &out, &resume));
    let frames = png_frames(&progress);
    assert_eq!(frames.len(), 4);
    let last_grid = png_frames(&out.join("samples_epoch_004.png"));
    assert_eq!(frames[3].1, last_grid[0].1);

    // A file under a grid's name that is not one costs the animation, with a note, not the run.
    std::fs::write(out.join("samples_epoch_010.png"), "not a PNG").unwrap();
    let resume = ["--epochs", "5", "--resume", checkpoint.to_str().unwrap()];
    let said = run_ok(mnist_gan(&data, &out, &resume));
    let stderr = String::from_utf8_lossy(&said.stderr);
    assert!(
        stderr.contains("no animation") && stderr.contains("samples_epoch_010.png"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&said.stdout);
    assert!(!stdout.contains("samples, animated"), "{stdout}");
    assert_eq!(png_frames(&progress).len(), 4, "the animation before stays");

    // A run that ends inside its first epoch finishes no grid, and writes no animation.
    let partial = scratch("partial-epoch");
    let said = run_ok(mnist_gan(&data, &partial, &["--max-iters", "1"]));
    assert!(!String::from_utf8_lossy(&said.stdout).contains("samples, animated"));
    assert!(!partial.join("samples_progress.png").exists());
    for dir in [data, out, partial] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// A run that diverges (`--lr 1e30`: NaN within a few steps) stops with an error that says
/// so, and writes no checkpoint of NaN weights over the last good one, whose `--resume` the
/// error gives.
#[test]
fn a_diverging_run_stops_and_keeps_its_last_finite_checkpoint() {
    use ferrograd::nn::Module;
    let data = scratch("tiny-mnist-diverging");
    tiny_mnist(&data, 640);
    let out = scratch("diverging");
    run_ok(mnist_gan(&data, &out, &["--max-iters", "2"]));
    let checkpoint = out.join("checkpoint.safetensors");
    let resume = ["--resume", checkpoint.to_str().unwrap()];
    let diverging = [
        "--lr",
        "1e30",
        "--checkpoint-every",
        "1",
        "--max-iters",
        "100",
    ];
    let output = mnist_gan(&data, &out, &[&resume[..], &diverging].concat())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(
        stderr.contains("training diverged at iteration") && stderr.contains("a lower --lr"),
        "{stderr}"
    );
    let step = step_of(&checkpoint);
    assert!(
        stderr.contains(&format!(
            "the checkpoint of iteration {step} is intact: continue with --resume {}",
            checkpoint.display()
        )),
        "{stderr}"
    );
    let mut gan = ferrograd::gan::Gan::new(&ferrograd::Device::Cpu, 2e-4);
    gan.load_checkpoint(&checkpoint).unwrap();
    let parameters = [gan.generator.parameters(), gan.discriminator.parameters()].concat();
    for parameter in parameters {
        assert!(
            parameter.to_vec().iter().all(|v| v.is_finite()),
            "step {step}"
        );
    }
    let logged = losses(&out);
    // NaN appears within the first few steps (at 4 here): the run stops there, far from
    // its --max-iters.
    let last = logged.last().unwrap()[0];
    assert!(last < 10.0, "stopped at iteration {last}, not at once");
    for dir in [data, out] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// An epoch count whose iterations overflow 64 bits trains until `--max-iters`, not until
/// the product wrapped around (here 2 batches an epoch: it wrapped to iteration 2).
#[test]
fn epochs_past_u64_iterations_train_until_max_iters() {
    let data = scratch("tiny-mnist-epochs");
    tiny_mnist(&data, 128);
    let out = scratch("many-epochs");
    let epochs = (u64::MAX / 2 + 2).to_string(); // × 2 batches = 2 (mod 2⁶⁴)
    run_ok(mnist_gan(
        &data,
        &out,
        &["--epochs", &epochs, "--max-iters", "5"],
    ));
    assert_eq!(step_of(&out.join("checkpoint.safetensors")), 5);
    for dir in [data, out] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// A sample grid that cannot be written (here `samples_latest.png` is a directory; on a full
/// disk, no room) stops the run, but the epoch's checkpoint is written first: the error says
/// to continue from it, not that the run wrote none. The command it prints, run by a shell once
/// the obstacle is gone, finishes the run: it has the run's options (`--epochs 2`, `--data`),
/// and quotes the directory's space.
#[test]
fn a_picture_that_cannot_be_written_stops_the_run_with_its_checkpoint_saved() {
    let data = scratch("tiny-mnist-unwritable-grid");
    tiny_mnist(&data, 3 * 64);
    let out = scratch("unwritable grid");
    let blocked = out.join("samples_latest.png");
    std::fs::create_dir_all(&blocked).unwrap();
    let checkpoint = out.join("checkpoint.safetensors");
    let output = mnist_gan(&data, &out, &["--epochs", "2"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && !stderr.contains("panicked"),
        "{stderr}"
    );
    let hint = "the checkpoint of iteration 3 is intact: continue with ";
    let options = stderr
        .lines()
        .find_map(|line| line.strip_prefix(hint))
        .unwrap_or_else(|| panic!("no {hint:?} in\n{stderr}"));
    assert!(stderr.contains("samples_latest.png"), "{stderr}");
    assert!(options.ends_with("--epochs 2"), "{options}");
    assert_eq!(step_of(&checkpoint), 3);
    #[cfg(unix)]
    {
        std::fs::remove_dir(&blocked).unwrap();
        let mut resumed = Command::new("sh");
        resumed
            .args(["-c", &format!("exec \"$0\" {options}")])
            .arg(example("mnist_gan"));
        run_ok(resumed);
        assert_eq!(
            step_of(&checkpoint),
            6,
            "two epochs of 3 batches: {options}"
        );
        assert_eq!(losses(&out).len(), 6);
    }
    for dir in [data, out] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// A checkpoint that cannot be written (here larger than the file-size limit, as on a full
/// disk) stops the run within its next steps, not at its next write, an epoch later, with an
/// error that names it; the checkpoint before it stays as it was, no temporary file is left,
/// and the error says how to continue from it, which works. Unix only: `ulimit -f`.
#[cfg(unix)]
#[test]
fn a_checkpoint_that_cannot_be_written_stops_the_run_and_names_the_one_intact() {
    let data = scratch("tiny-mnist-full-disk");
    tiny_mnist(&data, 50 * 64); // 50 batches an epoch
    let out = scratch("full-disk");
    run_ok(mnist_gan(&data, &out, &["--epochs", "1"]));
    let checkpoint = out.join("checkpoint.safetensors");
    let intact = std::fs::read(&checkpoint).unwrap();
    let resume = ["--resume", checkpoint.to_str().unwrap()];

    // SIGXFSZ ignored (exec keeps that), a write past the limit fails with EFBIG instead of
    // killing the process. 4096 blocks (2 or 4 MiB): the log and the pictures fit, a
    // checkpoint (35 MB) does not.
    let run = mnist_gan(&data, &out, &[&resume[..], &["--epochs", "10"]].concat());
    let mut limited = Command::new("sh");
    limited
        .args(["-c", "trap '' XFSZ; ulimit -f 4096; exec \"$0\" \"$@\""])
        .arg(run.get_program())
        .args(run.get_args());
    fails_with(
        limited,
        &[
            "the checkpoint of iteration 100 was not written",
            &format!(
                "the checkpoint of iteration 50 is intact: continue with --resume {}",
                checkpoint.display()
            ),
        ],
    );
    assert!(std::fs::read(&checkpoint).unwrap() == intact, "unchanged");
    let files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !files.iter().any(|name| name.ends_with(".tmp")),
        "{files:?}"
    );
    let last_logged = losses(&out).last().unwrap()[0];
    assert!(
        (100.0..150.0).contains(&last_logged),
        "stopped at iteration {last_logged}, not soon after the failed checkpoint at 100"
    );

    run_ok(mnist_gan(
        &data,
        &out,
        &[&resume[..], &["--epochs", "2"]].concat(),
    ));
    assert_eq!(step_of(&checkpoint), 100);
    for dir in [data, out] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}
