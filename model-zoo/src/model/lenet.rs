//! `lenet`: a LeNet-5 style CNN for single-channel images of any size (at least 4×4).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// Configuration of [`LeNet`].
///
/// Both convolutions are 5×5 with 2 pixels of zero padding (they keep the size), each followed
/// by ReLU and a 2×2 max pool, so a `height × width` image reaches the dense layers as
/// `conv2_channels × ⌊height/4⌋ × ⌊width/4⌋` features. Unlike the original LeNet-5 (valid
/// convolutions on 32×32), this works for any image of at least 4×4.
#[derive(Config, Debug)]
pub struct LeNetConfig {
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Number of classes (output logits).
    #[config(default = 10)]
    pub num_classes: usize,
    /// Output channels of the first convolution.
    #[config(default = 6)]
    pub conv1_channels: usize,
    /// Output channels of the second convolution.
    #[config(default = 16)]
    pub conv2_channels: usize,
    /// Width of the first dense layer.
    #[config(default = 120)]
    pub fc1: usize,
    /// Width of the second dense layer.
    #[config(default = 84)]
    pub fc2: usize,
}

impl LeNetConfig {
    /// Number of features entering `fc1`: `conv2_channels * ⌊height/4⌋ * ⌊width/4⌋`.
    pub fn flatten_size(&self) -> usize {
        self.conv2_channels * (self.height / 4) * (self.width / 4)
    }

    /// Builds the module on `device`. Parameters are lazy until first read or overwritten.
    pub fn init(&self, device: &Device) -> LeNet {
        let conv = |cin, cout| {
            Conv2dConfig::new([cin, cout], [5, 5])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                .init(device)
        };
        LeNet {
            conv1: conv(1, self.conv1_channels),
            conv2: conv(self.conv1_channels, self.conv2_channels),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc1: LinearConfig::new(self.flatten_size(), self.fc1).init(device),
            fc2: LinearConfig::new(self.fc1, self.fc2).init(device),
            fc3: LinearConfig::new(self.fc2, self.num_classes).init(device),
            height: self.height,
            width: self.width,
        }
    }
}

/// LeNet-5 style network.
///
/// Parameters in flat order: `conv1.weight` `[c1, 1, 5, 5]`, `conv1.bias` `[c1]`,
/// `conv2.weight` `[c2, c1, 5, 5]`, `conv2.bias`, `fc1.weight` `[flatten_size, fc1]`, `fc1.bias`,
/// `fc2.*`, `fc3.*`.
#[derive(Module, Debug)]
pub struct LeNet {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    height: usize,
    width: usize,
}

impl LeNet {
    /// `[height, width]` the model was configured for.
    pub fn image_size(&self) -> [usize; 2] {
        [self.height, self.width]
    }

    /// `x`: `[batch, 1, height, width]` → logits `[batch, num_classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(relu(self.conv1.forward(x)));
        let x = self.pool.forward(relu(self.conv2.forward(x)));
        let [batch, c, h, w] = x.dims();
        let x = x.reshape([batch, c * h * w]);
        let x = relu(self.fc1.forward(x));
        let x = relu(self.fc2.forward(x));
        self.fc3.forward(x)
    }
}
