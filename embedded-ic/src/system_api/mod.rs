//! The IC System API (`ic0`) as wasmtime host functions.
//!
//! Availability follows the IC interface specification: a function used in a
//! context where the IC does not offer it traps with a message naming the context,
//! as the replica does. Each call is charged [`crate::fees`] instructions from the
//! message's fuel before it acts.
//!
//! One file per group of the API, each with a `define` that links its functions:
//! `args` (argument, caller, method name), `calls` (inter-canister calls), `reply`, `cycles`, `canister` (ids, status,
//! controllers, root key), `stable_memory`, `certification`, `time` (clock and timer),
//! `performance` (counters), `costs` (cycles prices), `env_vars`, `debug` (print and
//! trap). What they share lives here (charging, the running message, context checks)
//! and in `heap` (reading and writing the canister's heap).

use wasmtime::{Caller, Engine, Linker};

use crate::fees;
use crate::host::Host;
use crate::message::{MessageContext, MessageKind};

mod args;
mod calls;
mod canister;
mod certification;
mod costs;
mod cycles;
mod debug;
mod env_vars;
mod heap;
mod performance;
mod reply;
mod stable_memory;
mod time;

/// Every `ic0` function this host links. A module importing anything else fails at load.
pub(crate) const PROVIDED: &[&str] = &[
    "msg_arg_data_size",
    "msg_arg_data_copy",
    "msg_caller_size",
    "msg_caller_copy",
    "msg_caller_info_data_size",
    "msg_caller_info_data_copy",
    "msg_caller_info_signer_size",
    "msg_caller_info_signer_copy",
    "msg_reject_code",
    "msg_reject_msg_size",
    "msg_reject_msg_copy",
    "msg_deadline",
    "msg_reply_data_append",
    "msg_reply",
    "msg_reject",
    "msg_cycles_available128",
    "msg_cycles_refunded128",
    "msg_cycles_accept128",
    "cycles_burn128",
    "canister_self_size",
    "canister_self_copy",
    "canister_cycle_balance128",
    "canister_liquid_cycle_balance128",
    "canister_status",
    "canister_version",
    "subnet_self_size",
    "subnet_self_copy",
    "subnet_self_node_count",
    "msg_method_name_size",
    "msg_method_name_copy",
    "accept_message",
    "call_new",
    "call_on_cleanup",
    "call_data_append",
    "call_with_best_effort_response",
    "call_cycles_add128",
    "call_perform",
    "stable64_size",
    "stable64_grow",
    "stable64_write",
    "stable64_read",
    "stable_size",
    "stable_grow",
    "stable_write",
    "stable_read",
    "root_key_size",
    "root_key_copy",
    "certified_data_set",
    "data_certificate_present",
    "data_certificate_size",
    "data_certificate_copy",
    "time",
    "global_timer_set",
    "performance_counter",
    "is_controller",
    "in_replicated_execution",
    "cost_call",
    "cost_create_canister",
    "cost_http_request",
    "cost_sign_with_ecdsa",
    "cost_sign_with_schnorr",
    "cost_vetkd_derive_key",
    "env_var_count",
    "env_var_name_size",
    "env_var_name_copy",
    "env_var_name_exists",
    "env_var_value_size",
    "env_var_value_copy",
    "debug_print",
    "trap",
];

/// System API functions of the IC that this host deliberately does not model: the
/// deprecated 64-bit cycles calls, and HTTPS outcall pricing v2. (Inter-canister calls
/// are linked, but only the management canister's `raw_rand` answers: see `calls`.)
pub(crate) const NOT_MODELLED: &[&str] = &[
    "call_cycles_add",
    "cost_http_request_v2",
    "mint_cycles",
    "mint_cycles128",
    "msg_cycles_available",
    "msg_cycles_refunded",
    "msg_cycles_accept",
    "canister_cycle_balance",
];

/// Why a host function stopped the canister.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostStop {
    /// A trap, with the message the IC would give (for `ic0.trap`, the canister's text).
    Trap(String),
    /// The message ran out of instructions inside a system call.
    OutOfInstructions,
}

impl std::fmt::Display for HostStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostStop::Trap(m) => write!(f, "{m}"),
            HostStop::OutOfInstructions => write!(f, "out of instructions"),
        }
    }
}

impl std::error::Error for HostStop {}

type C<'a> = Caller<'a, Host>;
type R<T> = wasmtime::Result<T>;

fn trap(message: impl Into<String>) -> wasmtime::Error {
    wasmtime::Error::new(HostStop::Trap(message.into()))
}

/// Takes `base + bytes * PER_BYTE` instructions from the message's fuel.
fn charge(c: &mut C, base: u64, bytes: u64) -> R<()> {
    let fuel = c.get_fuel()?;
    let cost = base.saturating_add(bytes.saturating_mul(fees::PER_BYTE));
    if cost > fuel {
        c.set_fuel(0)?;
        return Err(wasmtime::Error::new(HostStop::OutOfInstructions));
    }
    c.set_fuel(fuel - cost)?;
    Ok(())
}

