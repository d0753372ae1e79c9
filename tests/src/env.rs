//! The small trait every scenario is written against, so the same scenario runs on the
//! embedded IC and on PocketIC.

use std::time::Duration;

use candid::Principal;

/// How a call failed, in terms both backends can express.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// The canister trapped (or the host stopped it); the message says why.
    Trap(String),
    /// The canister replied with a reject (`msg_reject`).
    Reject(String),
    /// Anything else the host reported (no such method, inspect rejected, ...).
    Other(String),
}

impl CallFailure {
    pub fn message(&self) -> &str {
        match self {
            CallFailure::Trap(m) | CallFailure::Reject(m) | CallFailure::Other(m) => m,
        }
    }
}

/// A successful call: the reply and, where the host counts them, its instructions.
#[derive(Debug, Clone)]
pub struct CallOk {
    pub reply: Vec<u8>,
    pub instructions: Option<u64>,
}

pub trait IcEnv {
    fn name(&self) -> &'static str;
    /// Creates a canister controlled by `controller` and installs `wasm` with `arg`.
    fn install(&mut self, wasm: &[u8], arg: Vec<u8>, controller: Principal) -> Principal;
    fn upgrade(
        &mut self,
        canister: Principal,
        wasm: &[u8],
        arg: Vec<u8>,
        sender: Principal,
    ) -> Result<(), CallFailure>;
    fn update(
        &mut self,
        canister: Principal,
        sender: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<CallOk, CallFailure>;
    fn query(
        &mut self,
        canister: Principal,
        sender: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<CallOk, CallFailure>;
    /// Moves time forward and lets due timers run.
    fn advance_time(&mut self, by: Duration);
    /// Current time in nanoseconds since the Unix epoch.
    fn time_ns(&self) -> u64;
    /// Runs the next update to `canister` with at most `limit` instructions, if the host
    /// can (to provoke a trap mid-message); `false` if it cannot.
    fn limit_next_update(&mut self, _canister: Principal, _limit: u64) -> bool {
        false
    }
}
