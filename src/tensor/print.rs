//! How a tensor prints (`{}`): as PyTorch's `print(t)` prints it, by the rules of its
//! `torch/_tensor_str.py` —
//!
//! - every element in one width, with 4 decimals; whole numbers as `3.`; scientific notation
//!   (`1.0000e-05`) when the nonzero magnitudes span more than a factor of 1000, exceed 1e8,
//!   or (not all whole) go below 1e-4;
//! - lines of at most 80 characters, nested brackets indented under their parent;
//! - a tensor of more than 1000 elements summarised to the first and last 3 entries of each
//!   dimension, with `...` between (the widths are then chosen from the entries shown);
//! - after the values, `device='cuda:0'` off the CPU, then `grad_fn=<…Backward0>` for an op's
//!   result, under PyTorch's name for the op written (`x.matmul(&w)` → `MmBackward0`, a fused
//!   `linear_tanh` → `TanhBackward0`, its last op), or `requires_grad=True` for a leaf that
//!   records.
//!
//! The numbers in those rules are [`PrintOptions`], set for the whole program with
//! [`set_print_options`] as `torch.set_printoptions` sets PyTorch's. A precision in the format,
//! `{:.2}`, prints that many decimals for that one tensor.

use std::fmt;
use std::sync::{PoisonError, RwLock};

use super::{NodeKind, Tensor};
use crate::device::Device;

/// How tensors print: PyTorch's print options, by the names of `torch.set_printoptions`'s
/// arguments. Set them with [`set_print_options`]; the constants are PyTorch's profiles.
///
/// ```
/// use ferrograd::{print_options, set_print_options, Device, PrintOptions, Tensor};
/// let t = Tensor::from_vec(vec![1e-5, 0.5, 2.0], &[3], &Device::Cpu);
/// assert_eq!(t.to_string(), "tensor([1.0000e-05, 5.0000e-01, 2.0000e+00])");
/// // torch.set_printoptions(precision=2, sci_mode=False)
/// set_print_options(PrintOptions { precision: 2, sci_mode: Some(false), ..print_options() });
/// assert_eq!(t.to_string(), "tensor([0.00, 0.50, 2.00])");
/// set_print_options(PrintOptions::DEFAULT); // torch.set_printoptions(profile="default")
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrintOptions {
    /// Decimals of each value (of its mantissa, in scientific notation).
    pub precision: usize,
    /// A tensor of more elements than this is summarised: `usize::MAX` never summarises.
    pub threshold: usize,
    /// How many entries a summarised dimension shows at each end (PyTorch's `edgeitems`).
    /// With 0, a tensor also prints its `size=`, as in PyTorch.
    pub edge_items: usize,
    /// Characters a line holds before values wrap (PyTorch's `linewidth`).
    pub line_width: usize,
    /// `Some(true)` always writes scientific notation, `Some(false)` never; `None` chooses by
    /// the values' magnitudes.
    pub sci_mode: Option<bool>,
}

impl PrintOptions {
    /// `profile="default"`: 4 decimals, tensors over 1000 elements summarised to 3 entries at
    /// each end, 80 characters a line, notation chosen by the values.
    pub const DEFAULT: PrintOptions = PrintOptions {
        precision: 4,
        threshold: 1000,
        edge_items: 3,
        line_width: 80,
        sci_mode: None,
    };
    /// `profile="short"`: 2 decimals, 2 entries at each end of a summarised dimension.
    pub const SHORT: PrintOptions = PrintOptions {
        precision: 2,
        edge_items: 2,
        ..PrintOptions::DEFAULT
    };
    /// `profile="full"`: every element, however many.
    pub const FULL: PrintOptions = PrintOptions {
        threshold: usize::MAX,
        ..PrintOptions::DEFAULT
    };
}

impl Default for PrintOptions {
    fn default() -> Self {
        PrintOptions::DEFAULT
    }
}

/// The options every tensor prints with, as PyTorch's are: one setting for the whole
/// program, all threads.
static PRINT_OPTIONS: RwLock<PrintOptions> = RwLock::new(PrintOptions::DEFAULT);

/// Sets how every tensor prints from now on, in every thread: `torch.set_printoptions`. Each
/// field is set, so keep the current ones with `..print_options()`; PyTorch's
/// `set_printoptions(profile="full")` is `set_print_options(PrintOptions::FULL)`.
#[doc(alias = "set_printoptions")]
pub fn set_print_options(options: PrintOptions) {
    // A panic elsewhere while the lock was held cannot have left a half-written `Copy` value.
    *PRINT_OPTIONS
        .write()
        .unwrap_or_else(PoisonError::into_inner) = options;
}

/// The options tensors print with now (`torch._tensor_str.PRINT_OPTS`).
pub fn print_options() -> PrintOptions {
    *PRINT_OPTIONS.read().unwrap_or_else(PoisonError::into_inner)
}

