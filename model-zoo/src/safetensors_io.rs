//! A flat model as a `.safetensors` file: one `F32` tensor per [`TensorSpec`] (name and shape
//! from the spec, little-endian data), and the spec itself in the file's metadata
//! (`flic.architecture`, `flic.config`, `flic.spec_id`) so the file alone rebuilds the model.

use std::collections::{HashMap, HashSet};

use flic_protocol::hash::to_hex;
use flic_protocol::{ModelSpec, SpecError};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::flat::{config_from_spec, model_spec};
use crate::model::{ModelError, MAX_PARAMS};

/// Metadata key holding the architecture id.
pub const META_ARCHITECTURE: &str = "flic.architecture";
/// Metadata key holding the spec's `config_json`.
pub const META_CONFIG: &str = "flic.config";
/// Metadata key holding the hex spec id.
pub const META_SPEC_ID: &str = "flic.spec_id";

#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("not a readable safetensors file: {0}")]
    Format(String),
    #[error("invalid model spec: {0}")]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("weight vector has {actual} values, the spec has {expected}")]
    WrongLength { expected: usize, actual: usize },
    #[error("tensor `{0}` of the model is missing from the file")]
    MissingTensor(String),
    #[error("the file has tensor `{0}`, which the model does not have")]
    UnexpectedTensor(String),
    #[error("tensor `{name}` has shape {found:?}, the model needs {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor `{name}` is {found}, expected F32")]
    WrongDtype { name: String, found: String },
    #[error("the file has no flic model metadata (`{META_CONFIG}`): import it against a known spec instead")]
    NoMetadata,
    #[error("the file's `{META_ARCHITECTURE}` is `{found}` but its config is for `{expected}`")]
    MetadataMismatch { expected: String, found: String },
}

/// Serialises `weights` laid out by `spec` as safetensors bytes.
pub fn export_safetensors(spec: &ModelSpec, weights: &[f32]) -> Result<Vec<u8>, SafetensorsError> {
    spec.validate(MAX_PARAMS)?;
    let expected = spec.param_count() as usize;
    if weights.len() != expected {
        return Err(SafetensorsError::WrongLength {
            expected,
            actual: weights.len(),
        });
    }
    let bytes = flic_protocol::model::weights_to_le_bytes(weights);
    let mut views = Vec::with_capacity(spec.tensors.len());
    for t in &spec.tensors {
        let (start, len) = (t.offset as usize * 4, t.numel() as usize * 4);
        let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
        let view = TensorView::new(Dtype::F32, shape, &bytes[start..start + len])
            .map_err(|e| SafetensorsError::Format(e.to_string()))?;
        views.push((t.name.clone(), view));
    }
    let metadata = HashMap::from([
        (META_ARCHITECTURE.to_string(), spec.architecture.clone()),
        (META_CONFIG.to_string(), spec.config_json.clone()),
        (META_SPEC_ID.to_string(), to_hex(&spec.spec_id())),
    ]);
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| SafetensorsError::Format(e.to_string()))
}

