//! The management canister (`aaaaa-aa`), as far as deploying and operating a canister
//! needs: creating, installing (whole or chunked), status, settings, start, stop,
//! uninstall and delete. Controllers are enforced as on the IC.

use std::collections::BTreeMap;

use candid::{CandidType, Nat, Principal};
use flic_embedded_ic::{CallError, EmbeddedIc, InstallMode};
use ic_management_canister_types::{
    CanisterIdRecord, CanisterInstallMode, CanisterSettings, CanisterStatusType, ChunkHash,
    CreateCanisterArgs, EnvironmentVariable, InstallChunkedCodeArgs, InstallCodeArgs,
    LogVisibility, MemoryMetrics, ProvisionalCreateCanisterWithCyclesArgs,
    ProvisionalTopUpCanisterArgs, QueryStats, SnapshotVisibility, UninstallCodeArgs,
    UpdateSettingsArgs, UploadChunkArgs,
};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// A reject as the IC reports it: from the management canister, a system canister, or a
/// canister message that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagementReject {
    /// 3 (destination invalid), 4 (canister reject) or 5 (canister error).
    pub code: u8,
    pub error_code: &'static str,
    pub message: String,
}

/// A query's rejection.
impl From<ManagementReject> for ic_transport_types::RejectResponse {
    fn from(r: ManagementReject) -> Self {
        ic_transport_types::RejectResponse {
            reject_code: ic_transport_types::RejectCode::try_from(u64::from(r.code))
                .unwrap_or(ic_transport_types::RejectCode::CanisterError),
            reject_message: r.message,
            error_code: Some(r.error_code.into()),
        }
    }
}

/// A call's recorded (certified) rejection.
impl From<ManagementReject> for crate::requests::Outcome {
    fn from(r: ManagementReject) -> Self {
        crate::requests::Outcome::Rejected {
            code: r.code,
            message: r.message,
            error_code: r.error_code.into(),
        }
    }
}

fn reject(code: u8, error_code: &'static str, message: impl Into<String>) -> ManagementReject {
    ManagementReject {
        code,
        error_code,
        message: message.into(),
    }
}

impl From<CallError> for ManagementReject {
    fn from(e: CallError) -> Self {
        let message = e.to_string();
        match e {
            CallError::CanisterNotFound(_) => reject(3, "IC0301", message),
            CallError::NotController { .. } => reject(5, "IC0512", message),
            CallError::Trap { .. } => reject(5, "IC0503", message),
            CallError::InstructionLimit { .. } => reject(5, "IC0522", message),
            CallError::InvalidWasm(_) | CallError::MissingImports { .. } => {
                reject(5, "IC0505", message)
            }
            CallError::NotStopped(_) => reject(5, "IC0510", message),
            CallError::CanisterExists(_) => reject(5, "IC0538", message),
            _ => reject(5, "IC0503", message),
        }
    }
}

/// The largest chunk `upload_chunk` takes, and how many a canister's store holds (IC figures).
pub const MAX_CHUNK_BYTES: usize = 1 << 20;
pub const MAX_CHUNKS: usize = 100;

/// Wasm chunk stores, per canister (on the heap; a restart empties them, as an upload
/// session would have to start again).
#[derive(Debug, Default)]
pub struct ChunkStores {
    stores: BTreeMap<Principal, BTreeMap<[u8; 32], Vec<u8>>>,
}

/// Methods that take an effective canister id from their argument, and the id.
pub fn effective_canister_id(method: &str, arg: &[u8]) -> Option<Principal> {
    #[derive(CandidType, candid::Deserialize)]
    struct Target {
        canister_id: Principal,
    }
    #[derive(CandidType, candid::Deserialize)]
    struct ChunkedTarget {
        target_canister: Principal,
    }
    match method {
        "install_chunked_code" => candid::decode_one::<ChunkedTarget>(arg)
            .ok()
            .map(|t| t.target_canister),
        "provisional_create_canister_with_cycles" | "create_canister" => None,
        _ => candid::decode_one::<Target>(arg)
            .ok()
            .map(|t| t.canister_id),
    }
}