const PREFIX: &str = "tensor(";

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options = print_options();
        let shape = self.shape();
        let values = self.to_vec();
        let mut suffixes = Vec::new();
        if *self.device() != Device::Cpu {
            suffixes.push(format!("device='{}'", self.device()));
        }
        let body = if values.is_empty() {
            if shape.len() != 1 {
                suffixes.push(format!("size={}", python_tuple(shape)));
            }
            "[]".to_string()
        } else {
            if options.edge_items == 0 {
                suffixes.push(format!("size={}", python_tuple(shape)));
            }
            let layout = Layout {
                summarized_to: (values.len() > options.threshold).then_some(options.edge_items),
                line_width: options.line_width,
            };
            let block = Block {
                shape,
                values: &values,
            };
            let mut shown = Vec::new();
            block.collect_shown(&layout, &mut shown);
            let precision = f.precision().unwrap_or(options.precision);
            let formatter = ElementFormat::for_values(&shown, precision, options.sci_mode);
            block.text(PREFIX.len(), &layout, &formatter)
        };
        if let Some(node) = self.node() {
            suffixes.push(match &node.kind {
                NodeKind::Op { grad_fn, inputs } => {
                    format!("grad_fn=<{}>", backward_name(grad_fn.name(), inputs.len()))
                }
                NodeKind::Leaf => "requires_grad=True".to_string(),
            });
        }
        let text = format!("{PREFIX}{body}");
        f.write_str(&with_suffixes(text, &suffixes, options.line_width))
    }
}

/// Where a tensor's values go: which entries are printed, and how long a line is.
struct Layout {
    /// When the tensor is summarised, how many entries each dimension shows at each end.
    summarized_to: Option<usize>,
    line_width: usize,
}

/// A row-major block of values: the whole tensor, or one entry of an outer dimension.
struct Block<'a> {
    shape: &'a [usize],
    values: &'a [f32],
}

impl Block<'_> {
    /// The `i`-th entry along the first dimension.
    fn entry(&self, i: usize) -> Block<'_> {
        let len = self.values.len() / self.shape[0];
        Block {
            shape: &self.shape[1..],
            values: &self.values[i * len..(i + 1) * len],
        }
    }

    /// The entries printed along the first dimension (`None`: the `...` between the ends).
    fn printed_entries(&self, layout: &Layout) -> Vec<Option<usize>> {
        let n = self.shape[0];
        match layout.summarized_to {
            Some(edge) if n > 2 * edge => {
                let head = (0..edge).map(Some);
                let tail = (n - edge..n).map(Some);
                head.chain([None]).chain(tail).collect()
            }
            _ => (0..n).map(Some).collect(),
        }
    }

    /// Appends the values that will be printed (PyTorch's `get_summarized_data`), from which
    /// the common width is chosen.
    fn collect_shown(&self, layout: &Layout, shown: &mut Vec<f32>) {
        if self.shape.is_empty() {
            shown.push(self.values[0]);
            return;
        }
        for i in self.printed_entries(layout).into_iter().flatten() {
            self.entry(i).collect_shown(layout, shown);
        }
    }

    /// The block's text, its continuation lines starting `indent` columns in.
    fn text(&self, indent: usize, layout: &Layout, format: &ElementFormat) -> String {
        match self.shape.len() {
            0 => format.padded(self.values[0]),
            1 => self.vector_text(indent, layout, format),
            dims => {
                let entries: Vec<String> = self
                    .printed_entries(layout)
                    .into_iter()
                    .map(|entry| match entry {
                        Some(i) => self.entry(i).text(indent + 1, layout, format),
                        None => "...".to_string(),
                    })
                    .collect();
                let separator = format!(",{}{}", "\n".repeat(dims - 1), " ".repeat(indent + 1));
                format!("[{}]", entries.join(&separator))
            }
        }
    }

    /// A vector: as many elements a line as fit in the line width.
    fn vector_text(&self, indent: usize, layout: &Layout, format: &ElementFormat) -> String {
        let per_line = (layout.line_width.saturating_sub(indent) / (format.width + 2)).max(1);
        // Between values, `...` lines up with their commas; alone (no entries shown at the
        // ends), it needs no space.
        let gap = if layout.summarized_to == Some(0) {
            "..."
        } else {
            " ..."
        };
        let elements: Vec<String> = self
            .printed_entries(layout)
            .into_iter()
            .map(|entry| match entry {
                Some(i) => format.padded(self.values[i]),
                None => gap.to_string(),
            })
            .collect();
        let lines: Vec<String> = elements
            .chunks(per_line)
            .map(|line| line.join(", "))
            .collect();
        format!(
            "[{}]",
            lines.join(&format!(",\n{}", " ".repeat(indent + 1)))
        )
    }
}

