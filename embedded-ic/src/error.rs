//! Typed results of a call: every way a message can fail, with what it cost.

use candid::Principal;

/// Why a call, install or system task did not produce a reply.
///
/// Every variant that ran canister code carries the instructions it used, so a
/// failed call can be measured like a successful one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The canister trapped (`ic0.trap`, `unreachable`, an out-of-bounds access, a
    /// system API used where it is not allowed, ...). All state changes of the
    /// message were rolled back.
    #[error("canister {canister} trapped: {message} ({instructions} instructions)")]
    Trap {
        canister: Principal,
        message: String,
        instructions: u64,
    },
    /// The canister called `ic0.msg_reject` (reject code 4, `CANISTER_REJECT`).
    /// As on the IC, the state changes of an update that rejects are kept.
    #[error("canister {canister} rejected the call: {message} ({instructions} instructions)")]
    Reject {
        canister: Principal,
        message: String,
        instructions: u64,
    },
    /// The method returned without replying or rejecting. The update's state
    /// changes are kept, as on the IC.
    #[error("canister {canister} did not reply to the call ({instructions} instructions)")]
    DidNotReply {
        canister: Principal,
        instructions: u64,
    },
    /// The message ran out of instructions; its state changes were rolled back.
    #[error("canister {canister} exceeded the instruction limit of {limit} for {kind}")]
    InstructionLimit {
        canister: Principal,
        kind: &'static str,
        limit: u64,
        instructions: u64,
    },
    /// The module does not export `canister_update <method>` (or the query form).
    #[error("canister {canister} has no {kind} method `{method}`")]
    MethodNotFound {
        canister: Principal,
        kind: &'static str,
        method: String,
    },
    /// `canister_inspect_message` did not accept the ingress message (it did not
    /// call `ic0.accept_message`, or it trapped). Nothing changed.
    #[error("canister {canister} refused the message in inspect_message: {message}")]
    InspectRejected {
        canister: Principal,
        message: String,
        instructions: u64,
    },
    /// No canister with this id exists in this host.
    #[error("canister {0} does not exist")]
    CanisterNotFound(Principal),
    /// The canister is stopped (`stop_canister`); start it to call it again.
    #[error("canister {0} is stopped")]
    CanisterStopped(Principal),
    /// A canister with this id exists already.
    #[error("canister {0} exists already")]
    CanisterExists(Principal),
    /// A canister must be stopped before it is deleted.
    #[error("canister {0} must be stopped before it is deleted")]
    NotStopped(Principal),
    /// The canister exists but has no code installed.
    #[error("canister {0} has no wasm module installed")]
    NoCode(Principal),
    /// `InstallMode::Install` on a canister that already has code.
    #[error("canister {0} already has code installed: use reinstall or upgrade")]
    CodeAlreadyInstalled(Principal),
    /// Only controllers may install code.
    #[error("{sender} is not a controller of canister {canister}")]
    NotController {
        canister: Principal,
        sender: Principal,
    },
    /// The module imports functions this host does not provide. Checked at load,
    /// before any linking, so every name is listed.
    #[error(
        "the module imports functions this host does not provide: {}{}",
        fmt_list("unknown", unknown),
        fmt_list(" not modelled (inter-canister calls are not simulated)", not_modelled)
    )]
    MissingImports {
        /// Imports that are not part of the System API this host knows
        /// (misspelt, newer than ic0 1.2, or from another module than `ic0`).
        unknown: Vec<String>,
        /// System API functions that exist on the IC but that this host does not
        /// model (inter-canister calls).
        not_modelled: Vec<String>,
    },
    /// The bytes are not a valid wasm module for this host.
    #[error("invalid wasm module: {0}")]
    InvalidWasm(String),
    /// A candid helper could not encode the argument or decode the reply.
    #[error("candid: {0}")]
    Candid(String),
}

fn fmt_list(label: &str, names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!("{label}: [{}]", names.join(", "))
    }
}

impl CallError {
    /// Instructions the failed message used, where it ran any code.
    pub fn instructions(&self) -> Option<u64> {
        match self {
            CallError::Trap { instructions, .. }
            | CallError::Reject { instructions, .. }
            | CallError::DidNotReply { instructions, .. }
            | CallError::InstructionLimit { instructions, .. }
            | CallError::InspectRejected { instructions, .. } => Some(*instructions),
            _ => None,
        }
    }
}

/// Failure to save or load a host's state.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("i/o error at {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt saved state: {0}")]
    Corrupt(String),
    /// Running `canister_pre_upgrade` (save) or `canister_post_upgrade` (load) failed.
    #[error("canister {canister} failed to {stage}: {error}")]
    Canister {
        canister: Principal,
        stage: &'static str,
        error: CallError,
    },
}
