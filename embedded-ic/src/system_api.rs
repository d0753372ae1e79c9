//! The IC System API (`ic0`) as wasmtime host functions.
//!
//! Availability follows the IC interface specification: a function used in a
//! context where the IC does not offer it traps with a message naming the context,
//! as the replica does. Each call is charged [`crate::fees`] instructions from the
//! message's fuel before it acts.

use wasmtime::{Caller, Engine, Linker, Memory};

use crate::fees;
use crate::host::{Host, MEMORY_EXPORT};
use crate::message::{MessageContext, MessageKind, Response};

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

/// System API functions of the IC that this host deliberately does not model:
/// inter-canister calls (and with them ic-cdk-timers, which runs each timer as a
/// self-call), the deprecated 64-bit cycles calls, and HTTPS outcall pricing v2.
pub(crate) const NOT_MODELLED: &[&str] = &[
    "call_new",
    "call_on_cleanup",
    "call_data_append",
    "call_with_best_effort_response",
    "call_cycles_add",
    "call_cycles_add128",
    "call_perform",
    "cost_http_request_v2",
    "mint_cycles",
    "mint_cycles128",
    "msg_cycles_available",
    "msg_cycles_refunded",
    "msg_cycles_accept",
    "canister_cycle_balance",
];

/// Subnet the simulated canisters live on (the id is fixed and arbitrary).
const SUBNET_ID: &[u8] = b"flic-embedded-subnet";
/// Largest reply: 2 MiB for replicated execution, 3 MiB for queries.
const MAX_REPLY_REPLICATED: usize = 2 * 1024 * 1024;
const MAX_REPLY_QUERY: usize = 3 * 1024 * 1024;
const MAX_CERTIFIED_DATA: usize = 32;
const MAX_PRINCIPAL: usize = 29;

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

fn memory(c: &mut C, api: &str) -> R<Memory> {
    c.get_export(MEMORY_EXPORT)
        .and_then(|e| e.into_memory())
        .ok_or_else(|| trap(format!("ic0.{api}: the module has no memory")))
}

fn heap_range(len: usize, start: u64, size: u64, api: &str) -> R<std::ops::Range<usize>> {
    match start.checked_add(size) {
        Some(end) if end <= len as u64 => Ok(start as usize..end as usize),
        _ => Err(trap(format!(
            "ic0.{api}: heap out of bounds (offset {start}, size {size}, heap {len} bytes)"
        ))),
    }
}

fn read_heap(c: &mut C, src: u64, size: u64, api: &str) -> R<Vec<u8>> {
    let mem = memory(c, api)?;
    let data = mem.data(&*c);
    let range = heap_range(data.len(), src, size, api)?;
    Ok(data[range].to_vec())
}

fn write_heap(c: &mut C, dst: u64, bytes: &[u8], api: &str) -> R<()> {
    let mem = memory(c, api)?;
    let data = mem.data_mut(&mut *c);
    let range = heap_range(data.len(), dst, bytes.len() as u64, api)?;
    data[range].copy_from_slice(bytes);
    Ok(())
}

/// `ic0.*_copy(dst, offset, size)`: copies `source[offset..offset + size]` to the heap.
fn copy_out(c: &mut C, dst: u32, offset: u32, size: u32, source: &[u8], api: &str) -> R<()> {
    let (offset, size) = (offset as usize, size as usize);
    match offset.checked_add(size) {
        Some(end) if end <= source.len() => {
            write_heap(c, u64::from(dst), &source[offset..end], api)
        }
        _ => Err(trap(format!(
            "ic0.{api}: offset {offset} + size {size} exceeds the {} bytes available",
            source.len()
        ))),
    }
}

fn write_u128(c: &mut C, dst: u32, value: u128, api: &str) -> R<()> {
    write_heap(c, u64::from(dst), &value.to_le_bytes(), api)
}

fn u128_of(high: u64, low: u64) -> u128 {
    (u128::from(high) << 64) | u128::from(low)
}

fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Builds the linker with every function in [`PROVIDED`].
pub(crate) fn linker(engine: &Engine) -> Linker<Host> {
    let mut l = Linker::new(engine);
    define(&mut l).expect("each ic0 function is defined once");
    l
}

fn define(l: &mut Linker<Host>) -> R<()> {
    // --- message argument, caller, method name -------------------------------
    l.func_wrap("ic0", "msg_arg_data_size", |mut c: C| -> R<u32> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        require(&c, "msg_arg_data_size", MessageKind::has_arg)?;
        Ok(msg(&c, "msg_arg_data_size")?.arg.len() as u32)
    })?;
    l.func_wrap(
        "ic0",
        "msg_arg_data_copy",
        |mut c: C, dst: u32, offset: u32, size: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
            require(&c, "msg_arg_data_copy", MessageKind::has_arg)?;
            let arg = std::mem::take(&mut msg_mut(&mut c, "msg_arg_data_copy")?.arg);
            let result = copy_out(&mut c, dst, offset, size, &arg, "msg_arg_data_copy");
            msg_mut(&mut c, "msg_arg_data_copy")?.arg = arg;
            result
        },
    )?;
    l.func_wrap("ic0", "msg_caller_size", |mut c: C| -> R<u32> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        Ok(msg(&c, "msg_caller_size")?.caller.as_slice().len() as u32)
    })?;
    l.func_wrap(
        "ic0",
        "msg_caller_copy",
        |mut c: C, dst: u32, offset: u32, size: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
            let caller = msg(&c, "msg_caller_copy")?.caller;
            copy_out(
                &mut c,
                dst,
                offset,
                size,
                caller.as_slice(),
                "msg_caller_copy",
            )
        },
    )?;
    // Caller info (signed attributes of the caller) is not modelled: always empty.
    for (size_fn, copy_fn) in [
        ("msg_caller_info_data_size", "msg_caller_info_data_copy"),
        ("msg_caller_info_signer_size", "msg_caller_info_signer_copy"),
    ] {
        l.func_wrap("ic0", size_fn, move |mut c: C| -> R<u32> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            msg(&c, size_fn)?;
            Ok(0)
        })?;
        l.func_wrap(
            "ic0",
            copy_fn,
            move |mut c: C, dst: u32, offset: u32, size: u32| -> R<()> {
                charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
                msg(&c, copy_fn)?;
                copy_out(&mut c, dst, offset, size, &[], copy_fn)
            },
        )?;
    }
    l.func_wrap("ic0", "msg_method_name_size", |mut c: C| -> R<u32> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        require(&c, "msg_method_name_size", |k| {
            k == MessageKind::InspectMessage
        })?;
        Ok(msg(&c, "msg_method_name_size")?.method.len() as u32)
    })?;
    l.func_wrap(
        "ic0",
        "msg_method_name_copy",
        |mut c: C, dst: u32, offset: u32, size: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
            require(&c, "msg_method_name_copy", |k| {
                k == MessageKind::InspectMessage
            })?;
            let name = msg(&c, "msg_method_name_copy")?.method.clone();
            copy_out(
                &mut c,
                dst,
                offset,
                size,
                name.as_bytes(),
                "msg_method_name_copy",
            )
        },
    )?;
    l.func_wrap("ic0", "accept_message", |mut c: C| -> R<()> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        require(&c, "accept_message", |k| k == MessageKind::InspectMessage)?;
        let m = msg_mut(&mut c, "accept_message")?;
        if m.accepted {
            return Err(trap("ic0.accept_message: the message was already accepted"));
        }
        m.accepted = true;
        Ok(())
    })?;
    l.func_wrap("ic0", "msg_deadline", |mut c: C| -> R<u64> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        msg(&c, "msg_deadline")?;
        // Ingress messages have guaranteed responses: no deadline.
        Ok(0)
    })?;

    // --- replying --------------------------------------------------------------
    l.func_wrap(
        "ic0",
        "msg_reply_data_append",
        |mut c: C, src: u32, size: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
            let kind = require(&c, "msg_reply_data_append", MessageKind::can_reply)?;
            let bytes = read_heap(
                &mut c,
                u64::from(src),
                u64::from(size),
                "msg_reply_data_append",
            )?;
            let m = msg_mut(&mut c, "msg_reply_data_append")?;
            if m.response.is_some() {
                return Err(trap(
                    "ic0.msg_reply_data_append: the call was already replied to or rejected",
                ));
            }
            let max = if kind.replicated() {
                MAX_REPLY_REPLICATED
            } else {
                MAX_REPLY_QUERY
            };
            if m.reply.len() + bytes.len() > max {
                return Err(trap(format!(
                    "ic0.msg_reply_data_append: the reply exceeds the {max} byte limit"
                )));
            }
            m.reply.extend_from_slice(&bytes);
            Ok(())
        },
    )?;
    l.func_wrap("ic0", "msg_reply", |mut c: C| -> R<()> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        require(&c, "msg_reply", MessageKind::can_reply)?;
        let m = msg_mut(&mut c, "msg_reply")?;
        if m.response.is_some() {
            return Err(trap(
                "ic0.msg_reply: the call was already replied to or rejected",
            ));
        }
        m.response = Some(Response::Reply);
        Ok(())
    })?;
    l.func_wrap(
        "ic0",
        "msg_reject",
        |mut c: C, src: u32, size: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
            require(&c, "msg_reject", MessageKind::can_reply)?;
            let text = utf8(&read_heap(
                &mut c,
                u64::from(src),
                u64::from(size),
                "msg_reject",
            )?);
            let m = msg_mut(&mut c, "msg_reject")?;
            if m.response.is_some() {
                return Err(trap(
                    "ic0.msg_reject: the call was already replied to or rejected",
                ));
            }
            m.response = Some(Response::Reject(text));
            Ok(())
        },
    )?;
    l.func_wrap("ic0", "msg_reject_code", |mut c: C| -> R<u32> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        require(&c, "msg_reject_code", callback_only)?;
        Ok(0)
    })?;
    l.func_wrap("ic0", "msg_reject_msg_size", |mut c: C| -> R<u32> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        require(&c, "msg_reject_msg_size", callback_only)?;
        Ok(0)
    })?;
    l.func_wrap(
        "ic0",
        "msg_reject_msg_copy",
        |mut c: C, _dst: u32, _offset: u32, size: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
            require(&c, "msg_reject_msg_copy", callback_only)?;
            Ok(())
        },
    )?;

    // --- cycles ------------------------------------------------------------------
    l.func_wrap(
        "ic0",
        "msg_cycles_available128",
        |mut c: C, dst: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            require(&c, "msg_cycles_available128", |k| k == MessageKind::Update)?;
            // Ingress messages carry no cycles.
            write_u128(&mut c, dst, 0, "msg_cycles_available128")
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_cycles_refunded128",
        |mut c: C, _dst: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            require(&c, "msg_cycles_refunded128", callback_only)?;
            Ok(())
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_cycles_accept128",
        |mut c: C, _high: u64, _low: u64, dst: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            require(&c, "msg_cycles_accept128", |k| k == MessageKind::Update)?;
            write_u128(&mut c, dst, 0, "msg_cycles_accept128")
        },
    )?;
    l.func_wrap(
        "ic0",
        "cycles_burn128",
        |mut c: C, high: u64, low: u64, dst: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            require(&c, "cycles_burn128", MessageKind::changes_system_state)?;
            let sys = &mut c.data_mut().sys;
            let burnt = u128_of(high, low).min(sys.cycles);
            sys.cycles -= burnt;
            write_u128(&mut c, dst, burnt, "cycles_burn128")
        },
    )?;
    l.func_wrap(
        "ic0",
        "canister_cycle_balance128",
        |mut c: C, dst: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            let balance = c.data().sys.cycles;
            write_u128(&mut c, dst, balance, "canister_cycle_balance128")
        },
    )?;
    l.func_wrap(
        "ic0",
        "canister_liquid_cycle_balance128",
        |mut c: C, dst: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            // No freezing threshold or reservations are modelled: all cycles are liquid.
            let balance = c.data().sys.cycles;
            write_u128(&mut c, dst, balance, "canister_liquid_cycle_balance128")
        },
    )?;

    // --- the canister and its subnet ---------------------------------------------
    l.func_wrap("ic0", "canister_self_size", |mut c: C| -> R<u32> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        Ok(c.data().sys.id.as_slice().len() as u32)
    })?;
    l.func_wrap(
        "ic0",
        "canister_self_copy",
        |mut c: C, dst: u32, offset: u32, size: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
            let id = c.data().sys.id;
            copy_out(
                &mut c,
                dst,
                offset,
                size,
                id.as_slice(),
                "canister_self_copy",
            )
        },
    )?;
    l.func_wrap("ic0", "canister_status", |mut c: C| -> R<u32> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        Ok(1) // running: stopping and stopped canisters are not modelled
    })?;
    l.func_wrap("ic0", "canister_version", |mut c: C| -> R<u64> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        Ok(c.data().sys.version)
    })?;
    l.func_wrap("ic0", "subnet_self_size", |mut c: C| -> R<u32> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        Ok(SUBNET_ID.len() as u32)
    })?;
    l.func_wrap(
        "ic0",
        "subnet_self_copy",
        |mut c: C, dst: u32, offset: u32, size: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
            copy_out(&mut c, dst, offset, size, SUBNET_ID, "subnet_self_copy")
        },
    )?;
    l.func_wrap("ic0", "subnet_self_node_count", |mut c: C| -> R<u32> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        Ok(fees::cycles::SUBNET_NODES as u32)
    })?;
    l.func_wrap(
        "ic0",
        "is_controller",
        |mut c: C, src: u32, size: u32| -> R<u32> {
            charge(&mut c, fees::IS_CONTROLLER, u64::from(size))?;
            if size as usize > MAX_PRINCIPAL {
                return Err(trap(format!(
                    "ic0.is_controller: {size} bytes is not a principal"
                )));
            }
            let bytes = read_heap(&mut c, u64::from(src), u64::from(size), "is_controller")?;
            Ok(c.data()
                .sys
                .controllers
                .iter()
                .any(|p| p.as_slice() == bytes.as_slice()) as u32)
        },
    )?;
    l.func_wrap("ic0", "in_replicated_execution", |mut c: C| -> R<u32> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        Ok(msg(&c, "in_replicated_execution")?.kind.replicated() as u32)
    })?;
    l.func_wrap("ic0", "root_key_size", |mut c: C| -> R<u32> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        Ok(c.data().sys.root_key.len() as u32)
    })?;
    l.func_wrap(
        "ic0",
        "root_key_copy",
        |mut c: C, dst: u32, offset: u32, size: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
            let key = c.data().sys.root_key.clone();
            copy_out(&mut c, dst, offset, size, &key, "root_key_copy")
        },
    )?;

    // --- stable memory -------------------------------------------------------------
    l.func_wrap("ic0", "stable64_size", |mut c: C| -> R<u64> {
        charge(&mut c, fees::STABLE_ACCESS, 0)?;
        Ok(c.data().sys.stable.size_pages())
    })?;
    l.func_wrap("ic0", "stable64_grow", |mut c: C, pages: u64| -> R<u64> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        let sys = &mut c.data_mut().sys;
        Ok(sys
            .stable
            .grow(pages, sys.stable_max_pages)
            .unwrap_or(u64::MAX))
    })?;
    l.func_wrap(
        "ic0",
        "stable64_write",
        |mut c: C, offset: u64, src: u64, size: u64| -> R<()> {
            charge(&mut c, fees::STABLE_ACCESS, size)?;
            stable_write(&mut c, offset, src, size, "stable64_write")
        },
    )?;
    l.func_wrap(
        "ic0",
        "stable64_read",
        |mut c: C, dst: u64, offset: u64, size: u64| -> R<()> {
            charge(&mut c, fees::STABLE_ACCESS, size)?;
            stable_read(&mut c, dst, offset, size, "stable64_read")
        },
    )?;
    // The 32-bit API works while stable memory is at most 4 GiB, as on the IC.
    l.func_wrap("ic0", "stable_size", |mut c: C| -> R<u32> {
        charge(&mut c, fees::STABLE_ACCESS, 0)?;
        small_stable(&c, "stable_size")
    })?;
    l.func_wrap("ic0", "stable_grow", |mut c: C, pages: u32| -> R<u32> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        small_stable(&c, "stable_grow")?;
        let sys = &mut c.data_mut().sys;
        let max = sys.stable_max_pages.min(1 << 16);
        Ok(sys
            .stable
            .grow(u64::from(pages), max)
            .map_or(u32::MAX, |old| old as u32))
    })?;
    l.func_wrap(
        "ic0",
        "stable_write",
        |mut c: C, offset: u32, src: u32, size: u32| -> R<()> {
            charge(&mut c, fees::STABLE_ACCESS, u64::from(size))?;
            small_stable(&c, "stable_write")?;
            stable_write(
                &mut c,
                u64::from(offset),
                u64::from(src),
                u64::from(size),
                "stable_write",
            )
        },
    )?;
    l.func_wrap(
        "ic0",
        "stable_read",
        |mut c: C, dst: u32, offset: u32, size: u32| -> R<()> {
            charge(&mut c, fees::STABLE_ACCESS, u64::from(size))?;
            small_stable(&c, "stable_read")?;
            stable_read(
                &mut c,
                u64::from(dst),
                u64::from(offset),
                u64::from(size),
                "stable_read",
            )
        },
    )?;

    // --- certification ---------------------------------------------------------------
    l.func_wrap(
        "ic0",
        "certified_data_set",
        |mut c: C, src: u32, size: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
            require(&c, "certified_data_set", MessageKind::changes_system_state)?;
            if size as usize > MAX_CERTIFIED_DATA {
                return Err(trap(format!(
                "ic0.certified_data_set: {size} bytes exceeds the {MAX_CERTIFIED_DATA} byte limit"
            )));
            }
            let data = read_heap(
                &mut c,
                u64::from(src),
                u64::from(size),
                "certified_data_set",
            )?;
            c.data_mut().sys.certified_data = data;
            Ok(())
        },
    )?;
    l.func_wrap("ic0", "data_certificate_present", |mut c: C| -> R<u32> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        Ok(msg(&c, "data_certificate_present")?.certificate.is_some() as u32)
    })?;
    l.func_wrap("ic0", "data_certificate_size", |mut c: C| -> R<u32> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        match &msg(&c, "data_certificate_size")?.certificate {
            Some(cert) => Ok(cert.len() as u32),
            None => Err(trap(no_certificate(&c, "data_certificate_size"))),
        }
    })?;
    l.func_wrap(
        "ic0",
        "data_certificate_copy",
        |mut c: C, dst: u32, offset: u32, size: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
            match msg(&c, "data_certificate_copy")?.certificate.clone() {
                Some(cert) => copy_out(&mut c, dst, offset, size, &cert, "data_certificate_copy"),
                None => Err(trap(no_certificate(&c, "data_certificate_copy"))),
            }
        },
    )?;

    // --- time and timers -----------------------------------------------------------
    l.func_wrap("ic0", "time", |mut c: C| -> R<u64> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        Ok(c.data().sys.time)
    })?;
    l.func_wrap(
        "ic0",
        "global_timer_set",
        |mut c: C, timestamp: u64| -> R<u64> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            require(&c, "global_timer_set", MessageKind::changes_system_state)?;
            Ok(std::mem::replace(
                &mut c.data_mut().sys.global_timer,
                timestamp,
            ))
        },
    )?;
    l.func_wrap(
        "ic0",
        "performance_counter",
        |mut c: C, counter: u32| -> R<u64> {
            charge(&mut c, fees::PERFORMANCE_COUNTER, 0)?;
            // 0: instructions of this message; 1: of the call context. Without
            // inter-canister calls a call context is one message, so they coincide.
            if counter > 1 {
                return Err(trap(format!(
                    "ic0.performance_counter: unknown counter type {counter}"
                )));
            }
            let start = msg(&c, "performance_counter")?.fuel_at_start;
            Ok(start.saturating_sub(c.get_fuel()?))
        },
    )?;

    // --- cycles costs ----------------------------------------------------------------
    l.func_wrap(
        "ic0",
        "cost_call",
        |mut c: C, method_size: u64, payload_size: u64, dst: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            use fees::cycles::*;
            let cost = XNET_CALL + XNET_BYTE * (u128::from(method_size) + u128::from(payload_size));
            write_u128(&mut c, dst, cost, "cost_call")
        },
    )?;
    l.func_wrap(
        "ic0",
        "cost_create_canister",
        |mut c: C, dst: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            write_u128(
                &mut c,
                dst,
                fees::cycles::CREATE_CANISTER,
                "cost_create_canister",
            )
        },
    )?;
    l.func_wrap(
        "ic0",
        "cost_http_request",
        |mut c: C, request: u64, max_response: u64, dst: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            use fees::cycles::*;
            let n = SUBNET_NODES;
            let cost = (HTTP_BASE_PER_NODE + HTTP_BASE_PER_NODE_SQUARED * n) * n
                + (HTTP_REQUEST_BYTE * u128::from(request)
                    + HTTP_RESPONSE_BYTE * u128::from(max_response))
                    * n;
            write_u128(&mut c, dst, cost, "cost_http_request")
        },
    )?;
    // Threshold keys do not exist in this host: every key name is unknown (code 2).
    for name in [
        "cost_sign_with_ecdsa",
        "cost_sign_with_schnorr",
        "cost_vetkd_derive_key",
    ] {
        l.func_wrap(
            "ic0",
            name,
            move |mut c: C, src: u32, size: u32, _curve: u32, _dst: u32| -> R<u32> {
                charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
                read_heap(&mut c, u64::from(src), u64::from(size), name)?;
                Ok(2)
            },
        )?;
    }

    // --- environment variables -----------------------------------------------------------
    l.func_wrap("ic0", "env_var_count", |mut c: C| -> R<u32> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        Ok(c.data().sys.env_vars.len() as u32)
    })?;
    l.func_wrap(
        "ic0",
        "env_var_name_size",
        |mut c: C, index: u32| -> R<u32> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            Ok(env_name(&c, index, "env_var_name_size")?.len() as u32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "env_var_name_copy",
        |mut c: C, index: u32, dst: u32, offset: u32, size: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
            let name = env_name(&c, index, "env_var_name_copy")?;
            copy_out(
                &mut c,
                dst,
                offset,
                size,
                name.as_bytes(),
                "env_var_name_copy",
            )
        },
    )?;
    l.func_wrap(
        "ic0",
        "env_var_name_exists",
        |mut c: C, src: u32, size: u32| -> R<u32> {
            charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
            let name = read_env_name(&mut c, src, size, "env_var_name_exists")?;
            Ok(c.data().sys.env_vars.contains_key(&name) as u32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "env_var_value_size",
        |mut c: C, src: u32, size: u32| -> R<u32> {
            charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
            Ok(env_value(&mut c, src, size, "env_var_value_size")?.len() as u32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "env_var_value_copy",
        |mut c: C, src: u32, size: u32, dst: u32, offset: u32, copy_size: u32| -> R<()> {
            charge(
                &mut c,
                fees::SYSTEM_CALL,
                u64::from(size) + u64::from(copy_size),
            )?;
            let value = env_value(&mut c, src, size, "env_var_value_copy")?;
            copy_out(
                &mut c,
                dst,
                offset,
                copy_size,
                value.as_bytes(),
                "env_var_value_copy",
            )
        },
    )?;

    // --- debugging ----------------------------------------------------------------------
    l.func_wrap(
        "ic0",
        "debug_print",
        |mut c: C, src: u32, size: u32| -> R<()> {
            charge(&mut c, fees::DEBUG_PRINT, u64::from(size))?;
            let text = utf8(&read_heap(
                &mut c,
                u64::from(src),
                u64::from(size),
                "debug_print",
            )?);
            c.data_mut().sys.logs.push(text);
            Ok(())
        },
    )?;
    l.func_wrap("ic0", "trap", |mut c: C, src: u32, size: u32| -> R<()> {
        charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
        let text = utf8(&read_heap(&mut c, u64::from(src), u64::from(size), "trap")?);
        Err(wasmtime::Error::new(HostStop::Trap(text)))
    })?;
    Ok(())
}

/// Reject codes, reject messages and refunds exist only in the reply and reject
/// callbacks of inter-canister calls, which this host does not run.
fn callback_only(_: MessageKind) -> bool {
    false
}

fn no_certificate(c: &C, api: &str) -> String {
    let kind = c.data().msg.as_ref().map_or("start", |m| m.kind.name());
    format!("ic0.{api} cannot be executed in {kind} mode: a data certificate exists only in non-replicated queries")
}

fn small_stable(c: &C, api: &str) -> R<u32> {
    let pages = c.data().sys.stable.size_pages();
    if pages > 1 << 16 {
        return Err(trap(format!(
            "ic0.{api}: stable memory is larger than 4 GiB; use the stable64 API"
        )));
    }
    Ok(pages as u32)
}

fn stable_write(c: &mut C, offset: u64, src: u64, size: u64, api: &str) -> R<()> {
    let mem = memory(c, api)?;
    let (data, host) = mem.data_and_store_mut(&mut *c);
    let range = heap_range(data.len(), src, size, api)?;
    host.sys.stable.write(offset, &data[range]).map_err(|_| {
        trap(format!(
            "ic0.{api}: stable memory out of bounds (offset {offset}, size {size})"
        ))
    })
}

fn stable_read(c: &mut C, dst: u64, offset: u64, size: u64, api: &str) -> R<()> {
    let mem = memory(c, api)?;
    let (data, host) = mem.data_and_store_mut(&mut *c);
    let range = heap_range(data.len(), dst, size, api)?;
    host.sys.stable.read(offset, &mut data[range]).map_err(|_| {
        trap(format!(
            "ic0.{api}: stable memory out of bounds (offset {offset}, size {size})"
        ))
    })
}

fn env_name(c: &C, index: u32, api: &str) -> R<String> {
    c.data()
        .sys
        .env_vars
        .keys()
        .nth(index as usize)
        .cloned()
        .ok_or_else(|| {
            trap(format!(
                "ic0.{api}: no environment variable at index {index}"
            ))
        })
}

fn read_env_name(c: &mut C, src: u32, size: u32, api: &str) -> R<String> {
    let bytes = read_heap(c, u64::from(src), u64::from(size), api)?;
    String::from_utf8(bytes).map_err(|_| trap(format!("ic0.{api}: the name is not UTF-8")))
}

fn env_value(c: &mut C, src: u32, size: u32, api: &str) -> R<String> {
    let name = read_env_name(c, src, size, api)?;
    c.data()
        .sys
        .env_vars
        .get(&name)
        .cloned()
        .ok_or_else(|| trap(format!("ic0.{api}: no environment variable named `{name}`")))
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
