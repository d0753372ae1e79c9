//! How the client reaches the aggregator canister: one trait, two implementations.
//!
//! - [`agent::AgentTransport`]: `ic-agent` against a local replica or mainnet.
//! - [`embedded::EmbeddedTransport`]: the canister's real wasm in `flic-embedded-ic`,
//!   in this process, with no replica.
//!
//! Transports move Candid bytes; [`crate::api::AggregatorApi`] gives them types.

pub mod agent;
pub mod embedded;

use candid::Principal;

/// A reply with what the call cost, where the transport can tell.
#[derive(Debug, Clone)]
pub struct Reply {
    pub bytes: Vec<u8>,
    /// Wasm instructions the canister executed (embedded only).
    pub instructions: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The canister rejected or trapped; nothing changed on the canister.
    #[error("the canister rejected `{method}`: {message}")]
    Rejected { method: String, message: String },
    /// The network or replica could not be reached; worth retrying.
    #[error("cannot reach the canister for `{method}`: {message}")]
    Unreachable { method: String, message: String },
    #[error("{0}")]
    Other(String),
}

impl TransportError {
    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, TransportError::Unreachable { .. })
    }
}

/// Candid-in, Candid-out access to one canister as one caller.
pub trait Transport {
    /// The principal the canister sees as the caller.
    fn caller(&self) -> Principal;
    /// The canister's id (it is part of every signed header).
    fn canister_id(&self) -> Principal;
    fn update(&mut self, method: &str, arg: Vec<u8>) -> Result<Reply, TransportError>;
    fn query(&mut self, method: &str, arg: Vec<u8>) -> Result<Reply, TransportError>;
    /// The root key (DER) certificates must chain to: built in for mainnet, fetched from a
    /// local replica, the host's test key for the embedded IC.
    fn root_key(&self) -> Vec<u8>;
    /// The verifier's clock (nanoseconds since the epoch), for certificate freshness.
    fn now_ns(&self) -> u64;
}

impl Transport for Box<dyn Transport> {
    fn caller(&self) -> Principal {
        (**self).caller()
    }
    fn canister_id(&self) -> Principal {
        (**self).canister_id()
    }
    fn update(&mut self, method: &str, arg: Vec<u8>) -> Result<Reply, TransportError> {
        (**self).update(method, arg)
    }
    fn query(&mut self, method: &str, arg: Vec<u8>) -> Result<Reply, TransportError> {
        (**self).query(method, arg)
    }
    fn root_key(&self) -> Vec<u8> {
        (**self).root_key()
    }
    fn now_ns(&self) -> u64 {
        (**self).now_ns()
    }
}
