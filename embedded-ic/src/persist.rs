//! Saving a host to a directory and restarting it from there.
//!
//! Saving is the first half of an upgrade and loading the second: `save` runs
//! `canister_pre_upgrade` (so the canister moves what it must keep into stable
//! memory), writes stable memory as it is then, and rolls the live canister back so
//! the saved host carries on undisturbed. `load` creates a fresh instance of the
//! same module, restores stable memory and system state, and runs
//! `canister_post_upgrade` with the canister's restart argument. The heap is never
//! saved: a canister that survives an upgrade survives a save and load, and one
//! that does not is caught here just as on the IC. As with an upgrade, the global
//! timer is cleared before `canister_post_upgrade`, which re-arms it (the value at
//! save is recorded in the manifest for inspection only).
//!
//! Layout of the directory:
//! - `manifest.json`: time, canister ids, controllers, cycles, certified data, timer,
//!   version, restart argument, environment variables, module hash, stable size;
//! - `wasm/<sha256>.wasm`: each module once;
//! - `stable/<canister id>.<generation>.bin` (`stable/<canister id>.bin` before
//!   generations): the pages of stable memory that hold data, each as an 8-byte
//!   little-endian page index followed by the 65,536 bytes of the page.
//!
//! A save is crash-safe: every file is written under a new name and synced, and the
//! manifest, renamed into place last, is the commit point; files of older generations are
//! removed after it. A process killed at any moment leaves the previous save or the new
//! one, never a mix.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use candid::Principal;
use serde::{Deserialize, Serialize};

use crate::embedded_ic::{Canister, Config, EmbeddedIc};
use crate::error::{CallError, PersistError};
use crate::host::SystemState;
use crate::instance::LiveInstance;
use crate::message::{MessageContext, MessageKind};
use crate::module::{runtime, wasm_hash};
use crate::stable::{pages_for, StableMemory, PAGE_SIZE};

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: u32,
    /// Incremented by every save; names its stable files (0: a save before generations).
    #[serde(default)]
    generation: u64,
    time_ns: u64,
    next_index: u64,
    canisters: Vec<SavedCanister>,
}

#[derive(Serialize, Deserialize)]
struct SavedCanister {
    id: String,
    controllers: Vec<String>,
    /// Decimal: a u128 does not fit a JSON number.
    cycles: String,
    module_hash: Option<String>,
    certified_data: String,
    global_timer_at_save: u64,
    version: u64,
    restart_arg: String,
    env_vars: BTreeMap<String, String>,
    stable_pages: u64,
    /// The stable memory file under `stable/` (absent: `<id>.bin`, before generations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stable_file: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    stopped: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(what: impl std::fmt::Display) -> PersistError {
    PersistError::Corrupt(what.to_string())
}

