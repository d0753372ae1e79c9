//! Fixtures shared by the canister's native tests (`aggregator-canister`), the wasm-level
//! scenarios (`tests/`) and the fuzz harness (`fuzz/`): a small model spec, a job, keys
//! from a seed, and signed chunked uploads. Dev-only: no release build depends on it.
//! Every value here is deterministic, so stable-memory images built from it are too.

use candid::Principal;
use ed25519_dalek::SigningKey;
use serde_bytes::ByteBuf;

use flic_protocol::api::{BeginSubmissionArgs, ClientHyperparameters, JobConfig, Optimizer};
use flic_protocol::submission::{principal_of_ed25519, signing_key_from_seed};
use flic_protocol::{chunking, encoding, merkle, DeltaEncoding, Hash, ModelSpec, TensorSpec};

/// A linear model: weight `w` of `[inputs, classes]`, then bias `b` of `[classes]`.
pub fn linear_spec(inputs: u64, classes: u64) -> ModelSpec {
    ModelSpec {
        architecture: "linear".into(),
        config_json: "{}".into(),
        tensors: vec![
            TensorSpec {
                name: "w".into(),
                shape: vec![inputs, classes],
                offset: 0,
            },
            TensorSpec {
                name: "b".into(),
                shape: vec![classes],
                offset: inputs * classes,
            },
        ],
    }
}

/// `n` smooth, small initial weights: `0.1 * sin(0.37 i)`.
pub fn smooth_weights(n: u64) -> Vec<f32> {
    (0..n).map(|i| ((i as f32) * 0.37).sin() * 0.1).collect()
}

/// Client hyperparameters of the fixture job (nothing trains with them in these tests).
pub fn hyperparameters() -> ClientHyperparameters {
    ClientHyperparameters {
        learning_rate: 0.01,
        batch_size: 32,
        local_epochs: 1,
        optimizer: Optimizer::Sgd,
        seed: 7,
        proximal_mu: None,
    }
}

/// Round length of [`job`]: one minute.
pub const ROUND_NS: u64 = 60_000_000_000;

/// A small job for `spec`: 2 to 3 clients, one-minute rounds, both encodings, L2 clip 1,
/// weight cap 500, chunks of `chunk_size` bytes; change fields with struct update syntax.
pub fn job(spec: ModelSpec, chunk_size: u32) -> JobConfig {
    JobConfig {
        min_clients: 2,
        max_clients: 3,
        round_duration_ns: ROUND_NS,
        clip_norm: 1.0,
        max_weight: 500,
        chunk_size: Some(chunk_size),
        ..JobConfig::new(spec, hyperparameters())
    }
}

/// An Ed25519 key and the principal it authenticates as.
#[derive(Clone, Debug)]
pub struct Key {
    pub signing: SigningKey,
    pub principal: Principal,
}

/// The key whose secret is `seed`.
pub fn key(seed: [u8; 32]) -> Key {
    let signing = signing_key_from_seed(seed);
    let principal = principal_of_ed25519(&signing.verifying_key().to_bytes());
    Key { signing, principal }
}

/// A distinct key for every index (a `u8` seed would repeat after 255 contributors).
pub fn key_for(index: u64) -> Key {
    let mut seed = [0xc0; 32];
    seed[..8].copy_from_slice(&index.to_le_bytes());
    key(seed)
}

/// Where an upload goes: everything of the header but the payload's own fields.
#[derive(Clone, Copy, Debug)]
pub struct UploadTarget {
    pub canister_id: Principal,
    pub job_id: u64,
    pub round: u64,
    pub base_model_version: Hash,
    pub dataset_id: u64,
    pub sample_count: u64,
}

/// An encoded, chunked delta and its header, ready to sign (tests may change the header
/// first, so only the field they change is wrong).
#[derive(Clone, Debug)]
pub struct Upload {
    pub header: flic_protocol::SubmissionHeader,
    pub chunk_hashes: Vec<Hash>,
    pub payload: Vec<u8>,
    pub chunk_size: u32,
}

impl Upload {
    /// Encodes `delta` and chunks it.
    pub fn new(
        target: &UploadTarget,
        encoding: DeltaEncoding,
        delta: &[f32],
        chunk_size: u32,
    ) -> Self {
        let payload = encoding::encode(encoding, delta).expect("a finite delta encodes");
        Self::from_payload(target, encoding, delta.len() as u64, payload, chunk_size)
    }

    /// Chunks an already encoded (perhaps deliberately malformed) payload.
    pub fn from_payload(
        target: &UploadTarget,
        encoding: DeltaEncoding,
        param_count: u64,
        payload: Vec<u8>,
        chunk_size: u32,
    ) -> Self {
        let hashes = chunking::chunk_hashes(&payload, chunk_size);
        let header = flic_protocol::SubmissionHeader {
            canister_id: target.canister_id,
            job_id: target.job_id,
            round: target.round,
            base_model_version: target.base_model_version,
            dataset_id: target.dataset_id,
            sample_count: target.sample_count,
            encoding,
            param_count,
            chunk_count: hashes.len() as u32,
            chunk_root: Hash::new(merkle::root(&hashes)),
        };
        Self {
            header,
            chunk_hashes: hashes.into_iter().map(Hash::new).collect(),
            payload,
            chunk_size,
        }
    }

    /// `begin_submission`'s arguments, the header signed by `key`.
    pub fn sign(&self, key: &SigningKey) -> BeginSubmissionArgs {
        BeginSubmissionArgs {
            header: self.header.clone(),
            public_key: ByteBuf::from(key.verifying_key().to_bytes().to_vec()),
            signature: ByteBuf::from(self.header.sign(key).to_vec()),
            chunk_hashes: self.chunk_hashes.clone(),
            below_clip: None,
        }
    }

    pub fn chunk_count(&self) -> u32 {
        self.header.chunk_count
    }

    /// Chunk `index` of the payload.
    pub fn chunk(&self, index: u32) -> &[u8] {
        let size = self.chunk_size as usize;
        let start = (index as usize * size).min(self.payload.len());
        &self.payload[start..(start + size).min(self.payload.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_chunk_and_sign_what_the_canister_checks() {
        let spec = linear_spec(29, 10);
        assert_eq!(spec.param_count(), 300);
        assert!(job(spec, 256).validate().is_ok());
        let k = key_for(3);
        assert_ne!(k.principal, key_for(4).principal);
        let target = UploadTarget {
            canister_id: Principal::from_slice(&[1; 10]),
            job_id: 1,
            round: 0,
            base_model_version: Hash::new([7; 32]),
            dataset_id: 0,
            sample_count: 50,
        };
        let delta = vec![0.01f32; 300];
        let up = Upload::new(&target, DeltaEncoding::Int8Blocks, &delta, 128);
        let joined: Vec<u8> = (0..up.chunk_count())
            .flat_map(|i| up.chunk(i).to_vec())
            .collect();
        assert_eq!(joined, up.payload);
        let args = up.sign(&k.signing);
        flic_protocol::submission::verify_signature(
            &args.public_key,
            &args.header.signing_bytes(),
            &args.signature,
        )
        .unwrap();
    }
}
