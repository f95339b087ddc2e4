//! A small fixed network against values computed once by PyTorch (`tests/golden/small_net.py`
//! wrote `tests/golden/small_net.txt`): the loss and every gradient at three Adam steps, the
//! parameters after them (with and without weight decay), and BCE at predictions of 0 and 1.

mod common;

use std::collections::HashMap;

use common::{assert_close, to_f64, CPU};
use ferrograd::nn::functional::binary_cross_entropy;
use ferrograd::nn::{LeakyReLU, Linear, Module, Sequential, Sigmoid};
use ferrograd::optim::{Adam, AdamConfig};
use ferrograd::Tensor;

/// Single-precision results of the same computation in a different order agree to a few ulps
/// (all values here matched to 1e-6 relative when written); twice that leaves room for another
/// summation order without hiding a wrong formula.
const RTOL: f64 = 2e-6;
const ATOL: f64 = 1e-7;

struct Golden(HashMap<String, (Vec<usize>, Vec<f32>)>);

impl Golden {
    fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/small_net.txt");
        let text = std::fs::read_to_string(path).expect("golden fixture is readable");
        let entries = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| {
                let mut fields = line.split('|');
                let (name, shape, values) = (
                    fields.next().unwrap(),
                    fields.next().unwrap(),
                    fields.next().unwrap(),
                );
                let shape = shape.split(',').filter(|s| !s.is_empty());
                let shape = shape.map(|d| d.parse().unwrap()).collect();
                let values = values.split(' ').map(|v| v.parse().unwrap()).collect();
                (name.to_string(), (shape, values))
            })
            .collect();
        Golden(entries)
    }

    fn tensor(&self, name: &str) -> Tensor {
        let (shape, values) = &self.0[name];
        Tensor::from_vec(values.clone(), shape, &CPU)
    }

    fn check(&self, name: &str, actual: &Tensor) {
        let (shape, values) = &self.0[name];
        assert_eq!(actual.shape(), shape.as_slice(), "{name}: shape");
        assert_close(name, &actual.to_vec(), &to_f64(values), RTOL, ATOL);
    }
}

fn model(golden: &Golden) -> Sequential {
    let layer = |i: usize| {
        Linear::from_tensors(
            golden.tensor(&format!("init.{i}.weight")),
            Some(golden.tensor(&format!("init.{i}.bias"))),
        )
    };
    Sequential::new()
        .add(layer(0))
        .add(LeakyReLU::new(0.2))
        .add(layer(2))
        .add(Sigmoid)
}

fn adam(model: &Sequential, weight_decay: f32) -> Adam {
    let config = AdamConfig {
        lr: 0.05,
        betas: (0.5, 0.999),
        eps: 1e-8,
        weight_decay,
    };
    Adam::new(model.parameters(), config)
}

#[test]
fn loss_gradients_and_adam_steps_match_pytorch() {
    let golden = Golden::load();
    let (x, target) = (golden.tensor("input"), golden.tensor("target"));
    let model = model(&golden);
    let names: Vec<String> = model
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
    let mut optimizer = adam(&model, 0.0);
    for step in 0..3 {
        optimizer.zero_grad();
        let loss = binary_cross_entropy(&model.forward(&x), &target);
        loss.backward();
        golden.check(&format!("step{step}.loss"), &loss);
        for (name, param) in model.named_parameters() {
            golden.check(&format!("step{step}.grad.{name}"), &param.grad().unwrap());
        }
        optimizer.step();
    }
    for (name, param) in model.named_parameters() {
        golden.check(&format!("final.{name}"), &param);
    }
}

#[test]
fn adam_with_weight_decay_matches_pytorch() {
    let golden = Golden::load();
    let (x, target) = (golden.tensor("input"), golden.tensor("target"));
    let model = model(&golden);
    let mut optimizer = adam(&model, 0.1);
    for _ in 0..3 {
        optimizer.zero_grad();
        binary_cross_entropy(&model.forward(&x), &target).backward();
        optimizer.step();
    }
    for (name, param) in model.named_parameters() {
        golden.check(&format!("decay.{name}"), &param);
    }
}

/// At predictions of exactly 0 and 1 PyTorch clamps each log term at −100 and floors
/// `p(1 − p)` at 1e-12 in the gradient: the loss and gradient stay finite, and ours match.
#[test]
fn binary_cross_entropy_at_zero_and_one_matches_pytorch() {
    let golden = Golden::load();
    let pred = golden.tensor("edge.pred");
    pred.set_requires_grad(true);
    let loss = binary_cross_entropy(&pred, &golden.tensor("edge.target"));
    loss.backward();
    let grad = pred.grad().unwrap();
    assert!(loss.item().is_finite() && grad.to_vec().iter().all(|g| g.is_finite()));
    golden.check("edge.loss", &loss);
    golden.check("edge.grad", &grad);
}
