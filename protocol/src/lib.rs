//! Types and pure logic shared by the flic aggregator canister and its clients.
//! Compiles for `wasm32-unknown-unknown` and native; no I/O.

pub mod model;

pub use model::{model_version, ModelSpec, ModelVersionHasher, SpecError, TensorSpec};
