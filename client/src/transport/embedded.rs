//! The canister's real wasm in `flic-embedded-ic`, in this process.
//!
//! Several transports (one per simulated contributor) share one [`SharedIc`], so they all
//! talk to the same canister, each with its own caller principal.

use std::sync::{Arc, Mutex, MutexGuard};

use candid::Principal;
use flic_embedded_ic::{CallError, EmbeddedIc};

use super::{Reply, Transport, TransportError};

pub type SharedIc = Arc<Mutex<EmbeddedIc>>;

pub fn share(ic: EmbeddedIc) -> SharedIc {
    Arc::new(Mutex::new(ic))
}

/// Locks the host; a panic while holding it leaves the host unusable, so poisoning is
/// passed on as a panic too.
pub fn lock(ic: &SharedIc) -> MutexGuard<'_, EmbeddedIc> {
    ic.lock()
        .expect("embedded IC lock poisoned by an earlier panic")
}

#[derive(Clone)]
pub struct EmbeddedTransport {
    ic: SharedIc,
    canister: Principal,
    caller: Principal,
}

impl EmbeddedTransport {
    pub fn new(ic: SharedIc, canister: Principal, caller: Principal) -> Self {
        Self {
            ic,
            canister,
            caller,
        }
    }

    /// The same canister, another caller.
    pub fn as_caller(&self, caller: Principal) -> Self {
        Self {
            ic: self.ic.clone(),
            canister: self.canister,
            caller,
        }
    }

    pub fn ic(&self) -> &SharedIc {
        &self.ic
    }
}

fn convert(method: &str, err: CallError) -> TransportError {
    match err {
        CallError::Trap { message, .. }
        | CallError::Reject { message, .. }
        | CallError::InspectRejected { message, .. } => TransportError::Rejected {
            method: method.into(),
            message,
        },
        other @ (CallError::InstructionLimit { .. }
        | CallError::MethodNotFound { .. }
        | CallError::DidNotReply { .. }) => TransportError::Rejected {
            method: method.into(),
            message: other.to_string(),
        },
        other => TransportError::Other(format!("`{method}`: {other}")),
    }
}

impl Transport for EmbeddedTransport {
    fn caller(&self) -> Principal {
        self.caller
    }

    fn canister_id(&self) -> Principal {
        self.canister
    }

    fn update(&mut self, method: &str, arg: Vec<u8>) -> Result<Reply, TransportError> {
        let out = lock(&self.ic)
            .update(self.canister, self.caller, method, arg)
            .map_err(|e| convert(method, e))?;
        Ok(Reply {
            bytes: out.reply,
            instructions: Some(out.instructions),
        })
    }

    fn root_key(&self) -> Vec<u8> {
        lock(&self.ic).root_key()
    }

    fn now_ns(&self) -> u64 {
        lock(&self.ic).time()
    }

    fn query(&mut self, method: &str, arg: Vec<u8>) -> Result<Reply, TransportError> {
        let out = lock(&self.ic)
            .query(self.canister, self.caller, method, arg)
            .map_err(|e| convert(method, e))?;
        Ok(Reply {
            bytes: out.reply,
            instructions: Some(out.instructions),
        })
    }
}
