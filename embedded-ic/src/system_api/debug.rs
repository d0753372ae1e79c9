//! Debug output and explicit traps.

use wasmtime::Linker;

use super::heap::{read_heap, utf8};
use super::{charge, HostStop, C, R};
use crate::fees;
use crate::host::Host;

pub(super) fn define(l: &mut Linker<Host>) -> R<()> {
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
