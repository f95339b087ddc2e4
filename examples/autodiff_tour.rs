//! A guided look at reverse-mode autodiff on the smallest network worth the name.
//!
//! `cargo run --release --example autodiff_tour`
//!
//! It builds a 2-layer net on 3 inputs, prints every intermediate value and every gradient,
//! follows the chain rule node by node (the hidden layers' gradients, kept by `retain_grad`,
//! against the formulas by hand), checks each parameter's gradient against the slope measured
//! by nudging that one parameter (central finite differences), and writes the graph as
//! Graphviz DOT.

mod closed_pipe;

use ferrograd::nn::functional::{binary_cross_entropy, linear};
use ferrograd::{no_grad, Device, Tensor};

const NAMES: [&str; 4] = ["W1", "b1", "W2", "b2"];
const SHAPES: [&[usize]; 4] = [&[4, 3], &[4], &[1, 4], &[1]];
/// The finite-difference step: large enough that f32 rounding of the loss (~1e-7) stays small
/// next to the change it causes, small enough that the curvature error (~step²) does too.
const STEP: f32 = 1e-2;
/// Far above the expected error (~1e-5), far below what a wrong derivative gives (~1e-1).
const MAX_ERROR: f32 = 1e-3;

/// `loss = BCE(sigmoid(W2 · tanh(W1 · x + b1) + b2), target)`, returning every stage.
fn forward(x: &Tensor, params: &[Tensor], target: &Tensor) -> [Tensor; 3] {
    let h = linear(x, &params[0], Some(&params[1])).tanh();
    let y = linear(&h, &params[2], Some(&params[3])).sigmoid();
    let loss = binary_cross_entropy(&y, target);
    [h, y, loss]
}

fn main() {
    closed_pipe::end_quietly_when_the_reader_quits();
    let dev = Device::Cpu;
    let x = Tensor::from_vec(vec![0.5, -1.0, 2.0], &[1, 3], &dev);
    let target = Tensor::ones(&[1, 1], &dev);
    let initial: [Vec<f32>; 4] = [
        vec![
            0.2, -0.4, 0.1, 0.5, 0.3, -0.2, -0.3, 0.8, 0.05, 0.1, 0.1, -0.6,
        ],
        vec![0.1, -0.1, 0.2, 0.0],
        vec![0.7, -0.5, 0.9, 0.3],
        vec![-0.2],
    ];
    let params: Vec<Tensor> = initial
        .iter()
        .zip(SHAPES)
        .map(|(values, shape)| {
            let p = Tensor::from_vec(values.clone(), shape, &dev);
            p.set_requires_grad(true);
            p
        })
        .collect();

    println!("ferrograd autodiff tour: a 2-layer net on 3 inputs");
    println!("  h = tanh(W1·x + b1)   y = sigmoid(W2·h + b2)   loss = BCE(y, 1)\n");
    let [h, y, loss] = forward(&x, &params, &target);
    println!("forward pass (each op records a node as it runs)");
    println!("  x    = {:?}", x.to_vec());
    println!("  h    = {:?}", h.to_vec());
    println!("  y    = {:.6}", y.item());
    println!("  loss = {:.6}   (−ln y)\n", loss.item());

    // Intermediate gradients are passed on and dropped, unless a tensor asks to keep its own.
    h.retain_grad();
    y.retain_grad();
    loss.backward();

    println!("backward pass, node by node: each gradient from the one after it (chain rule)");
    let y_value = y.item();
    let d_y = -1.0 / y_value; // BCE(y, 1) = −ln y
    let d_z2 = d_y * y_value * (1.0 - y_value); // sigmoid' = y(1 − y)
    let w2 = &initial[2];
    let d_h: Vec<f32> = w2.iter().map(|w| d_z2 * w).collect(); // z2 = W2·h + b2
    let mut worst = 0.0f32;
    for (name, formula, kept, by_hand) in [
        ("∂L/∂y", "−1/y", y.grad(), vec![d_y]),
        ("∂L/∂h", "∂L/∂y · y(1 − y) · W2", h.grad(), d_h),
    ] {
        let kept = kept.expect("kept by retain_grad").to_vec();
        for (k, b) in kept.iter().zip(&by_hand) {
            worst = worst.max((k - b).abs());
        }
        println!("  {name} = {formula:<22} by hand  {by_hand:>10.6?}");
        println!("  {:<30} backward {kept:>10.6?}", "");
    }
    println!("  (then ∂L/∂b1 = ∂L/∂h · (1 − h²), ∂L/∂W1 = ∂L/∂b1 · xᵀ: the rows below)\n");

    println!("backward pass vs central finite differences (f32, step {STEP})");
    println!(
        "  {:<4} {:<6} {:>12} {:>12} {:>10}",
        "", "index", "backward", "numeric", "|error|"
    );
    for (i, param) in params.iter().enumerate() {
        let grad = param
            .grad()
            .expect("every parameter requires grad")
            .to_vec();
        for (j, &analytic) in grad.iter().enumerate() {
            let numeric = numeric_slope(&x, &initial, &target, i, j);
            let error = (analytic - numeric).abs();
            worst = worst.max(error);
            let index = index_label(SHAPES[i], j);
            println!(
                "  {:<4} {index:<6} {analytic:>12.6} {numeric:>12.6} {error:>10.2e}",
                NAMES[i]
            );
        }
    }
    println!("  largest error: {worst:.2e} (f32 rounding and the step's curvature error)\n");
    if worst > MAX_ERROR {
        eprintln!("FAILED: a gradient differs from its reference by more than {MAX_ERROR}");
        std::process::exit(1);
    }

    let path = "autodiff_tour.dot";
    let mut names: Vec<(String, Tensor)> = NAMES
        .iter()
        .map(|name| name.to_string())
        .zip(params.iter().cloned())
        .collect();
    names.extend([("h", h), ("y", y), ("loss", loss.clone())].map(|(n, t)| (n.to_string(), t)));
    match std::fs::write(path, loss.to_dot_named(&names)) {
        Ok(()) => println!(
            "graph written to {path}; render it with: dot -Tsvg {path} -o autodiff_tour.svg"
        ),
        Err(err) => eprintln!("could not write {path}: {err}"),
    }
}

/// `(loss(θ + step) − loss(θ − step)) / (2·step)` for element `j` of parameter `i`.
fn numeric_slope(x: &Tensor, initial: &[Vec<f32>; 4], target: &Tensor, i: usize, j: usize) -> f32 {
    let _recording_off = no_grad(); // plain evaluations: no graph needed
    let loss_at = |delta: f32| {
        let params: Vec<Tensor> = initial
            .iter()
            .zip(SHAPES)
            .enumerate()
            .map(|(k, (values, shape))| {
                let mut values = values.clone();
                if k == i {
                    values[j] += delta;
                }
                Tensor::from_vec(values, shape, x.device())
            })
            .collect();
        let [_, _, loss] = forward(x, &params, target);
        loss.item()
    };
    (loss_at(STEP) - loss_at(-STEP)) / (2.0 * STEP)
}

/// `[row,col]` for matrices, `[i]` for vectors.
fn index_label(shape: &[usize], j: usize) -> String {
    match shape {
        [_, cols] => format!("[{},{}]", j / cols, j % cols),
        _ => format!("[{j}]"),
    }
}
