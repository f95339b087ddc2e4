//! What the GAN examples write: sample grids (PNG), the loss curve (SVG) and generated samples
//! (IDX). Shared by `mnist_gan` and `gan_sample`.
#![allow(dead_code)] // each example uses a part

use std::error::Error;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ferrograd::atomic_file::write_atomically;
use ferrograd::data::idx;
use ferrograd::data::mnist::IMAGE_SIDE;
use ferrograd::gan::LATENT_DIM;
use ferrograd::nn::{Module, Sequential};
use ferrograd::rng::Generator;
use ferrograd::{no_grad, Device, Tensor};

/// The process's exit code for `result`, printing the error (not a panic) if there is one.
pub fn exit_code(result: Result<(), Box<dyn Error>>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// A generator output in `[-1, 1]` as a byte: `round((x + 1) / 2 · 255)`.
pub fn to_pixel(x: f32) -> u8 {
    ((x.clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0).round() as u8
}

/// Writes `images` (`[n, 784]`, values in `[-1, 1]`) as a grid of `cols` columns, white digits
/// on black with a 2-pixel gray border, as a grayscale PNG, atomically.
pub fn write_grid_png(path: &Path, images: &Tensor, cols: usize) -> ferrograd::Result<()> {
    const BORDER: usize = 2;
    let n = images.shape()[0];
    let rows = n.div_ceil(cols);
    let cell = IMAGE_SIDE + BORDER;
    let (width, height) = (cols * cell + BORDER, rows * cell + BORDER);
    let mut canvas = vec![64u8; width * height];
    for (i, image) in images
        .to_vec()
        .chunks_exact(IMAGE_SIDE * IMAGE_SIDE)
        .enumerate()
    {
        let (top, left) = ((i / cols) * cell + BORDER, (i % cols) * cell + BORDER);
        for (r, row) in image.chunks_exact(IMAGE_SIDE).enumerate() {
            let start = (top + r) * width + left;
            for (dst, &x) in canvas[start..start + IMAGE_SIDE].iter_mut().zip(row) {
                *dst = to_pixel(x);
            }
        }
    }
    write_atomically(path, |file| {
        let mut encoder = png::Encoder::new(BufWriter::new(file), width as u32, height as u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(io::Error::other)?;
        writer.write_image_data(&canvas).map_err(io::Error::other)?;
        writer.finish().map_err(io::Error::other)
    })
    .map_err(at_path(path))
}

/// The `samples_epoch_NNN.png` grids in `dir`, in epoch order.
pub fn epoch_grids(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut grids: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|name| name.to_str());
        let epoch = name.and_then(|name| {
            let number = name.strip_prefix("samples_epoch_")?.strip_suffix(".png")?;
            number.parse().ok()
        });
        if let Some(epoch) = epoch {
            grids.push((epoch, path));
        }
    }
    grids.sort();
    Ok(grids.into_iter().map(|(_, path)| path).collect())
}

/// How long each frame of [`write_progress_apng`] shows, in ms; the last one stays up longer,
/// so that the final samples can be seen before the animation starts again.
const FRAME_MS: u16 = 120;
const LAST_FRAME_MS: u16 = 2000;

/// Writes the grids `frames` (PNG files of one size, 8-bit grayscale, as [`write_grid_png`]
/// writes them) as one animated PNG that plays them in order and loops: the generator's
/// progress at a glance, like the animation in PyTorch's DCGAN tutorial. Browsers play APNG;
/// other viewers show its first frame. Written atomically, as the grids are.
pub fn write_progress_apng(path: &Path, frames: &[PathBuf]) -> ferrograd::Result<()> {
    let images = frames
        .iter()
        .map(|frame| read_gray_png(frame))
        .collect::<ferrograd::Result<Vec<_>>>()?;
    let Some(&(width, height, _)) = images.first() else {
        let none = io::Error::new(io::ErrorKind::InvalidInput, "no frames to animate");
        return Err(at_path(path)(none));
    };
    for (frame, &(w, h, _)) in frames.iter().zip(&images) {
        if (w, h) != (width, height) {
            let message = format!("{w} × {h} pixels, where the first frame is {width} × {height}");
            return Err(at_path(frame)(io::Error::new(
                io::ErrorKind::InvalidData,
                message,
            )));
        }
    }
    write_atomically(path, |file| {
        let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .set_animated(images.len() as u32, 0) // 0 plays: loop forever
            .map_err(io::Error::other)?;
        encoder
            .set_frame_delay(FRAME_MS, 1000)
            .map_err(io::Error::other)?;
        let mut writer = encoder.write_header().map_err(io::Error::other)?;
        for (i, (_, _, pixels)) in images.iter().enumerate() {
            if i + 1 == images.len() {
                writer
                    .set_frame_delay(LAST_FRAME_MS, 1000)
                    .map_err(io::Error::other)?;
            }
            writer.write_image_data(pixels).map_err(io::Error::other)?;
        }
        writer.finish().map_err(io::Error::other)
    })
    .map_err(at_path(path))
}

/// An 8-bit grayscale PNG's width, height and pixels.
fn read_gray_png(path: &Path) -> ferrograd::Result<(u32, u32, Vec<u8>)> {
    let read = || -> io::Result<(u32, u32, Vec<u8>)> {
        let decoder = png::Decoder::new(io::BufReader::new(File::open(path)?));
        let mut reader = decoder.read_info().map_err(io::Error::other)?;
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| io::Error::other("too large to decode"))?;
        let mut pixels = vec![0; size];
        let frame = reader.next_frame(&mut pixels).map_err(io::Error::other)?;
        if (frame.color_type, frame.bit_depth) != (png::ColorType::Grayscale, png::BitDepth::Eight)
        {
            let message = "not an 8-bit grayscale PNG, as the sample grids are";
            return Err(io::Error::new(io::ErrorKind::InvalidData, message));
        }
        pixels.truncate(frame.buffer_size());
        Ok((frame.width, frame.height, pixels))
    };
    read().map_err(at_path(path))
}

