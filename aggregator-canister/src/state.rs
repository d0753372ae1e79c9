//! The canister state: every structure lives in stable memory (see [`crate::storage`]).
//! The core takes the caller and the time as arguments ([`CallContext`]) and never calls
//! `ic_cdk`; every update validates fully before it writes anything.

use candid::Principal;
use flic_protocol::api::{
    AdminError, JobConfig, JobState, UpgradeArgs, MAX_ROUND_DURATION_NS, MIN_ROUND_DURATION_NS,
};
use flic_protocol::Hash;
use ic_stable_structures::{DefaultMemoryImpl, Memory, StableBTreeMap, StableCell};
use serde_bytes::ByteBuf;

use crate::certification::{encode_tree, CertifiedTree, HistoryWitness};
use crate::metrics::{CallRecord, Metrics};
use crate::storage::records::{
    AllocatorsRecord, ClosedRoundRecord, ContributionRecord, DatasetRecord, EvaluationRecord,
    HistoryRecord, JobConfigRecord, JobRecord, JobStateRecord, OpenRoundRecord, SubmissionRecord,
};
use crate::storage::*;

/// What the accumulator spilled by `pre_upgrade` is of, written after its `i64`s: the round,
/// its commits and their total weight, so that a load can tell a stale spill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SpillTag {
    round: u64,
    committed: u64,
    total_weight: u64,
}

impl SpillTag {
    const MAGIC: [u8; 8] = *b"flicacc1";
    const LEN: u64 = 32;
    /// Written when a job starts: no spill yet.
    const NONE: SpillTag = SpillTag {
        round: u64::MAX,
        committed: 0,
        total_weight: 0,
    };

    fn of(round: &OpenRoundRecord) -> Self {
        Self {
            round: round.round,
            committed: round.committed as u64,
            total_weight: round.total_weight,
        }
    }

    fn write(&self, mem: &Mem, param_count: u64) {
        let mut bytes = Vec::with_capacity(Self::LEN as usize);
        bytes.extend_from_slice(&Self::MAGIC);
        for v in [self.round, self.committed, self.total_weight] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        write_bytes(mem, param_count * 8, &bytes);
    }

    /// `None` when no tag was ever written (a spill by the release before tags).
    fn read(mem: &Mem, param_count: u64) -> Option<Self> {
        if mem.size() * 65536 < param_count * 8 + Self::LEN {
            return None;
        }
        let b = read_bytes(mem, param_count * 8, Self::LEN);
        if b[..8] != Self::MAGIC {
            return None;
        }
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Some(Self {
            round: u(8),
            committed: u(16),
            total_weight: u(24),
        })
    }
}

/// The id of the next job: the IC time (ns) it is configured at, or one more than the
/// previous id if that is larger. Signed headers name the job, so ids must never repeat
/// on a canister; a reinstall wipes the previous ids, but not the clock, so the first job
/// after it is numbered above every job before it (all of which were configured earlier).
pub fn next_job_id(previous: u64, now_ns: u64) -> u64 {
    previous.saturating_add(1).max(now_ns)
}

/// Who calls, when, and on which canister: everything the core needs from the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallContext {
    pub caller: Principal,
    pub now: u64,
    pub canister_id: Principal,
    pub is_controller: bool,
}

type Map<K, V> = StableBTreeMap<K, V, Mem>;

type Cell<T> = StableCell<Stored<T>, Mem>;

