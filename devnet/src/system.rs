//! The system canisters a client expects on a local network besides the management
//! canister, answered natively: the cycles ledger (`create_canister`, which the `icp` CLI
//! creates canisters through, and `icrc1_balance_of`) and the cycles minting canister
//! (`get_default_subnets`). Cycles are not metered on the devnet: every principal can
//! create canisters and reads a fixed balance.

use candid::{CandidType, Deserialize, Nat, Principal};
use flic_embedded_ic::EmbeddedIc;

use crate::management::ManagementReject;

/// `um5iw-rqaaa-aaaaq-qaaba-cai`, the cycles ledger's id on the IC and on local networks.
pub fn cycles_ledger() -> Principal {
    Principal::from_text("um5iw-rqaaa-aaaaq-qaaba-cai").expect("a valid principal")
}

/// `rkp4c-7iaaa-aaaaa-aaaca-cai`, the cycles minting canister's id.
pub fn cycles_minting_canister() -> Principal {
    Principal::from_text("rkp4c-7iaaa-aaaaa-aaaca-cai").expect("a valid principal")
}

/// The balance every principal reads from the cycles ledger (1,000 T cycles: what a
/// managed local network seeds each identity with).
pub const UNMETERED_BALANCE: u128 = 1_000_000_000_000_000;

/// `ryjl3-tyaaa-aaaaa-aaaba-cai`, the ICP ledger's id: not emulated, but clients query it
/// by id, so no canister of the devnet gets it.
pub fn icp_ledger() -> Principal {
    Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").expect("a valid principal")
}

/// Ids the devnet never gives a new canister.
pub fn reserved_ids() -> [Principal; 3] {
    [cycles_ledger(), cycles_minting_canister(), icp_ledger()]
}

pub fn is_system_canister(id: Principal) -> bool {
    id == cycles_ledger() || id == cycles_minting_canister()
}

#[derive(CandidType, Deserialize)]
struct LedgerSettings {
    controllers: Option<Vec<Principal>>,
}

#[derive(CandidType, Deserialize)]
struct CreationArgs {
    settings: Option<LedgerSettings>,
}

#[derive(CandidType, Deserialize)]
struct CreateCanisterArgs {
    amount: Nat,
    creation_args: Option<CreationArgs>,
}

#[derive(CandidType, Deserialize)]
struct CreateCanisterSuccess {
    block_id: Nat,
    canister_id: Principal,
}

#[derive(CandidType, Deserialize)]
enum CreateCanisterError {
    GenericError { error_code: Nat, message: String },
}

#[derive(CandidType, Deserialize)]
struct Account {
    owner: Principal,
    subaccount: Option<serde_bytes::ByteBuf>,
}

fn reject(code: u8, error_code: &'static str, message: String) -> ManagementReject {
    ManagementReject {
        code,
        error_code,
        message,
    }
}

fn decode<'a, T: CandidType + Deserialize<'a>>(
    method: &str,
    arg: &'a [u8],
) -> Result<T, ManagementReject> {
    candid::decode_one(arg).map_err(|e| {
        reject(
            4,
            "IC0503",
            format!("the argument of {method} does not decode: {e}"),
        )
    })
}

/// An update call to a system canister.
pub fn update(
    ic: &mut EmbeddedIc,
    canister: Principal,
    sender: Principal,
    method: &str,
    arg: &[u8],
) -> Result<Vec<u8>, ManagementReject> {
    match (canister == cycles_ledger(), method) {
        (true, "create_canister") => {
            let a: CreateCanisterArgs = decode(method, arg)?;
            let controllers = a
                .creation_args
                .and_then(|c| c.settings)
                .and_then(|s| s.controllers)
                .unwrap_or_else(|| vec![sender]);
            let result: Result<CreateCanisterSuccess, CreateCanisterError> =
                if controllers.len() > 10 {
                    Err(CreateCanisterError::GenericError {
                        error_code: Nat::from(1u8),
                        message: "a canister has at most 10 controllers".into(),
                    })
                } else {
                    let id = ic.create_canister(controllers);
                    let amount = u128::try_from(a.amount.0).unwrap_or(u128::MAX);
                    let _ = ic.set_cycle_balance(id, amount);
                    Ok(CreateCanisterSuccess {
                        block_id: Nat::from(ic.canister_ids().len()),
                        canister_id: id,
                    })
                };
            Ok(candid::encode_one(result).expect("the reply encodes"))
        }
        _ => query(canister, method, arg),
    }
}

/// A query to a system canister.
pub fn query(canister: Principal, method: &str, arg: &[u8]) -> Result<Vec<u8>, ManagementReject> {
    match (canister, method) {
        (c, "icrc1_balance_of") if c == cycles_ledger() => {
            let _: Account = decode(method, arg)?;
            Ok(candid::encode_one(Nat::from(UNMETERED_BALANCE)).expect("a nat encodes"))
        }
        (c, "icrc1_decimals") if c == cycles_ledger() => {
            Ok(candid::encode_one(12u8).expect("a nat8 encodes"))
        }
        (c, "icrc1_symbol") if c == cycles_ledger() => {
            Ok(candid::encode_one("TCYCLES").expect("text encodes"))
        }
        _ => Err(reject(
            3,
            "IC0536",
            format!(
                "canister {canister} is a system canister with no method `{method}` on this devnet (see docs/devnet.md)"
            ),
        )),
    }
}

/// `get_default_subnets`: the devnet's one subnet.
pub fn default_subnets(subnet: Principal) -> Vec<u8> {
    candid::encode_one(vec![subnet]).expect("a vec principal encodes")
}
