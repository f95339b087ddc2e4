//! The graph and the backward pass: accumulation, scopes without recording, detaching, the
//! errors PyTorch raises, and the DOT picture.

mod common;

use common::CPU;
use ferrograd::nn::functional::{binary_cross_entropy, linear};
use ferrograd::{is_grad_enabled, no_grad, Tensor};

fn leaf(values: Vec<f32>, shape: &[usize]) -> Tensor {
    let t = Tensor::from_vec(values, shape, &CPU);
    t.set_requires_grad(true);
    t
}

/// `a = tanh(x)` feeds two ops: `∂L/∂x` must hold both contributions, `(2 + 1)(1 − a²)`.
#[test]
fn fan_out_accumulates_both_paths() {
    let x = leaf(vec![0.3, -0.7, 1.2], &[3]);
    let a = x.tanh();
    (&a * 2.0 + &a).sum().backward();
    let expected: Vec<f32> = a.to_vec().iter().map(|a| 3.0 * (1.0 - a * a)).collect();
    let grad = x.grad().unwrap().to_vec();
    for (g, e) in grad.iter().zip(&expected) {
        assert!((g - e).abs() < 1e-6, "{grad:?} vs {expected:?}");
    }
}

/// `X · X` uses one tensor as both operands: `∂/∂X Σ(X·X) = 1·Xᵀ + Xᵀ·1`, so element (i, j)
/// is (sum of row j) + (sum of column i).
#[test]
fn a_tensor_used_as_both_operands() {
    let x = leaf(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]);
    x.matmul(&x).sum().backward();
    let (row_sums, col_sums) = ([3.0, 7.0], [4.0, 6.0]);
    let expected: Vec<f32> = (0..4).map(|e| row_sums[e % 2] + col_sums[e / 2]).collect();
    assert_eq!(x.grad().unwrap().to_vec(), expected);
}

#[test]
fn repeated_backward_accumulates_and_zero_grad_clears() {
    let x = leaf(vec![1.0, -2.0], &[2]);
    let loss = x.mul_scalar(3.0).sum();
    loss.backward();
    assert_eq!(x.grad().unwrap().to_vec(), [3.0, 3.0]);
    loss.backward();
    assert_eq!(x.grad().unwrap().to_vec(), [6.0, 6.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
}

#[test]
fn no_grad_records_nothing_and_restores_on_drop() {
    let w = leaf(vec![0.5, -0.5], &[2]);
    {
        let _outer = no_grad();
        {
            let _inner = no_grad();
            assert!(!is_grad_enabled());
        }
        assert!(
            !is_grad_enabled(),
            "the inner guard restores the outer state"
        );
        let y = w.tanh().mul_scalar(2.0).sum();
        assert!(!y.requires_grad() && y.is_leaf());
        assert_eq!(y.to_dot().matches("->").count(), 0);
        // The flag is per thread, as in PyTorch.
        assert!(std::thread::spawn(is_grad_enabled).join().unwrap());
    }
    assert!(is_grad_enabled());
    assert!(w.tanh().requires_grad());
}

#[test]
fn detach_shares_values_and_blocks_gradients() {
    let x = leaf(vec![2.0, 3.0], &[2]);
    let frozen = x.detach();
    assert!(frozen.shares_storage(&x) && !frozen.requires_grad());
    // Only the non-detached factor passes a gradient: ∂/∂x Σ x·stop(x) = x.
    (&frozen * &x).sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), [2.0, 3.0]);
}

#[test]
fn only_leaves_keep_gradients() {
    let x = leaf(vec![1.0], &[1]);
    let hidden = x.mul_scalar(2.0);
    hidden.tanh().sum().backward();
    assert!(!hidden.is_leaf() && hidden.grad().is_none());
    assert!(x.is_leaf() && x.grad().is_some());
}

