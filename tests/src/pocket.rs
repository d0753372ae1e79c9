//! [`IcEnv`] over PocketIC, used only when `POCKET_IC_BIN` names a server binary.

use std::time::Duration;

use candid::Principal;
use pocket_ic::{PocketIc, PocketIcBuilder};

use crate::env::{CallFailure, CallOk, IcEnv};

pub struct PocketIcEnv {
    pic: PocketIc,
}

impl PocketIcEnv {
    /// `Err(reason)` when PocketIC is not available: `PocketIc::new()` would
    /// otherwise try to download the server (no network here) and panic.
    pub fn from_env() -> Result<Self, String> {
        let bin = std::env::var_os("POCKET_IC_BIN")
            .ok_or_else(|| "POCKET_IC_BIN is not set; PocketIC scenarios skipped".to_string())?;
        let path = std::path::Path::new(&bin);
        if !path.is_file() {
            return Err(format!(
                "POCKET_IC_BIN={} is not a file; PocketIC scenarios skipped",
                path.display()
            ));
        }
        let pic = PocketIcBuilder::new()
            .with_application_subnet()
            .with_server_binary(path.into())
            .build();
        Ok(Self { pic })
    }
}

fn failure(e: pocket_ic::RejectResponse) -> CallFailure {
    use pocket_ic::RejectCode;
    match e.reject_code {
        RejectCode::CanisterError => CallFailure::Trap(e.reject_message),
        RejectCode::CanisterReject => CallFailure::Reject(e.reject_message),
        _ => CallFailure::Other(e.reject_message),
    }
}

impl IcEnv for PocketIcEnv {
    fn name(&self) -> &'static str {
        "pocket-ic"
    }

    fn install(&mut self, wasm: &[u8], arg: Vec<u8>, controller: Principal) -> Principal {
        let id = self
            .pic
            .create_canister_with_settings(Some(controller), None);
        self.pic.add_cycles(id, 100_000_000_000_000);
        self.pic
            .install_canister(id, wasm.to_vec(), arg, Some(controller));
        id
    }

    fn upgrade(
        &mut self,
        canister: Principal,
        wasm: &[u8],
        arg: Vec<u8>,
        sender: Principal,
    ) -> Result<(), CallFailure> {
        self.pic
            .upgrade_canister(canister, wasm.to_vec(), arg, Some(sender))
            .map_err(failure)
    }

    fn update(
        &mut self,
        canister: Principal,
        sender: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<CallOk, CallFailure> {
        self.pic
            .update_call(canister, sender, method, arg)
            .map(|reply| CallOk {
                reply,
                instructions: None,
            })
            .map_err(failure)
    }

    fn query(
        &mut self,
        canister: Principal,
        sender: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<CallOk, CallFailure> {
        self.pic
            .query_call(canister, sender, method, arg)
            .map(|reply| CallOk {
                reply,
                instructions: None,
            })
            .map_err(failure)
    }

    fn advance_time(&mut self, by: Duration) {
        self.pic.advance_time(by);
        // Timers run on the next rounds.
        self.pic.tick();
        self.pic.tick();
    }

    fn time_ns(&self) -> u64 {
        self.pic.get_time().as_nanos_since_unix_epoch()
    }
}
