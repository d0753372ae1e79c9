//! Types and pure logic shared by the flic aggregator canister and its clients.
//! Compiles for `wasm32-unknown-unknown` and native; no I/O.
//!
//! - [`model`]: model spec, spec id and model versions.
//! - [`submission`]: the signed submission header, Ed25519 helpers, caller principals.
//! - [`encoding`]: `f32` and int8-block delta encodings and their validation.
//! - [`chunking`]: payload chunks and their Merkle root.
//! - [`merkle`]: RFC 6962 trees, inclusion proofs, an append-only frontier.
//! - [`sample`]: canonical sample bytes and dataset commitments.
//! - [`hash`]: `sha256`, and hex for digests as text.
//! - [`fedavg`]: the exact integer FedAvg accumulator and finalisation.
//! - [`optimizers`]: server optimizers (SGD, momentum, Nesterov, Adagrad, Adam, Yogi).
//! - [`privacy`]: the RDP accountant of the sampled Gaussian mechanism (not yet used by jobs).
//! - [`secagg`]: secure-aggregation masks over the accumulator and Shamir sharing of seeds (not yet used).
//! - [`rules`]: aggregation rules (FedAvg, median, trimmed mean, Krum, Multi-Krum) over the
//!   same fixed point, exact and order-independent.
//! - [`api`]: every Candid type of the canister interface.
//! - [`ic_limits`]: whether a job's worst-case messages fit the IC's limits.
//! - [`certified`]: the layout of the certified state tree and IC key encodings.
//! - [`job_config`]: the canonical bytes of a job configuration (certified by hash).
//! - [`seeds`]: seeds every client derives the same way (local shuffling).
//! - [`time`]: IC times as text.
//!
//! # Hashed and signed byte formats
//!
//! Every byte string that is hashed or signed is defined in this crate, and only here;
//! the canister, the client and the verifiers call these functions rather than
//! rebuilding the bytes. The digest is always [`hash::sha256`]; Merkle trees are RFC 6962
//! ([`merkle`]: leaf `sha256(0x00 || data)`, node `sha256(0x01 || left || right)`).
//! `docs/protocol.md` gives the field-by-field layouts; the test vectors in
//! `tests/vectors/protocol_v1.json` pin the bytes.
//!
//! | format | domain tag | bytes and digest | defined in |
//! |---|---|---|---|
//! | spec id | `flic/model-spec/v1` ([`model::MODEL_SPEC_DOMAIN`]) | `sha256(ModelSpec::canonical_bytes())` | `model.rs` |
//! | model version | none (starts with the spec id) | `sha256(spec_id \|\| weights f32 LE)` ([`model_version`], [`ModelVersionHasher`]) | `model.rs` |
//! | submission header (signed) | `flic/submission/v1` ([`submission::SUBMISSION_DOMAIN`]) | Ed25519 over `SubmissionHeader::signing_bytes()`; header hash `sha256` of them | `submission.rs` |
//! | payload chunks | none (Merkle leaves) | chunk root = RFC 6962 root over `leaf_hash(chunk)` | `chunking.rs` |
//! | round record | `flic/round/v1` ([`api::ROUND_RECORD_DOMAIN`]) | `RoundRecord::canonical_bytes()`; history leaf `leaf_hash` of them; contributions root over `leaf_hash(header_hash)` | `api.rs` |
//! | job configuration | `flic/job-config/v1` ([`job_config::JOB_CONFIG_DOMAIN`]) | `job_config_bytes(config)`; `/job_config` = `sha256` of them | `job_config.rs` |
//! | certified state | IC `HashTree` labels | `/history/<round>` = `sha256(round record bytes)`, `/history_root`, `/job`, `/job_config`, `/model_version`, `/round` | `certified.rs` |
//! | sample / dataset commitment | `flic/sample/v1` ([`sample::SAMPLE_DOMAIN`]) | `sample_bytes(label, features)`; commitment = RFC 6962 root over `leaf_hash(sample_bytes)` | `sample.rs` |
//! | local shuffle seed | `flic/shuffle/v1` ([`seeds::SHUFFLE_SEED_TAG`]) | first 8 bytes (`u64` LE) of `sha256(tag \|\| job seed \|\| round \|\| len \|\| principal)` | `seeds.rs` |

pub mod api;
pub mod certified;
pub mod chunking;
pub mod encoding;
pub mod fedavg;
pub mod hash;
pub mod ic_limits;
pub mod job_config;
pub mod kernels;
pub mod merkle;
pub mod model;
pub mod optimizers;
pub mod privacy;
pub mod rules;
pub mod sample;
pub mod secagg;
pub mod seeds;
pub mod submission;
pub mod time;

/// A 32-byte digest on the wire (Candid `blob`; decoding rejects other lengths).
pub type Hash = serde_bytes::ByteArray<32>;

pub use encoding::{DeltaEncoding, DeltaError};
pub use model::{model_version, ModelSpec, ModelVersionHasher, SpecError, TensorSpec};
pub use submission::SubmissionHeader;
