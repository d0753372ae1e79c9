//! The flat parameter layout: a [`ModelSpec`] per configuration, and exact conversion between
//! a burn module and one `f32` vector.
//!
//! The layout rule: float parameters in field declaration order (as burn's `ModuleVisitor`
//! walks the module), each named by its field path joined with `.` (`hidden.0.weight`), each
//! stored row-major with its burn shape, packed back to back from offset 0. The enum variant
//! of [`Model`] adds nothing to the names.

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use flic_protocol::{ModelSpec, TensorSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::{Model, ModelConfig, ModelError, MAX_PARAMS};

/// The device on which layouts are computed: parameters stay lazy, so nothing is allocated.
#[allow(deprecated)] // ndarray is the project's default CPU backend (see DEPENDENCIES.md)
fn layout_device() -> Device {
    Device::ndarray()
}

/// Keeps the module path, skipping the variant name of an enum (our [`Model`]).
#[derive(Default)]
struct Path(Vec<String>);

impl Path {
    fn enter(&mut self, name: &str, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.0.push(name.to_string());
        }
    }
    fn exit(&mut self, container_type: &str) {
        if !container_type.starts_with("Enum:") {
            self.0.pop();
        }
    }
}

struct LayoutVisitor {
    path: Path,
    tensors: Vec<TensorSpec>,
    next_offset: u64,
}

impl ModuleVisitor for LayoutVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.path.exit(container_type);
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let shape: Vec<u64> = param.lazy_shape().iter().map(|&d| d as u64).collect();
        let numel: u64 = shape.iter().product();
        self.tensors.push(TensorSpec {
            name: self.path.0.join("."),
            shape,
            offset: self.next_offset,
        });
        self.next_offset += numel;
    }
}

/// The flat layout of a model: architecture id, canonical config JSON, tensors in order.
pub fn model_spec(config: &ModelConfig) -> Result<ModelSpec, ModelError> {
    config.validate()?;
    let model = config.init(&layout_device());
    let mut visitor = LayoutVisitor {
        path: Path::default(),
        tensors: Vec::new(),
        next_offset: 0,
    };
    model.visit(&mut visitor);
    Ok(ModelSpec {
        architecture: config.architecture().to_string(),
        config_json: config.to_json(),
        tensors: visitor.tensors,
    })
}

/// Number of parameters of a model.
pub fn param_count(config: &ModelConfig) -> Result<usize, ModelError> {
    Ok(model_spec(config)?.param_count() as usize)
}

/// Rebuilds the configuration from a spec alone and checks that the spec is exactly the layout
/// that configuration produces (names, shapes, offsets).
pub fn config_from_spec(spec: &ModelSpec) -> Result<ModelConfig, ModelError> {
    let config = ModelConfig::from_json(&spec.config_json)?;
    if config.architecture() != spec.architecture {
        return Err(ModelError::ArchitectureMismatch {
            spec: spec.architecture.clone(),
            config: config.architecture().to_string(),
        });
    }
    let expected = model_spec(&config)?;
    if expected.tensors.len() != spec.tensors.len() {
        return Err(ModelError::SpecMismatch(format!(
            "{} tensors listed, the configuration has {}",
            spec.tensors.len(),
            expected.tensors.len()
        )));
    }
    for (want, got) in expected.tensors.iter().zip(&spec.tensors) {
        if want != got {
            return Err(ModelError::SpecMismatch(format!(
                "tensor `{}` shape {:?} offset {} where the configuration has `{}` shape {:?} offset {}",
                got.name, got.shape, got.offset, want.name, want.shape, want.offset
            )));
        }
    }
    Ok(config)
}

struct FlattenVisitor {
    out: Vec<f32>,
}

impl ModuleVisitor for FlattenVisitor {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let data = param.val().into_data().convert::<f32>();
        let values = data.as_slice::<f32>().expect("converted to f32 above");
        self.out.extend_from_slice(values);
    }
}

/// All float parameters of `model`, in layout order (see the module docs).
pub fn flatten(model: &Model) -> Vec<f32> {
    let mut visitor = FlattenVisitor { out: Vec::new() };
    model.visit(&mut visitor);
    visitor.out
}

