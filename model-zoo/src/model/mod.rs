//! The architectures of the zoo and the one configuration type that builds any of them.
//!
//! Every model takes a batch of flat samples `[batch, input_len]` through [`Model::forward`]
//! (the CNNs reshape it to `[batch, channels, height, width]` themselves) and returns class
//! logits `[batch, num_classes]`.

pub mod cifar;
pub mod lenet;
pub mod linear;
pub mod mlp;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use cifar::{CifarCnn, CifarCnnConfig};
pub use lenet::{LeNet, LeNetConfig};
pub use linear::{LinearModel, LinearModelConfig};
pub use mlp::{Mlp, MlpConfig};

/// Stable architecture ids, as they appear in `ModelSpec::architecture`.
pub const ARCHITECTURES: [&str; 4] = ["linear", "mlp", "lenet", "cifar-cnn"];

/// Largest model the zoo builds from a (possibly untrusted) configuration.
pub const MAX_PARAMS: u64 = 256 * 1024 * 1024;

/// Largest single dimension accepted in a configuration.
const MAX_DIM: usize = 1 << 24;

/// Why a model configuration, spec or weight vector was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown architecture `{0}` (expected one of: linear, mlp, lenet, cifar-cnn)")]
    UnknownArchitecture(String),
    #[error("invalid {architecture} configuration: {problem}")]
    InvalidConfig {
        architecture: &'static str,
        problem: String,
    },
    #[error("model config is not valid JSON for the zoo: {0}")]
    ConfigJson(String),
    #[error("spec names architecture `{spec}` but its config_json is for `{config}`")]
    ArchitectureMismatch { spec: String, config: String },
    #[error("spec does not match the layout its config builds: {0}")]
    SpecMismatch(String),
    #[error("weight vector has {actual} values, the model has {expected} parameters")]
    WrongLength { expected: usize, actual: usize },
    #[error("data has {actual} features per sample ({shape:?}), the model expects {expected}")]
    InputMismatch {
        expected: usize,
        actual: usize,
        shape: Vec<usize>,
    },
    #[error("data has {actual} classes, the model outputs {expected}")]
    ClassMismatch { expected: usize, actual: usize },
}

/// Configuration of any zoo model, tagged by its architecture id.
///
/// Its JSON (`{"architecture":"mlp","inputs":32,"hidden":[64],"num_classes":10}`) is what a
/// [`flic_protocol::ModelSpec`] carries as `config_json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "architecture")]
pub enum ModelConfig {
    #[serde(rename = "linear")]
    Linear(LinearModelConfig),
    #[serde(rename = "mlp")]
    Mlp(MlpConfig),
    #[serde(rename = "lenet")]
    LeNet(LeNetConfig),
    #[serde(rename = "cifar-cnn")]
    CifarCnn(CifarCnnConfig),
}

/// Any zoo model. Built by [`ModelConfig::init`]; the variant adds no name to parameter paths.
#[derive(Module, Debug)]
pub enum Model {
    Linear(LinearModel),
    Mlp(Mlp),
    LeNet(LeNet),
    CifarCnn(CifarCnn),
}

impl Model {
    /// `x`: flat samples `[batch, input_len]` → logits `[batch, num_classes]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Model::Linear(m) => m.forward(x),
            Model::Mlp(m) => m.forward(x),
            Model::LeNet(m) => {
                let [batch, _] = x.dims();
                let [h, w] = m.image_size();
                m.forward(x.reshape([batch, 1, h, w]))
            }
            Model::CifarCnn(m) => {
                let [batch, _] = x.dims();
                m.forward(x.reshape([
                    batch,
                    cifar::CIFAR_CHANNELS,
                    cifar::CIFAR_SIDE,
                    cifar::CIFAR_SIDE,
                ]))
            }
        }
    }
}

/// Whether an architecture id names a convolutional model.
pub fn is_convolutional(architecture: &str) -> bool {
    matches!(architecture, "lenet" | "cifar-cnn")
}

