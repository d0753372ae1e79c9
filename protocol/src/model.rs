//! Model specification: the flat parameter layout shared by canister and client.
//!
//! A model is a [`ModelSpec`] plus one flat little-endian `f32` vector. The spec's hash is
//! its id; a model version is `sha256(spec_id || weights_le_bytes)`.

use candid::CandidType;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::hash::sha256;

/// Domain tag prefixed to the canonical spec bytes before hashing.
pub const MODEL_SPEC_DOMAIN: &[u8] = b"flic/model-spec/v1";

/// One named tensor inside the flat parameter vector.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<u64>,
    /// Offset of the tensor's first element in the flat vector (in elements, not bytes).
    pub offset: u64,
}

impl TensorSpec {
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// Architecture and flat layout of a model.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// Stable architecture id from the model zoo, e.g. `mlp`, `lenet`.
    pub architecture: String,
    /// The zoo's configuration for that architecture (JSON), enough to rebuild the module.
    pub config_json: String,
    pub tensors: Vec<TensorSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("model spec has no tensors")]
    Empty,
    #[error("tensor `{name}` starts at offset {offset}, expected {expected}: tensors must be contiguous and in order")]
    NonContiguous {
        name: String,
        offset: u64,
        expected: u64,
    },
    #[error("tensor `{name}` has a zero-sized or overflowing shape {shape:?}")]
    BadShape { name: String, shape: Vec<u64> },
    #[error("model has {0} parameters, above the limit of {1}")]
    TooLarge(u64, u64),
}

impl ModelSpec {
    /// Total number of `f32` parameters.
    pub fn param_count(&self) -> u64 {
        self.tensors.iter().map(TensorSpec::numel).sum()
    }

    /// Checks that tensors are non-empty, contiguous, in order, and below `max_params`.
    pub fn validate(&self, max_params: u64) -> Result<(), SpecError> {
        if self.tensors.is_empty() {
            return Err(SpecError::Empty);
        }
        let mut expected: u64 = 0;
        for t in &self.tensors {
            let numel = t
                .shape
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n > 0)
                .ok_or_else(|| SpecError::BadShape {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                })?;
            if t.offset != expected {
                return Err(SpecError::NonContiguous {
                    name: t.name.clone(),
                    offset: t.offset,
                    expected,
                });
            }
            expected = expected
                .checked_add(numel)
                .ok_or_else(|| SpecError::BadShape {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                })?;
        }
        if expected > max_params {
            return Err(SpecError::TooLarge(expected, max_params));
        }
        Ok(())
    }

    /// Canonical bytes: domain tag, then length-prefixed (u32 LE) strings and u64 LE numbers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.tensors.len() * 48);
        out.extend_from_slice(MODEL_SPEC_DOMAIN);
        put_str(&mut out, &self.architecture);
        put_str(&mut out, &self.config_json);
        out.extend_from_slice(&(self.tensors.len() as u32).to_le_bytes());
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for d in &t.shape {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.offset.to_le_bytes());
        }
        out
    }

    /// `sha256(canonical_bytes)`.
    pub fn spec_id(&self) -> [u8; 32] {
        sha256(&self.canonical_bytes())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Incremental model-version hasher, so weights can be hashed chunk by chunk.
pub struct ModelVersionHasher(Sha256);

impl ModelVersionHasher {
    pub fn new(spec_id: &[u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(spec_id);
        Self(h)
    }
    /// Feeds little-endian `f32` weight bytes, in order.
    pub fn update(&mut self, weight_bytes_le: &[u8]) {
        self.0.update(weight_bytes_le);
    }
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// Model version of `weights` under `spec_id`: `sha256(spec_id || weights as f32 LE)`.
pub fn model_version(spec_id: &[u8; 32], weights: &[f32]) -> [u8; 32] {
    let mut h = ModelVersionHasher::new(spec_id);
    let mut buf = Vec::with_capacity(4096);
    for block in weights.chunks(1024) {
        buf.clear();
        for w in block {
            buf.extend_from_slice(&w.to_le_bytes());
        }
        h.update(&buf);
    }
    h.finish()
}

/// Little-endian bytes of a weight vector.
pub fn weights_to_le_bytes(weights: &[f32]) -> Vec<u8> {
    weights.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Parses little-endian `f32` bytes; `None` if the length is not a multiple of 4.
pub fn weights_from_le_bytes(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ModelSpec {
        ModelSpec {
            architecture: "linear".into(),
            config_json: "{\"inputs\":2,\"classes\":3}".into(),
            tensors: vec![
                TensorSpec {
                    name: "linear.weight".into(),
                    shape: vec![2, 3],
                    offset: 0,
                },
                TensorSpec {
                    name: "linear.bias".into(),
                    shape: vec![3],
                    offset: 6,
                },
            ],
        }
    }

    #[test]
    fn validate_accepts_contiguous_and_rejects_gaps() {
        assert_eq!(spec().validate(1000), Ok(()));
        assert_eq!(spec().param_count(), 9);
        let mut gap = spec();
        gap.tensors[1].offset = 7;
        assert!(matches!(
            gap.validate(1000),
            Err(SpecError::NonContiguous { .. })
        ));
        assert_eq!(spec().validate(8), Err(SpecError::TooLarge(9, 8)));
        let mut zero = spec();
        zero.tensors[0].shape = vec![0, 3];
        assert!(matches!(
            zero.validate(1000),
            Err(SpecError::BadShape { .. })
        ));
    }

    #[test]
    fn version_depends_on_spec_and_every_weight_bit() {
        let s = spec();
        let w = vec![0.5f32; 9];
        let v = model_version(&s.spec_id(), &w);
        let mut w2 = w.clone();
        w2[8] = f32::from_bits(w2[8].to_bits() ^ 1);
        assert_ne!(v, model_version(&s.spec_id(), &w2));
        let mut s2 = s.clone();
        s2.architecture = "mlp".into();
        assert_ne!(v, model_version(&s2.spec_id(), &w));
        // Incremental hashing over the LE bytes gives the same version.
        let mut h = ModelVersionHasher::new(&s.spec_id());
        let bytes = weights_to_le_bytes(&w);
        h.update(&bytes[..10]);
        h.update(&bytes[10..]);
        assert_eq!(h.finish(), v);
        assert_eq!(weights_from_le_bytes(&bytes).unwrap(), w);
        assert!(weights_from_le_bytes(&bytes[..5]).is_none());
    }
}