pub struct State {
    /// The job's configuration and derived constants (MemoryId 18).
    pub(crate) job: Cell<JobRecord>,
    /// The open round's scalars (MemoryId 19).
    pub(crate) open_round: Cell<OpenRoundRecord>,
    /// Next ids and the staging bump pointer (MemoryId 20).
    pub(crate) allocators: Cell<AllocatorsRecord>,
    /// The round history's Merkle frontier (MemoryId 21).
    pub(crate) history: Cell<HistoryRecord>,
    pub(crate) weights: Mem,
    /// The open round's FedAvg accumulator (`i64` per parameter), on the heap: a commit adds
    /// into it without copying 16 bytes per parameter to and from stable memory. Empty until
    /// the round's first commit; zeroed by the close. The heap rolls back with a trap like
    /// stable memory does, so only upgrades need care: [`State::save_for_upgrade`] spills it
    /// to `accumulator` and [`State::load`] reads it back.
    pub(crate) acc: Vec<i64>,
    /// Where `acc` waits out an upgrade (read only when the round has commits).
    pub(crate) accumulator: Mem,
    /// The retained deltas' arena (see `MEMORY_STAGING`).
    pub(crate) staging: Mem,
    /// Uploads in progress, one slot each (see `MEMORY_STAGING_SLOTS`).
    pub(crate) staging_slots: Mem,
    pub(crate) free_slots: Map<u64, ()>,
    pub(crate) uploads_by_progress: Map<(u64, u64), ()>,
    pub(crate) allow_list: Map<Principal, ()>,
    pub(crate) commitments: Map<[u8; 32], u64>,
    /// The server optimizer's state vectors (see `MEMORY_OPTIMIZER_M`, `_V`).
    pub(crate) optimizer_m: Mem,
    pub(crate) optimizer_v: Mem,
    /// Secure aggregation's bulletin board for the open round (MemoryId 35).
    pub(crate) secagg: Map<(u8, u32, u32), Vec<u8>>,
    pub(crate) datasets: Map<u64, Stored<DatasetRecord>>,
    pub(crate) datasets_by_owner: Map<(Principal, u64), ()>,
    pub(crate) submissions: Map<u64, Stored<SubmissionRecord>>,
    pub(crate) submitters: Map<Principal, u64>,
    pub(crate) contributions: Map<u64, Stored<ContributionRecord>>,
    pub(crate) by_contributor: Map<(Principal, u64), ()>,
    pub(crate) by_dataset: Map<(u64, u64), ()>,
    pub(crate) rounds: Map<u64, Stored<ClosedRoundRecord>>,
    pub(crate) versions: Map<[u8; 32], u64>,
    /// Flat `f32` LE copy of the initial model, kept with `retain_contributions`.
    pub(crate) initial_weights: Mem,
    /// The certified tree's history, in stable memory (MemoryId 24).
    pub(crate) certified: CertifiedTree,
    pub(crate) evaluations: Map<(u64, Principal), Stored<EvaluationRecord>>,
    pub(crate) metrics: Cell<Metrics>,
    /// A robust rule's close under way (see `rounds/close.rs`). On the heap only: an
    /// upgrade drops it, and the close starts again from the staged deltas, which stay in
    /// their slots until it ends.
    pub(crate) closing: Option<crate::rounds::Closing>,
    /// Central DP: the open round's noise seed (see `rounds/privacy.rs`). Heap only.
    pub(crate) noise_seed: Option<[u8; 32]>,
    /// Set by the boundary while a `raw_rand` call is in flight. Heap only.
    pub seed_requested: bool,
    /// Instructions the current message has used (`ic0.performance_counter`); tests
    /// outside wasm count none, so a close there never needs a second message.
    pub meter: fn() -> u64,
}

