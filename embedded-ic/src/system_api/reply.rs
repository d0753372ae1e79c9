//! Replying and rejecting, and the reject details of callbacks.

use wasmtime::Linker;

use super::heap::{copy_out, read_heap, utf8};
use super::{charge, msg, msg_mut, require, trap, C, R};
use crate::fees;
use crate::host::Host;
use crate::message::{MessageKind, Response};

/// Largest reply: 2 MiB for replicated execution, 3 MiB for queries.
const MAX_REPLY_REPLICATED: usize = 2 * 1024 * 1024;
const MAX_REPLY_QUERY: usize = 3 * 1024 * 1024;

pub(super) fn define(l: &mut Linker<Host>) -> R<()> {
    l.func_wrap(
        "ic0",
        "msg_reply_data_append",
        |mut c: C, src: u32, size: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
            let kind = require(&c, "msg_reply_data_append", MessageKind::can_reply)?;
            let bytes = read_heap(
                &mut c,
                u64::from(src),
                u64::from(size),
                "msg_reply_data_append",
            )?;
            let m = msg_mut(&mut c, "msg_reply_data_append")?;
            if m.response.is_some() {
                return Err(trap(
                    "ic0.msg_reply_data_append: the call was already replied to or rejected",
                ));
            }
            let max = if kind.replicated() {
                MAX_REPLY_REPLICATED
            } else {
                MAX_REPLY_QUERY
            };
            if m.reply.len() + bytes.len() > max {
                return Err(trap(format!(
                    "ic0.msg_reply_data_append: the reply exceeds the {max} byte limit"
                )));
            }
            m.reply.extend_from_slice(&bytes);
            Ok(())
        },
    )?;
    l.func_wrap("ic0", "msg_reply", |mut c: C| -> R<()> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        require(&c, "msg_reply", MessageKind::can_reply)?;
        let m = msg_mut(&mut c, "msg_reply")?;
        if m.response.is_some() {
            return Err(trap(
                "ic0.msg_reply: the call was already replied to or rejected",
            ));
        }
        m.response = Some(Response::Reply);
        Ok(())
    })?;
    l.func_wrap(
        "ic0",
        "msg_reject",
        |mut c: C, src: u32, size: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
            require(&c, "msg_reject", MessageKind::can_reply)?;
            let text = utf8(&read_heap(
                &mut c,
                u64::from(src),
                u64::from(size),
                "msg_reject",
            )?);
            let m = msg_mut(&mut c, "msg_reject")?;
            if m.response.is_some() {
                return Err(trap(
                    "ic0.msg_reject: the call was already replied to or rejected",
                ));
            }
            m.response = Some(Response::Reject(text));
            Ok(())
        },
    )?;
    l.func_wrap("ic0", "msg_reject_code", |mut c: C| -> R<u32> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        require(&c, "msg_reject_code", MessageKind::is_callback)?;
        Ok(msg(&c, "msg_reject_code")?
            .reject
            .as_ref()
            .map_or(0, |r| r.0))
    })?;
    l.func_wrap("ic0", "msg_reject_msg_size", |mut c: C| -> R<u32> {
        charge(&mut c, fees::SYSTEM_CALL, 0)?;
        require(&c, "msg_reject_msg_size", reject_only)?;
        Ok(msg(&c, "msg_reject_msg_size")?
            .reject
            .as_ref()
            .map_or(0, |r| r.1.len() as u32))
    })?;
    l.func_wrap(
        "ic0",
        "msg_reject_msg_copy",
        |mut c: C, dst: u32, offset: u32, size: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
            require(&c, "msg_reject_msg_copy", reject_only)?;
            let text = msg(&c, "msg_reject_msg_copy")?
                .reject
                .as_ref()
                .map(|r| r.1.clone().into_bytes())
                .unwrap_or_default();
            copy_out(&mut c, dst, offset, size, &text, "msg_reject_msg_copy")
        },
    )?;
    Ok(())
}

fn reject_only(kind: MessageKind) -> bool {
    kind == MessageKind::RejectCallback
}
