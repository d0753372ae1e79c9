//! [`EmbeddedIc`]: a one-subnet world of canisters, a clock, and the calls between
//! the host and them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use candid::utils::ArgumentEncoder;
use candid::{CandidType, Principal};
use serde::de::DeserializeOwned;

use crate::certificate::{BlsCertificateIssuer, CertificateIssuer};
use crate::error::CallError;
use crate::host::SystemState;
use crate::instance::{Exec, LiveInstance, Stop};
use crate::message::{MessageContext, MessageKind, OutgoingCall, Response};
use crate::module::{runtime, Prepared};
use crate::stable::pages_for;

/// Instruction limits per kind of message (IC figures by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstructionLimits {
    /// Update calls and timers: 40 B. Deterministic time slicing (2 B per slice)
    /// is modelled as one long message.
    pub update: u64,
    /// Queries: 5 B.
    pub query: u64,
    /// Install, reinstall and upgrade (start + init, or pre + post upgrade): 300 B.
    pub install: u64,
    /// `canister_inspect_message`: 200 M.
    pub inspect_message: u64,
}

impl Default for InstructionLimits {
    fn default() -> Self {
        InstructionLimits {
            update: 40_000_000_000,
            query: 5_000_000_000,
            install: 300_000_000_000,
            inspect_message: 200_000_000,
        }
    }
}

/// Settings of a host.
#[derive(Debug, Clone)]
pub struct Config {
    pub limits: InstructionLimits,
    /// Stable memory a canister may grow to (default 500 GiB, as on the IC; pages
    /// never written take no host memory).
    pub stable_memory_max_bytes: u64,
    /// The clock at creation, in nanoseconds since the Unix epoch.
    pub start_time_ns: u64,
    /// Cycle balance of a new canister.
    pub initial_cycles: u128,
    /// Where compiled modules are cached across processes (`None`: memory only).
    pub module_cache_dir: Option<PathBuf>,
    /// Seed of the bytes the management canister's `raw_rand` returns (`None`: drawn
    /// from the operating system, unpredictable like the IC's). A seed makes a run
    /// reproducible, and its randomness predictable to whoever knows the seed.
    pub randomness_seed: Option<[u8; 32]>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: InstructionLimits::default(),
            stable_memory_max_bytes: 500 << 30,
            // 2025-01-01T00:00:00Z: a fixed start keeps runs reproducible.
            start_time_ns: 1_735_689_600_000_000_000,
            initial_cycles: 100_000_000_000_000,
            module_cache_dir: None,
            randomness_seed: None,
        }
    }
}

/// How `install_code` treats existing code and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallMode {
    /// First install: the canister must be empty.
    Install,
    /// Replace code and wipe heap, stable memory, certified data and timer; runs
    /// `canister_init`.
    Reinstall,
    /// `canister_pre_upgrade` on the old instance, then a fresh instance of the new
    /// module and `canister_post_upgrade` with the argument. Stable memory and
    /// certified data are kept; the heap starts afresh; the timer is cleared.
    Upgrade,
}

/// A successful call: the reply bytes and the instructions the message used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutcome {
    pub reply: Vec<u8>,
    pub instructions: u64,
}

/// A system task the host ran on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemTask {
    GlobalTimer,
    Heartbeat,
}

/// The result of one system task run by [`EmbeddedIc::tick`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerOutcome {
    pub canister: Principal,
    pub task: SystemTask,
    pub result: Result<CallOutcome, CallError>,
}

pub(crate) struct Canister {
    pub sys: SystemState,
    pub live: Option<LiveInstance>,
    /// Argument given to `canister_post_upgrade` when the host restarts the
    /// canister from saved state: the last upgrade's argument, or empty Candid.
    pub restart_arg: Vec<u8>,
}

/// Empty Candid arguments, `()`.
pub(crate) fn empty_candid() -> Vec<u8> {
    candid::encode_args(()).expect("encoding () cannot fail")
}

/// A tiny one-subnet Internet Computer in this process.
pub struct EmbeddedIc {
    pub(crate) config: Config,
    pub(crate) time: u64,
    pub(crate) next_index: u64,
    pub(crate) canisters: BTreeMap<Principal, Canister>,
    pub(crate) issuer: Box<dyn CertificateIssuer>,
    /// Ids `create_canister` never hands out (a devnet's system canisters).
    pub(crate) reserved: std::collections::BTreeSet<Principal>,
    /// `raw_rand`'s key and how many answers it has given.
    pub(crate) randomness: ([u8; 32], u64),
}