impl State {
    /// Opens (or creates) every structure in `memory`. Used by init and post_upgrade alike;
    /// on the first upgrade from the release before versioned records, moves its `Meta`
    /// into the job, open round, allocator and history records. Otherwise writes nothing
    /// to a memory that already holds a state.
    pub fn load(memory: DefaultMemoryImpl) -> Self {
        let m = Memories::init(memory);
        let rounds: Map<u64, Stored<ClosedRoundRecord>> =
            StableBTreeMap::init(m.get(MEMORY_ROUNDS));
        // O(1) once the tree holds every round; fills it once from an older release's state.
        let certified =
            CertifiedTree::load(m.get(MEMORY_CERTIFIED_HISTORY), rounds.len(), |from| {
                rounds.range(from..).map(|e| e.value().0.into())
            });
        let (job, open_round, allocators, history) =
            match legacy::take_meta(m.get(MEMORY_LEGACY_META)) {
                Some(meta) => {
                    assert_eq!(
                        m.get(MEMORY_JOB).size(),
                        0,
                        "both a legacy Meta and a job record: stable memory is corrupt"
                    );
                    let split = meta.split();
                    (
                        StableCell::new(m.get(MEMORY_JOB), Stored(split.job)),
                        StableCell::new(m.get(MEMORY_OPEN_ROUND), Stored(split.open_round)),
                        StableCell::new(m.get(MEMORY_ALLOCATORS), Stored(split.allocators)),
                        StableCell::new(m.get(MEMORY_HISTORY), Stored(split.history)),
                    )
                }
                None => (
                    StableCell::init(m.get(MEMORY_JOB), Stored(JobRecord::default())),
                    StableCell::init(m.get(MEMORY_OPEN_ROUND), Stored(OpenRoundRecord::default())),
                    StableCell::init(
                        m.get(MEMORY_ALLOCATORS),
                        Stored(AllocatorsRecord::default()),
                    ),
                    StableCell::init(m.get(MEMORY_HISTORY), Stored(HistoryRecord::default())),
                ),
            };
        let accumulator = m.get(MEMORY_ACCUMULATOR);
        let round = &open_round.get().0;
        let streams = job
            .get()
            .0
            .config
            .as_ref()
            .is_none_or(|c| !c.aggregation().needs_all_deltas());
        let acc = if round.committed > 0 && streams {
            let n = job.get().0.param_count;
            // The spill must be of this very round and its commits: an upgrade that skipped
            // `pre_upgrade` would otherwise load an older round's sums.
            match SpillTag::read(&accumulator, n) {
                None => {} // written by the release before spill tags
                Some(tag) if tag == SpillTag::of(round) => {}
                Some(tag) => panic!(
                    "the accumulator in stable memory is of round {} with {} commits, the open round is {} with {}: pre_upgrade did not run (skip_pre_upgrade?). Upgrade again without skipping it.",
                    tag.round, tag.committed, round.round, round.committed
                ),
            }
            read_i64s(&accumulator, 0, n as usize)
        } else {
            Vec::new()
        };
        let datasets: Map<u64, Stored<DatasetRecord>> =
            StableBTreeMap::init(m.get(MEMORY_DATASETS));
        let mut commitments: Map<[u8; 32], u64> = StableBTreeMap::init(m.get(MEMORY_COMMITMENTS));
        if commitments.is_empty() && !datasets.is_empty() {
            // Once, on the upgrade from the release before the commitment index: index the
            // datasets registered so far (bounded by `MAX_DATASETS`), first one first.
            for e in datasets.iter() {
                let d = e.value().0;
                let key = d.commitment.into_array();
                if !commitments.contains_key(&key) {
                    commitments.insert(key, d.id);
                }
            }
        }
        let submissions: Map<u64, Stored<SubmissionRecord>> =
            StableBTreeMap::init(m.get(MEMORY_SUBMISSIONS));
        let mut uploads_by_progress: Map<(u64, u64), ()> =
            StableBTreeMap::init(m.get(MEMORY_UPLOADS_BY_PROGRESS));
        if uploads_by_progress.is_empty() && submissions.len() > open_round.get().0.committed as u64
        {
            // Once, on the upgrade from the release before the progress index: its uploads
            // in progress (at most `pending_limit`) count as the most stalled.
            for e in submissions.iter() {
                let s = e.value().0;
                if s.contribution.is_none() {
                    uploads_by_progress.insert((s.last_progress_ns(), s.id), ());
                }
            }
        }
        Self {
            job,
            open_round,
            allocators,
            history,
            weights: m.get(MEMORY_WEIGHTS),
            acc,
            accumulator,
            staging: m.get(MEMORY_STAGING),
            staging_slots: m.get(MEMORY_STAGING_SLOTS),
            free_slots: StableBTreeMap::init(m.get(MEMORY_FREE_SLOTS)),
            uploads_by_progress,
            allow_list: StableBTreeMap::init(m.get(MEMORY_ALLOW_LIST)),
            commitments,
            optimizer_m: m.get(MEMORY_OPTIMIZER_M),
            optimizer_v: m.get(MEMORY_OPTIMIZER_V),
            secagg: StableBTreeMap::init(m.get(MEMORY_SECAGG)),
            datasets,
            datasets_by_owner: StableBTreeMap::init(m.get(MEMORY_DATASETS_BY_OWNER)),
            submissions,
            submitters: StableBTreeMap::init(m.get(MEMORY_SUBMITTERS)),
            contributions: StableBTreeMap::init(m.get(MEMORY_CONTRIBUTIONS)),
            by_contributor: StableBTreeMap::init(m.get(MEMORY_BY_CONTRIBUTOR)),
            by_dataset: StableBTreeMap::init(m.get(MEMORY_BY_DATASET)),
            rounds,
            versions: StableBTreeMap::init(m.get(MEMORY_VERSIONS)),
            initial_weights: m.get(MEMORY_INITIAL_WEIGHTS),
            certified,
            evaluations: StableBTreeMap::init(m.get(MEMORY_EVALUATIONS)),
            metrics: StableCell::init(m.get(MEMORY_METRICS), Stored(Metrics::default())),
            closing: None,
            noise_seed: None,
            seed_requested: false,
            meter: || 0,
        }
    }