/// Runs a management canister method called by `sender` (an ingress message), with the
/// effective canister id from the URL; returns the Candid reply.
pub fn call(
    ic: &mut EmbeddedIc,
    chunks: &mut ChunkStores,
    sender: Principal,
    effective: Principal,
    method: &str,
    arg: &[u8],
) -> Result<Vec<u8>, ManagementReject> {
    match method {
        "provisional_create_canister_with_cycles" => {
            let a: ProvisionalCreateCanisterWithCyclesArgs = decode(method, arg)?;
            let id = create(ic, sender, a.settings, a.specified_id)?;
            if let Some(amount) = a.amount {
                ic.set_cycle_balance(id, nat_u128(&amount))?;
            }
            reply(&CanisterIdRecord { canister_id: id })
        }
        // On the IC only canisters may call create_canister; the devnet lets a user do it
        // too (with the default balance), so a client written for either works.
        "create_canister" => {
            let a: CreateCanisterArgs = decode(method, arg)?;
            let id = create(ic, sender, a.settings, None)?;
            reply(&CanisterIdRecord { canister_id: id })
        }
        "provisional_top_up_canister" => {
            let a: ProvisionalTopUpCanisterArgs = decode(method, arg)?;
            let balance = ic
                .cycle_balance(a.canister_id)
                .ok_or(CallError::CanisterNotFound(a.canister_id))?;
            ic.set_cycle_balance(a.canister_id, balance.saturating_add(nat_u128(&a.amount)))?;
            reply(&())
        }
        "install_code" => {
            let a: InstallCodeArgs = decode(method, arg)?;
            check_effective(effective, a.canister_id)?;
            install(ic, sender, a.canister_id, a.mode, &a.wasm_module, a.arg)?;
            reply(&())
        }
        "upload_chunk" => {
            let a: UploadChunkArgs = decode(method, arg)?;
            check_effective(effective, a.canister_id)?;
            controller(ic, a.canister_id, sender)?;
            if a.chunk.len() > MAX_CHUNK_BYTES {
                return Err(reject(
                    5,
                    "IC0505",
                    format!("a chunk is at most {MAX_CHUNK_BYTES} bytes"),
                ));
            }
            let store = chunks.stores.entry(a.canister_id).or_default();
            let hash: [u8; 32] = Sha256::digest(&a.chunk).into();
            if !store.contains_key(&hash) && store.len() >= MAX_CHUNKS {
                return Err(reject(
                    5,
                    "IC0505",
                    format!("the chunk store is full ({MAX_CHUNKS} chunks): clear_chunk_store"),
                ));
            }
            store.insert(hash, a.chunk);
            reply(&ChunkHash {
                hash: hash.to_vec(),
            })
        }
        "clear_chunk_store" => {
            let a: CanisterIdRecord = decode(method, arg)?;
            check_effective(effective, a.canister_id)?;
            controller(ic, a.canister_id, sender)?;
            chunks.stores.remove(&a.canister_id);
            reply(&())
        }
        "stored_chunks" => {
            let a: CanisterIdRecord = decode(method, arg)?;
            check_effective(effective, a.canister_id)?;
            controller(ic, a.canister_id, sender)?;
            let hashes: Vec<ChunkHash> = chunks
                .stores
                .get(&a.canister_id)
                .into_iter()
                .flat_map(|s| s.keys())
                .map(|h| ChunkHash { hash: h.to_vec() })
                .collect();
            reply(&hashes)
        }
        "install_chunked_code" => {
            let a: InstallChunkedCodeArgs = decode(method, arg)?;
            check_effective(effective, a.target_canister)?;
            let store_id = a.store_canister.unwrap_or(a.target_canister);
            controller(ic, store_id, sender)?;
            let store = chunks.stores.get(&store_id);
            let mut wasm = Vec::new();
            for (i, c) in a.chunk_hashes_list.iter().enumerate() {
                let chunk = store
                    .and_then(|s| <[u8; 32]>::try_from(c.hash.as_slice()).ok().and_then(|h| s.get(&h)))
                    .ok_or_else(|| {
                        reject(
                            5,
                            "IC0505",
                            format!(
                                "chunk {i} ({}) is not in the chunk store of {store_id}",
                                hex::encode(&c.hash)
                            ),
                        )
                    })?;
                wasm.extend_from_slice(chunk);
            }
            if Sha256::digest(&wasm).as_slice() != a.wasm_module_hash.as_slice() {
                return Err(reject(
                    5,
                    "IC0505",
                    "the chunks do not hash to wasm_module_hash",
                ));
            }
            install(ic, sender, a.target_canister, a.mode, &wasm, a.arg)?;
            reply(&())
        }
        "uninstall_code" => {
            let a: UninstallCodeArgs = decode(method, arg)?;
            check_effective(effective, a.canister_id)?;
            controller(ic, a.canister_id, sender)?;
            ic.uninstall_code(a.canister_id)?;
            reply(&())
        }
        "canister_status" => {
            let a: CanisterIdRecord = decode(method, arg)?;
            check_effective(effective, a.canister_id)?;
            controller(ic, a.canister_id, sender)?;
            reply(&status(ic, chunks, a.canister_id)?)
        }
        "update_settings" => {
            let a: UpdateSettingsArgs = decode(method, arg)?;
            check_effective(effective, a.canister_id)?;
            controller(ic, a.canister_id, sender)?;
            apply_settings(ic, a.canister_id, &a.settings)?;
            reply(&())
        }
        "start_canister" => {
            let a: CanisterIdRecord = decode(method, arg)?;
            check_effective(effective, a.canister_id)?;
            controller(ic, a.canister_id, sender)?;
            ic.start_canister(a.canister_id)?;
            reply(&())
        }
        "stop_canister" => {
            let a: CanisterIdRecord = decode(method, arg)?;
            check_effective(effective, a.canister_id)?;
            controller(ic, a.canister_id, sender)?;
            ic.stop_canister(a.canister_id)?;
            reply(&())
        }
        "delete_canister" => {
            let a: CanisterIdRecord = decode(method, arg)?;
            check_effective(effective, a.canister_id)?;
            controller(ic, a.canister_id, sender)?;
            ic.delete_canister(a.canister_id)?;
            chunks.stores.remove(&a.canister_id);
            reply(&())
        }
        other => Err(reject(
            3,
            "IC0536",
            format!("the management canister has no method `{other}` on this devnet (see docs/devnet.md)"),
        )),
    }
}