/// An I/O error as the library reports one, naming `path`: "No such file or directory"
/// alone does not say which.
pub fn at_path(path: &Path) -> impl FnOnce(io::Error) -> ferrograd::Error + '_ {
    |source| ferrograd::Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The generator's images for `noise`, without recording a graph.
pub fn generate(generator: &Sequential, noise: &Tensor) -> Tensor {
    let _recording_off = no_grad();
    generator.forward(noise)
}

/// Writes `count` samples as an IDX3 file (magic 0x00000803, count × 28 × 28 bytes), noise
/// drawn from `rng`, generated in batches of 500 and written as they come (a million samples
/// are 784 MB: the file, not memory, holds them), atomically.
///
/// # Panics
/// If `count` does not fit in 32 bits, as IDX's sizes must (`--num-samples` stops it first).
pub fn write_samples_idx(
    path: &Path,
    generator: &Sequential,
    count: usize,
    rng: &mut Generator,
    device: &Device,
) -> ferrograd::Result<()> {
    const BATCH: usize = 500;
    write_atomically(path, |file| {
        let mut out = BufWriter::new(file);
        out.write_all(&idx::header(&[count, IMAGE_SIDE, IMAGE_SIDE]))?;
        for start in (0..count).step_by(BATCH) {
            let noise = Tensor::randn_with(&[BATCH.min(count - start), LATENT_DIM], device, rng);
            let pixels: Vec<u8> = generate(generator, &noise)
                .to_vec()
                .into_iter()
                .map(to_pixel)
                .collect();
            out.write_all(&pixels)?;
        }
        out.flush()
    })
    .map_err(at_path(path))
}

/// One row of `losses.csv`.
#[derive(Clone, Copy, Debug)]
pub struct LossRow {
    pub epoch: u64,
    pub iter: u64,
    pub d_loss: f32,
    pub g_loss: f32,
    pub d_real: f32,
    pub d_fake: f32,
}

pub const CSV_HEADER: &str = "epoch,iter,d_loss,g_loss,d_x,d_g_z";

impl LossRow {
    pub fn to_csv(self) -> String {
        format!(
            "{},{},{},{},{},{}",
            self.epoch, self.iter, self.d_loss, self.g_loss, self.d_real, self.d_fake
        )
    }

    pub fn from_csv(line: &str) -> Option<LossRow> {
        let mut fields = line.split(',');
        let mut next = || fields.next();
        Some(LossRow {
            epoch: next()?.parse().ok()?,
            iter: next()?.parse().ok()?,
            d_loss: next()?.parse().ok()?,
            g_loss: next()?.parse().ok()?,
            d_real: next()?.parse().ok()?,
            d_fake: next()?.parse().ok()?,
        })
    }
}

/// `losses.csv`, a row per iteration, kept so that a kill at any moment loses no row a
/// checkpoint has passed: a resumed run finds every row up to the step it resumes from.
pub struct LossLog {
    rows: Vec<LossRow>,
    csv: BufWriter<File>,
}

impl LossLog {
    /// Opens `path` for a run at iteration `step`, which continues the log at `earlier` (the
    /// same file, or that of the run resumed from elsewhere; it need not exist). Its rows up
    /// to `step` are kept (those written after the checkpoint are dropped: the resumed run
    /// writes them again) and written to `path` atomically, so that no kill can lose them;
    /// new rows are appended.
    pub fn open(path: &Path, earlier: &Path, step: u64) -> ferrograd::Result<LossLog> {
        let rows: Vec<LossRow> = match std::fs::read_to_string(earlier) {
            Ok(text) => text
                .lines()
                .skip(1)
                .filter_map(LossRow::from_csv)
                .filter(|row| row.iter <= step)
                .collect(),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(err) => return Err(at_path(earlier)(err)),
        };
        write_atomically(path, |file| {
            let mut csv = BufWriter::new(file);
            writeln!(csv, "{CSV_HEADER}")?;
            for row in &rows {
                writeln!(csv, "{}", row.to_csv())?;
            }
            csv.flush()
        })
        .map_err(at_path(path))?;
        let file = OpenOptions::new().append(true).open(path);
        let csv = BufWriter::new(file.map_err(at_path(path))?);
        Ok(LossLog { rows, csv })
    }