struct LoadMapper<'a> {
    weights: &'a [f32],
    offset: usize,
}

impl ModuleMapper for LoadMapper<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let shape = param.lazy_shape();
        let n = shape.num_elements();
        let values = self.weights[self.offset..self.offset + n].to_vec();
        self.offset += n;
        let device = param.lazy_device();
        let tensor = Tensor::<D>::from_data(TensorData::new(values, shape), &device);
        let id = param.id;
        // Keeps the parameter id, device and gradient requirement; the lazy random
        // initialisation never runs.
        param.transform_for_load(tensor, id)
    }
}

/// Builds the model of `config` on `device` with exactly `weights` (layout order). On an
/// autodiff device the parameters require gradients.
pub fn unflatten(
    config: &ModelConfig,
    weights: &[f32],
    device: &Device,
) -> Result<Model, ModelError> {
    let expected = model_spec(config)?.param_count() as usize;
    if weights.len() != expected {
        return Err(ModelError::WrongLength {
            expected,
            actual: weights.len(),
        });
    }
    let model = config.init(device);
    let mut mapper = LoadMapper { weights, offset: 0 };
    let model = model.map(&mut mapper);
    debug_assert_eq!(mapper.offset, expected);
    Ok(model)
}

/// Builds a model from a spec alone (see [`config_from_spec`]) and a weight vector.
pub fn model_from_spec(
    spec: &ModelSpec,
    weights: &[f32],
    device: &Device,
) -> Result<(ModelConfig, Model), ModelError> {
    let config = config_from_spec(spec)?;
    let model = unflatten(&config, weights, device)?;
    Ok((config, model))
}