/// `retain_grad` keeps an op result's gradient, which accumulates like a leaf's: for
/// `L = Σ tanh(h)`, `h = 2x`, `∂L/∂h = 1 − tanh²(h)` and `∂L/∂x = 2 ∂L/∂h`; the output's
/// own gradient is the seed, 1.
#[test]
fn retain_grad_keeps_an_intermediate_gradient() {
    let x = leaf(vec![0.25, -0.5], &[2]);
    let hidden = x.mul_scalar(2.0);
    let activated = hidden.tanh();
    hidden.retain_grad();
    activated.retain_grad();
    assert!(hidden.retains_grad() && !x.retains_grad());
    let loss = activated.sum();
    loss.backward();
    let expected: Vec<f32> = [0.5f32, -1.0]
        .iter()
        .map(|h| 1.0 - h.tanh().powi(2))
        .collect();
    let d_hidden = hidden.grad().expect("retained").to_vec();
    for (got, want) in d_hidden.iter().zip(&expected) {
        assert!((got - want).abs() < 1e-6, "{d_hidden:?} vs {expected:?}");
    }
    assert_eq!(activated.grad().unwrap().to_vec(), [1.0, 1.0]);
    let d_x = x.grad().unwrap().to_vec();
    assert_eq!(d_x, d_hidden.iter().map(|g| 2.0 * g).collect::<Vec<_>>());
    assert!(
        loss.grad().is_none(),
        "only results asked to keep their gradient"
    );

    loss.backward();
    let twice: Vec<f32> = d_hidden.iter().map(|g| 2.0 * g).collect();
    assert_eq!(
        hidden.grad().unwrap().to_vec(),
        twice,
        "accumulates as a leaf's does"
    );
    hidden.zero_grad();
    assert!(hidden.grad().is_none());
}

#[test]
#[should_panic(expected = "retain_grad: can't retain_grad on a tensor that does not require grad")]
fn retain_grad_without_a_graph_panics() {
    Tensor::ones(&[1], &CPU).retain_grad();
}

#[test]
fn inputs_without_grad_receive_none() {
    let x = Tensor::from_vec(vec![1.0, 2.0], &[1, 2], &CPU);
    let w = leaf(vec![0.5, 0.5], &[1, 2]);
    linear(&x, &w, None).sum().backward();
    assert!(x.grad().is_none());
    assert_eq!(w.grad().unwrap().to_vec(), [1.0, 2.0]);
}

#[test]
fn set_requires_grad_toggles_leaves() {
    let x = Tensor::zeros(&[2], &CPU);
    assert!(!x.requires_grad());
    x.set_requires_grad(true);
    let clone = x.clone();
    assert!(clone.requires_grad(), "clones share the graph node");
    x.set_requires_grad(false);
    assert!(!clone.requires_grad());
}

#[test]
fn a_long_chain_backpropagates_without_recursion() {
    let x = leaf(vec![1.0], &[1]);
    let mut y = x.clone();
    for _ in 0..100_000 {
        y = y.add_scalar(0.0);
    }
    y.sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), [1.0]);
}

#[test]
fn to_dot_draws_every_node_and_edge() {
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[1, 3], &CPU);
    let w = leaf(vec![0.1; 6], &[2, 3]);
    let b = leaf(vec![0.0; 2], &[2]);
    let loss = binary_cross_entropy(
        &linear(&x, &w, Some(&b)).sigmoid(),
        &Tensor::ones(&[1, 2], &CPU),
    );
    let dot = loss.to_dot();
    assert!(dot.starts_with("digraph"));
    for label in [
        "leaf [2, 3]",
        "leaf [2]",
        "linear [1, 2]",
        "sigmoid [1, 2]",
        "binary_cross_entropy []",
    ] {
        assert!(dot.contains(label), "missing {label} in\n{dot}");
    }
    // w → linear, b → linear, linear → sigmoid, sigmoid → bce; x needs no grad, so no node.
    assert_eq!(dot.matches("->").count(), 4, "{dot}");
    assert!(
        !dot.contains("\\ngrad"),
        "no gradient before a backward pass:\n{dot}"
    );

    // After one, each node that keeps a gradient shows its first values: ∂L/∂b = (y − 1)/2
    // per output (the mean over 2), y = sigmoid(0.6); ∂L/∂w = ∂L/∂b · x.
    loss.backward();
    let d_b = (1.0 / (1.0 + (-0.6f32).exp()) - 1.0) / 2.0;
    let dot = loss.to_dot();
    for label in [
        format!("leaf [2]\\ngrad [{d_b:.4}, {d_b:.4}]\""),
        format!(
            "leaf [2, 3]\\ngrad [{:.4}, {:.4}, {:.4}, {:.4}, …]\"",
            d_b,
            2.0 * d_b,
            3.0 * d_b,
            d_b
        ),
        "sigmoid [1, 2]\"".to_string(),
    ] {
        assert!(dot.contains(&label), "missing {label} in\n{dot}");
    }

    // Named, a leaf is its name and an op's result `name = op`; a name is escaped for DOT.
    let with_names = loss.to_dot_named(&[
        ("w".to_string(), w.clone()),
        ("the \"bias\"".to_string(), b.clone()),
        ("x".to_string(), x.clone()), // not in the graph: no box
    ]);
    for label in [
        "label=\"w [2, 3]\\ngrad",
        "label=\"the \\\"bias\\\" [2]\\ngrad",
    ] {
        assert!(
            with_names.contains(label),
            "missing {label} in\n{with_names}"
        );
    }
    let boxes = |dot: &str| dot.matches("label=").count();
    assert_eq!(boxes(&with_names), boxes(&dot));
    let probability = linear(&x, &w, Some(&b)).sigmoid();
    let named = probability.to_dot_named(&[("p".to_string(), probability.clone())]);
    assert!(named.contains("label=\"p = sigmoid [1, 2]\""), "{named}");
}