fn decode<T: DeserializeOwned + CandidType>(
    method: &str,
    arg: &[u8],
) -> Result<T, ManagementReject> {
    candid::decode_one(arg).map_err(|e| {
        reject(
            4,
            "IC0503",
            format!("the argument of {method} does not decode: {e}"),
        )
    })
}

fn reply<T: CandidType>(value: &T) -> Result<Vec<u8>, ManagementReject> {
    Ok(candid::encode_one(value).expect("management replies encode"))
}

fn check_effective(effective: Principal, target: Principal) -> Result<(), ManagementReject> {
    if effective == target {
        Ok(())
    } else {
        Err(reject(
            5,
            "IC0530",
            format!("the effective canister id {effective} is not the target canister {target}"),
        ))
    }
}

fn controller(ic: &EmbeddedIc, id: Principal, sender: Principal) -> Result<(), ManagementReject> {
    let controllers = ic.controllers(id).ok_or(CallError::CanisterNotFound(id))?;
    if controllers.contains(&sender) {
        Ok(())
    } else {
        Err(CallError::NotController {
            canister: id,
            sender,
        }
        .into())
    }
}

fn create(
    ic: &mut EmbeddedIc,
    sender: Principal,
    settings: Option<CanisterSettings>,
    specified_id: Option<Principal>,
) -> Result<Principal, ManagementReject> {
    let settings = settings.unwrap_or_default();
    let controllers = settings.controllers.clone().unwrap_or_else(|| vec![sender]);
    check_controllers(&controllers)?;
    let id = match specified_id {
        Some(id) => ic.create_canister_with_id(id, controllers)?,
        None => ic.create_canister(controllers),
    };
    apply_settings(
        ic,
        id,
        &CanisterSettings {
            controllers: None,
            ..settings
        },
    )?;
    Ok(id)
}

