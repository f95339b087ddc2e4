//! The command line: `mnist_gan --help`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use ferrograd::data::download::MIRROR_ENV;

/// Where to train (`--device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The first GPU if there is one, else the CPU.
    Auto,
    Cpu,
    /// GPU N, numbered as PyTorch and `nvidia-smi` number them (`cuda` is `cuda:0`).
    Cuda(usize),
    /// The GPU's path, our CUDA kernels and all, run by the CPU emulator (slow).
    CudaEmulator,
    /// The same as a Turing GPU (sm_75, a T4) runs it: no TF32 tensor cores, no `cp.async`.
    CudaEmulatorSm75,
}

impl DeviceChoice {
    /// Whether this is one of the CPU emulator's devices.
    pub fn is_emulator(self) -> bool {
        matches!(
            self,
            DeviceChoice::CudaEmulator | DeviceChoice::CudaEmulatorSm75
        )
    }
}

fn parse_device(text: &str) -> Result<DeviceChoice, String> {
    match text {
        "auto" => Ok(DeviceChoice::Auto),
        "cpu" => Ok(DeviceChoice::Cpu),
        "cuda" => Ok(DeviceChoice::Cuda(0)),
        "cuda-emulator" => Ok(DeviceChoice::CudaEmulator),
        "cuda-emulator-sm75" => Ok(DeviceChoice::CudaEmulatorSm75),
        _ => text
            .strip_prefix("cuda:")
            .and_then(|ordinal| ordinal.parse().ok())
            .map(DeviceChoice::Cuda)
            .ok_or_else(|| {
                format!(
                    "{text:?} is not auto, cpu, cuda, cuda:N, cuda-emulator or \
                     cuda-emulator-sm75"
                )
            }),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Autotune {
    Off,
    Tiles,
    Splits,
}

/// Train the classic MLP GAN (G 100-256-512-1024-784, D 784-1024-512-256-1) on MNIST.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Args {
    /// Epochs to train (the classic script's 100).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub epochs: u64,
    /// Images per batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Adam's learning rate, for both networks [default: 2e-4, or a resumed run's own].
    // Negative numbers reach the parser, which says what is wrong with them, instead of clap
    // taking `-1` in `--lr -1` for an option it does not know.
    #[arg(long, value_parser = positive_f32, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// Seed of the weights, the data order, the noise and dropout.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to train: auto (the first GPU if there is one, else the CPU), cpu, cuda (the
    /// first GPU), cuda:N (GPU N), or cuda-emulator (the GPU's path on the CPU emulator of our
    /// kernels: seconds a step, for checking that path on a machine without a GPU;
    /// cuda-emulator-sm75: as a Turing GPU, such as a T4, runs it).
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub device: DeviceChoice,
    /// On a GPU, launch every kernel of every step instead of replaying the step captured
    /// once as a CUDA graph (same results, slower).
    #[arg(long)]
    pub eager: bool,
    /// On a GPU, time the step's matrix products in their configurations before training and
    /// run each in the fastest: `tiles` (64 × 64 or 32 × 32 tiles: the same results, bit for
    /// bit), `splits` (also how split-K cuts k: last-bit differences), or `off`.
    #[arg(long, value_enum, default_value_t = Autotune::Tiles)]
    pub autotune: Autotune,
    /// On a GPU, let matrix products use TF32 tensor cores (10-bit mantissas in the products,
    /// FP32 sums; as PyTorch's allow_tf32). GPUs before sm_80 have none: FP32 there.
    #[arg(long)]
    pub tf32: bool,
    /// On the CPU, round the matrix products' operands to BF16 and multiply them on Intel AMX
    /// tiles (Xeon 4th generation or later) or with AVX512-BF16 (AMD Zen 4 or later); FP32
    /// sums, as PyTorch's autocast to bfloat16. Says so where it would train slower than FP32.
    #[arg(long)]
    pub bf16: bool,
    /// The MNIST directory; missing files are downloaded into it.
    #[arg(long, env = "MNIST_DIR", default_value = "data/mnist")]
    pub data: PathBuf,
    /// Base URL to download MNIST from, instead of the public mirrors.
    #[arg(long, env = MIRROR_ENV, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub mirror: Option<String>,
    /// Where samples, losses and checkpoints go [default: runs/mnist_gan, or with --resume the
    /// checkpoint's directory, so that the run goes on where it was].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// CPU worker threads [default: RAYON_NUM_THREADS, else one per physical core, as PyTorch].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub threads: Option<u64>,
    /// Stop after this many iterations in all (for smoke runs).
    #[arg(long)]
    pub max_iters: Option<u64>,
    /// Also checkpoint every N iterations; 0, the default, writes only the checkpoints that
    /// are always written, after each epoch and when training stops.
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: u64,
    /// Also write the sample grid every N iterations, as samples_iter_NNNNNNN.png (as
    /// PyTorch-GAN's --sample_interval); 0, the default, writes it after each epoch only.
    #[arg(long, default_value_t = 0)]
    pub sample_every: u64,
    /// Continue the run saved in this checkpoint, in its directory unless --out says otherwise
    /// (a new --out starts with the run's losses so far).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Start a new run in --out even though another run's checkpoint is there (that run's
    /// files are replaced).
    #[arg(long)]
    pub overwrite: bool,
    /// After training, write generated samples to this file as IDX3 (28 × 28 unsigned bytes).
    #[arg(long)]
    pub samples_out: Option<PathBuf>,
    /// How many samples --samples-out writes (IDX counts them in 32 bits).
    #[arg(
        long,
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..=u32::MAX.into())
    )]
    pub num_samples: u64,
}

fn positive_f32(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

impl Args {
    /// `--out`, or its default: where a resumed run's checkpoint is, else `runs/mnist_gan`.
    pub fn out_dir(&self) -> PathBuf {
        match (&self.out, &self.resume) {
            (Some(out), _) => out.clone(),
            (None, Some(checkpoint)) => directory_of(checkpoint),
            (None, None) => PathBuf::from("runs/mnist_gan"),
        }
    }
}

/// The directory `file` is in (`.` for a bare file name).
pub fn directory_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The options that continue the run saved in `checkpoint` with this command's own: `--resume`
/// and every option this process was given but `--resume` and `--overwrite`, so that a stopped
/// run goes on with its `--epochs`, `--data`, `--bf16`… (a resumed run takes its seed, batch
/// size and learning rate from the checkpoint, and the same ones given again change nothing).
/// Each is quoted where a shell would split or expand it.
pub fn resume_options(checkpoint: &Path) -> String {
    let mut options = vec![
        OsString::from("--resume"),
        checkpoint.as_os_str().to_owned(),
    ];
    let mut given = std::env::args_os().skip(1);
    while let Some(option) = given.next() {
        match option.to_string_lossy().as_ref() {
            "--resume" => {
                given.next(); // its value
            }
            "--overwrite" => {}
            text if text.starts_with("--resume=") => {}
            _ => options.push(option),
        }
    }
    options
        .iter()
        .map(|option| shell_word(&option.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `word` as a shell reads it back: as it is if no character of it means anything to a shell,
/// else in single quotes (in double quotes on Windows, whose paths' `\` is no escape there).
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !word.is_empty()
        && word
            .chars()
            .all(|c| plain(c) || (cfg!(windows) && c == '\\'))
    {
        word.to_string()
    } else if cfg!(windows) {
        format!("\"{word}\"")
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