#[test]
#[should_panic(
    expected = "backward: a gradient can be implicitly created only for a one-element output, not shape [2]"
)]
fn backward_of_a_vector_panics() {
    leaf(vec![1.0, 2.0], &[2]).tanh().backward();
}

/// PyTorch's `y.backward(gradient)`: the vector-Jacobian product `gᵀ · ∂y/∂x`; for
/// `y = x²` elementwise, `∂L/∂x = 2x · g`. A seed of ones gives `backward()`'s gradients.
#[test]
fn backward_with_a_gradient_weights_each_output() {
    let x = leaf(vec![0.5, -1.5, 2.0], &[3]);
    (&x * &x).backward_with(&Tensor::from_vec(vec![1.0, 10.0, -3.0], &[3], &CPU));
    assert_eq!(x.grad().unwrap().to_vec(), [1.0, -30.0, -12.0]);

    let y = leaf(vec![0.3, -0.7], &[2]);
    let loss = y.tanh().sum();
    loss.backward_with(&Tensor::ones(&[], &CPU));
    let with_seed = y.grad().unwrap().to_vec();
    y.zero_grad();
    loss.backward();
    assert_eq!(with_seed, y.grad().unwrap().to_vec());
}

#[test]
#[should_panic(expected = "backward: gradient of shape [3] for an output of shape [2]")]
fn backward_with_a_gradient_of_another_shape_panics() {
    leaf(vec![1.0, 2.0], &[2])
        .tanh()
        .backward_with(&Tensor::ones(&[3], &CPU));
}

#[test]
#[should_panic(expected = "backward: the tensor does not require grad")]
fn backward_without_graph_panics() {
    Tensor::ones(&[1], &CPU).backward();
}

#[test]
#[should_panic(expected = "set_requires_grad: only leaf tensors can stop requiring grad")]
fn turning_off_grad_on_an_op_result_panics() {
    leaf(vec![1.0], &[1]).tanh().set_requires_grad(false);
}

mod shape_errors_name_the_op_and_both_shapes {
    use super::*;

    #[test]
    #[should_panic(expected = "add: shapes [2, 3] and [3, 2] cannot be broadcast")]
    fn add() {
        let _ = Tensor::zeros(&[2, 3], &CPU) + Tensor::zeros(&[3, 2], &CPU);
    }

    #[test]
    #[should_panic(expected = "sub: shapes [2, 3] and [2] cannot be broadcast")]
    fn sub() {
        let _ = Tensor::zeros(&[2, 3], &CPU) - Tensor::zeros(&[2], &CPU);
    }

    #[test]
    #[should_panic(expected = "mul: shapes [3] and [4] cannot be broadcast")]
    fn mul() {
        let _ = Tensor::zeros(&[3], &CPU) * Tensor::zeros(&[4], &CPU);
    }

    #[test]
    #[should_panic(expected = "matmul: shapes [2, 3] and [2, 3] cannot be multiplied")]
    fn matmul() {
        Tensor::zeros(&[2, 3], &CPU).matmul(&Tensor::zeros(&[2, 3], &CPU));
    }

    #[test]
    #[should_panic(expected = "linear: input [64, 100] and weight [256, 99] do not match")]
    fn linear_weight() {
        let x = Tensor::zeros(&[64, 100], &CPU);
        linear(&x, &Tensor::zeros(&[256, 99], &CPU), None);
    }

