//! The cycles prices of operations this host does not run (calls, canister creation, HTTPS outcalls, threshold keys).

use wasmtime::Linker;

use super::heap::{read_heap, write_u128};
use super::{charge, C, R};
use crate::fees;
use crate::host::Host;

pub(super) fn define(l: &mut Linker<Host>) -> R<()> {
    l.func_wrap(
        "ic0",
        "cost_call",
        |mut c: C, method_size: u64, payload_size: u64, dst: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            use fees::cycles::*;
            let cost = XNET_CALL + XNET_BYTE * (u128::from(method_size) + u128::from(payload_size));
            write_u128(&mut c, dst, cost, "cost_call")
        },
    )?;
    l.func_wrap(
        "ic0",
        "cost_create_canister",
        |mut c: C, dst: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            write_u128(
                &mut c,
                dst,
                fees::cycles::CREATE_CANISTER,
                "cost_create_canister",
            )
        },
    )?;
    l.func_wrap(
        "ic0",
        "cost_http_request",
        |mut c: C, request: u64, max_response: u64, dst: u32| -> R<()> {
            charge(&mut c, fees::SYSTEM_CALL, 0)?;
            use fees::cycles::*;
            let n = SUBNET_NODES;
            let cost = (HTTP_BASE_PER_NODE + HTTP_BASE_PER_NODE_SQUARED * n) * n
                + (HTTP_REQUEST_BYTE * u128::from(request)
                    + HTTP_RESPONSE_BYTE * u128::from(max_response))
                    * n;
            write_u128(&mut c, dst, cost, "cost_http_request")
        },
    )?;
    // Threshold keys do not exist in this host: every key name is unknown (code 2).
    for name in [
        "cost_sign_with_ecdsa",
        "cost_sign_with_schnorr",
        "cost_vetkd_derive_key",
    ] {
        l.func_wrap(
            "ic0",
            name,
            move |mut c: C, src: u32, size: u32, _curve: u32, _dst: u32| -> R<u32> {
                charge(&mut c, fees::SYSTEM_CALL, u64::from(size))?;
                read_heap(&mut c, u64::from(src), u64::from(size), name)?;
                Ok(2)
            },
        )?;
    }
    Ok(())
}