    /// The open round's accumulator (empty before its first commit).
    pub fn accumulator(&self) -> &[i64] {
        &self.acc
    }

    /// Writes what lives only on the heap to stable memory (the open round's accumulator,
    /// 8 bytes per parameter when the round has commits). Called by `pre_upgrade`; [`load`]
    /// reads it back.
    ///
    /// [`load`]: State::load
    pub fn save_for_upgrade(&self) {
        if self.open_round().committed > 0 && !self.job().config().aggregation().needs_all_deltas()
        {
            write_i64s(&self.accumulator, 0, &self.acc);
            SpillTag::of(self.open_round()).write(&self.accumulator, self.job().param_count);
        }
    }

    /// The job: configuration, state and derived constants.
    pub fn job(&self) -> &JobRecord {
        &self.job.get().0
    }

    /// The open round's scalars.
    pub fn open_round(&self) -> &OpenRoundRecord {
        &self.open_round.get().0
    }

    /// The next ids to hand out and the staging arena's bump pointer.
    pub fn allocators(&self) -> &AllocatorsRecord {
        &self.allocators.get().0
    }

    /// The round history's Merkle frontier.
    pub fn history(&self) -> &HistoryRecord {
        &self.history.get().0
    }

    pub(crate) fn set_job(&mut self, job: JobRecord) {
        self.job.set(Stored(job));
    }

    pub(crate) fn set_open_round(&mut self, round: OpenRoundRecord) {
        self.open_round.set(Stored(round));
    }

    pub(crate) fn set_allocators(&mut self, allocators: AllocatorsRecord) {
        self.allocators.set(Stored(allocators));
    }

    pub(crate) fn set_history(&mut self, history: HistoryRecord) {
        self.history.set(Stored(history));
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics.get().0
    }

    /// Adds one finished call to the counters (called by the boundary only).
    pub fn record_call(&mut self, call: CallRecord<'_>) {
        let mut m = self.metrics().clone();
        m.record(call);
        self.metrics.set(Stored(m));
    }

