//! # flic-embedded-ic
//!
//! Runs Internet Computer canister wasm in this process, on wasmtime, with the IC
//! System API (`ic0`, as ic-cdk 0.20 imports it through the `ic0` 1.2 crate). It is
//! a test and simulation host, not a replica: one subnet, no consensus, no
//! inter-canister calls. See `docs/embedded-ic.md` for what it models and how.
//!
//! ```no_run
//! use flic_embedded_ic::{EmbeddedIc, InstallMode};
//! use candid::Principal;
//! # let wasm: Vec<u8> = vec![];
//! let mut ic = EmbeddedIc::new();
//! let admin = Principal::from_slice(&[42]);
//! let id = ic.create_canister(vec![admin]);
//! ic.install_code(id, &wasm, candid::encode_args(()).unwrap(), InstallMode::Install, admin)?;
//! let out = ic.update(id, admin, "inc", candid::encode_args(()).unwrap())?;
//! println!("{} instructions", out.instructions);
//! # Ok::<(), flic_embedded_ic::CallError>(())
//! ```

mod certificate;
mod embedded_ic;
mod error;
pub mod fees;
mod host;
mod instance;
mod message;
mod module;
mod persist;
mod stable;
mod system_api;

pub use candid::Principal;
pub use certificate::{
    certificate_tree, BlsCertificateIssuer, CertificateIssuer, HostCertificate,
    HostCertificateIssuer, BLS_DER_PREFIX, HOST_CERTIFICATE_MAGIC, IC_STATE_ROOT_DOMAIN_SEPARATOR,
    TEST_ROOT_KEY_SEED,
};
pub use embedded_ic::{
    CallOutcome, Config, EmbeddedIc, InstallMode, InstructionLimits, SystemTask, TimerOutcome,
};
pub use error::{CallError, PersistError};
pub use module::wasm_hash;
pub use stable::PAGE_SIZE as STABLE_PAGE_SIZE;

/// The `ic0` functions this host provides; importing any other fails at load.
pub fn provided_system_api() -> &'static [&'static str] {
    system_api::PROVIDED
}

/// `ic0` functions of the IC that this host reports as not modelled at load.
pub fn not_modelled_system_api() -> &'static [&'static str] {
    system_api::NOT_MODELLED
}

/// A host can move to another thread (a simulation may run it on a worker).
#[allow(dead_code)]
fn _embedded_ic_is_send() {
    fn is_send<T: Send>() {}
    is_send::<EmbeddedIc>();
}
