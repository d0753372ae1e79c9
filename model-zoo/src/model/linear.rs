//! `linear`: softmax regression, one affine map from features to class logits.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

/// Configuration of [`LinearModel`].
#[derive(Config, Debug)]
pub struct LinearModelConfig {
    /// Number of input features (the flattened sample length).
    pub inputs: usize,
    /// Number of classes (output logits).
    #[config(default = 10)]
    pub num_classes: usize,
}

/// Softmax regression: `logits = x · W + b`.
///
/// Parameters in flat order: `fc.weight` `[inputs, num_classes]`, `fc.bias` `[num_classes]`.
#[derive(Module, Debug)]
pub struct LinearModel {
    fc: Linear,
}

impl LinearModelConfig {
    /// Builds the module on `device`. Parameters are lazy until first read or overwritten.
    pub fn init(&self, device: &Device) -> LinearModel {
        LinearModel {
            fc: LinearConfig::new(self.inputs, self.num_classes).init(device),
        }
    }
}

impl LinearModel {
    /// `x`: `[batch, inputs]` → logits `[batch, num_classes]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc.forward(x)
    }
}
