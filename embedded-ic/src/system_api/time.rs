//! The clock and the global timer.

use wasmtime::Linker;

use super::{charge, require, C, R};
use crate::fees;
use crate::host::Host;
use crate::message::MessageKind;

pub(super) fn define(l: &mut Linker<Host>) -> R<()> {
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
    Ok(())
}
