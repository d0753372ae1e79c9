//! [`IcEnv`] over `flic-embedded-ic`.

use std::time::Duration;

use candid::Principal;
use flic_embedded_ic::{CallError, EmbeddedIc, InstallMode, InstructionLimits};

use crate::env::{CallFailure, CallOk, IcEnv};

#[derive(Default)]
pub struct EmbeddedEnv {
    pub ic: EmbeddedIc,
    /// Instruction limit for the next update only.
    next_update_limit: Option<u64>,
}

impl EmbeddedEnv {
    pub fn new() -> Self {
        Self {
            ic: EmbeddedIc::new(),
            next_update_limit: None,
        }
    }
}

fn failure(e: CallError) -> CallFailure {
    match e {
        CallError::Trap { message, .. } => CallFailure::Trap(message),
        e @ CallError::InstructionLimit { .. } => CallFailure::Trap(e.to_string()),
        CallError::Reject { message, .. } => CallFailure::Reject(message),
        other => CallFailure::Other(other.to_string()),
    }
}

impl IcEnv for EmbeddedEnv {
    fn name(&self) -> &'static str {
        "embedded-ic"
    }

    fn install(&mut self, wasm: &[u8], arg: Vec<u8>, controller: Principal) -> Principal {
        let id = self.ic.create_canister(vec![controller]);
        self.ic
            .install_code(id, wasm, arg, InstallMode::Install, controller)
            .expect("install the canister");
        id
    }

    fn upgrade(
        &mut self,
        canister: Principal,
        wasm: &[u8],
        arg: Vec<u8>,
        sender: Principal,
    ) -> Result<(), CallFailure> {
        self.ic
            .install_code(canister, wasm, arg, InstallMode::Upgrade, sender)
            .map(|_| ())
            .map_err(failure)
    }

    fn update(
        &mut self,
        canister: Principal,
        sender: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<CallOk, CallFailure> {
        let normal = self.ic.config().limits;
        if let Some(limit) = self.next_update_limit.take() {
            self.ic.set_instruction_limits(InstructionLimits {
                update: limit,
                ..normal
            });
        }
        let result = self.ic.update(canister, sender, method, arg);
        self.ic.set_instruction_limits(normal);
        result
            .map(|o| CallOk {
                reply: o.reply,
                instructions: Some(o.instructions),
            })
            .map_err(failure)
    }

    fn limit_next_update(&mut self, _canister: Principal, limit: u64) -> bool {
        self.next_update_limit = Some(limit);
        true
    }

    fn query(
        &mut self,
        canister: Principal,
        sender: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<CallOk, CallFailure> {
        self.ic
            .query(canister, sender, method, arg)
            .map(|o| CallOk {
                reply: o.reply,
                instructions: Some(o.instructions),
            })
            .map_err(failure)
    }

    fn advance_time(&mut self, by: Duration) {
        for task in self.ic.advance_time(by) {
            if let Err(e) = task.result {
                panic!(
                    "system task {:?} of {} failed: {e}",
                    task.task, task.canister
                );
            }
        }
    }

    fn time_ns(&self) -> u64 {
        self.ic.time()
    }
}
