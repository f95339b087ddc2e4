//! Every op's gradient against central finite differences of an f64 reference
//! (tolerance: `common::RTOL` relative plus `common::ATOL` absolute).

mod common;

use common::{away_from_zero, check_gradients, reference as r, to_f64, uniform, Input, CPU};
use ferrograd::nn::functional::{
    binary_cross_entropy, dropout_with, linear, linear_activation, Activation,
};
use ferrograd::rng::Generator;
use ferrograd::{Device, Tensor};

/// Fixed weights that turn an op's output into a scalar, `Σ yᵢ·wᵢ`, so that every output
/// element's gradient path is exercised with a different factor.
fn weights(shape: &[usize], seed: u64) -> (Tensor, Vec<f64>) {
    let values = uniform(shape.iter().product(), -1.0, 1.0, seed);
    (
        Tensor::from_vec(values.clone(), shape, &CPU),
        to_f64(&values),
    )
}

fn check_elementwise(
    op: impl Fn(&Tensor) -> Tensor,
    reference: impl Fn(f64) -> f64,
    values: Vec<f32>,
) {
    let shape = [3, values.len() / 3];
    let (w, w64) = weights(&shape, 99);
    check_gradients(
        &[Input::new(&shape, values)],
        |x| op(&x[0]).mul(&w).sum(),
        |x| {
            let y: Vec<f64> = x[0].iter().map(|&v| reference(v)).collect();
            r::weighted_sum(&y, &w64)
        },
    );
}

#[test]
fn relu() {
    check_elementwise(Tensor::relu, r::relu, away_from_zero(21, 1));
}

#[test]
fn leaky_relu() {
    check_elementwise(
        |x| x.leaky_relu(0.2),
        |x| r::leaky_relu(x, 0.2),
        away_from_zero(21, 2),
    );
}

#[test]
fn tanh() {
    check_elementwise(Tensor::tanh, f64::tanh, uniform(21, -3.0, 3.0, 3));
}

#[test]
fn sigmoid() {
    check_elementwise(Tensor::sigmoid, r::sigmoid, uniform(21, -6.0, 6.0, 4));
}

#[test]
fn scalar_ops() {
    check_elementwise(
        |x| x.add_scalar(1.5),
        |x| x + 1.5,
        uniform(12, -2.0, 2.0, 5),
    );
    check_elementwise(
        |x| x.mul_scalar(-2.5),
        |x| -2.5 * x,
        uniform(12, -2.0, 2.0, 6),
    );
    check_elementwise(|x| -x, |x| -x, uniform(12, -2.0, 2.0, 7));
    check_elementwise(|x| x / 4.0, |x| x / 4.0, uniform(12, -2.0, 2.0, 8));
    check_elementwise(|x| 1.0 - x, |x| 1.0 - x, uniform(12, -2.0, 2.0, 9));
    check_elementwise(|x| x - 0.5, |x| x - 0.5, uniform(12, -2.0, 2.0, 10));
}

#[test]
fn matmul() {
    let (m, k, n) = (3, 4, 5);
    let (w, w64) = weights(&[m, n], 11);
    check_gradients(
        &[
            Input::new(&[m, k], uniform(m * k, -1.0, 1.0, 12)),
            Input::new(&[k, n], uniform(k * n, -1.0, 1.0, 13)),
        ],
        |t| t[0].matmul(&t[1]).mul(&w).sum(),
        |x| r::weighted_sum(&r::matmul(&x[0], &x[1], m, k, n), &w64),
    );
}

#[test]
fn linear_with_and_without_bias() {
    let (batch, inp, out) = (4, 3, 5);
    let (w, w64) = weights(&[batch, out], 14);
    let x = || Input::new(&[batch, inp], uniform(batch * inp, -1.0, 1.0, 15));
    let weight = || Input::new(&[out, inp], uniform(out * inp, -1.0, 1.0, 16));
    check_gradients(
        &[
            x(),
            weight(),
            Input::new(&[out], uniform(out, -1.0, 1.0, 17)),
        ],
        |t| linear(&t[0], &t[1], Some(&t[2])).mul(&w).sum(),
        |v| r::weighted_sum(&r::linear(&v[0], &v[1], Some(&v[2]), batch, inp, out), &w64),
    );
    check_gradients(
        &[x(), weight()],
        |t| linear(&t[0], &t[1], None).mul(&w).sum(),
        |v| r::weighted_sum(&r::linear(&v[0], &v[1], None, batch, inp, out), &w64),
    );
}

