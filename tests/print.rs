//! Tensors print as PyTorch prints them. Each expected text is what `print(t)` printed for
//! the same values in PyTorch 2.15 (float32; default print options, but for the precisions
//! of `a_precision_in_the_format_sets_the_decimals`), copied as it came.

mod common;

use common::eighths_pattern;
use ferrograd::nn::functional::{
    binary_cross_entropy, dropout, linear, linear_activation, linear_activation_dropout, Activation,
};
use ferrograd::{Device, Tensor};

fn values(values: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(values, shape, &Device::Cpu)
}

fn leaf(values: Vec<f32>, shape: &[usize]) -> Tensor {
    let tensor = Tensor::from_vec(values, shape, &Device::Cpu);
    tensor.set_requires_grad(true);
    tensor
}

#[test]
fn tensors_print_as_in_pytorch() {
    let cases = [
        // one value, no dimension
        (values(vec![1.5], &[]), r"tensor(1.5000)"),
        // signs line up; 4 decimals
        (
            values(vec![0.5, -1.0, 2.0], &[3]),
            r"tensor([ 0.5000, -1.0000,  2.0000])",
        ),
        // whole numbers end in a point
        (values(vec![1.0, 2.0, 3.0], &[3]), r"tensor([1., 2., 3.])"),
        // negative zero keeps its sign
        (values(vec![-0.0, 1.0], &[2]), r"tensor([-0., 1.])"),
        // a magnitude below 1e-4: scientific
        (
            values(vec![1e-5, 1.0, -0.25], &[3]),
            r"tensor([ 1.0000e-05,  1.0000e+00, -2.5000e-01])",
        ),
        // whole numbers over more than a factor of 1000: scientific
        (
            values(vec![1.0, 5000.0], &[2]),
            r"tensor([1.0000e+00, 5.0000e+03])",
        ),
        // NaN and infinities, padded to the others' width
        (
            values(vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.25], &[4]),
            r"tensor([   nan,    inf,   -inf, 1.2500])",
        ),
        // rows under each other
        (
            values(eighths_pattern(12), &[4, 3]),
            r"tensor([[-6.2500, -1.6250,  3.0000],
        [-5.0000, -0.3750,  4.2500],
        [-3.7500,  0.8750,  5.5000],
        [-2.5000,  2.1250, -5.8750]])",
        ),
        // a blank line between blocks for each dimension past the second
        (
            values(eighths_pattern(16), &[2, 2, 2, 2]),
            r"tensor([[[[-6.2500, -1.6250],
          [ 3.0000, -5.0000]],

         [[-0.3750,  4.2500],
          [-3.7500,  0.8750]]],


        [[[ 5.5000, -2.5000],
          [ 2.1250, -5.8750]],

         [[-1.2500,  3.3750],
          [-4.6250,  0.0000]]]])",
        ),
        // 8 elements of 7 characters fill a line
        (
            values(eighths_pattern(30), &[30]),
            r"tensor([-6.2500, -1.6250,  3.0000, -5.0000, -0.3750,  4.2500, -3.7500,  0.8750,
         5.5000, -2.5000,  2.1250, -5.8750, -1.2500,  3.3750, -4.6250,  0.0000,
         4.6250, -3.3750,  1.2500,  5.8750, -2.1250,  2.5000, -5.5000, -0.8750,
         3.7500, -4.2500,  0.3750,  5.0000, -3.0000,  1.6250])",
        ),
        // over 1000 elements: the 3 first and 3 last
        (
            values(eighths_pattern(2000), &[2000]),
            r"tensor([-6.2500, -1.6250,  3.0000,  ...,  1.0000,  5.6250, -2.3750])",
        ),
        // summarised along both dimensions
        (
            values(eighths_pattern(5000), &[100, 50]),
            r"tensor([[-6.2500, -1.6250,  3.0000,  ..., -3.5000,  1.1250,  5.7500],
        [-2.2500,  2.3750, -5.6250,  ...,  0.5000,  5.1250, -2.8750],
        [ 1.7500, -6.2500, -1.6250,  ...,  4.5000, -3.5000,  1.1250],
        ...,
        [ 3.0000, -5.0000, -0.3750,  ...,  5.7500, -2.2500,  2.3750],
        [-5.6250, -1.0000,  3.6250,  ..., -2.8750,  1.7500, -6.2500],
        [-1.6250,  3.0000, -5.0000,  ...,  1.1250,  5.7500, -2.2500]])",
        ),
        // empty: the size is named
        (values(vec![], &[0, 3]), r"tensor([], size=(0, 3))"),
        // a suffix that would pass 80 columns goes on a line of its own
        (
            leaf(eighths_pattern(16), &[16]),
            r"tensor([-6.2500, -1.6250,  3.0000, -5.0000, -0.3750,  4.2500, -3.7500,  0.8750,
         5.5000, -2.5000,  2.1250, -5.8750, -1.2500,  3.3750, -4.6250,  0.0000],
       requires_grad=True)",
        ),
    ];
    for (tensor, expected) in cases {
        assert_eq!(tensor.to_string(), expected, "shape {:?}", tensor.shape());
    }
}

