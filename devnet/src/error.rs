//! What the devnet answers when a request cannot be taken.

use candid::Principal;

/// A request refused before it reached a canister; nothing changed. Each maps to the HTTP
/// status a replica answers it with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngressError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("the request expired at {expiry} ns (now {now} ns); build it again")]
    Expired { expiry: u64, now: u64 },
    #[error("ingress_expiry {expiry} ns is more than 6 minutes after now ({now} ns); check the client's clock")]
    ExpiryTooFar { expiry: u64, now: u64 },
    #[error("invalid signature: {0}")]
    BadSignature(String),
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error(
        "the effective canister id {effective} in the URL does not match the request's {target}"
    )]
    WrongEffectiveCanister {
        effective: Principal,
        target: Principal,
    },
    #[error("{0}")]
    WrongEndpoint(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("canister {0} not found")]
    CanisterNotFound(Principal),
    #[error("the sender's delegations do not allow calls to {0}")]
    DelegationTarget(Principal),
    #[error("the devnet could not save its state: {0}")]
    Internal(String),
}

impl IngressError {
    pub fn http_status(&self) -> u16 {
        match self {
            IngressError::TooLarge { .. } => 413,
            IngressError::CanisterNotFound(_) => 404,
            IngressError::DelegationTarget(_) | IngressError::Forbidden(_) => 403,
            IngressError::Internal(_) => 500,
            _ => 400,
        }
    }
}