fn msg<'a>(c: &'a C, api: &str) -> R<&'a MessageContext> {
    c.data().msg.as_ref().ok_or_else(|| {
        trap(format!(
            "ic0.{api} cannot be executed outside a message (wasm start function)"
        ))
    })
}

fn msg_mut<'a>(c: &'a mut C, api: &str) -> R<&'a mut MessageContext> {
    c.data_mut().msg.as_mut().ok_or_else(|| {
        trap(format!(
            "ic0.{api} cannot be executed outside a message (wasm start function)"
        ))
    })
}

/// The running message's kind, if `allowed` accepts it; a trap otherwise.
fn require(c: &C, api: &str, allowed: fn(MessageKind) -> bool) -> R<MessageKind> {
    let kind = msg(c, api)?.kind;
    if allowed(kind) {
        Ok(kind)
    } else {
        Err(trap(format!(
            "ic0.{api} cannot be executed in {} mode",
            kind.name()
        )))
    }
}

/// Builds the linker with every function in [`PROVIDED`].
pub(crate) fn linker(engine: &Engine) -> Linker<Host> {
    let mut l = Linker::new(engine);
    define(&mut l).expect("each ic0 function is defined once");
    l
}

/// Links every group of the API (each file defines its own functions).
fn define(l: &mut Linker<Host>) -> R<()> {
    args::define(l)?;
    calls::define(l)?;
    reply::define(l)?;
    cycles::define(l)?;
    canister::define(l)?;
    stable_memory::define(l)?;
    certification::define(l)?;
    time::define(l)?;
    performance::define(l)?;
    costs::define(l)?;
    env_vars::define(l)?;
    debug::define(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The functions the `ic0` 1.2 crate (what ic-cdk 0.20.3 uses) declares.
    const IC0_1_2: &[&str] = &[
        "msg_arg_data_size",
        "msg_arg_data_copy",
        "msg_caller_size",
        "msg_caller_copy",
        "msg_caller_info_data_size",
        "msg_caller_info_data_copy",
        "msg_caller_info_signer_size",
        "msg_caller_info_signer_copy",
        "msg_reject_code",
        "msg_reject_msg_size",
        "msg_reject_msg_copy",
        "msg_deadline",
        "msg_reply_data_append",
        "msg_reply",
        "msg_reject",
        "msg_cycles_available128",
        "msg_cycles_refunded128",
        "msg_cycles_accept128",
        "cycles_burn128",
        "canister_self_size",
        "canister_self_copy",
        "canister_cycle_balance128",
        "canister_liquid_cycle_balance128",
        "canister_status",
        "canister_version",
        "subnet_self_size",
        "subnet_self_copy",
        "subnet_self_node_count",
        "msg_method_name_size",
        "msg_method_name_copy",
        "accept_message",
        "call_new",
        "call_on_cleanup",
        "call_data_append",
        "call_with_best_effort_response",
        "call_cycles_add128",
        "call_perform",
        "stable64_size",
        "stable64_grow",
        "stable64_write",
        "stable64_read",
        "root_key_size",
        "root_key_copy",
        "certified_data_set",
        "data_certificate_present",
        "data_certificate_size",
        "data_certificate_copy",
        "time",
        "global_timer_set",
        "performance_counter",
        "is_controller",
        "in_replicated_execution",
        "cost_call",
        "cost_create_canister",
        "cost_http_request",
        "cost_http_request_v2",
        "cost_sign_with_ecdsa",
        "cost_sign_with_schnorr",
        "cost_vetkd_derive_key",
        "env_var_count",
        "env_var_name_size",
        "env_var_name_copy",
        "env_var_name_exists",
        "env_var_value_size",
        "env_var_value_copy",
        "debug_print",
        "trap",
    ];

    #[test]
    fn every_provided_function_is_linked() {
        let rt = crate::module::runtime();
        let mut store = wasmtime::Store::new(&rt.engine, Host::default());
        for name in PROVIDED {
            assert!(
                rt.linker.get(&mut store, "ic0", name).is_ok(),
                "ic0.{name} is not linked"
            );
        }
        let linked = rt
            .linker
            .iter(&mut store)
            .filter(|(module, _, _)| *module == "ic0")
            .count();
        assert_eq!(
            linked,
            PROVIDED.len(),
            "PROVIDED lists every linked function"
        );
    }

    #[test]
    fn every_ic0_1_2_function_is_provided_or_declared_not_modelled() {
        for name in IC0_1_2 {
            assert!(
                PROVIDED.contains(name) != NOT_MODELLED.contains(name),
                "ic0.{name} must be in exactly one of PROVIDED and NOT_MODELLED"
            );
        }
    }
}