/// `{:.N}` prints N decimals, as after `torch.set_printoptions(precision=N)`; each expected
/// text is PyTorch 2.15's for the same values and precision.
#[test]
fn a_precision_in_the_format_sets_the_decimals() {
    let sevenths: Vec<f32> = eighths_pattern(30).iter().map(|v| v / 7.0).collect();
    let thirds: Vec<f32> = eighths_pattern(2000).iter().map(|v| v / 3.0).collect();
    let cases = [
        (
            values(vec![0.5, -1.0, 2.0], &[3]),
            2,
            r"tensor([ 0.50, -1.00,  2.00])",
        ),
        // the choice of scientific notation does not depend on the precision
        (
            values(vec![1e-5, 1.0, -0.25], &[3]),
            2,
            r"tensor([ 1.00e-05,  1.00e+00, -2.50e-01])",
        ),
        (
            values(vec![1.0, 5000.0], &[2]),
            1,
            r"tensor([1.0e+00, 5.0e+03])",
        ),
        // whole numbers keep their point, whatever the precision
        (
            values(vec![1.0, 2.0, 3.0], &[3]),
            2,
            r"tensor([1., 2., 3.])",
        ),
        // no decimals at all: ties to even, as Python's `.0f`
        (
            values(vec![1.0 / 3.0, 2.0 / 3.0, -0.5, 2.5], &[4]),
            0,
            r"tensor([ 0,  1, -0,  2])",
        ),
        (
            values(eighths_pattern(12), &[4, 3]),
            6,
            r"tensor([[-6.250000, -1.625000,  3.000000],
        [-5.000000, -0.375000,  4.250000],
        [-3.750000,  0.875000,  5.500000],
        [-2.500000,  2.125000, -5.875000]])",
        ),
        // wider elements, fewer to a line
        (
            values(sevenths, &[30]),
            8,
            r"tensor([-0.89285713, -0.23214285,  0.42857143, -0.71428573, -0.05357143,
         0.60714287, -0.53571427,  0.12500000,  0.78571427, -0.35714287,
         0.30357143, -0.83928573, -0.17857143,  0.48214287, -0.66071427,
         0.00000000,  0.66071427, -0.48214287,  0.17857143,  0.83928573,
        -0.30357143,  0.35714287, -0.78571427, -0.12500000,  0.53571427,
        -0.60714287,  0.05357143,  0.71428573, -0.42857143,  0.23214285])",
        ),
        // summarised
        (
            values(thirds, &[40, 50]),
            2,
            r"tensor([[-2.08, -0.54,  1.00,  ..., -1.17,  0.38,  1.92],
        [-0.75,  0.79, -1.88,  ...,  0.17,  1.71, -0.96],
        [ 0.58, -2.08, -0.54,  ...,  1.50, -1.17,  0.38],
        ...,
        [ 0.96, -1.71, -0.17,  ...,  1.88, -0.79,  0.75],
        [-1.92, -0.38,  1.17,  ..., -1.00,  0.54,  2.08],
        [-0.58,  0.96, -1.71,  ...,  0.33,  1.88, -0.79]])",
        ),
    ];
    for (tensor, precision, expected) in cases {
        assert_eq!(
            format!("{tensor:.precision$}"),
            expected,
            "precision {precision}"
        );
    }
}

/// An op's result names its backward node as PyTorch does; its values print as any tensor's.
#[test]
fn results_of_ops_name_their_backward() {
    let x = leaf(vec![-6.25, -1.625, 3.0], &[3]);
    let squares = &x * &x;
    assert_eq!(
        squares.to_string(),
        "tensor([39.0625,  2.6406,  9.0000], grad_fn=<MulBackward0>)"
    );
    assert_eq!(
        squares.sum().to_string(),
        "tensor(50.7031, grad_fn=<SumBackward0>)"
    );
    let _no_grad = ferrograd::no_grad();
    assert_eq!((&x * &x).to_string(), "tensor([39.0625,  2.6406,  9.0000])");
}