impl ModelConfig {
    /// The stable architecture id.
    pub fn architecture(&self) -> &'static str {
        match self {
            ModelConfig::Linear(_) => "linear",
            ModelConfig::Mlp(_) => "mlp",
            ModelConfig::LeNet(_) => "lenet",
            ModelConfig::CifarCnn(_) => "cifar-cnn",
        }
    }

    /// Whether the architecture is convolutional (`lenet`, `cifar-cnn`): the CPU backend
    /// choice of `--backend auto` depends on it.
    pub fn is_convolutional(&self) -> bool {
        is_convolutional(self.architecture())
    }

    /// Builds a configuration with default sizes for data of `feature_shape` and
    /// `num_classes`. `hidden` sets the MLP's hidden widths (the default `[64]` when empty) and
    /// is rejected for the other architectures.
    ///
    /// `linear` and `mlp` take any shape (flattened). `lenet` takes `[1, h, w]` or `[h, w]`
    /// (or `[n]` with `n` a perfect square, read as `√n × √n`). `cifar-cnn` takes `[3, 32, 32]`
    /// (or `[3072]`).
    pub fn for_data(
        architecture: &str,
        feature_shape: &[usize],
        num_classes: usize,
        hidden: &[usize],
    ) -> Result<Self, ModelError> {
        let inputs: usize = feature_shape.iter().product();
        let invalid = |architecture, problem: String| ModelError::InvalidConfig {
            architecture,
            problem,
        };
        if !hidden.is_empty() && architecture != "mlp" && ARCHITECTURES.contains(&architecture) {
            return Err(invalid(
                arch_static(architecture),
                "hidden sizes apply to `mlp` only".into(),
            ));
        }
        let config = match architecture {
            "linear" => {
                ModelConfig::Linear(LinearModelConfig::new(inputs).with_num_classes(num_classes))
            }
            "mlp" => {
                let mut c = MlpConfig::new(inputs).with_num_classes(num_classes);
                if !hidden.is_empty() {
                    c = c.with_hidden(hidden.to_vec());
                }
                ModelConfig::Mlp(c)
            }
            "lenet" => {
                let (h, w) = match feature_shape {
                    [1, h, w] | [h, w] => (*h, *w),
                    [n] => {
                        let side = (*n as f64).sqrt().round() as usize;
                        if side * side != *n {
                            return Err(invalid(
                                "lenet",
                                format!("{n} features are not a square single-channel image"),
                            ));
                        }
                        (side, side)
                    }
                    other => {
                        return Err(invalid(
                            "lenet",
                            format!(
                                "needs single-channel images [1, h, w], data has shape {other:?}"
                            ),
                        ))
                    }
                };
                ModelConfig::LeNet(LeNetConfig::new(h, w).with_num_classes(num_classes))
            }
            "cifar-cnn" => {
                if inputs != 3 * 32 * 32 || !matches!(feature_shape, [3, 32, 32] | [3072]) {
                    return Err(invalid(
                        "cifar-cnn",
                        format!(
                            "needs 32×32 RGB images [3, 32, 32], data has shape {feature_shape:?}"
                        ),
                    ));
                }
                ModelConfig::CifarCnn(CifarCnnConfig::new().with_num_classes(num_classes))
            }
            other => return Err(ModelError::UnknownArchitecture(other.to_string())),
        };
        config.validate()?;
        Ok(config)
    }

    /// Length of one flat input sample.
    pub fn input_len(&self) -> usize {
        match self {
            ModelConfig::Linear(c) => c.inputs,
            ModelConfig::Mlp(c) => c.inputs,
            ModelConfig::LeNet(c) => c.height * c.width,
            ModelConfig::CifarCnn(_) => 3 * 32 * 32,
        }
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        match self {
            ModelConfig::Linear(c) => c.num_classes,
            ModelConfig::Mlp(c) => c.num_classes,
            ModelConfig::LeNet(c) => c.num_classes,
            ModelConfig::CifarCnn(c) => c.num_classes,
        }
    }

    /// Checks sizes before anything is built: every size positive and bounded, images large
    /// enough, and the parameter count at most [`MAX_PARAMS`]. Configurations may come from the
    /// network, so nothing here panics.
    pub fn validate(&self) -> Result<(), ModelError> {
        let arch = self.architecture();
        let invalid = |problem: String| ModelError::InvalidConfig {
            architecture: arch,
            problem,
        };
        let mut dims: Vec<(&str, usize)> = vec![("num_classes", self.num_classes())];
        match self {
            ModelConfig::Linear(c) => dims.push(("inputs", c.inputs)),
            ModelConfig::Mlp(c) => {
                dims.push(("inputs", c.inputs));
                dims.extend(c.hidden.iter().map(|&h| ("hidden", h)));
            }
            ModelConfig::LeNet(c) => {
                dims.extend([
                    ("height", c.height),
                    ("width", c.width),
                    ("conv1_channels", c.conv1_channels),
                    ("conv2_channels", c.conv2_channels),
                    ("fc1", c.fc1),
                    ("fc2", c.fc2),
                ]);
            }
            ModelConfig::CifarCnn(c) => dims.extend([
                ("conv1_channels", c.conv1_channels),
                ("conv2_channels", c.conv2_channels),
                ("conv3_channels", c.conv3_channels),
                ("hidden", c.hidden),
            ]),
        }
        for (name, d) in dims {
            if d == 0 || d > MAX_DIM {
                return Err(invalid(format!("{name} = {d} is outside 1..={MAX_DIM}")));
            }
        }
        if self.num_classes() < 2 {
            return Err(invalid("num_classes must be at least 2".into()));
        }
        if let ModelConfig::LeNet(c) = self {
            if c.height < 4 || c.width < 4 {
                return Err(invalid(format!(
                    "images must be at least 4×4 (two 2×2 poolings), got {}×{}",
                    c.height, c.width
                )));
            }
        }
        let params = self
            .param_count_checked()
            .ok_or_else(|| invalid("parameter count overflows".into()))?;
        if params > MAX_PARAMS {
            return Err(invalid(format!(
                "{params} parameters, above the limit of {MAX_PARAMS}"
            )));
        }
        Ok(())
    }

    /// Parameter count computed from the sizes alone (no module is built).
    pub(crate) fn param_count_checked(&self) -> Option<u64> {
        fn dense(i: usize, o: usize) -> Option<u64> {
            (i as u64).checked_mul(o as u64)?.checked_add(o as u64)
        }
        fn conv(i: usize, o: usize, k: u64) -> Option<u64> {
            (i as u64)
                .checked_mul(o as u64)?
                .checked_mul(k * k)?
                .checked_add(o as u64)
        }
        let sum =
            |parts: Vec<Option<u64>>| parts.into_iter().try_fold(0u64, |a, p| a.checked_add(p?));
        match self {
            ModelConfig::Linear(c) => dense(c.inputs, c.num_classes),
            ModelConfig::Mlp(c) => {
                let mut parts = Vec::new();
                let mut width = c.inputs;
                for &h in &c.hidden {
                    parts.push(dense(width, h));
                    width = h;
                }
                parts.push(dense(width, c.num_classes));
                sum(parts)
            }
            ModelConfig::LeNet(c) => {
                let flat = (c.conv2_channels as u64)
                    .checked_mul((c.height / 4) as u64)?
                    .checked_mul((c.width / 4) as u64)?;
                sum(vec![
                    conv(1, c.conv1_channels, 5),
                    conv(c.conv1_channels, c.conv2_channels, 5),
                    (flat)
                        .checked_mul(c.fc1 as u64)
                        .and_then(|v| v.checked_add(c.fc1 as u64)),
                    dense(c.fc1, c.fc2),
                    dense(c.fc2, c.num_classes),
                ])
            }
            ModelConfig::CifarCnn(c) => sum(vec![
                conv(3, c.conv1_channels, 3),
                conv(c.conv1_channels, c.conv2_channels, 3),
                conv(c.conv2_channels, c.conv3_channels, 3),
                dense(c.flatten_size(), c.hidden),
                dense(c.hidden, c.num_classes),
            ]),
        }
    }

    /// Builds the module on `device` with lazy (not yet drawn) parameters. Call
    /// [`validate`](Self::validate) first for configurations from outside; the flat-layout
    /// functions in this crate do.
    pub fn init(&self, device: &Device) -> Model {
        match self {
            ModelConfig::Linear(c) => Model::Linear(c.init(device)),
            ModelConfig::Mlp(c) => Model::Mlp(c.init(device)),
            ModelConfig::LeNet(c) => Model::LeNet(c.init(device)),
            ModelConfig::CifarCnn(c) => Model::CifarCnn(c.init(device)),
        }
    }

    /// The canonical JSON of this configuration (the spec's `config_json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("model configs serialize to JSON")
    }

    /// Parses and validates a configuration.
    pub fn from_json(json: &str) -> Result<Self, ModelError> {
        let config: ModelConfig = serde_json::from_str(json).map_err(|e| {
            // serde reports an unknown tag as an unknown variant: keep the zoo's wording.
            ModelError::ConfigJson(e.to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that data of `feature_shape` with `num_classes` classes fits this model: same
    /// number of features per sample, and no more classes than the model outputs.
    pub fn check_data(
        &self,
        feature_shape: &[usize],
        num_classes: usize,
    ) -> Result<(), ModelError> {
        let actual: usize = feature_shape.iter().product();
        if actual != self.input_len() {
            return Err(ModelError::InputMismatch {
                expected: self.input_len(),
                actual,
                shape: feature_shape.to_vec(),
            });
        }
        if num_classes > self.num_classes() {
            return Err(ModelError::ClassMismatch {
                expected: self.num_classes(),
                actual: num_classes,
            });
        }
        Ok(())
    }
}

impl PartialEq for ModelConfig {
    fn eq(&self, other: &Self) -> bool {
        self.to_json() == other.to_json()
    }
}

fn arch_static(id: &str) -> &'static str {
    ARCHITECTURES
        .iter()
        .find(|a| **a == id)
        .copied()
        .unwrap_or("model")
}