    /// The timer deadline the runtime should arm (0 = none).
    pub fn timer_deadline(&self) -> u64 {
        if self.job().job_state() != JobState::Running {
            0
        } else if self.close_pending() {
            if self.close_waits_for_seed() && self.seed_requested {
                // The seed's arrival closes the round: no timer until then.
                0
            } else {
                // As soon as possible: the close goes on (or asks for its seed) in the
                // next message.
                1
            }
        } else if let Some(phase_deadline) = self.secagg_deadline() {
            phase_deadline
        } else {
            self.open_round().deadline_ns
        }
    }

    // ------------------------------------------------------------ admin

    fn require_controller(ctx: &CallContext) -> Result<(), AdminError> {
        if ctx.is_controller {
            Ok(())
        } else {
            Err(AdminError::NotController { caller: ctx.caller })
        }
    }

    /// Configures (or, before it starts, reconfigures) the job. Returns the job id.
    pub fn configure_job(
        &mut self,
        ctx: &CallContext,
        config: JobConfig,
    ) -> Result<u64, AdminError> {
        Self::require_controller(ctx)?;
        let state = self.job().job_state();
        if matches!(state, JobState::Running | JobState::Paused) {
            return Err(AdminError::WrongState {
                state,
                needed: "not started".into(),
            });
        }
        let frac_bits = config.validate()?;
        let param_count = config.model_spec.param_count();
        let chunks = flic_protocol::chunking::chunk_count(param_count * 4, config.chunk_size());
        let job = JobRecord {
            job_id: next_job_id(self.job().job_id, ctx.now),
            state: JobStateRecord::AwaitingModel,
            spec_id: Some(Hash::new(config.model_spec.spec_id())),
            param_count,
            frac_bits,
            model_chunks: ByteBuf::from(vec![0u8; chunks as usize]),
            config: Some(JobConfigRecord::from(config)),
            close_slice_instructions: self.job().close_slice_instructions,
        };
        let job_id = job.job_id;
        self.set_job(job);
        if self.open_round().model_version.is_some() {
            let mut round = self.open_round().clone();
            round.model_version = None;
            self.set_open_round(round);
        }
        Ok(job_id)
    }

    /// Stores chunk `index` of the initial model (f32 LE weights in chunks of the job's
    /// chunk size). Returns how many chunks are still missing.
    pub fn upload_model_chunk(
        &mut self,
        ctx: &CallContext,
        index: u32,
        bytes: &[u8],
    ) -> Result<u32, AdminError> {
        Self::require_controller(ctx)?;
        let job = self.job();
        let state = job.job_state();
        match state {
            JobState::AwaitingModel | JobState::Ready => {}
            JobState::Unconfigured => return Err(AdminError::NotConfigured),
            _ => {
                return Err(AdminError::WrongState {
                    state,
                    needed: "configured and not started".into(),
                })
            }
        }
        let total = job.param_count * 4;
        let chunk_size = job.config().chunk_size();
        let chunk_count = job.model_chunks.len() as u32;
        let (offset, len) = flic_protocol::chunking::chunk_range(total, chunk_size, index as u64)
            .ok_or(AdminError::ModelChunkOutOfRange { index, chunk_count })?;
        if bytes.len() as u64 != len {
            return Err(AdminError::ModelChunkLength {
                index,
                expected: len,
                got: bytes.len() as u64,
            });
        }
        write_bytes(&self.weights, offset, bytes);
        let mut job = job.clone();
        job.model_chunks[index as usize] = 1;
        let missing = job.missing_model_chunks();
        job.state = if missing == 0 {
            JobStateRecord::Ready
        } else {
            JobStateRecord::AwaitingModel
        };
        self.set_job(job);
        Ok(missing)
    }

