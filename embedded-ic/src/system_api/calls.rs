//! Inter-canister calls: `call_new`, its followers, and `call_perform`. A performed call
//! goes out only if the message commits; the host then answers it (`embedded_ic.rs`
//! models the management canister's `raw_rand` and rejects every other callee) and runs
//! the reply or reject callback as a message of its own.

use candid::Principal;
use wasmtime::Linker;

use super::heap::{read_heap, utf8};
use super::{charge, msg_mut, require, trap, C, R};
use crate::fees;
use crate::host::Host;
use crate::message::{MessageKind, OutgoingCall};

/// Largest argument of an inter-canister call (the IC's 2 MiB).
const MAX_CALL_ARG: usize = 2 * 1024 * 1024;

fn pending<'a>(c: &'a mut C, api: &str) -> R<&'a mut OutgoingCall> {
    msg_mut(c, api)?.pending_call.as_mut().ok_or_else(|| {
        trap(format!(
            "ic0.{api}: no call is being built (call ic0.call_new first)"
        ))
    })
}

pub(super) fn define(l: &mut Linker<Host>) -> R<()> {
    l.func_wrap(
        "ic0",
        "call_new",
        |mut c: C,
         callee_src: u32,
         callee_size: u32,
         name_src: u32,
         name_size: u32,
         reply_fun: u32,
         reply_env: u32,
         reject_fun: u32,
         reject_env: u32|
         -> R<()> {
            charge(
                &mut c,
                fees::SYSTEM_CALL,
                u64::from(callee_size) + u64::from(name_size),
            )?;
            require(&c, "call_new", MessageKind::can_call)?;
            let callee = read_heap(
                &mut c,
                u64::from(callee_src),
                u64::from(callee_size),
                "call_new",
            )?;
            let callee = Principal::try_from_slice(&callee)
                .map_err(|e| trap(format!("ic0.call_new: the callee is not a principal: {e}")))?;
            let method = utf8(&read_heap(
                &mut c,
                u64::from(name_src),
                u64::from(name_size),
                "call_new",
            )?);
            // A call begun and not performed is discarded by the next call_new.
            msg_mut(&mut c, "call_new")?.pending_call = Some(OutgoingCall {
                callee,
                method,
                arg: Vec::new(),
                reply: (reply_fun, reply_env),
                reject: (reject_fun, reject_env),
                cleanup: None,
                cycles: 0,
            });
            Ok(())
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_on_cleanup",
        |mut c: C, fun: u32, env: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            require(&c, "call_on_cleanup", MessageKind::can_call)?;
            let call = pending(&mut c, "call_on_cleanup")?;
            if call.cleanup.is_some() {
                return Err(trap("ic0.call_on_cleanup: called twice for one call"));
            }
            call.cleanup = Some((fun, env));
            Ok(())
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_data_append",
        |mut c: C, src: u32, size: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
            require(&c, "call_data_append", MessageKind::can_call)?;
            let bytes = read_heap(&mut c, u64::from(src), u64::from(size), "call_data_append")?;
            let call = pending(&mut c, "call_data_append")?;
            if call.arg.len() + bytes.len() > MAX_CALL_ARG {
                return Err(trap(format!(
                    "ic0.call_data_append: the argument exceeds the {MAX_CALL_ARG} byte limit"
                )));
            }
            call.arg.extend_from_slice(&bytes);
            Ok(())
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_with_best_effort_response",
        |mut c: C, _timeout_seconds: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            require(&c, "call_with_best_effort_response", MessageKind::can_call)?;
            // Answers come at once here: no timeout is ever reached.
            pending(&mut c, "call_with_best_effort_response").map(|_| ())
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_cycles_add128",
        |mut c: C, high: u64, low: u64| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            require(&c, "call_cycles_add128", MessageKind::can_call)?;
            let amount = (u128::from(high) << 64) | u128::from(low);
            let balance = c.data().sys.cycles;
            if amount > balance {
                return Err(trap(format!(
                    "ic0.call_cycles_add128: {amount} cycles requested, the balance is {balance}"
                )));
            }
            c.data_mut().sys.cycles -= amount;
            let call = pending(&mut c, "call_cycles_add128")?;
            call.cycles += amount;
            Ok(())
        },
    )?;
    l.func_wrap("ic0", "call_perform", |mut c: C| -> R<u32> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        require(&c, "call_perform", MessageKind::can_call)?;
        let m = msg_mut(&mut c, "call_perform")?;
        let call = m.pending_call.take().ok_or_else(|| {
            trap("ic0.call_perform: no call is being built (call ic0.call_new first)")
        })?;
        m.calls.push(call);
        Ok(0)
    })?;
    Ok(())
}
