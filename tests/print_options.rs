//! `set_print_options` prints as `torch.set_printoptions` does. Each expected text is what
//! `print(t)` printed in PyTorch 2.15 for the same float32 values after
//! `torch.set_printoptions(profile="default")` and then the options named beside it, copied as
//! it came.
//!
//! The options are global, as PyTorch's are, so every test here holds one lock while it
//! changes them, and puts the defaults back even when it fails. Tests in other files never
//! change them: each test file is a process of its own.

mod common;

use std::sync::{Mutex, MutexGuard, PoisonError};

use common::eighths_pattern;
use ferrograd::{print_options, set_print_options, Device, PrintOptions, Tensor};

static OPTIONS_IN_USE: Mutex<()> = Mutex::new(());

/// While alive, this test alone sets print options; dropped, it restores PyTorch's defaults.
struct OptionsTurn {
    _lock: MutexGuard<'static, ()>,
}

impl OptionsTurn {
    fn take() -> OptionsTurn {
        // A test that failed while holding the lock still restored the defaults (Drop).
        let lock = OPTIONS_IN_USE
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        OptionsTurn { _lock: lock }
    }
}

impl Drop for OptionsTurn {
    fn drop(&mut self) {
        set_print_options(PrintOptions::DEFAULT);
    }
}

fn tensor(values: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(values, shape, &Device::Cpu)
}

/// Prints `t` under `options` and compares with PyTorch's text.
fn check(options: PrintOptions, t: &Tensor, pytorch: &str) {
    set_print_options(options);
    assert_eq!(t.to_string(), pytorch, "under {options:?}");
}

const DEFAULT: PrintOptions = PrintOptions::DEFAULT;

#[test]
fn the_defaults_are_pytorchs() {
    let _turn = OptionsTurn::take();
    assert_eq!(
        print_options(),
        PrintOptions {
            precision: 4,
            threshold: 1000,
            edge_items: 3,
            line_width: 80,
            sci_mode: None
        }
    );
    assert_eq!(PrintOptions::default(), DEFAULT);
}

#[test]
fn precision_sets_the_decimals() {
    let _turn = OptionsTurn::take();
    let options = PrintOptions {
        precision: 2,
        ..DEFAULT
    };
    // precision=2
    check(
        options,
        &tensor(eighths_pattern(6), &[2, 3]),
        "tensor([[-6.25, -1.62,  3.00],\n        [-5.00, -0.38,  4.25]])",
    );
    // A precision in the format wins over the options', for that tensor.
    set_print_options(options);
    let t = tensor(vec![0.5, 1.25], &[2]);
    assert_eq!(format!("{t:.3}"), "tensor([0.500, 1.250])");
    assert_eq!(format!("{t}"), "tensor([0.50, 1.25])");
}

#[test]
fn threshold_and_edge_items_decide_the_summary() {
    let _turn = OptionsTurn::take();
    // threshold=5: 12 elements, but each dimension no longer than twice the edge items
    check(
        PrintOptions {
            threshold: 5,
            ..DEFAULT
        },
        &tensor(eighths_pattern(12), &[3, 4]),
        "tensor([[-6.2500, -1.6250,  3.0000, -5.0000],
        [-0.3750,  4.2500, -3.7500,  0.8750],
        [ 5.5000, -2.5000,  2.1250, -5.8750]])",
    );
    // threshold=5, edgeitems=1
    check(
        PrintOptions {
            threshold: 5,
            edge_items: 1,
            ..DEFAULT
        },
        &tensor(eighths_pattern(30), &[5, 6]),
        "tensor([[-6.2500,  ...,  4.2500],
        ...,
        [ 3.7500,  ...,  1.6250]])",
    );
    // threshold=0, edgeitems=2: even a short vector is summarised
    check(
        PrintOptions {
            threshold: 0,
            edge_items: 2,
            ..DEFAULT
        },
        &tensor(eighths_pattern(8), &[8]),
        "tensor([-6.2500, -1.6250,  ..., -3.7500,  0.8750])",
    );
    // threshold=0: one value has nothing to summarise
    check(
        PrintOptions {
            threshold: 0,
            ..DEFAULT
        },
        &tensor(vec![1.5], &[1]),
        "tensor([1.5000])",
    );
    // threshold=10, edgeitems=1, linewidth=30: summarised rows of a 3-D tensor, wrapped
    check(
        PrintOptions {
            threshold: 10,
            edge_items: 1,
            line_width: 30,
            ..DEFAULT
        },
        &tensor(eighths_pattern(24), &[2, 3, 4]),
        "tensor([[[-6.2500,  ...,
          -5.0000],
         ...,
         [ 5.5000,  ...,
          -5.8750]],

        [[-1.2500,  ...,
           0.0000],
         ...,
         [-2.1250,  ...,
          -0.8750]]])",
    );
}

#[test]
fn no_edge_items_prints_the_size_instead() {
    let _turn = OptionsTurn::take();
    let none_at_the_ends = |threshold| PrintOptions {
        threshold,
        edge_items: 0,
        ..DEFAULT
    };
    // threshold=0, edgeitems=0
    check(
        none_at_the_ends(0),
        &tensor(eighths_pattern(8), &[8]),
        "tensor([...], size=(8,))",
    );
    // threshold=5, edgeitems=0
    check(
        none_at_the_ends(5),
        &tensor(eighths_pattern(12), &[3, 4]),
        "tensor([...], size=(3, 4))",
    );
    // edgeitems=0 alone: not summarised, the size still said
    check(
        none_at_the_ends(1000),
        &tensor(eighths_pattern(3), &[3]),
        "tensor([-6.2500, -1.6250,  3.0000], size=(3,))",
    );
}

