//! Stable memory: the 64-bit API and the 32-bit one, which works below 4 GiB as on the IC.

use wasmtime::Linker;

use super::heap::{heap_range, memory};
use super::{charge, trap, C, R};
use crate::fees;
use crate::host::Host;

pub(super) fn define(l: &mut Linker<Host>) -> R<()> {
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
    Ok(())
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