/// Seeded initial weights, independent of any backend's random generator: every tensor is drawn
/// from `U(-1/√fan_in, 1/√fan_in)` (burn's and PyTorch's default for dense and convolution
/// layers), where `fan_in` is `shape[0]` for a dense weight `[in, out]`, `in·kh·kw` for a
/// convolution weight `[out, in, kh, kw]`, and the fan-in of the preceding weight for a bias.
pub fn init_weights(config: &ModelConfig, seed: u64) -> Result<Vec<f32>, ModelError> {
    let spec = model_spec(config)?;
    debug_assert!(spec.param_count() <= MAX_PARAMS);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(spec.param_count() as usize);
    let mut fan_in = 1u64;
    for t in &spec.tensors {
        match t.shape.as_slice() {
            [i, _] => fan_in = *i,
            [_, i, kh, kw] => fan_in = i * kh * kw,
            _ => {}
        }
        let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
        out.extend((0..t.numel()).map(|_| rng.random_range(-bound..bound)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    #[allow(deprecated)]
    fn cpu() -> Device {
        Device::ndarray()
    }

    fn zoo() -> Vec<ModelConfig> {
        vec![
            ModelConfig::Linear(LinearModelConfig::new(6).with_num_classes(3)),
            ModelConfig::Mlp(
                MlpConfig::new(5)
                    .with_hidden(vec![7, 4])
                    .with_num_classes(3),
            ),
            ModelConfig::LeNet(
                LeNetConfig::new(10, 14)
                    .with_num_classes(4)
                    .with_fc1(12)
                    .with_fc2(8),
            ),
            ModelConfig::CifarCnn(
                CifarCnnConfig::new()
                    .with_conv1_channels(4)
                    .with_conv2_channels(4)
                    .with_conv3_channels(8)
                    .with_hidden(16),
            ),
        ]
    }

    /// Weights with awkward bit patterns: signed zeros, subnormals, large values.
    fn awkward_weights(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|i| match i % 7 {
                0 => -0.0,
                1 => f32::from_bits(1 + i as u32 % 1000), // subnormal
                2 => 3.0e38,
                _ => rng.random_range(-2.0f32..2.0),
            })
            .collect()
    }

    #[test]
    fn specs_are_contiguous_named_and_sized() {
        let linear = model_spec(&zoo()[0]).unwrap();
        let layout: Vec<(&str, Vec<u64>, u64)> = linear
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.shape.clone(), t.offset))
            .collect();
        assert_eq!(
            layout,
            vec![("fc.weight", vec![6, 3], 0), ("fc.bias", vec![3], 18)]
        );
        assert_eq!(linear.architecture, "linear");
        let mlp = model_spec(&zoo()[1]).unwrap();
        let names: Vec<&str> = mlp.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "hidden.0.weight",
                "hidden.0.bias",
                "hidden.1.weight",
                "hidden.1.bias",
                "output.weight",
                "output.bias"
            ]
        );
        let lenet = model_spec(&zoo()[2]).unwrap();
        // 10×14 → ⌊10/4⌋ × ⌊14/4⌋ = 2 × 3 positions of 16 channels.
        let fc1 = lenet
            .tensors
            .iter()
            .find(|t| t.name == "fc1.weight")
            .unwrap();
        assert_eq!(fc1.shape, vec![16 * 2 * 3, 12]);
        assert_eq!(lenet.tensors[0].name, "conv1.weight");
        assert_eq!(lenet.tensors[0].shape, vec![6, 1, 5, 5]);
        for config in zoo() {
            let spec = model_spec(&config).unwrap();
            assert_eq!(spec.validate(MAX_PARAMS), Ok(()), "{}", spec.architecture);
            assert_eq!(
                Some(spec.param_count()),
                config.param_count_checked(),
                "{}",
                spec.architecture
            );
            assert_eq!(spec.architecture, config.architecture());
            assert_eq!(spec, model_spec(&config).unwrap(), "stable");
        }
        let default_cifar = ModelConfig::CifarCnn(CifarCnnConfig::new());
        assert_eq!(
            param_count(&default_cifar).unwrap() as u64,
            default_cifar.param_count_checked().unwrap()
        );
    }

    #[test]
    fn flatten_unflatten_round_trips_bit_for_bit() {
        for (k, config) in zoo().into_iter().enumerate() {
            let n = param_count(&config).unwrap();
            let w = awkward_weights(n, k as u64);
            for device in [cpu(), cpu().autodiff()] {
                let model = unflatten(&config, &w, &device).unwrap();
                let back = flatten(&model);
                assert_eq!(back.len(), n);
                assert!(
                    back.iter().zip(&w).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{} round trip changed bits",
                    config.architecture()
                );
            }
            // Randomly initialised models flatten to the spec's length too.
            assert_eq!(flatten(&config.init(&cpu())).len(), n);
        }
    }

    #[test]
    fn unflattened_parameters_train_on_autodiff_devices() {
        let config = &zoo()[0];
        let w = init_weights(config, 1).unwrap();
        let model = unflatten(config, &w, &cpu().autodiff()).unwrap();
        let Model::Linear(_) = &model else {
            panic!("linear config builds a linear model")
        };
        let x = Tensor::<2>::ones([2, 6], &cpu().autodiff());
        let loss = model.forward(x).sum();
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
        assert_eq!(
            grads.len(),
            2,
            "both tensors require gradients after unflatten"
        );
    }

    #[test]
    fn layout_means_weight_in_by_out() {
        // W[i][j] = i*10 + j, b[j] = 100 + j: logits_j = Σ_i x_i W[i][j] + b_j.
        let config = ModelConfig::Linear(LinearModelConfig::new(2).with_num_classes(3));
        let mut w: Vec<f32> = (0..2)
            .flat_map(|i| (0..3).map(move |j| (i * 10 + j) as f32))
            .collect();
        w.extend([100.0, 101.0, 102.0]);
        let model = unflatten(&config, &w, &cpu()).unwrap();
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0], [1, 2]), &cpu());
        let y = model
            .forward(x)
            .into_data()
            .convert::<f32>()
            .as_slice::<f32>()
            .unwrap()
            .to_vec();
        assert_eq!(
            y,
            vec![100.0 + 20.0, 101.0 + 1.0 + 22.0, 102.0 + 2.0 + 24.0]
        );
    }

    #[test]
    fn every_model_maps_flat_batches_to_logits() {
        for config in zoo() {
            let w = init_weights(&config, 3).unwrap();
            let model = unflatten(&config, &w, &cpu()).unwrap();
            let x = Tensor::<2>::zeros([3, config.input_len()], &cpu());
            assert_eq!(
                model.forward(x).dims(),
                [3, config.num_classes()],
                "{}",
                config.architecture()
            );
        }
    }

    #[test]
    fn builds_from_a_spec_alone_and_rejects_mismatches() {
        for config in zoo() {
            let spec = model_spec(&config).unwrap();
            assert_eq!(config_from_spec(&spec).unwrap(), config);
            let w = init_weights(&config, 9).unwrap();
            let (c2, model) = model_from_spec(&spec, &w, &cpu()).unwrap();
            assert_eq!(c2, config);
            assert_eq!(flatten(&model), w);
        }
        let spec = model_spec(&zoo()[1]).unwrap();
        let mut bad = spec.clone();
        bad.tensors[1].shape = vec![8];
        assert!(matches!(
            config_from_spec(&bad),
            Err(ModelError::SpecMismatch(_))
        ));
        let mut bad = spec.clone();
        bad.tensors.pop();
        assert!(matches!(
            config_from_spec(&bad),
            Err(ModelError::SpecMismatch(_))
        ));
        let mut bad = spec.clone();
        bad.architecture = "linear".into();
        assert!(matches!(
            config_from_spec(&bad),
            Err(ModelError::ArchitectureMismatch { .. })
        ));
        let mut bad = spec.clone();
        bad.config_json = "{\"architecture\":\"transformer\"}".into();
        assert!(matches!(
            config_from_spec(&bad),
            Err(ModelError::ConfigJson(_))
        ));
        let mut bad = spec.clone();
        bad.config_json =
            "{\"architecture\":\"mlp\",\"inputs\":0,\"hidden\":[],\"num_classes\":3}".into();
        assert!(matches!(
            config_from_spec(&bad),
            Err(ModelError::InvalidConfig { .. })
        ));
        assert!(matches!(
            unflatten(&zoo()[1], &[0.0; 3], &cpu()),
            Err(ModelError::WrongLength { actual: 3, .. })
        ));
    }

    #[test]
    fn config_json_and_for_data() {
        let c = ModelConfig::for_data("mlp", &[32], 10, &[16, 8]).unwrap();
        assert_eq!(
            c.to_json(),
            r#"{"architecture":"mlp","inputs":32,"hidden":[16,8],"num_classes":10}"#
        );
        assert_eq!(ModelConfig::from_json(&c.to_json()).unwrap(), c);
        let l = ModelConfig::for_data("lenet", &[1, 20, 12], 10, &[]).unwrap();
        assert_eq!(l.input_len(), 240);
        assert!(ModelConfig::for_data("lenet", &[784], 10, &[]).is_ok());
        assert!(ModelConfig::for_data("lenet", &[3, 32, 32], 10, &[]).is_err());
        assert!(
            ModelConfig::for_data("lenet", &[1, 3, 8], 10, &[]).is_err(),
            "too small for two poolings"
        );
        assert!(ModelConfig::for_data("cifar-cnn", &[3, 32, 32], 10, &[]).is_ok());
        assert!(ModelConfig::for_data("cifar-cnn", &[1, 28, 28], 10, &[]).is_err());
        assert!(ModelConfig::for_data("linear", &[4], 10, &[8]).is_err());
        assert!(matches!(
            ModelConfig::for_data("vit", &[4], 10, &[]),
            Err(ModelError::UnknownArchitecture(_))
        ));
        assert!(
            ModelConfig::for_data("mlp", &[1 << 20], 10, &[1 << 20]).is_err(),
            "too many parameters"
        );
        assert!(c.check_data(&[32], 10).is_ok());
        assert!(matches!(
            c.check_data(&[31], 10),
            Err(ModelError::InputMismatch { .. })
        ));
        assert!(matches!(
            c.check_data(&[32], 11),
            Err(ModelError::ClassMismatch { .. })
        ));
    }

    #[test]
    fn init_weights_are_seeded_and_bounded() {
        let config = &zoo()[1];
        let a = init_weights(config, 5).unwrap();
        assert_eq!(a, init_weights(config, 5).unwrap());
        assert_ne!(a, init_weights(config, 6).unwrap());
        // hidden.0 has fan-in 5: bound 1/√5.
        assert!(a[..7 * 5 + 7].iter().all(|w| w.abs() <= 1.0 / 5f32.sqrt()));
        assert!(a.iter().any(|w| w.abs() > 0.3));
    }
}