impl EmbeddedIc {
    /// Writes every canister's module, stable memory (after `canister_pre_upgrade`)
    /// and system state, and the clock, to `dir` (created if needed).
    pub fn save(&mut self, dir: impl AsRef<Path>) -> Result<(), PersistError> {
        let dir = dir.as_ref();
        for sub in ["wasm", "stable"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(io_err(&path))?;
        }
        let generation = std::fs::read(dir.join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
            .map_or(1, |m| m.generation + 1);
        let limit = self.config.limits.install;
        let mut saved = Vec::new();
        for (&id, canister) in self.canisters.iter_mut() {
            canister.sys.time = self.time;
            let stable_file = format!("{}.{generation}.bin", id.to_text());
            let stable_path = dir.join("stable").join(&stable_file);
            let sys = &mut canister.sys;
            let (module_hash, stable_pages) = match canister.live.as_mut() {
                None => (None, write_stable(&stable_path, &sys.stable)?),
                Some(live) => {
                    let wasm_path = dir
                        .join("wasm")
                        .join(format!("{}.wasm", hex::encode(live.prepared.hash)));
                    if !wasm_path.exists() {
                        write_synced(&wasm_path, live.prepared.wasm.as_slice())?;
                    }
                    let snapshot = live.snapshot(sys);
                    let mut failure = None;
                    if live.exports("canister_pre_upgrade") {
                        let sender = sys
                            .controllers
                            .first()
                            .copied()
                            .unwrap_or_else(Principal::anonymous);
                        let ctx =
                            MessageContext::new(MessageKind::PreUpgrade, sender, "", Vec::new());
                        let exec = live.call(sys, "canister_pre_upgrade", ctx, limit);
                        if let Err(stop) = exec.outcome {
                            failure = Some(stop_to_error(id, stop, limit, exec.instructions));
                        }
                    }
                    let written = if failure.is_none() {
                        Some(write_stable(&stable_path, &sys.stable))
                    } else {
                        None
                    };
                    live.rollback(sys, snapshot);
                    if let Some(error) = failure {
                        return Err(PersistError::Canister {
                            canister: id,
                            stage: "run canister_pre_upgrade for save",
                            error,
                        });
                    }
                    let pages = written.expect("written when pre_upgrade succeeded")?;
                    (Some(hex::encode(live.prepared.hash)), pages)
                }
            };
            saved.push(SavedCanister {
                id: id.to_text(),
                controllers: sys.controllers.iter().map(Principal::to_text).collect(),
                cycles: sys.cycles.to_string(),
                module_hash,
                certified_data: hex::encode(&sys.certified_data),
                global_timer_at_save: sys.global_timer,
                version: sys.version,
                restart_arg: hex::encode(&canister.restart_arg),
                env_vars: sys.env_vars.clone(),
                // The size after pre_upgrade: what the stable file holds.
                stable_pages,
                stable_file: Some(stable_file),
                stopped: sys.stopped,
            });
        }
        let keep: std::collections::BTreeSet<String> =
            saved.iter().filter_map(|c| c.stable_file.clone()).collect();
        let manifest = Manifest {
            format: FORMAT,
            generation,
            time_ns: self.time,
            next_index: self.next_index,
            canisters: saved,
        };
        let path = dir.join("manifest.json");
        let json = serde_json::to_vec_pretty(&manifest).map_err(corrupt)?;
        write_synced(&path, &json)?;
        // The new manifest is in place: the older generations' files are garbage.
        if let Ok(entries) = std::fs::read_dir(dir.join("stable")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !keep.contains(&name) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Restarts a saved host with the default [`Config`]; see [`load_with_config`](Self::load_with_config).
    pub fn load(dir: impl AsRef<Path>) -> Result<EmbeddedIc, PersistError> {
        Self::load_with_config(dir, Config::default())
    }

    /// Restarts a saved host: each canister gets a fresh instance of its module, its
    /// stable memory and system state back, and `canister_post_upgrade` with its
    /// restart argument (the heap starts afresh, as after an upgrade).
    pub fn load_with_config(
        dir: impl AsRef<Path>,
        config: Config,
    ) -> Result<EmbeddedIc, PersistError> {
        let dir = dir.as_ref();
        let path = dir.join("manifest.json");
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(corrupt)?;
        if manifest.format != FORMAT {
            return Err(corrupt(format!(
                "format {} is not {FORMAT}",
                manifest.format
            )));
        }
        let mut ic = EmbeddedIc::with_config(config);
        ic.time = manifest.time_ns;
        ic.next_index = manifest.next_index;
        let limit = ic.config.limits.install;
        for saved in manifest.canisters {
            let principal = |text: &str| {
                Principal::from_text(text).map_err(|e| corrupt(format!("principal {text}: {e}")))
            };
            let id = principal(&saved.id)?;
            let stable_file = saved
                .stable_file
                .clone()
                .unwrap_or_else(|| format!("{}.bin", saved.id));
            if stable_file.contains(['/', '\\']) || stable_file.starts_with('.') {
                return Err(corrupt(format!("stable file name {stable_file:?}")));
            }
            let stable_path = dir.join("stable").join(stable_file);
            let stable = read_stable(&stable_path, saved.stable_pages)?;
            let sys = SystemState {
                id,
                controllers: saved
                    .controllers
                    .iter()
                    .map(|c| principal(c))
                    .collect::<Result<_, _>>()?,
                cycles: saved.cycles.parse().map_err(corrupt)?,
                stable,
                stable_max_pages: pages_for(ic.config.stable_memory_max_bytes),
                certified_data: hex::decode(&saved.certified_data).map_err(corrupt)?,
                global_timer: 0,
                version: saved.version,
                logs: Vec::new(),
                env_vars: saved.env_vars,
                time: ic.time,
                root_key: ic.issuer.root_key(),
                stopped: saved.stopped,
            };
            let restart_arg = hex::decode(&saved.restart_arg).map_err(corrupt)?;
            let mut canister = Canister {
                sys,
                live: None,
                restart_arg: restart_arg.clone(),
            };
            if let Some(hash) = saved.module_hash {
                let wasm_path = dir.join("wasm").join(format!("{hash}.wasm"));
                let wasm = std::fs::read(&wasm_path).map_err(io_err(&wasm_path))?;
                if hex::encode(wasm_hash(&wasm)) != hash {
                    return Err(corrupt(format!(
                        "{} does not hash to its name",
                        wasm_path.display()
                    )));
                }
                let prepared = runtime()
                    .prepare(&wasm, ic.config.module_cache_dir.as_deref())
                    .map_err(|error| PersistError::Canister {
                        canister: id,
                        stage: "load its module",
                        error,
                    })?;
                let fail = |error| PersistError::Canister {
                    canister: id,
                    stage: "restart through canister_post_upgrade",
                    error,
                };
                let (mut live, used) = LiveInstance::new(prepared, limit)
                    .map_err(|stop| fail(stop_to_error(id, stop, limit, 0)))?;
                if live.exports("canister_post_upgrade") {
                    let sender = canister
                        .sys
                        .controllers
                        .first()
                        .copied()
                        .unwrap_or_else(Principal::anonymous);
                    let ctx =
                        MessageContext::new(MessageKind::PostUpgrade, sender, "", restart_arg);
                    let exec = live.call(
                        &mut canister.sys,
                        "canister_post_upgrade",
                        ctx,
                        limit - used,
                    );
                    if let Err(stop) = exec.outcome {
                        return Err(fail(stop_to_error(
                            id,
                            stop,
                            limit,
                            used + exec.instructions,
                        )));
                    }
                }
                canister.sys.version += 1;
                canister.live = Some(live);
            }
            ic.canisters.insert(id, canister);
        }
        Ok(ic)
    }
}

fn stop_to_error(
    id: Principal,
    stop: crate::instance::Stop,
    limit: u64,
    instructions: u64,
) -> CallError {
    match stop {
        crate::instance::Stop::Trap(message) => CallError::Trap {
            canister: id,
            message,
            instructions,
        },
        crate::instance::Stop::OutOfInstructions => CallError::InstructionLimit {
            canister: id,
            kind: "upgrade",
            limit,
            instructions,
        },
    }
}

/// Writes `bytes` to a temporary file, syncs it and renames it to `path`: a crash
/// leaves the old file or the new one.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    write_atomically(path, |out| out.write_all(bytes))
}

fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), PersistError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    let mut out = BufWriter::new(file);
    write(&mut out).map_err(io_err(&tmp))?;
    let file = out.into_inner().map_err(|e| PersistError::Io {
        path: tmp.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// File layout: 8-byte little-endian size in pages, then (index, page) records.
/// Returns the size in pages.
fn write_stable(path: &Path, stable: &StableMemory) -> Result<u64, PersistError> {
    write_atomically(path, |out| {
        out.write_all(&stable.size_pages().to_le_bytes())?;
        for (index, page) in stable.allocated_pages() {
            out.write_all(&index.to_le_bytes())?;
            out.write_all(page)?;
        }
        Ok(())
    })?;
    Ok(stable.size_pages())
}

fn read_stable(path: &PathBuf, expected_pages: u64) -> Result<StableMemory, PersistError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let (size, mut rest) = bytes
        .split_at_checked(8)
        .ok_or_else(|| corrupt(format!("{} is truncated", path.display())))?;
    let size = u64::from_le_bytes(size.try_into().expect("8 bytes"));
    if size != expected_pages {
        return Err(corrupt(format!(
            "{} holds {size} pages, the manifest says {expected_pages}",
            path.display()
        )));
    }
    let record = 8 + PAGE_SIZE as usize;
    if rest.len() % record != 0 {
        return Err(corrupt(format!("{} is truncated", path.display())));
    }
    let mut pages = Vec::with_capacity(rest.len() / record);
    while !rest.is_empty() {
        let (head, tail) = rest.split_at(record);
        let index = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        pages.push((index, head[8..].to_vec()));
        rest = tail;
    }
    StableMemory::from_pages(size, pages)
        .ok_or_else(|| corrupt(format!("{} has a page out of range", path.display())))
}