    /// Checks the initial model, computes its version and opens round 0.
    pub fn start_job(&mut self, ctx: &CallContext) -> Result<(), AdminError> {
        Self::require_controller(ctx)?;
        let job = self.job();
        match job.job_state() {
            JobState::Ready => {}
            JobState::Unconfigured => return Err(AdminError::NotConfigured),
            JobState::AwaitingModel => {
                let first_missing =
                    job.model_chunks.iter().position(|&b| b == 0).unwrap_or(0) as u32;
                return Err(AdminError::ModelIncomplete {
                    missing: job.missing_model_chunks(),
                    first_missing,
                });
            }
            state => {
                return Err(AdminError::WrongState {
                    state,
                    needed: "Ready".into(),
                })
            }
        }
        let version = crate::aggregation::check_and_hash_weights(
            &self.weights,
            job.param_count,
            &job.spec_id(),
        )?;
        // The accumulator's upgrade spill area exists from the first round on, so an
        // upgrade never has to grow stable memory.
        ensure_capacity(&self.accumulator, job.param_count * 8 + SpillTag::LEN);
        SpillTag::NONE.write(&self.accumulator, job.param_count);
        // The server optimizer starts from zero state (a job started earlier on this
        // canister may have left some).
        let vectors = job.config().server_optimizer().state_vectors();
        for (i, mem) in [&self.optimizer_m, &self.optimizer_v]
            .into_iter()
            .enumerate()
        {
            if i < vectors {
                let zeros = vec![0f32; crate::aggregation::WINDOW_PARAMS as usize];
                let mut first = 0;
                while first < job.param_count {
                    let n = (job.param_count - first).min(zeros.len() as u64) as usize;
                    write_f32s(mem, first, &zeros[..n]);
                    first += n as u64;
                }
            }
        }
        if job.config().retain_contributions {
            // Lineage verifiers replay every round from the initial model.
            let bytes = read_bytes(&self.weights, 0, job.param_count * 4);
            write_bytes(&self.initial_weights, 0, &bytes);
        }
        let round_duration_ns = job.config().round_duration_ns;
        let mut job = job.clone();
        job.state = JobStateRecord::Running;
        self.set_job(job);
        let round = OpenRoundRecord {
            round: 0,
            model_version: Some(Hash::new(version)),
            opened_at_ns: ctx.now,
            deadline_ns: ctx.now + round_duration_ns,
            first_contribution: self.allocators().next_contribution,
            close_due_ns: None,
            // Adaptive clipping starts at the job's clip_norm.
            clip_norm: None,
            below_clip: None,
            ..self.open_round().clone()
        };
        self.set_open_round(round);
        self.versions.insert(version, 0);
        Ok(())
    }

    pub fn pause_job(&mut self, ctx: &CallContext) -> Result<(), AdminError> {
        Self::require_controller(ctx)?;
        let state = self.job().job_state();
        if state != JobState::Running {
            return Err(AdminError::WrongState {
                state,
                needed: "Running".into(),
            });
        }
        let mut round = self.open_round().clone();
        round.paused_remaining_ns = round.deadline_ns.saturating_sub(ctx.now);
        self.set_open_round(round);
        self.set_job_state(JobStateRecord::Paused);
        Ok(())
    }

    /// Resumes a paused job; the open round gets back the time it had left.
    pub fn resume_job(&mut self, ctx: &CallContext) -> Result<(), AdminError> {
        Self::require_controller(ctx)?;
        let state = self.job().job_state();
        if state != JobState::Paused {
            return Err(AdminError::WrongState {
                state,
                needed: "Paused".into(),
            });
        }
        if let (Some(dp), false) = (self.dp(), self.budget_allows_open_round()) {
            let (rounds, epsilon_spent) = self.privacy_spent();
            return Err(AdminError::PrivacyBudgetSpent {
                rounds,
                epsilon_spent,
                target_epsilon: dp.target_epsilon,
            });
        }
        let mut round = self.open_round().clone();
        round.deadline_ns = ctx.now + round.paused_remaining_ns;
        round.paused_remaining_ns = 0;
        self.set_open_round(round);
        self.set_job_state(JobStateRecord::Running);
        Ok(())
    }

    pub(crate) fn set_job_state(&mut self, state: JobStateRecord) {
        let mut job = self.job().clone();
        job.state = state;
        self.set_job(job);
    }