/// How every element of one tensor is written (PyTorch's `_Formatter` for floats).
struct ElementFormat {
    /// Every value shown is a whole number: written `3.`.
    whole: bool,
    scientific: bool,
    /// Decimals of a fraction, or of a mantissa in scientific notation.
    precision: usize,
    /// Each element is padded on the left to this width.
    width: usize,
}

impl ElementFormat {
    /// The format of `values` at `precision` decimals, in scientific notation if `sci_mode`
    /// says so, or (`None`) as the values' magnitudes call for.
    fn for_values(values: &[f32], precision: usize, sci_mode: Option<bool>) -> ElementFormat {
        let nonzero_finite: Vec<f64> = values
            .iter()
            .filter(|v| v.is_finite() && **v != 0.0)
            .map(|&v| f64::from(v))
            .collect();
        let mut format = ElementFormat {
            whole: true,
            scientific: false,
            precision,
            width: 1,
        };
        if nonzero_finite.is_empty() {
            return format;
        }
        let magnitudes = nonzero_finite.iter().map(|v| v.abs());
        let min = magnitudes.clone().fold(f64::INFINITY, f64::min);
        let max = magnitudes.fold(0.0, f64::max);
        format.whole = nonzero_finite.iter().all(|v| v.ceil() == *v);
        let wide = max / min > 1000.0 || max > 1.0e8;
        format.scientific = sci_mode.unwrap_or(wide || (!format.whole && min < 1.0e-4));
        format.width = nonzero_finite
            .iter()
            .map(|&v| format.unpadded(v).len())
            .max()
            .unwrap_or(1);
        format
    }

    /// `value` as PyTorch writes it, before padding.
    fn unpadded(&self, value: f64) -> String {
        if value.is_nan() {
            "nan".to_string()
        } else if value.is_infinite() {
            if value > 0.0 { "inf" } else { "-inf" }.to_string()
        } else if self.scientific {
            // Rust writes `1.0000e-5` where Python writes `1.0000e-05`.
            let text = format!("{value:.precision$e}", precision = self.precision);
            let (mantissa, exponent) = text.split_once('e').expect("`e` formatting has an e");
            let exponent: i32 = exponent.parse().expect("an integer exponent");
            let sign = if exponent < 0 { '-' } else { '+' };
            format!("{mantissa}e{sign}{:02}", exponent.abs())
        } else if self.whole {
            format!("{value:.0}.")
        } else {
            format!("{value:.precision$}", precision = self.precision)
        }
    }

    fn padded(&self, value: f32) -> String {
        format!(
            "{:>width$}",
            self.unpadded(f64::from(value)),
            width = self.width
        )
    }
}

/// `(2, 0, 3)`, as Python writes a tuple of the shape.
fn python_tuple(shape: &[usize]) -> String {
    match shape {
        [only] => format!("({only},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// PyTorch's name for the backward node of op `op` with `inputs` inputs, as `print` shows it
/// (checked against PyTorch 2.15 in `tests/print.rs`): `binary_cross_entropy` →
/// `BinaryCrossEntropyBackward0`. Where ours differs from the op PyTorch records, the table
/// says which PyTorch op it stands for: a linear layer is `addmm` (with a bias) or `mm`, a fused
/// one its last op, dropout a `mul` by the mask.
fn backward_name(op: &str, inputs: usize) -> String {
    let pytorch_op = match op {
        "add_scalar" => "add",
        "sub_scalar" => "sub",
        "mul_scalar" => "mul",
        "div_scalar" => "div",
        "rsub_scalar" => return "RsubBackward1".to_string(), // PyTorch's second rsub overload
        "matmul" => "mm",
        "linear" if inputs == 3 => "addmm",
        "linear" => "mm",
        "reshape" => "view",
        "narrow_rows" => "slice",
        "dropout" => "mul",
        fused if fused.ends_with("_dropout") => "mul",
        fused if fused.starts_with("linear_") => &fused["linear_".len()..],
        op => op,
    };
    let mut name: String = pytorch_op
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_uppercase().chain(chars).collect()
            })
        })
        .collect();
    name.push_str("Backward0");
    name
}

/// `text` then `, suffix` for each suffix, or a new line indented under the values where the
/// suffix would pass the line width; then `)`.
fn with_suffixes(text: String, suffixes: &[String], line_width: usize) -> String {
    let mut out = text;
    // PyTorch's count, one more than the last line's length.
    let mut last_line = out.len() - out.rfind('\n').map_or(0, |newline| newline + 1) + 2;
    for suffix in suffixes {
        if last_line + suffix.len() + 2 > line_width {
            out += &format!(",\n{}{suffix}", " ".repeat(PREFIX.len()));
            last_line = PREFIX.len() + suffix.len();
        } else {
            out += &format!(", {suffix}");
            last_line += suffix.len() + 2;
        }
    }
    out + ")"
}
