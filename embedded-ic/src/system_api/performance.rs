//! Performance counters: the instructions a message has used so far.

use wasmtime::Linker;

use super::{charge, msg, trap, C, R};
use crate::fees;
use crate::host::Host;

pub(super) fn define(l: &mut Linker<Host>) -> R<()> {
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
    Ok(())
}