    /// Applies upgrade arguments (post_upgrade runs as a controller).
    pub fn apply_upgrade(&mut self, args: &UpgradeArgs) -> Result<(), AdminError> {
        if let Some(n) = args.close_slice_instructions {
            let max = flic_protocol::ic_limits::UPDATE_INSTRUCTION_LIMIT / 2;
            if !(flic_protocol::api::MIN_CLOSE_SLICE_INSTRUCTIONS..=max).contains(&n) {
                return Err(AdminError::InvalidConfig {
                    reason: format!(
                        "close_slice_instructions {n} is outside [{}, {max}]",
                        flic_protocol::api::MIN_CLOSE_SLICE_INSTRUCTIONS
                    ),
                });
            }
            let mut job = self.job().clone();
            job.close_slice_instructions = Some(n);
            self.set_job(job);
        }
        if let Some(d) = args.round_duration_ns {
            if !(MIN_ROUND_DURATION_NS..=MAX_ROUND_DURATION_NS).contains(&d) {
                return Err(AdminError::InvalidConfig {
                    reason: format!("round_duration_ns {d} is out of range"),
                });
            }
            let mut job = self.job().clone();
            match job.config.as_mut() {
                Some(c) => c.round_duration_ns = d,
                None => return Err(AdminError::NotConfigured),
            }
            self.set_job(job);
        }
        Ok(())
    }

    /// The certified-data hash of the current state.
    pub fn certified_state(&self) -> flic_protocol::api::CertifiedState {
        flic_protocol::api::CertifiedState {
            job_id: self.job().job_id,
            round: self.open_round().round,
            model_version: self.open_round().model_version.unwrap_or_default(),
            history_root: Hash::new(self.history().frontier().root()),
            job_config_hash: self
                .job()
                .config
                .clone()
                .map(|c| Hash::new(flic_protocol::job_config::job_config_hash(&c.into()))),
        }
    }

    /// The certified data: root hash of the certified state tree.
    pub fn certified_data(&self) -> [u8; 32] {
        self.certified.root_hash(&self.certified_state())
    }

    /// CBOR witness of the certified tree revealing the scalars and `history`.
    pub fn certified_witness(&self, history: HistoryWitness) -> Vec<u8> {
        encode_tree(&self.certified.witness(&self.certified_state(), history))
    }

