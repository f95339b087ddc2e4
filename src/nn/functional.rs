//! Stateless forms of the layers, as PyTorch's `torch.nn.functional`.

pub use crate::ops::{
    binary_cross_entropy, dropout, dropout_with, linear, linear_activation,
    linear_activation_dropout, Activation,
};