    #[test]
    #[should_panic(expected = "linear: weight [4, 3] and bias [3] do not match")]
    fn linear_bias() {
        let x = Tensor::zeros(&[2, 3], &CPU);
        let b = Tensor::zeros(&[3], &CPU);
        linear(&x, &Tensor::zeros(&[4, 3], &CPU), Some(&b));
    }

    #[test]
    #[should_panic(
        expected = "binary_cross_entropy: input [64, 1] and target [64] must have the same shape"
    )]
    fn binary_cross_entropy_shapes() {
        binary_cross_entropy(&Tensor::zeros(&[64, 1], &CPU), &Tensor::zeros(&[64], &CPU));
    }

    #[test]
    #[should_panic(expected = "reshape: shape [2, 3] (6 elements) cannot become [4] (4 elements)")]
    fn reshape() {
        Tensor::zeros(&[2, 3], &CPU).reshape(&[4]);
    }

    #[test]
    #[should_panic(expected = "from_vec: 5 values cannot fill shape [2, 3] (6 elements)")]
    fn from_vec() {
        Tensor::from_vec(vec![0.0; 5], &[2, 3], &CPU);
    }

    // Shapes whose element counts overflow a usize: wrapped, [2³², 2³²] counted 0 elements and
    // made a tensor, and kernels sized by its shape then read past empty buffers.

    #[test]
    #[should_panic(expected = "shape [4294967296, 4294967296] has more elements than a usize")]
    fn zeros_too_many_elements() {
        Tensor::zeros(&[1 << 32, 1 << 32], &CPU);
    }

    #[test]
    #[should_panic(expected = "shape [0, 1099511627776, 1099511627776] has more elements than")]
    fn zeros_with_an_empty_dimension_but_rows_too_long() {
        Tensor::zeros(&[0, 1 << 40, 1 << 40], &CPU);
    }

    #[test]
    #[should_panic(
        expected = "matmul: shapes [4294967296, 0] and [0, 4294967296] give a result of more"
    )]
    fn matmul_result_too_large() {
        let a = Tensor::zeros(&[1 << 32, 0], &CPU);
        a.matmul(&Tensor::zeros(&[0, 1 << 32], &CPU));
    }

    #[test]
    #[should_panic(
        expected = "linear: input [4294967296, 0] and weight [4294967296, 0] give a result of"
    )]
    fn linear_result_too_large() {
        let x = Tensor::zeros(&[1 << 32, 0], &CPU);
        linear(&x, &x, None);
    }

    #[test]
    #[should_panic(expected = "cat: the shapes [[9223372036854775808, 0], [9223372036854775808")]
    fn cat_rows_too_many() {
        let half = Tensor::zeros(&[1 << 63, 0], &CPU);
        Tensor::cat(&[&half, &half]);
    }

    #[test]
    #[should_panic(expected = "cat: the shapes [[1152921504606846976, 0, 8], [1152921504606846976")]
    fn cat_rows_too_many_for_their_row_length() {
        // 2⁶¹ rows of 0 × 8: no elements, but rows of 8 that no usize can count.
        let part = Tensor::zeros(&[1 << 60, 0, 8], &CPU);
        Tensor::cat(&[&part, &part]);
    }

    #[test]
    #[should_panic(expected = "item: a tensor of shape [2, 1] has 2 elements, not one")]
    fn item() {
        Tensor::zeros(&[2, 1], &CPU).item();
    }

    #[test]
    #[should_panic(expected = "assign: 5 values for a tensor of shape [2, 3]")]
    fn assign() {
        Tensor::zeros(&[2, 3], &CPU).assign(&[0.0; 5]);
    }

    #[test]
    #[should_panic(
        expected = "copy_from: cannot copy a tensor of shape [6] into one of shape [2, 3]"
    )]
    fn copy_from() {
        Tensor::zeros(&[2, 3], &CPU).copy_from(&Tensor::zeros(&[6], &CPU));
    }

    #[test]
    #[should_panic(expected = "narrow_rows: 2 rows from row 18446744073709551615 of a tensor")]
    fn narrow_rows_past_the_end_of_usize() {
        Tensor::zeros(&[3, 2], &CPU).narrow_rows(usize::MAX, 2);
    }
}