/// Each op's `grad_fn`, as PyTorch 2.15 names the node of the same expression
/// (`type(y.grad_fn).__name__`): a linear layer is `addmm` with a bias and `mm` without, a
/// fused layer names its last op, dropout is a `mul` by its mask.
#[test]
fn every_op_names_its_backward_as_pytorch_does() {
    let x = leaf(eighths_pattern(12), &[4, 3]);
    let w = leaf(eighths_pattern(15), &[5, 3]);
    let b = leaf(eighths_pattern(5), &[5]);
    let row = leaf(eighths_pattern(3), &[3]);
    let p = linear_activation(&x, &w, Some(&b), Activation::Sigmoid);
    let t = values(vec![1.0; 20], &[4, 5]);
    let cases = [
        (&x + &row, "AddBackward0"),
        (&x - &row, "SubBackward0"),
        (&x * &row, "MulBackward0"),
        (&x + 1.5, "AddBackward0"),
        (&x - 1.0, "SubBackward0"),
        (&x * 0.5, "MulBackward0"),
        (&x / 2.0, "DivBackward0"),
        (1.0 - &x, "RsubBackward1"),
        (-&x, "NegBackward0"),
        (x.matmul(&w.reshape(&[3, 5])), "MmBackward0"),
        (linear(&x, &w, Some(&b)), "AddmmBackward0"),
        (linear(&x, &w, None), "MmBackward0"),
        (x.relu(), "ReluBackward0"),
        (x.leaky_relu(0.2), "LeakyReluBackward0"),
        (x.tanh(), "TanhBackward0"),
        (x.sigmoid(), "SigmoidBackward0"),
        (
            linear_activation(&x, &w, Some(&b), Activation::Tanh),
            "TanhBackward0",
        ),
        (
            linear_activation(&x, &w, Some(&b), Activation::LeakyRelu(0.2)),
            "LeakyReluBackward0",
        ),
        (dropout(&x, 0.3, true), "MulBackward0"),
        (
            linear_activation_dropout(&x, &w, Some(&b), Activation::Relu, 0.3),
            "MulBackward0",
        ),
        (x.reshape(&[3, 4]), "ViewBackward0"),
        (Tensor::cat(&[&x, &x]), "CatBackward0"),
        (x.narrow_rows(1, 2), "SliceBackward0"),
        (x.sum(), "SumBackward0"),
        (x.mean(), "MeanBackward0"),
        (binary_cross_entropy(&p, &t), "BinaryCrossEntropyBackward0"),
    ];
    for (i, (y, name)) in cases.iter().enumerate() {
        let text = y.to_string();
        assert!(
            text.contains(&format!("grad_fn=<{name}>")),
            "case {i}: {text}"
        );
    }
}

/// Off the CPU, the device follows the values, as PyTorch's `device='cuda:0'` does; the values
/// are read back to print them.
#[test]
fn a_cuda_tensor_names_its_device() {
    for device in common::cuda_devices() {
        let tensor = Tensor::from_vec(vec![1.0, 2.5], &[2], &device);
        assert_eq!(
            tensor.to_string(),
            format!("tensor([1.0000, 2.5000], device='{device}')")
        );
    }
}

/// `{:?}` is a debugging view rather than PyTorch's print: the shape, the device, how the
/// tensor takes part in autograd (an op's result names the node ferrograd recorded, such as
/// the fused `linear_relu`, where print gives PyTorch's name for it), and its first eight
/// values.
#[test]
fn debug_shows_shape_device_autograd_and_the_first_values() {
    assert_eq!(
        format!("{:?}", values(vec![1.0, -2.5], &[2])),
        "Tensor(shape=[2], device=cpu, data=[1.0, -2.5])"
    );
    let x = leaf((0..10).map(|i| i as f32 / 4.0).collect(), &[2, 5]);
    assert_eq!(
        format!("{x:?}"),
        "Tensor(shape=[2, 5], device=cpu, requires_grad=true, \
         data=[0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75] … (2 more))"
    );
    assert_eq!(
        format!("{:?}", x.sum()),
        "Tensor(shape=[], device=cpu, grad_fn=sum, data=[11.25])"
    );
    let w = values(vec![1.0, 0.5, 0.0, 0.0, -0.5], &[1, 5]);
    let y = linear_activation(&x, &w, None, Activation::Relu);
    assert_eq!(
        format!("{y:?}"),
        "Tensor(shape=[2, 1], device=cpu, grad_fn=linear_relu, data=[0.0, 0.875])"
    );
    assert!(y.to_string().ends_with("grad_fn=<ReluBackward0>)"), "{y}");
}
