//! The canister and its subnet: ids, status, version, controllers, root key.

use wasmtime::Linker;

use super::heap::{copy_out, read_heap};
use super::{charge, msg, trap, C, R};
use crate::fees;
use crate::host::Host;

/// Subnet the simulated canisters live on (the id is fixed and arbitrary).
const SUBNET_ID: &[u8] = b"flic-embedded-subnet";
const MAX_PRINCIPAL: usize = 29;

pub(super) fn define(l: &mut Linker<Host>) -> R<()> {
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
    Ok(())
}