#[test]
fn line_width_wraps_values_and_suffixes() {
    let _turn = OptionsTurn::take();
    let width = |line_width| PrintOptions {
        line_width,
        ..DEFAULT
    };
    // linewidth=40
    check(
        width(40),
        &tensor(eighths_pattern(20), &[20]),
        "tensor([-6.2500, -1.6250,  3.0000,
        -5.0000, -0.3750,  4.2500,
        -3.7500,  0.8750,  5.5000,
        -2.5000,  2.1250, -5.8750,
        -1.2500,  3.3750, -4.6250,
         0.0000,  4.6250, -3.3750,
         1.2500,  5.8750])",
    );
    // linewidth=3: one value a line, however narrow
    check(
        width(3),
        &tensor(eighths_pattern(5), &[5]),
        "tensor([-6.2500,
        -1.6250,
         3.0000,
        -5.0000,
        -0.3750])",
    );
    let leaf = tensor(eighths_pattern(6), &[2, 3]);
    leaf.set_requires_grad(true);
    // linewidth=30, a leaf
    check(
        width(30),
        &leaf,
        "tensor([[-6.2500, -1.6250,
          3.0000],
        [-5.0000, -0.3750,
          4.2500]],
       requires_grad=True)",
    );
    // linewidth=40, an op's result
    check(
        width(40),
        &(&leaf * 2.0),
        "tensor([[-12.5000,  -3.2500,   6.0000],
        [-10.0000,  -0.7500,   8.5000]],
       grad_fn=<MulBackward0>)",
    );
}

#[test]
fn sci_mode_forces_or_forbids_scientific_notation() {
    let _turn = OptionsTurn::take();
    let sci = |on| PrintOptions {
        sci_mode: Some(on),
        ..DEFAULT
    };
    // sci_mode=False: a magnitude below 1e-4 no longer calls for it
    check(
        sci(false),
        &tensor(vec![1e-5, 1.0, -0.25], &[3]),
        "tensor([ 0.0000,  1.0000, -0.2500])",
    );
    // sci_mode=False: whole numbers across a factor of 5000
    check(
        sci(false),
        &tensor(vec![1.0, 5000.0], &[2]),
        "tensor([   1., 5000.])",
    );
    // sci_mode=False, precision=6
    check(
        PrintOptions {
            precision: 6,
            ..sci(false)
        },
        &tensor(vec![1e-5, 123.456], &[2]),
        "tensor([  0.000010, 123.456001])",
    );
    // sci_mode=True
    check(
        sci(true),
        &tensor(vec![0.5, -1.0, 2.0], &[3]),
        "tensor([ 5.0000e-01, -1.0000e+00,  2.0000e+00])",
    );
    // sci_mode=True: whole numbers too
    check(
        sci(true),
        &tensor(vec![1.0, 2.0, 300.0], &[3]),
        "tensor([1.0000e+00, 2.0000e+00, 3.0000e+02])",
    );
    // sci_mode=True: NaN padded to the others' width
    check(
        sci(true),
        &tensor(vec![f32::NAN, 1.0, 2.5], &[3]),
        "tensor([       nan, 1.0000e+00, 2.5000e+00])",
    );
    // sci_mode=True: only zeros, which PyTorch leaves as they are
    check(
        sci(true),
        &tensor(vec![0.0, -0.0], &[2]),
        "tensor([0., -0.])",
    );
    let leaf = tensor(eighths_pattern(4), &[2, 2]);
    leaf.set_requires_grad(true);
    // sci_mode=True, precision=1
    check(
        PrintOptions {
            precision: 1,
            ..sci(true)
        },
        &leaf,
        "tensor([[-6.2e+00, -1.6e+00],\n        [ 3.0e+00, -5.0e+00]], requires_grad=True)",
    );
}

#[test]
fn the_short_and_full_profiles() {
    let _turn = OptionsTurn::take();
    // profile="short"
    check(
        PrintOptions::SHORT,
        &tensor(eighths_pattern(2500), &[50, 50]),
        "tensor([[-6.25, -1.62,  ...,  1.12,  5.75],
        [-2.25,  2.38,  ...,  5.12, -2.88],
        ...,
        [-3.62,  1.00,  ...,  3.75, -4.25],
        [ 0.38,  5.00,  ..., -4.88, -0.25]])",
    );
    check(
        PrintOptions::SHORT,
        &tensor(eighths_pattern(1500), &[1500]),
        "tensor([-6.25, -1.62,  ...,  3.50, -4.50])",
    );
    check(
        PrintOptions::SHORT,
        &tensor(vec![0.123456, 1.0], &[2]),
        "tensor([0.12, 1.00])",
    );
    // profile="full": PyTorch printed all 1200 values, on 150 lines, with no `...`.
    set_print_options(PrintOptions::FULL);
    let values = eighths_pattern(1200);
    let text = tensor(values.clone(), &[1200]).to_string();
    assert!(!text.contains("..."), "{text}");
    assert_eq!(text.lines().count(), 150);
    let printed: Vec<f32> = text["tensor([".len()..text.len() - "])".len()]
        .split(',')
        .map(|value| value.trim().parse().expect("a printed value"))
        .collect();
    assert_eq!(printed, values);
}

#[test]
fn options_hold_in_every_thread() {
    let _turn = OptionsTurn::take();
    set_print_options(PrintOptions {
        precision: 1,
        ..DEFAULT
    });
    let text = std::thread::spawn(|| tensor(vec![0.25, 1.5], &[2]).to_string())
        .join()
        .expect("the thread prints");
    assert_eq!(text, "tensor([0.2, 1.5])");
}
