//! What a System API call costs in instructions, on top of the wasm instructions.
//!
//! The fixed parts are the IC replica's current ("new") metering constants,
//! `rs/embedders/src/wasmtime_embedder/system_api_complexity.rs`, module
//! `overhead::new`, in dfinity/ic (read at commit
//! 023cfe84513a5b9db9a1a966336fa01cd9d06ae0). The variable part is one instruction per
//! byte moved between the heap and the system (arguments, replies, stable memory,
//! logs), which is how the replica charges data copies. The replica also charges
//! for dirty stable pages and has a separate CPU-complexity budget; neither is
//! modelled (see docs/embedded-ic.md).

/// Most calls: `msg_*`, `canister_*`, `time`, `global_timer_set`, `certified_data_set`,
/// `data_certificate_*`, `accept_message`, `stable64_grow`, `trap`, cycles calls.
pub const SYSTEM_CALL: u64 = 500;
/// `stable64_read`, `stable64_write`, `stable64_size` and the 32-bit forms.
pub const STABLE_ACCESS: u64 = 20;
/// `debug_print`.
pub const DEBUG_PRINT: u64 = 100;
/// `performance_counter`.
pub const PERFORMANCE_COUNTER: u64 = 200;
/// `is_controller`.
pub const IS_CONTROLLER: u64 = 1_000;
/// Per byte copied in or out of the heap by a system call.
pub const PER_BYTE: u64 = 1;

/// Cycles fees of a 13-node application subnet, for the `cost_*` calls (IC
/// documentation, "Cycles cost formulas"). Only the balance is modelled, not charging.
pub mod cycles {
    /// Sending an inter-canister call.
    pub const XNET_CALL: u128 = 260_000;
    /// Per byte of an inter-canister call's method name and payload.
    pub const XNET_BYTE: u128 = 1_000;
    /// Creating a canister.
    pub const CREATE_CANISTER: u128 = 500_000_000_000;
    /// HTTPS outcall base fee, per node: `(3_000_000 + 60_000 * n) * n`.
    pub const HTTP_BASE_PER_NODE: u128 = 3_000_000;
    pub const HTTP_BASE_PER_NODE_SQUARED: u128 = 60_000;
    /// HTTPS outcall per request byte and per reserved response byte, per node.
    pub const HTTP_REQUEST_BYTE: u128 = 400;
    pub const HTTP_RESPONSE_BYTE: u128 = 800;
    /// Nodes of the simulated subnet.
    pub const SUBNET_NODES: u128 = 13;
}