    /// The invariants that cost O(1) (lengths of maps, counters, the open round's scalars):
    /// the boundary checks them after every update and traps, rolling the update back, if
    /// one fails.
    pub fn check_cheap_invariants(&self) -> Result<(), String> {
        let job = self.job();
        let round = self.open_round();
        let ids = self.allocators();
        let history = self.history();
        let ensure = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_string()) };
        ensure(
            ids.next_contribution == self.contributions.len(),
            "next_contribution == #contributions",
        )?;
        ensure(
            self.by_contributor.len() == self.contributions.len(),
            "by_contributor indexes every contribution",
        )?;
        ensure(
            self.by_dataset.len() == self.contributions.len(),
            "by_dataset indexes every contribution",
        )?;
        ensure(
            ids.next_dataset_id == self.datasets.len(),
            "next_dataset_id == #datasets (datasets are never removed)",
        )?;
        ensure(
            self.datasets.len() == self.datasets_by_owner.len(),
            "every dataset indexed by owner",
        )?;
        ensure(
            self.rounds.len() == history.size,
            "history frontier covers every round",
        )?;
        ensure(
            self.certified.rounds() == self.rounds.len(),
            "certified tree holds every round record",
        )?;
        ensure(
            self.submitters.len() == self.submissions.len(),
            "one submission per submitter",
        )?;
        ensure(
            self.uploads_by_progress.len() + round.committed as u64 == self.submissions.len(),
            "every upload not committed is indexed by progress",
        )?;
        ensure(
            self.free_slots.len() <= ids.next_slot(),
            "free slots were handed out before",
        )?;
        if let Some(c) = &job.config {
            ensure(
                self.uploads_by_progress.len()
                    <= crate::rounds::pending_limit(c.max_clients) as u64,
                "uploads in progress within the limit",
            )?;
        }
        ensure(
            self.submissions.len() >= round.committed as u64
                && self.submissions.len() <= ids.next_submission_id,
            "committed <= #submissions <= next_submission_id",
        )?;
        if let Some(c) = &job.config {
            ensure(round.committed <= c.max_clients, "committed <= max_clients")?;
        }
        ensure(
            ids.next_contribution.checked_sub(round.first_contribution)
                == Some(round.committed as u64),
            "this round's contributions are the committed submissions",
        )?;
        let streams = job
            .config
            .as_ref()
            .is_none_or(|c| !c.aggregation().needs_all_deltas());
        ensure(
            round.committed == 0 || !streams || self.acc.len() as u64 == job.param_count,
            "the FedAvg accumulator has one entry per parameter once the round has commits",
        )?;
        ensure(
            round.committed > 0 || round.total_weight == 0,
            "no weight without commits",
        )?;
        if matches!(job.job_state(), JobState::Running | JobState::Paused) {
            ensure(
                history.size == round.round,
                "one history entry per closed round",
            )?;
            ensure(
                round.model_version.is_some(),
                "a running job has a model version",
            )?;
        }
        Ok(())
    }

    /// Every cross-structure invariant, including those that read every open submission
    /// and contribution of the round; tests call this after every mutation.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.check_cheap_invariants()?;
        let round = self.open_round();
        let ids = self.allocators();
        let ensure = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_string()) };
        let mut committed = 0u32;
        for e in self.submissions.iter() {
            let s = e.value().0;
            ensure(
                s.round == round.round,
                "submissions belong to the open round",
            )?;
            ensure(
                self.submitters.get(&s.contributor) == Some(s.id),
                "submitter index points at the submission",
            )?;
            ensure(
                s.stored.iter().filter(|&&b| b == 1).count() as u32 == s.stored_count,
                "stored_count matches",
            )?;
            match s.slot {
                Some(slot) => {
                    ensure(slot < ids.next_slot(), "slot was handed out")?;
                    ensure(
                        s.contribution.is_some() || !self.free_slots.contains_key(&slot),
                        "an upload in progress holds its slot",
                    )?;
                }
                None => ensure(
                    s.staging_offset + s.byte_len <= ids.staging_top,
                    "legacy staged bytes inside the arena",
                )?,
            }
            ensure(
                s.contribution.is_none()
                    == self
                        .uploads_by_progress
                        .contains_key(&(s.last_progress_ns(), s.id)),
                "the progress index holds exactly the uploads in progress",
            )?;
            if s.contribution.is_some() {
                committed += 1;
            }
        }
        ensure(
            committed == round.committed,
            "committed count matches the committed submissions",
        )?;
        ensure(
            round.below_clip.unwrap_or(0) <= round.committed,
            "no more commits below the clip than commits",
        )?;
        let round_weight: u64 = (round.first_contribution..ids.next_contribution)
            .map(|i| {
                self.contributions
                    .get(&i)
                    .expect("contribution")
                    .0
                    .contribution
                    .weight
            })
            .sum();
        ensure(
            round_weight == round.total_weight,
            "total_weight is the sum of this round's weights",
        )?;
        if round.committed == 0 {
            ensure(
                self.acc.iter().all(|&a| a == 0),
                "accumulator is zero when nothing is committed",
            )?;
        }
        if matches!(self.job().job_state(), JobState::Running | JobState::Paused) {
            let v = round
                .model_version
                .expect("running job has a model")
                .into_array();
            ensure(
                self.versions.get(&v).is_some(),
                "current version is indexed",
            )?;
        }
        Ok(())
    }
}