/// The IC allows at most 10 controllers.
fn check_controllers(controllers: &[Principal]) -> Result<(), ManagementReject> {
    if controllers.len() > 10 {
        return Err(reject(4, "IC0503", "a canister has at most 10 controllers"));
    }
    Ok(())
}

fn apply_settings(
    ic: &mut EmbeddedIc,
    id: Principal,
    settings: &CanisterSettings,
) -> Result<(), ManagementReject> {
    if let Some(c) = &settings.controllers {
        check_controllers(c)?;
        ic.set_controllers(id, c.clone())?;
    }
    if let Some(vars) = &settings.environment_variables {
        for v in vars {
            ic.set_env_var(id, &v.name, &v.value)?;
        }
    }
    // Allocations, thresholds and limits are accepted and not modelled (docs/devnet.md).
    Ok(())
}

fn install(
    ic: &mut EmbeddedIc,
    sender: Principal,
    id: Principal,
    mode: CanisterInstallMode,
    wasm: &[u8],
    arg: Vec<u8>,
) -> Result<(), ManagementReject> {
    let mode = match mode {
        CanisterInstallMode::Install => InstallMode::Install,
        CanisterInstallMode::Reinstall => InstallMode::Reinstall,
        CanisterInstallMode::Upgrade(_) => InstallMode::Upgrade,
    };
    let wasm = gunzip_if_needed(wasm)?;
    ic.install_code(id, &wasm, arg, mode, sender)?;
    Ok(())
}

/// The IC takes gzipped modules (dfx and icp send them so); the embedded IC takes wasm.
fn gunzip_if_needed(wasm: &[u8]) -> Result<Vec<u8>, ManagementReject> {
    if !wasm.starts_with(&[0x1f, 0x8b]) {
        return Ok(wasm.to_vec());
    }
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(wasm)
        .take(MAX_WASM_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            reject(
                5,
                "IC0505",
                format!("the gzipped module does not decompress: {e}"),
            )
        })?;
    if out.len() > MAX_WASM_BYTES {
        return Err(reject(
            5,
            "IC0505",
            format!("the module is larger than {MAX_WASM_BYTES} bytes decompressed"),
        ));
    }
    Ok(out)
}

/// The IC's limit on a decompressed module.
pub const MAX_WASM_BYTES: usize = 100 << 20;

/// `fetch_canister_logs` (a query; controllers only, the default log visibility): what the
/// canister printed and its traps, oldest first. The embedded IC keeps no timestamps, so
/// every record's is 0.
pub fn fetch_canister_logs(
    ic: &EmbeddedIc,
    sender: Principal,
    effective: Principal,
    arg: &[u8],
) -> Result<Vec<u8>, ManagementReject> {
    #[derive(CandidType, candid::Deserialize)]
    struct Args {
        canister_id: Principal,
    }
    #[derive(CandidType)]
    struct Record {
        idx: u64,
        timestamp_nanos: u64,
        content: serde_bytes::ByteBuf,
    }
    #[derive(CandidType)]
    struct Logs {
        canister_log_records: Vec<Record>,
    }
    let a: Args = decode("fetch_canister_logs", arg)?;
    check_effective(effective, a.canister_id)?;
    controller(ic, a.canister_id, sender)?;
    let records = ic
        .logs(a.canister_id)
        .iter()
        .enumerate()
        .map(|(i, line)| Record {
            idx: i as u64,
            timestamp_nanos: 0,
            content: serde_bytes::ByteBuf::from(line.clone().into_bytes()),
        })
        .collect();
    reply(&Logs {
        canister_log_records: records,
    })
}

