//! `mlp`: a multi-layer perceptron with ReLU between layers.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// Configuration of [`Mlp`].
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Number of input features (the flattened sample length).
    pub inputs: usize,
    /// Width of each hidden layer, input side first. Empty means softmax regression.
    #[config(default = "vec![64]")]
    pub hidden: Vec<usize>,
    /// Number of classes (output logits).
    #[config(default = 10)]
    pub num_classes: usize,
}

/// `inputs → hidden[0] → ReLU → … → hidden[n-1] → ReLU → num_classes`.
///
/// Parameters in flat order: `hidden.0.weight` `[inputs, hidden[0]]`, `hidden.0.bias`, …,
/// `output.weight` `[hidden[n-1], num_classes]`, `output.bias`.
#[derive(Module, Debug)]
pub struct Mlp {
    hidden: Vec<Linear>,
    output: Linear,
}

impl MlpConfig {
    /// Builds the module on `device`. Parameters are lazy until first read or overwritten.
    pub fn init(&self, device: &Device) -> Mlp {
        let mut hidden = Vec::with_capacity(self.hidden.len());
        let mut width = self.inputs;
        for &h in &self.hidden {
            hidden.push(LinearConfig::new(width, h).init(device));
            width = h;
        }
        Mlp {
            hidden,
            output: LinearConfig::new(width, self.num_classes).init(device),
        }
    }
}

impl Mlp {
    /// `x`: `[batch, inputs]` → logits `[batch, num_classes]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut x = x;
        for layer in &self.hidden {
            x = relu(layer.forward(x));
        }
        self.output.forward(x)
    }
}