    pub fn push(&mut self, row: LossRow) -> io::Result<()> {
        writeln!(self.csv, "{}", row.to_csv())?;
        self.rows.push(row);
        Ok(())
    }

    pub fn rows(&self) -> &[LossRow] {
        &self.rows
    }

    /// Hands the buffered rows to the operating system (which a kill of the process does not
    /// lose) and returns the file, for its rows to be synced to disk (`File::sync_data`)
    /// before the checkpoint of this step is written: then no checkpoint is ahead of the log,
    /// even after a power cut.
    pub fn flush(&mut self) -> io::Result<File> {
        self.csv.flush()?;
        self.csv.get_ref().try_clone()
    }
}

/// The loss curves as an SVG line chart: D and G loss per iteration, averaged over windows so
/// that at most ~600 points are drawn, with the epoch on the x axis.
pub fn loss_plot_svg(rows: &[LossRow], batches_per_epoch: usize) -> String {
    const W: f32 = 720.0;
    const H: f32 = 360.0;
    const PAD: f32 = 48.0;
    let window = rows.len().div_ceil(600).max(1);
    let smooth = |value: fn(&LossRow) -> f32| -> Vec<(f32, f32)> {
        rows.chunks(window)
            .map(|chunk| {
                let mean = chunk.iter().map(value).sum::<f32>() / chunk.len() as f32;
                (
                    chunk[chunk.len() - 1].iter as f32 / batches_per_epoch as f32,
                    mean,
                )
            })
            .collect()
    };
    let d = smooth(|r| r.d_loss);
    let g = smooth(|r| r.g_loss);
    let x_max = d.last().map_or(1.0, |p| p.0).max(1e-3);
    let y_max = d
        .iter()
        .chain(&g)
        .map(|p| p.1)
        .fold(1.0f32, f32::max)
        .min(10.0);
    let to_svg = |(x, y): (f32, f32)| {
        let sx = PAD + x / x_max * (W - 2.0 * PAD);
        let sy = H - PAD - y.min(y_max) / y_max * (H - 2.0 * PAD);
        format!("{sx:.1},{sy:.1}")
    };
    let polyline = |points: &[(f32, f32)], color: &str| {
        let points: Vec<String> = points.iter().copied().map(to_svg).collect();
        format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
            points.join(" ")
        )
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <text x=\"{r}\" y=\"{lb}\" text-anchor=\"end\">epoch</text>\n\
         <text x=\"{PAD}\" y=\"{lb}\" text-anchor=\"middle\">0</text>\n\
         <text x=\"4\" y=\"{t}\">loss</text>\n\
         <text x=\"{lx}\" y=\"20\" fill=\"#c0392b\">D loss</text>\n\
         <text x=\"{gx}\" y=\"20\" fill=\"#2471a3\">G loss</text>\n",
        b = H - PAD,
        r = W - PAD,
        lb = H - PAD + 32.0,
        t = PAD + 4.0,
        lx = W - 200.0,
        gx = W - 120.0,
    );
    // Ticks: whole epochs (at most ~10 labels) and whole loss values.
    let every = (x_max / 10.0).ceil().max(1.0) as usize;
    for epoch in (every..=x_max as usize).step_by(every) {
        let x = PAD + epoch as f32 / x_max * (W - 2.0 * PAD);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{b}\" x2=\"{x:.1}\" y2=\"{t}\" stroke=\"black\"/>\
             <text x=\"{x:.1}\" y=\"{l}\" text-anchor=\"middle\">{epoch}</text>",
            b = H - PAD,
            t = H - PAD + 4.0,
            l = H - PAD + 16.0,
        );
    }
    for value in 1..y_max as usize {
        let y = H - PAD - value as f32 / y_max * (H - 2.0 * PAD);
        let _ = writeln!(
            svg,
            "<line x1=\"{a}\" y1=\"{y:.1}\" x2=\"{PAD}\" y2=\"{y:.1}\" stroke=\"black\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{value}</text>",
            a = PAD - 4.0,
            tx = PAD - 6.0,
            ty = y + 4.0,
        );
    }
    svg.push_str(&polyline(&d, "#c0392b"));
    svg.push('\n');
    svg.push_str(&polyline(&g, "#2471a3"));
    svg.push_str("\n</svg>\n");
    svg
}
