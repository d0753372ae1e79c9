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
//! - [`api`]: every Candid type of the canister interface.
//! - [`certified`]: the layout of the certified state tree and IC key encodings.

pub mod api;
pub mod certified;
pub mod chunking;
pub mod encoding;
pub mod fedavg;
pub mod hash;
pub mod kernels;
pub mod merkle;
pub mod model;
pub mod sample;
pub mod submission;

/// A 32-byte digest on the wire (Candid `blob`; decoding rejects other lengths).
pub type Hash = serde_bytes::ByteArray<32>;

pub use encoding::{DeltaEncoding, DeltaError};
pub use model::{model_version, ModelSpec, ModelVersionHasher, SpecError, TensorSpec};
pub use submission::SubmissionHeader;
