//! A canister's side of its wasmtime store: the data the host keeps there ([`Host`]:
//! the canister's system state and the running message) and the names under which the
//! loaded module exposes its heap and mutable globals to the host (`module.rs` adds
//! those exports; the System API and `instance.rs` use them).

use std::collections::BTreeMap;

use candid::Principal;

use crate::message::MessageContext;
use crate::stable::StableMemory;

/// Name under which the rewritten module exports its memory.
pub(crate) const MEMORY_EXPORT: &str = "__flic_memory";
/// Name under which the rewritten module exports its first table (the callbacks of
/// inter-canister calls are indices into it).
pub(crate) const TABLE_EXPORT: &str = "__flic_table";
/// Prefix of the names under which the rewritten module exports its mutable globals
/// (followed by the global's index).
pub(crate) const GLOBAL_EXPORT_PREFIX: &str = "__flic_global_";

/// The data of a canister's wasmtime store.
#[derive(Default)]
pub(crate) struct Host {
    pub sys: SystemState,
    pub msg: Option<MessageContext>,
}

/// The state of a canister that the System API reads and writes, outside its heap.
pub(crate) struct SystemState {
    pub id: Principal,
    pub controllers: Vec<Principal>,
    pub cycles: u128,
    pub stable: StableMemory,
    pub stable_max_pages: u64,
    pub certified_data: Vec<u8>,
    pub global_timer: u64,
    pub version: u64,
    pub logs: Vec<String>,
    pub env_vars: BTreeMap<String, String>,
    pub time: u64,
    pub root_key: Vec<u8>,
    /// Stopped by `stop_canister`: no messages or timers run until it is started.
    pub stopped: bool,
}

impl Default for SystemState {
    fn default() -> Self {
        SystemState {
            id: Principal::management_canister(),
            controllers: Vec::new(),
            cycles: 0,
            stable: StableMemory::default(),
            stable_max_pages: 0,
            certified_data: Vec::new(),
            global_timer: 0,
            version: 0,
            logs: Vec::new(),
            env_vars: BTreeMap::new(),
            time: 0,
            root_key: Vec::new(),
            stopped: false,
        }
    }
}
