//! `cifar-cnn`: a small three-block CNN for 32×32 RGB images (CIFAR-10).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// Input height and width of [`CifarCnn`].
pub const CIFAR_SIDE: usize = 32;
/// Input channels of [`CifarCnn`].
pub const CIFAR_CHANNELS: usize = 3;

/// Configuration of [`CifarCnn`].
///
/// Three blocks of 3×3 convolution (1 pixel of padding) + ReLU + 2×2 max pool take a
/// `3×32×32` image to `conv3_channels × 4 × 4`, then one hidden dense layer.
#[derive(Config, Debug)]
pub struct CifarCnnConfig {
    /// Number of classes (output logits).
    #[config(default = 10)]
    pub num_classes: usize,
    /// Output channels of the first convolution.
    #[config(default = 16)]
    pub conv1_channels: usize,
    /// Output channels of the second convolution.
    #[config(default = 32)]
    pub conv2_channels: usize,
    /// Output channels of the third convolution.
    #[config(default = 64)]
    pub conv3_channels: usize,
    /// Width of the hidden dense layer.
    #[config(default = 128)]
    pub hidden: usize,
}

impl CifarCnnConfig {
    /// Number of features entering the dense layers: `conv3_channels * 4 * 4`.
    pub fn flatten_size(&self) -> usize {
        self.conv3_channels * (CIFAR_SIDE / 8) * (CIFAR_SIDE / 8)
    }

    /// Builds the module on `device`. Parameters are lazy until first read or overwritten.
    pub fn init(&self, device: &Device) -> CifarCnn {
        let conv = |cin, cout| {
            Conv2dConfig::new([cin, cout], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        CifarCnn {
            conv1: conv(CIFAR_CHANNELS, self.conv1_channels),
            conv2: conv(self.conv1_channels, self.conv2_channels),
            conv3: conv(self.conv2_channels, self.conv3_channels),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc1: LinearConfig::new(self.flatten_size(), self.hidden).init(device),
            fc2: LinearConfig::new(self.hidden, self.num_classes).init(device),
        }
    }
}

/// Small CIFAR-10 CNN.
///
/// Parameters in flat order: `conv1.weight` `[c1, 3, 3, 3]`, `conv1.bias`, `conv2.*`,
/// `conv3.*`, `fc1.weight` `[c3*16, hidden]`, `fc1.bias`, `fc2.weight` `[hidden, num_classes]`,
/// `fc2.bias`.
#[derive(Module, Debug)]
pub struct CifarCnn {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    pool: MaxPool2d,
    fc1: Linear,
    fc2: Linear,
}

impl CifarCnn {
    /// `x`: `[batch, 3, 32, 32]` → logits `[batch, num_classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(relu(self.conv1.forward(x)));
        let x = self.pool.forward(relu(self.conv2.forward(x)));
        let x = self.pool.forward(relu(self.conv3.forward(x)));
        let [batch, c, h, w] = x.dims();
        let x = x.reshape([batch, c * h * w]);
        self.fc2.forward(relu(self.fc1.forward(x)))
    }
}
