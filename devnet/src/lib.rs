//! # flic-devnet
//!
//! A local Internet Computer network in one process: the embedded IC's canisters (the
//! real wasm, on wasmtime) behind the IC's public HTTP interface, as `ic-agent` and the
//! `icp` CLI speak it. Envelopes are checked as a replica checks them (request ids,
//! sender signatures with delegations, ingress expiry, replays), certificates are signed
//! with the devnet's BLS root key, query responses by its node's Ed25519 key, the
//! management canister deploys and operates canisters, and an HTTP gateway serves
//! `http_request`. See docs/devnet.md for what is and is not modelled.

mod auth;
mod devnet;
mod error;
mod gateway;
mod http;
pub mod management;
mod request_id;
mod requests;
pub mod server;
mod state_tree;
mod store;
pub mod system;
mod tree;

pub use auth::{authenticate, verify_signature, Authenticated, MAX_INGRESS_TTL_NS};
pub use devnet::{Devnet, DevnetConfig, Handled, StartError, MAX_BODY_BYTES};
pub use error::IngressError;
pub use http::{HttpReply, HttpRequest};
pub use request_id::{hash_of, HashError};
pub use tree::Tree;