/// The linear layer fused with each activation: gradients against the f64 reference, and the
/// values and gradients of the unfused pair, bit for bit (the same arithmetic, in one pass).
/// A LeakyReLU with a negative slope runs unfused (its output's sign is not its input's), and
/// is checked against the reference all the same.
#[test]
fn linear_fused_with_each_activation() {
    let (batch, inp, out) = (4, 3, 5);
    let (w, w64) = weights(&[batch, out], 40);
    type Reference = fn(f64) -> f64;
    let cases: [(Activation, Reference); 5] = [
        (Activation::Relu, r::relu),
        (Activation::LeakyRelu(0.2), |x| r::leaky_relu(x, 0.2)),
        (Activation::LeakyRelu(-0.3), |x| r::leaky_relu(x, -0.3)),
        (Activation::Tanh, f64::tanh),
        (Activation::Sigmoid, r::sigmoid),
    ];
    let x = uniform(batch * inp, -1.0, 1.0, 41);
    let weight = uniform(out * inp, -1.0, 1.0, 42);
    let bias = uniform(out, -0.5, 0.5, 43);
    for (activation, reference) in cases {
        check_gradients(
            &[
                Input::new(&[batch, inp], x.clone()),
                Input::new(&[out, inp], weight.clone()),
                Input::new(&[out], bias.clone()),
            ],
            |t| {
                linear_activation(&t[0], &t[1], Some(&t[2]), activation)
                    .mul(&w)
                    .sum()
            },
            |v| {
                let z = r::linear(&v[0], &v[1], Some(&v[2]), batch, inp, out);
                let y: Vec<f64> = z.into_iter().map(reference).collect();
                r::weighted_sum(&y, &w64)
            },
        );
        // Which of x, W, b require a gradient: each combination takes another way through the
        // layer's backward (both products, ∂L/∂x alone, ∂L/∂W alone, ∂L/∂b alone).
        let patterns = [
            [true, true, true],
            [true, false, true],
            [false, true, false],
            [true, false, false],
        ];
        let run = |fused: bool, needs_grad: [bool; 3], device: &Device| {
            let leaves: Vec<Tensor> = [
                (&x, vec![batch, inp]),
                (&weight, vec![out, inp]),
                (&bias, vec![out]),
            ]
            .into_iter()
            .zip(needs_grad)
            .map(|((v, shape), needs_grad)| {
                let t = Tensor::from_vec(v.clone(), &shape, device);
                t.set_requires_grad(needs_grad);
                t
            })
            .collect();
            let y = if fused {
                linear_activation(&leaves[0], &leaves[1], Some(&leaves[2]), activation)
            } else {
                let z = linear(&leaves[0], &leaves[1], Some(&leaves[2]));
                common::activate(&z, activation)
            };
            y.mul(&w.to_device(device)).sum().backward();
            let mut values = vec![y.to_vec()];
            values.extend(leaves.iter().filter_map(|t| t.grad()).map(|g| g.to_vec()));
            values
        };
        // On the CPU, and on the CUDA kernels (emulated), where the fused layer's products read
        // ∂L/∂y through the activation's rule inside the GEMM, or write it out first where
        // they cannot (∂L/∂b alone).
        for device in [Some(CPU), common::emulator()].into_iter().flatten() {
            for needs_grad in patterns {
                assert_eq!(
                    run(true, needs_grad, &device),
                    run(false, needs_grad, &device),
                    "{activation:?} on {device:?}, {needs_grad:?} need gradients: fused and unfused differ"
                );
            }
        }
    }
}

/// Element `e` of a `[rows, cols]` tensor as a broadcast operand of `len` 1, `cols` or
/// `rows · cols` sees it.
fn broadcast_value(b: &[f64], cols: usize, e: usize) -> f64 {
    match b.len() {
        1 => b[0],
        len if len == cols => b[e % cols],
        _ => b[e],
    }
}

/// `a ∘ b` for the three binary ops, with `b` of each broadcastable shape, on either side.
#[test]
fn binary_ops_with_broadcasting() {
    type Op = fn(&Tensor, &Tensor) -> Tensor;
    type Reference = fn(f64, f64) -> f64;
    let ops: [(Op, Reference); 3] = [
        (|a, b| a + b, |a, b| a + b),
        (|a, b| a - b, |a, b| a - b),
        (|a, b| a * b, |a, b| a * b),
    ];
    let (rows, cols) = (3, 4);
    let (w, w64) = weights(&[rows, cols], 18);
    for (op, reference) in ops {
        for rhs_shape in [vec![rows, cols], vec![cols], vec![1, cols], vec![], vec![1]] {
            let rhs_len: usize = rhs_shape.iter().product();
            let lhs = || Input::new(&[rows, cols], uniform(rows * cols, -2.0, 2.0, 19));
            let rhs = || Input::new(&rhs_shape, uniform(rhs_len, -2.0, 2.0, 20));
            check_gradients(
                &[lhs(), rhs()],
                |t| op(&t[0], &t[1]).mul(&w).sum(),
                |v| {
                    let y: Vec<f64> = (0..rows * cols)
                        .map(|e| reference(v[0][e], broadcast_value(&v[1], cols, e)))
                        .collect();
                    r::weighted_sum(&y, &w64)
                },
            );
            // The broadcast operand on the left.
            check_gradients(
                &[rhs(), lhs()],
                |t| op(&t[0], &t[1]).mul(&w).sum(),
                |v| {
                    let y: Vec<f64> = (0..rows * cols)
                        .map(|e| reference(broadcast_value(&v[0], cols, e), v[1][e]))
                        .collect();
                    r::weighted_sum(&y, &w64)
                },
            );
        }
    }
}

