//! Cycles a message carries, accepts or burns, and the canister's balance.

use wasmtime::Linker;

use super::heap::write_u128;
use super::{charge, require, C, R};
use crate::fees;
use crate::host::Host;
use crate::message::MessageKind;

pub(super) fn define(l: &mut Linker<Host>) -> R<()> {
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
        |mut c: C, dst: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            require(&c, "msg_cycles_refunded128", MessageKind::is_callback)?;
            // Calls here carry no cycles to their callee (the management canister's
            // `raw_rand` needs none), so nothing comes back.
            write_u128(&mut c, dst, 0, "msg_cycles_refunded128")
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
    Ok(())
}

fn u128_of(high: u64, low: u64) -> u128 {
    (u128::from(high) << 64) | u128::from(low)
}