impl Default for EmbeddedIc {
    fn default() -> Self {
        Self::new()
    }
}

/// The id of the `index`-th canister, in the IC's format (8-byte big-endian
/// index, then `0x01 0x01`).
fn canister_id(index: u64) -> Principal {
    let mut bytes = [0u8; 10];
    bytes[..8].copy_from_slice(&index.to_be_bytes());
    bytes[8] = 1;
    bytes[9] = 1;
    Principal::from_slice(&bytes)
}

impl EmbeddedIc {
    /// A host with the IC's limits and the BLS test-root-key certificate issuer.
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> Self {
        let key = config.randomness_seed.unwrap_or_else(rand::random);
        EmbeddedIc {
            randomness: (key, 0),
            time: config.start_time_ns,
            config,
            next_index: 0,
            canisters: BTreeMap::new(),
            issuer: Box::new(BlsCertificateIssuer::test_root()),
            reserved: Default::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Changes the instruction limits for the messages that follow (tests use a low limit
    /// to stop a message in the middle, as a trap would).
    pub fn set_instruction_limits(&mut self, limits: InstructionLimits) {
        self.config.limits = limits;
    }

    /// Replaces the issuer of the certificates queries see (and of the root key).
    pub fn set_certificate_issuer(&mut self, issuer: Box<dyn CertificateIssuer>) {
        let root_key = issuer.root_key();
        for canister in self.canisters.values_mut() {
            canister.sys.root_key = root_key.clone();
        }
        self.issuer = issuer;
    }

    /// The root key (DER) the host's certificates verify against: what `fetch_root_key`
    /// returns from a local replica.
    pub fn root_key(&self) -> Vec<u8> {
        self.issuer.root_key()
    }

    // --- time -------------------------------------------------------------------------

    /// Current time in nanoseconds since the Unix epoch.
    pub fn time(&self) -> u64 {
        self.time
    }

    /// Sets the clock, then runs due timers (see [`tick`](Self::tick)).
    ///
    /// # Panics
    /// If `ns` is before the current time: the IC's clock is monotone.
    pub fn set_time(&mut self, ns: u64) -> Vec<TimerOutcome> {
        assert!(
            ns >= self.time,
            "time must not go backwards ({ns} < {})",
            self.time
        );
        self.time = ns;
        self.tick()
    }

    /// Moves the clock forward by `by`, then runs due timers.
    pub fn advance_time(&mut self, by: Duration) -> Vec<TimerOutcome> {
        let by = u64::try_from(by.as_nanos()).expect("a duration that fits in u64 nanoseconds");
        self.set_time(
            self.time
                .checked_add(by)
                .expect("time overflows u64 nanoseconds"),
        )
    }

    /// One round: each canister whose global timer is due has it deactivated and
    /// `canister_global_timer` run; each canister exporting `canister_heartbeat`
    /// has it run. A timer re-armed for a time already passed fires next round.
    pub fn tick(&mut self) -> Vec<TimerOutcome> {
        let mut outcomes = Vec::new();
        let mut sent: Vec<(Principal, Vec<OutgoingCall>)> = Vec::new();
        let time = self.time;
        let limit = self.config.limits.update;
        for (&id, canister) in self.canisters.iter_mut() {
            let Some(live) = canister.live.as_mut() else {
                continue;
            };
            canister.sys.time = time;
            if canister.sys.stopped {
                continue;
            }
            let timer = canister.sys.global_timer;
            if timer != 0 && timer <= time {
                canister.sys.global_timer = 0;
                if live.exports("canister_global_timer") {
                    let (result, calls) = run_system_task(
                        id,
                        live,
                        &mut canister.sys,
                        MessageKind::GlobalTimer,
                        limit,
                    );
                    sent.push((id, calls));
                    outcomes.push(TimerOutcome {
                        canister: id,
                        task: SystemTask::GlobalTimer,
                        result,
                    });
                }
            }
            if live.exports("canister_heartbeat") {
                let (result, calls) =
                    run_system_task(id, live, &mut canister.sys, MessageKind::Heartbeat, limit);
                sent.push((id, calls));
                outcomes.push(TimerOutcome {
                    canister: id,
                    task: SystemTask::Heartbeat,
                    result,
                });
            }
        }
        for (id, calls) in sent {
            self.deliver_calls(id, calls);
        }
        outcomes
    }

    // --- canisters -------------------------------------------------------------------------

    /// Creates an empty canister with these controllers and the configured balance.
    pub fn create_canister(&mut self, controllers: Vec<Principal>) -> Principal {
        let mut id = canister_id(self.next_index);
        self.next_index += 1;
        // Skip ids taken by `create_canister_with_id`, and reserved ones.
        while self.canisters.contains_key(&id) || self.reserved.contains(&id) {
            id = canister_id(self.next_index);
            self.next_index += 1;
        }
        self.insert_canister(id, controllers);
        id
    }

    /// Creates an empty canister under a chosen id (the management canister's
    /// `specified_id`, as on a local replica).
    pub fn create_canister_with_id(
        &mut self,
        id: Principal,
        controllers: Vec<Principal>,
    ) -> Result<Principal, CallError> {
        if self.canisters.contains_key(&id) {
            return Err(CallError::CanisterExists(id));
        }
        self.insert_canister(id, controllers);
        Ok(id)
    }

    fn insert_canister(&mut self, id: Principal, controllers: Vec<Principal>) {
        let sys = SystemState {
            id,
            controllers,
            cycles: self.config.initial_cycles,
            stable_max_pages: pages_for(self.config.stable_memory_max_bytes),
            root_key: self.issuer.root_key(),
            ..SystemState::default()
        };
        self.canisters.insert(
            id,
            Canister {
                sys,
                live: None,
                restart_arg: empty_candid(),
            },
        );
    }

    /// Keeps `create_canister` from handing out these ids (for canisters a host answers
    /// itself, such as a devnet's cycles ledger).
    pub fn reserve_canister_ids(&mut self, ids: impl IntoIterator<Item = Principal>) {
        self.reserved.extend(ids);
    }

    /// The installed module's custom sections (name, contents), in order (`None`
    /// without code); e.g. `icp:public candid:service`.
    pub fn custom_sections(&self, id: Principal) -> Option<&[(String, Vec<u8>)]> {
        let live = self.canisters.get(&id)?.live.as_ref()?;
        Some(&live.prepared.custom_sections)
    }

    /// Stops a canister: calls to it fail with [`CallError::CanisterStopped`] and its
    /// timer does not fire until [`start_canister`](Self::start_canister).
    pub fn stop_canister(&mut self, id: Principal) -> Result<(), CallError> {
        self.canister_mut(id)?.sys.stopped = true;
        Ok(())
    }

    pub fn start_canister(&mut self, id: Principal) -> Result<(), CallError> {
        self.canister_mut(id)?.sys.stopped = false;
        Ok(())
    }

    pub fn is_stopped(&self, id: Principal) -> Option<bool> {
        self.canisters.get(&id).map(|c| c.sys.stopped)
    }

    /// Deletes a stopped canister with its code, memory and state.
    pub fn delete_canister(&mut self, id: Principal) -> Result<(), CallError> {
        match self.canisters.get(&id) {
            None => Err(CallError::CanisterNotFound(id)),
            Some(c) if !c.sys.stopped => Err(CallError::NotStopped(id)),
            Some(_) => {
                self.canisters.remove(&id);
                Ok(())
            }
        }
    }

    /// Removes the code, heap, stable memory, certified data and timer; the canister
    /// stays, empty, with its controllers and cycles.
    pub fn uninstall_code(&mut self, id: Principal) -> Result<(), CallError> {
        let canister = self.canister_mut(id)?;
        canister.live = None;
        canister.sys.stable = Default::default();
        canister.sys.certified_data.clear();
        canister.sys.global_timer = 0;
        canister.sys.version += 1;
        canister.restart_arg = empty_candid();
        Ok(())
    }

    fn canister_mut(&mut self, id: Principal) -> Result<&mut Canister, CallError> {
        let time = self.time;
        let canister = self
            .canisters
            .get_mut(&id)
            .ok_or(CallError::CanisterNotFound(id))?;
        canister.sys.time = time;
        Ok(canister)
    }

    /// Installs, reinstalls or upgrades `wasm` with `arg` as `sender`, who must be
    /// a controller. The module is checked and compiled first (once per process),
    /// so a module with unprovided imports fails here with their names. All of the
    /// install is one transaction: on any failure the canister is as before.
    pub fn install_code(
        &mut self,
        id: Principal,
        wasm: &[u8],
        arg: Vec<u8>,
        mode: InstallMode,
        sender: Principal,
    ) -> Result<CallOutcome, CallError> {
        let limit = self.config.limits.install;
        let cache_dir = self.config.module_cache_dir.clone();
        let canister = self.canister_mut(id)?;
        if !canister.sys.controllers.contains(&sender) {
            return Err(CallError::NotController {
                canister: id,
                sender,
            });
        }
        match (mode, canister.live.is_some()) {
            (InstallMode::Install, true) => return Err(CallError::CodeAlreadyInstalled(id)),
            (InstallMode::Upgrade, false) => return Err(CallError::NoCode(id)),
            _ => {}
        }
        let prepared = runtime().prepare(wasm, cache_dir.as_deref())?;
        match mode {
            InstallMode::Install | InstallMode::Reinstall => {
                install_fresh(canister, prepared, arg, sender, limit)
            }
            InstallMode::Upgrade => upgrade(canister, prepared, arg, sender, limit),
        }
    }

    /// An ingress update call: `canister_inspect_message` (if exported) may refuse
    /// it, then `canister_update <method>` runs and commits unless it traps or runs
    /// out of instructions. A query method called this way runs replicated and its
    /// changes are dropped, as on the IC.
    pub fn update(
        &mut self,
        id: Principal,
        sender: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<CallOutcome, CallError> {
        let limits = self.config.limits;
        let canister = self.canister_mut(id)?;
        if canister.sys.stopped {
            return Err(CallError::CanisterStopped(id));
        }
        let live = canister.live.as_mut().ok_or(CallError::NoCode(id))?;
        let sys = &mut canister.sys;
        let (export, kind) = if live.exports(&format!("canister_update {method}")) {
            (format!("canister_update {method}"), MessageKind::Update)
        } else if live.exports(&format!("canister_query {method}")) {
            (
                format!("canister_query {method}"),
                MessageKind::ReplicatedQuery,
            )
        } else {
            return Err(CallError::MethodNotFound {
                canister: id,
                kind: "update",
                method: method.to_string(),
            });
        };

        if live.exports("canister_inspect_message") {
            let snapshot = live.snapshot(sys);
            let ctx = MessageContext::new(MessageKind::InspectMessage, sender, method, arg.clone());
            let exec = live.call(sys, "canister_inspect_message", ctx, limits.inspect_message);
            live.rollback(sys, snapshot);
            let refusal = match exec.outcome {
                Err(Stop::Trap(message)) => {
                    log_trap(sys, &message);
                    Some(message)
                }
                Err(Stop::OutOfInstructions) => Some(format!(
                    "canister_inspect_message exceeded the instruction limit of {}",
                    limits.inspect_message
                )),
                Ok(()) if !exec.ctx.accepted => {
                    Some("canister_inspect_message did not call ic0.accept_message".to_string())
                }
                Ok(()) => None,
            };
            if let Some(message) = refusal {
                return Err(CallError::InspectRejected {
                    canister: id,
                    message,
                    instructions: exec.instructions,
                });
            }
        }

        let snapshot = live.snapshot(sys);
        let ctx = MessageContext::new(kind, sender, method, arg);
        let mut exec = live.call(sys, &export, ctx, limits.update);
        let mut calls = Vec::new();
        if exec.outcome.is_ok() && kind == MessageKind::Update {
            LiveInstance::commit(sys, snapshot);
            sys.version += 1;
            calls = std::mem::take(&mut exec.ctx.calls);
        } else {
            live.rollback(sys, snapshot);
        }
        let outcome = finish(id, sys, kind, limits.update, exec);
        self.deliver_calls(id, calls);
        outcome
    }

    /// Answers the calls a canister's committed message made, at once and in order, and
    /// runs their callbacks (and the calls those make). The management canister's
    /// `raw_rand` replies with 32 bytes; every other call is rejected, as a call to a
    /// canister this host does not model. A callback that traps is rolled back and its
    /// cleanup callback, if any, runs; failures are logged, as the IC does.
    fn deliver_calls(&mut self, id: Principal, calls: Vec<OutgoingCall>) {
        let limit = self.config.limits.update;
        let mut queue: std::collections::VecDeque<OutgoingCall> = calls.into();
        while let Some(call) = queue.pop_front() {
            let answer = self.answer(&call);
            let time = self.time;
            let Some(canister) = self.canisters.get_mut(&id) else {
                return;
            };
            canister.sys.time = time;
            let (Some(live), sys) = (canister.live.as_mut(), &mut canister.sys) else {
                return;
            };
            // What the call took from the balance comes back: the callee takes none.
            sys.cycles += call.cycles;
            let (kind, callback, arg, reject) = match answer {
                Ok(reply) => (MessageKind::ReplyCallback, call.reply, reply, None),
                Err(reject) => (
                    MessageKind::RejectCallback,
                    call.reject,
                    Vec::new(),
                    Some(reject),
                ),
            };
            let mut ctx = MessageContext::new(kind, call.callee, "", arg);
            ctx.reject = reject;
            let snapshot = live.snapshot(sys);
            let mut exec = live.call_callback(sys, callback, ctx, limit);
            match exec.outcome {
                Ok(()) => {
                    LiveInstance::commit(sys, snapshot);
                    sys.version += 1;
                    queue.extend(std::mem::take(&mut exec.ctx.calls));
                }
                Err(stop) => {
                    live.rollback(sys, snapshot);
                    log_trap(sys, &format!("in the {}: {stop:?}", kind.name()));
                    if let Some(cleanup) = call.cleanup {
                        let ctx =
                            MessageContext::new(MessageKind::Cleanup, call.callee, "", Vec::new());
                        let snapshot = live.snapshot(sys);
                        let exec = live.call_callback(sys, cleanup, ctx, limit);
                        if let Err(stop) = exec.outcome {
                            live.rollback(sys, snapshot);
                            log_trap(sys, &format!("in the cleanup callback: {stop:?}"));
                        } else {
                            LiveInstance::commit(sys, snapshot);
                            sys.version += 1;
                        }
                    }
                }
            }
        }
    }

    /// The callee's answer to `call`: reply bytes, or a reject code and message.
    fn answer(&mut self, call: &OutgoingCall) -> Result<Vec<u8>, (u32, String)> {
        /// The IC's reject codes: a destination that cannot be reached, a canister error.
        const DESTINATION_INVALID: u32 = 3;
        const CANISTER_ERROR: u32 = 5;
        if call.callee != Principal::management_canister() {
            return Err((
                DESTINATION_INVALID,
                format!(
                    "the embedded IC models no inter-canister calls but the management canister's raw_rand (called {}.{})",
                    call.callee, call.method
                ),
            ));
        }
        match call.method.as_str() {
            "raw_rand" => {
                if candid::decode_args::<()>(&call.arg).is_err() {
                    return Err((CANISTER_ERROR, "raw_rand takes no arguments".into()));
                }
                let (key, counter) = &mut self.randomness;
                use sha2::Digest;
                let mut h = sha2::Sha256::new();
                h.update(b"flic/embedded-ic/raw_rand");
                h.update(*key);
                h.update(counter.to_le_bytes());
                *counter += 1;
                let bytes: [u8; 32] = h.finalize().into();
                // `blob` on the wire is `vec nat8`.
                Ok(candid::encode_one(bytes.to_vec()).expect("a blob encodes"))
            }
            other => Err((
                DESTINATION_INVALID,
                format!("the embedded IC's management canister answers raw_rand only, not {other}"),
            )),
        }
    }

    /// A query call: `canister_query <method>` (or a composite query, run without
    /// calls) with a data certificate available; nothing it does is kept.
    pub fn query(
        &mut self,
        id: Principal,
        sender: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<CallOutcome, CallError> {
        let limit = self.config.limits.query;
        let time = self.time;
        let certificate_of =
            |sys: &SystemState| self.issuer.certificate(id, &sys.certified_data, time);
        let canister = self
            .canisters
            .get_mut(&id)
            .ok_or(CallError::CanisterNotFound(id))?;
        canister.sys.time = time;
        if canister.sys.stopped {
            return Err(CallError::CanisterStopped(id));
        }
        let live = canister.live.as_mut().ok_or(CallError::NoCode(id))?;
        let sys = &mut canister.sys;
        let export = [
            format!("canister_query {method}"),
            format!("canister_composite_query {method}"),
        ]
        .into_iter()
        .find(|e| live.exports(e))
        .ok_or_else(|| CallError::MethodNotFound {
            canister: id,
            kind: "query",
            method: method.to_string(),
        })?;
        let mut ctx = MessageContext::new(MessageKind::Query, sender, method, arg);
        ctx.certificate = Some(certificate_of(sys));
        let snapshot = live.snapshot(sys);
        let exec = live.call(sys, &export, ctx, limit);
        live.rollback(sys, snapshot);
        finish(id, sys, MessageKind::Query, limit, exec)
    }

    /// [`update`](Self::update) with Candid arguments and a Candid reply.
    pub fn update_candid<A: ArgumentEncoder, R: CandidType + DeserializeOwned>(
        &mut self,
        id: Principal,
        sender: Principal,
        method: &str,
        args: A,
    ) -> Result<R, CallError> {
        let arg = candid::encode_args(args).map_err(|e| CallError::Candid(e.to_string()))?;
        let out = self.update(id, sender, method, arg)?;
        candid::decode_one(&out.reply).map_err(|e| CallError::Candid(e.to_string()))
    }

    /// [`query`](Self::query) with Candid arguments and a Candid reply.
    pub fn query_candid<A: ArgumentEncoder, R: CandidType + DeserializeOwned>(
        &mut self,
        id: Principal,
        sender: Principal,
        method: &str,
        args: A,
    ) -> Result<R, CallError> {
        let arg = candid::encode_args(args).map_err(|e| CallError::Candid(e.to_string()))?;
        let out = self.query(id, sender, method, arg)?;
        candid::decode_one(&out.reply).map_err(|e| CallError::Candid(e.to_string()))
    }

    // --- inspection and settings ---------------------------------------------------------------

    /// Ids of all canisters, in creation order.
    pub fn canister_ids(&self) -> Vec<Principal> {
        self.canisters.keys().copied().collect()
    }

    /// Everything the canister printed with `ic0.debug_print`, plus one
    /// `[TRAP]: ...` line per trap, kept even when the message was rolled back.
    /// Empty for an unknown canister.
    pub fn logs(&self, id: Principal) -> &[String] {
        self.canisters
            .get(&id)
            .map_or(&[], |c| c.sys.logs.as_slice())
    }

    /// The certified data last committed with `ic0.certified_data_set`.
    pub fn certified_data(&self, id: Principal) -> Option<&[u8]> {
        self.canisters
            .get(&id)
            .map(|c| c.sys.certified_data.as_slice())
    }

    /// Stable memory size in bytes.
    pub fn stable_memory_size(&self, id: Principal) -> Option<u64> {
        self.canisters.get(&id).map(|c| c.sys.stable.size_bytes())
    }

    /// Reads committed stable memory (for tests and tools).
    pub fn read_stable_memory(&self, id: Principal, offset: u64, len: usize) -> Option<Vec<u8>> {
        let canister = self.canisters.get(&id)?;
        let mut buf = vec![0u8; len];
        canister.sys.stable.read(offset, &mut buf).ok()?;
        Some(buf)
    }

    /// Heap (wasm memory) size in bytes; `None` without code.
    pub fn heap_size(&mut self, id: Principal) -> Option<u64> {
        Some(self.canisters.get_mut(&id)?.live.as_mut()?.heap_size())
    }

    /// The global timer (0 when inactive).
    pub fn global_timer(&self, id: Principal) -> Option<u64> {
        self.canisters.get(&id).map(|c| c.sys.global_timer)
    }

    pub fn controllers(&self, id: Principal) -> Option<&[Principal]> {
        self.canisters
            .get(&id)
            .map(|c| c.sys.controllers.as_slice())
    }

    pub fn set_controllers(
        &mut self,
        id: Principal,
        controllers: Vec<Principal>,
    ) -> Result<(), CallError> {
        self.canister_mut(id)?.sys.controllers = controllers;
        Ok(())
    }

    pub fn cycle_balance(&self, id: Principal) -> Option<u128> {
        self.canisters.get(&id).map(|c| c.sys.cycles)
    }

    /// Sets the balance (cycles are not charged for execution; see the docs).
    pub fn set_cycle_balance(&mut self, id: Principal, cycles: u128) -> Result<(), CallError> {
        self.canister_mut(id)?.sys.cycles = cycles;
        Ok(())
    }

    /// Sets a canister environment variable (read with `ic0.env_var_*`).
    pub fn set_env_var(&mut self, id: Principal, name: &str, value: &str) -> Result<(), CallError> {
        self.canister_mut(id)?
            .sys
            .env_vars
            .insert(name.to_string(), value.to_string());
        Ok(())
    }

    /// The canister's environment variables, sorted by name (empty for an unknown canister).
    pub fn env_vars(&self, id: Principal) -> Vec<(String, String)> {
        self.canisters.get(&id).map_or_else(Vec::new, |c| {
            c.sys
                .env_vars
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    /// Incremented by every committed message and install, as `ic0.canister_version`.
    pub fn canister_version(&self, id: Principal) -> Option<u64> {
        self.canisters.get(&id).map(|c| c.sys.version)
    }

    /// SHA-256 of the installed module.
    pub fn module_hash(&self, id: Principal) -> Option<[u8; 32]> {
        self.canisters
            .get(&id)?
            .live
            .as_ref()
            .map(|l| l.prepared.hash)
    }

    /// The argument `canister_post_upgrade` gets when [`load`](Self::load) restarts
    /// this canister (default: the last upgrade's argument, or empty Candid).
    pub fn set_restart_arg(&mut self, id: Principal, arg: Vec<u8>) -> Result<(), CallError> {
        self.canister_mut(id)?.restart_arg = arg;
        Ok(())
    }
}

fn log_trap(sys: &mut SystemState, message: &str) {
    sys.logs.push(format!("[TRAP]: {message}"));
}

/// Turns the end of a message into the caller's result.
fn finish(
    id: Principal,
    sys: &mut SystemState,
    kind: MessageKind,
    limit: u64,
    exec: Exec,
) -> Result<CallOutcome, CallError> {
    let instructions = exec.instructions;
    match exec.outcome {
        Err(Stop::Trap(message)) => {
            log_trap(sys, &message);
            Err(CallError::Trap {
                canister: id,
                message,
                instructions,
            })
        }
        Err(Stop::OutOfInstructions) => Err(CallError::InstructionLimit {
            canister: id,
            kind: kind.name(),
            limit,
            instructions,
        }),
        Ok(()) => match exec.ctx.response {
            Some(Response::Reply) => Ok(CallOutcome {
                reply: exec.ctx.reply,
                instructions,
            }),
            Some(Response::Reject(message)) => Err(CallError::Reject {
                canister: id,
                message,
                instructions,
            }),
            None if matches!(
                kind,
                MessageKind::Update | MessageKind::ReplicatedQuery | MessageKind::Query
            ) =>
            {
                Err(CallError::DidNotReply {
                    canister: id,
                    instructions,
                })
            }
            None => Ok(CallOutcome {
                reply: Vec::new(),
                instructions,
            }),
        },
    }
}

fn run_system_task(
    id: Principal,
    live: &mut LiveInstance,
    sys: &mut SystemState,
    kind: MessageKind,
    limit: u64,
) -> (Result<CallOutcome, CallError>, Vec<OutgoingCall>) {
    let export = kind.name();
    let snapshot = live.snapshot(sys);
    // System tasks are not sent by anyone; the caller is the management canister.
    let ctx = MessageContext::new(kind, Principal::management_canister(), "", Vec::new());
    let mut exec = live.call(sys, export, ctx, limit);
    let mut calls = Vec::new();
    if exec.outcome.is_ok() {
        LiveInstance::commit(sys, snapshot);
        sys.version += 1;
        calls = std::mem::take(&mut exec.ctx.calls);
    } else {
        live.rollback(sys, snapshot);
    }
    (finish(id, sys, kind, limit, exec), calls)
}

fn stop_error(
    id: Principal,
    sys: &mut SystemState,
    kind: MessageKind,
    limit: u64,
    stop: Stop,
    instructions: u64,
) -> CallError {
    match stop {
        Stop::Trap(message) => {
            log_trap(sys, &message);
            CallError::Trap {
                canister: id,
                message,
                instructions,
            }
        }
        Stop::OutOfInstructions => CallError::InstructionLimit {
            canister: id,
            kind: kind.name(),
            limit,
            instructions,
        },
    }
}

/// Install or reinstall: a fresh instance, empty stable memory, `canister_init`.
fn install_fresh(
    canister: &mut Canister,
    prepared: std::sync::Arc<Prepared>,
    arg: Vec<u8>,
    sender: Principal,
    limit: u64,
) -> Result<CallOutcome, CallError> {
    let sys = &mut canister.sys;
    let id = sys.id;
    let old_stable = std::mem::take(&mut sys.stable);
    let old_certified = std::mem::take(&mut sys.certified_data);
    let old_timer = std::mem::replace(&mut sys.global_timer, 0);
    let old_cycles = sys.cycles;
    let restore = |sys: &mut SystemState| {
        sys.stable = old_stable;
        sys.certified_data = old_certified;
        sys.global_timer = old_timer;
        sys.cycles = old_cycles;
    };
    let (mut live, mut instructions) = match LiveInstance::new(prepared, limit) {
        Ok(x) => x,
        Err(stop) => {
            restore(sys);
            let used = if stop == Stop::OutOfInstructions {
                limit
            } else {
                0
            };
            return Err(stop_error(id, sys, MessageKind::Init, limit, stop, used));
        }
    };
    if live.exports("canister_init") {
        let ctx = MessageContext::new(MessageKind::Init, sender, "", arg);
        let exec = live.call(sys, "canister_init", ctx, limit - instructions);
        instructions += exec.instructions;
        if let Err(stop) = exec.outcome {
            restore(sys);
            return Err(stop_error(
                id,
                sys,
                MessageKind::Init,
                limit,
                stop,
                instructions,
            ));
        }
    }
    sys.version += 1;
    canister.live = Some(live);
    canister.restart_arg = empty_candid();
    Ok(CallOutcome {
        reply: Vec::new(),
        instructions,
    })
}

/// Upgrade: pre_upgrade on the old instance, a fresh instance, post_upgrade; one
/// instruction budget and one transaction for all of it.
pub(crate) fn upgrade(
    canister: &mut Canister,
    prepared: std::sync::Arc<Prepared>,
    arg: Vec<u8>,
    sender: Principal,
    limit: u64,
) -> Result<CallOutcome, CallError> {
    let sys = &mut canister.sys;
    let id = sys.id;
    let mut old = canister
        .live
        .take()
        .expect("upgrade checks that code is installed");
    let snapshot = old.snapshot(sys);
    let mut instructions = 0;
    let fail = |old: LiveInstance, live: &mut Option<LiveInstance>| *live = Some(old);
    if old.exports("canister_pre_upgrade") {
        let ctx = MessageContext::new(MessageKind::PreUpgrade, sender, "", Vec::new());
        let exec = old.call(sys, "canister_pre_upgrade", ctx, limit);
        instructions += exec.instructions;
        if let Err(stop) = exec.outcome {
            old.rollback(sys, snapshot);
            fail(old, &mut canister.live);
            return Err(stop_error(
                id,
                sys,
                MessageKind::PreUpgrade,
                limit,
                stop,
                instructions,
            ));
        }
    }
    // Timers do not survive an upgrade; post_upgrade may set a new one.
    sys.global_timer = 0;
    let mut new = match LiveInstance::new(prepared, limit - instructions) {
        Ok((new, used)) => {
            instructions += used;
            new
        }
        Err(stop) => {
            old.rollback(sys, snapshot);
            fail(old, &mut canister.live);
            return Err(stop_error(
                id,
                sys,
                MessageKind::PostUpgrade,
                limit,
                stop,
                instructions,
            ));
        }
    };
    if new.exports("canister_post_upgrade") {
        let ctx = MessageContext::new(MessageKind::PostUpgrade, sender, "", arg.clone());
        let exec = new.call(sys, "canister_post_upgrade", ctx, limit - instructions);
        instructions += exec.instructions;
        if let Err(stop) = exec.outcome {
            old.rollback(sys, snapshot);
            fail(old, &mut canister.live);
            return Err(stop_error(
                id,
                sys,
                MessageKind::PostUpgrade,
                limit,
                stop,
                instructions,
            ));
        }
    }
    LiveInstance::commit(sys, snapshot);
    sys.version += 1;
    canister.live = Some(new);
    canister.restart_arg = arg;
    Ok(CallOutcome {
        reply: Vec::new(),
        instructions,
    })
}