#[test]
fn square_by_multiplying_a_tensor_with_itself() {
    check_elementwise(|x| x * x, |x| x * x, uniform(12, -2.0, 2.0, 21));
}

#[test]
fn sum_and_mean() {
    let values = uniform(10, -2.0, 2.0, 22);
    check_gradients(
        &[Input::new(&[2, 5], values.clone())],
        |t| t[0].sum().mul_scalar(0.7),
        |v| 0.7 * v[0].iter().sum::<f64>(),
    );
    check_gradients(
        &[Input::new(&[2, 5], values)],
        |t| t[0].mean().mul_scalar(0.7),
        |v| 0.7 * v[0].iter().sum::<f64>() / 10.0,
    );
}

#[test]
fn reshape() {
    let (w, w64) = weights(&[6, 2], 23);
    check_gradients(
        &[Input::new(&[3, 4], uniform(12, -2.0, 2.0, 24))],
        |t| t[0].reshape(&[6, 2]).mul(&w).sum(),
        |v| r::weighted_sum(&v[0], &w64),
    );
}

#[test]
fn cat_and_narrow_rows() {
    // cat: each part's gradient is its rows of the output's (a part used twice gets both).
    let (w, w64) = weights(&[7, 3], 26);
    check_gradients(
        &[
            Input::new(&[2, 3], uniform(6, -2.0, 2.0, 27)),
            Input::new(&[3, 3], uniform(9, -2.0, 2.0, 28)),
        ],
        |t| Tensor::cat(&[&t[0], &t[1], &t[0]]).mul(&w).sum(),
        |v| {
            let joined: Vec<f64> = [&v[0], &v[1], &v[0]]
                .into_iter()
                .flatten()
                .copied()
                .collect();
            r::weighted_sum(&joined, &w64)
        },
    );
    // narrow_rows: the gradient of rows 1..3 of [4, 3], zero on the other rows.
    let (w, w64) = weights(&[2, 3], 29);
    check_gradients(
        &[Input::new(&[4, 3], uniform(12, -2.0, 2.0, 30))],
        |t| t[0].narrow_rows(1, 2).mul(&w).sum(),
        |v| r::weighted_sum(&v[0][3..9], &w64),
    );
}

#[test]
fn dropout_in_training() {
    let p = 0.3;
    let generator = Generator::new(25);
    // The mask this generator state draws, read through an input of ones.
    let ones = Tensor::ones(&[3, 8], &CPU);
    let mask = to_f64(&dropout_with(&ones, p, true, &mut generator.clone()).to_vec());
    let (w, w64) = weights(&[3, 8], 26);
    check_gradients(
        &[Input::new(&[3, 8], uniform(24, -2.0, 2.0, 27))],
        |t| {
            dropout_with(&t[0], p, true, &mut generator.clone())
                .mul(&w)
                .sum()
        },
        |v| {
            let y: Vec<f64> = v[0].iter().zip(&mask).map(|(x, m)| x * m).collect();
            r::weighted_sum(&y, &w64)
        },
    );
}

#[test]
fn binary_cross_entropy_prediction_and_target() {
    check_gradients(
        &[
            Input::new(&[2, 5], uniform(10, 0.05, 0.95, 28)),
            Input::new(&[2, 5], uniform(10, 0.0, 1.0, 29)),
        ],
        |t| binary_cross_entropy(&t[0], &t[1]),
        |v| r::bce(&v[0], &v[1]),
    );
}

/// A two-layer network end to end: every parameter and the input.
#[test]
fn two_layer_network() {
    let (batch, inp, hidden, out) = (4, 3, 5, 2);
    let target: Vec<f32> = vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0];
    let target_t = Tensor::from_vec(target.clone(), &[batch, out], &CPU);
    check_gradients(
        &[
            Input::new(&[batch, inp], uniform(batch * inp, -1.0, 1.0, 30)),
            Input::new(&[hidden, inp], uniform(hidden * inp, -1.0, 1.0, 31)),
            Input::new(&[hidden], uniform(hidden, -0.5, 0.5, 32)),
            Input::new(&[out, hidden], uniform(out * hidden, -1.0, 1.0, 33)),
            Input::new(&[out], uniform(out, -0.5, 0.5, 34)),
        ],
        |t| {
            let h = linear(&t[0], &t[1], Some(&t[2])).leaky_relu(0.2);
            let y = linear(&h, &t[3], Some(&t[4])).sigmoid();
            binary_cross_entropy(&y, &target_t)
        },
        |v| {
            let h: Vec<f64> = r::linear(&v[0], &v[1], Some(&v[2]), batch, inp, hidden)
                .into_iter()
                .map(|x| r::leaky_relu(x, 0.2))
                .collect();
            let y: Vec<f64> = r::linear(&h, &v[3], Some(&v[4]), batch, hidden, out)
                .into_iter()
                .map(r::sigmoid)
                .collect();
            r::bce(&y, &to_f64(&target))
        },
    );
}
