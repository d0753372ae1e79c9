//! Arguments, caller and method name of the running message; `accept_message`, `msg_deadline`.

use wasmtime::Linker;

use super::heap::copy_out;
use super::{charge, msg, msg_mut, require, trap, C, R};
use crate::fees;
use crate::host::Host;
use crate::message::MessageKind;

pub(super) fn define(l: &mut Linker<Host>) -> R<()> {
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
    Ok(())
}