/// Reads safetensors bytes into a flat weight vector laid out by `spec`, checking that the file
/// has exactly the spec's tensor names, with the spec's shapes, in `F32`.
pub fn import_safetensors(bytes: &[u8], spec: &ModelSpec) -> Result<Vec<f32>, SafetensorsError> {
    spec.validate(MAX_PARAMS)?;
    let file =
        SafeTensors::deserialize(bytes).map_err(|e| SafetensorsError::Format(e.to_string()))?;
    let wanted: HashSet<&str> = spec.tensors.iter().map(|t| t.name.as_str()).collect();
    let mut names = file.names();
    names.sort_unstable();
    if let Some(extra) = names.iter().find(|n| !wanted.contains(**n)) {
        return Err(SafetensorsError::UnexpectedTensor(extra.to_string()));
    }
    let mut weights = Vec::with_capacity(spec.param_count() as usize);
    for t in &spec.tensors {
        let view = file
            .tensor(&t.name)
            .map_err(|_| SafetensorsError::MissingTensor(t.name.clone()))?;
        if view.dtype() != Dtype::F32 {
            return Err(SafetensorsError::WrongDtype {
                name: t.name.clone(),
                found: format!("{:?}", view.dtype()),
            });
        }
        let expected: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
        if view.shape() != expected.as_slice() {
            return Err(SafetensorsError::ShapeMismatch {
                name: t.name.clone(),
                expected,
                found: view.shape().to_vec(),
            });
        }
        weights.extend(
            view.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
    Ok(weights)
}

/// Reads a file written by [`export_safetensors`] with no spec at hand: rebuilds the spec from
/// the file's `flic.config` metadata (checking it against the zoo) and imports against it.
pub fn read_safetensors(bytes: &[u8]) -> Result<(ModelSpec, Vec<f32>), SafetensorsError> {
    let (_, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| SafetensorsError::Format(e.to_string()))?;
    let meta = metadata
        .metadata()
        .as_ref()
        .ok_or(SafetensorsError::NoMetadata)?;
    let config_json = meta.get(META_CONFIG).ok_or(SafetensorsError::NoMetadata)?;
    let config = crate::model::ModelConfig::from_json(config_json)?;
    let spec = model_spec(&config)?;
    if let Some(arch) = meta.get(META_ARCHITECTURE) {
        if arch != &spec.architecture {
            return Err(SafetensorsError::MetadataMismatch {
                expected: spec.architecture.clone(),
                found: arch.clone(),
            });
        }
    }
    // Keep the file's exact config string if it describes the same layout (its spec id).
    let file_spec = ModelSpec {
        config_json: config_json.clone(),
        ..spec.clone()
    };
    let spec = if config_from_spec(&file_spec).is_ok() {
        file_spec
    } else {
        spec
    };
    let weights = import_safetensors(bytes, &spec)?;
    Ok((spec, weights))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flat::init_weights;
    use crate::model::{LeNetConfig, MlpConfig, ModelConfig};

    fn mlp() -> (ModelSpec, Vec<f32>) {
        let config = ModelConfig::Mlp(MlpConfig::new(6).with_hidden(vec![5]).with_num_classes(3));
        let spec = model_spec(&config).unwrap();
        let w = init_weights(&config, 4).unwrap();
        (spec, w)
    }

    #[test]
    fn round_trips_with_and_without_a_spec() {
        let (spec, w) = mlp();
        let bytes = export_safetensors(&spec, &w).unwrap();
        let back = import_safetensors(&bytes, &spec).unwrap();
        assert!(
            back.iter().zip(&w).all(|(a, b)| a.to_bits() == b.to_bits()) && back.len() == w.len()
        );
        let (spec2, back2) = read_safetensors(&bytes).unwrap();
        assert_eq!(spec2, spec);
        assert_eq!(spec2.spec_id(), spec.spec_id());
        assert_eq!(back2, w);
        // Any safetensors reader sees named F32 tensors with the spec's shapes.
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let t = file.tensor("hidden.0.weight").unwrap();
        assert_eq!((t.dtype(), t.shape()), (Dtype::F32, &[6usize, 5][..]));
    }

    #[test]
    fn rejects_mismatched_files() {
        let (spec, w) = mlp();
        let bytes = export_safetensors(&spec, &w).unwrap();
        // Another model's file: shapes differ.
        let other = ModelConfig::Mlp(MlpConfig::new(6).with_hidden(vec![4]).with_num_classes(3));
        let other_spec = model_spec(&other).unwrap();
        let err = import_safetensors(&bytes, &other_spec).unwrap_err();
        assert!(
            matches!(err, SafetensorsError::ShapeMismatch { ref name, .. } if name == "hidden.0.weight"),
            "{err}"
        );
        // A different architecture: names differ.
        let lenet = model_spec(&ModelConfig::LeNet(LeNetConfig::new(8, 8))).unwrap();
        assert!(matches!(
            import_safetensors(&bytes, &lenet),
            Err(SafetensorsError::UnexpectedTensor(_))
        ));
        // Missing tensor.
        let data = flic_protocol::model::weights_to_le_bytes(&w);
        let first = &spec.tensors[0];
        let view = TensorView::new(Dtype::F32, vec![6, 5], &data[..120]).unwrap();
        let partial = safetensors::serialize(vec![(first.name.clone(), view)], None).unwrap();
        assert!(
            matches!(import_safetensors(&partial, &spec), Err(SafetensorsError::MissingTensor(n)) if n == "hidden.0.bias")
        );
        assert!(matches!(
            read_safetensors(&partial),
            Err(SafetensorsError::NoMetadata)
        ));
        // Wrong dtype: same bytes declared as I32.
        let views: Vec<(String, TensorView)> = spec
            .tensors
            .iter()
            .map(|t| {
                let (s, l) = (t.offset as usize * 4, t.numel() as usize * 4);
                let dtype = if t.name == "output.bias" {
                    Dtype::I32
                } else {
                    Dtype::F32
                };
                (
                    t.name.clone(),
                    TensorView::new(
                        dtype,
                        t.shape.iter().map(|&d| d as usize).collect(),
                        &data[s..s + l],
                    )
                    .unwrap(),
                )
            })
            .collect();
        let wrong = safetensors::serialize(views, None).unwrap();
        assert!(
            matches!(import_safetensors(&wrong, &spec), Err(SafetensorsError::WrongDtype { name, .. }) if name == "output.bias")
        );
        // Garbage and truncation.
        assert!(matches!(
            import_safetensors(b"not safetensors", &spec),
            Err(SafetensorsError::Format(_))
        ));
        assert!(matches!(
            import_safetensors(&bytes[..bytes.len() - 3], &spec),
            Err(SafetensorsError::Format(_))
        ));
        assert!(matches!(
            export_safetensors(&spec, &w[1..]),
            Err(SafetensorsError::WrongLength { .. })
        ));
    }
}