/// `canister_status`'s reply as the IC's current interface has it: the fields of
/// `ic-management-canister-types` 0.8 plus `status_visibility` and
/// `minimum_incoming_canister_call_cycles`, which the `icp` CLI requires. Older clients
/// decode it too (Candid ignores record fields a reader does not know).
#[derive(CandidType, candid::Deserialize, Debug, Clone)]
pub struct CanisterStatus {
    pub status: CanisterStatusType,
    pub ready_for_migration: bool,
    pub version: u64,
    pub settings: StatusSettings,
    pub module_hash: Option<Vec<u8>>,
    pub memory_size: Nat,
    pub memory_metrics: MemoryMetrics,
    pub cycles: Nat,
    pub reserved_cycles: Nat,
    pub idle_cycles_burned_per_day: Nat,
    pub query_stats: QueryStats,
}

#[derive(CandidType, candid::Deserialize, Debug, Clone)]
pub struct StatusSettings {
    pub controllers: Vec<Principal>,
    pub compute_allocation: Nat,
    pub memory_allocation: Nat,
    pub freezing_threshold: Nat,
    pub reserved_cycles_limit: Nat,
    pub log_visibility: LogVisibility,
    pub log_memory_limit: Nat,
    pub snapshot_visibility: SnapshotVisibility,
    pub status_visibility: SnapshotVisibility,
    pub wasm_memory_limit: Nat,
    pub wasm_memory_threshold: Nat,
    pub minimum_incoming_canister_call_cycles: Nat,
    pub environment_variables: Vec<EnvironmentVariable>,
}

fn status(
    ic: &mut EmbeddedIc,
    chunks: &ChunkStores,
    id: Principal,
) -> Result<CanisterStatus, ManagementReject> {
    let controllers = ic
        .controllers(id)
        .ok_or(CallError::CanisterNotFound(id))?
        .to_vec();
    let heap = ic.heap_size(id).unwrap_or(0);
    let stable = ic.stable_memory_size(id).unwrap_or(0);
    let chunk_bytes: usize = chunks
        .stores
        .get(&id)
        .map_or(0, |s| s.values().map(Vec::len).sum());
    let nat = |v: u64| Nat::from(v);
    Ok(CanisterStatus {
        status: if ic.is_stopped(id) == Some(true) {
            CanisterStatusType::Stopped
        } else {
            CanisterStatusType::Running
        },
        ready_for_migration: false,
        version: ic.canister_version(id).unwrap_or(0),
        settings: StatusSettings {
            controllers,
            compute_allocation: nat(0),
            memory_allocation: nat(0),
            freezing_threshold: nat(2_592_000),
            reserved_cycles_limit: nat(5_000_000_000_000),
            log_visibility: LogVisibility::Controllers,
            log_memory_limit: nat(4096),
            snapshot_visibility: SnapshotVisibility::Controllers,
            status_visibility: SnapshotVisibility::Controllers,
            wasm_memory_limit: nat(3 << 30),
            wasm_memory_threshold: nat(0),
            minimum_incoming_canister_call_cycles: nat(0),
            environment_variables: ic
                .env_vars(id)
                .into_iter()
                .map(|(name, value)| EnvironmentVariable { name, value })
                .collect(),
        },
        module_hash: ic.module_hash(id).map(|h| h.to_vec()),
        memory_size: nat(heap + stable + chunk_bytes as u64),
        memory_metrics: MemoryMetrics {
            wasm_memory_size: nat(heap),
            stable_memory_size: nat(stable),
            global_memory_size: nat(0),
            wasm_binary_size: nat(0),
            custom_sections_size: nat(0),
            canister_history_size: nat(0),
            wasm_chunk_store_size: nat(chunk_bytes as u64),
            snapshots_size: nat(0),
            log_memory_store_size: nat(0),
        },
        cycles: Nat::from(ic.cycle_balance(id).unwrap_or(0)),
        reserved_cycles: nat(0),
        idle_cycles_burned_per_day: nat(0),
        query_stats: QueryStats {
            num_calls_total: nat(0),
            num_instructions_total: nat(0),
            request_payload_bytes_total: nat(0),
            response_payload_bytes_total: nat(0),
        },
    })
}

fn nat_u128(n: &Nat) -> u128 {
    u128::try_from(n.0.clone()).unwrap_or(u128::MAX)
}
