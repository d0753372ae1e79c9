//! Certified data (set in replicated messages) and the data certificate (read in queries).

use wasmtime::Linker;

use super::heap::{copy_out, read_heap};
use super::{charge, msg, require, trap, C, R};
use crate::fees;
use crate::host::Host;
use crate::message::MessageKind;

const MAX_CERTIFIED_DATA: usize = 32;

pub(super) fn define(l: &mut Linker<Host>) -> R<()> {
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
    Ok(())
}

fn no_certificate(c: &C, api: &str) -> String {
    let kind = c.data().msg.as_ref().map_or("start", |m| m.kind.name());
    format!("ic0.{api} cannot be executed in {kind} mode: a data certificate exists only in non-replicated queries")
}
