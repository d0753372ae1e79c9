//! The canister's environment variables.

use wasmtime::Linker;

use super::heap::{copy_out, read_heap};
use super::{charge, trap, C, R};
use crate::fees;
use crate::host::Host;

pub(super) fn define(l: &mut Linker<Host>) -> R<()> {
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
    Ok(())
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
