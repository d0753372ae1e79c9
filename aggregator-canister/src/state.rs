//! The canister state: every structure lives in stable memory (see [`crate::storage`]).
//! The core takes the caller and the time as arguments ([`CallContext`]) and never calls
//! `ic_cdk`; every update validates fully before it writes anything.

use candid::{CandidType, Principal};
use flic_protocol::api::{
    AdminError, Contribution, Dataset, Evaluation, JobConfig, JobState, RoundRecord, UpgradeArgs,
    MAX_ROUND_DURATION_NS, MIN_ROUND_DURATION_NS,
};
use flic_protocol::merkle::MerkleFrontier;
use flic_protocol::{Hash, SubmissionHeader};
use ic_stable_structures::{DefaultMemoryImpl, StableBTreeMap, StableCell};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::certification::{encode_tree, CertifiedTree, HistoryWitness};
use crate::metrics::Metrics;
use crate::storage::*;

/// Who calls, when, and on which canister: everything the core needs from the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallContext {
    pub caller: Principal,
    pub now: u64,
    pub canister_id: Principal,
    pub is_controller: bool,
}

/// Scalars of the job and the open round (one Candid-encoded cell).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Meta {
    pub job_id: u64,
    pub config: Option<JobConfig>,
    pub state: Option<JobState>,
    pub frac_bits: u32,
    pub spec_id: Option<Hash>,
    pub param_count: u64,
    /// Initial-model chunks received (one byte per chunk: 0 or 1).
    pub model_chunks: ByteBuf,
    pub model_version: Option<Hash>,
    pub round: u64,
    pub round_opened_at_ns: u64,
    /// 0 when no round is open.
    pub deadline_ns: u64,
    /// Time left on the deadline when the job was paused.
    pub paused_remaining_ns: u64,
    pub extensions: u32,
    pub committed: u32,
    pub total_weight: u64,
    pub first_contribution_of_round: u64,
    pub next_contribution: u64,
    pub next_submission_id: u64,
    pub next_dataset_id: u64,
    /// Bump pointer of the staging arena.
    pub staging_top: u64,
    pub history_size: u64,
    pub history_peaks: Vec<Hash>,
}

impl Meta {
    pub fn job_state(&self) -> JobState {
        self.state.unwrap_or(JobState::Unconfigured)
    }

    pub fn history(&self) -> MerkleFrontier {
        MerkleFrontier::from_parts(
            self.history_size,
            self.history_peaks.iter().map(|h| h.into_array()).collect(),
        )
        .expect("stored history frontier is consistent")
    }

    pub fn set_history(&mut self, f: &MerkleFrontier) {
        self.history_size = f.size();
        self.history_peaks = f.peaks().iter().map(|p| Hash::new(*p)).collect();
    }

    pub fn config(&self) -> &JobConfig {
        self.config.as_ref().expect("a configured job")
    }
}

/// An upload in the open round.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Submission {
    pub id: u64,
    pub round: u64,
    pub contributor: Principal,
    pub header: SubmissionHeader,
    pub header_hash: Hash,
    pub public_key: ByteBuf,
    pub signature: ByteBuf,
    pub chunk_hashes: Vec<Hash>,
    /// One byte per chunk: 1 when stored.
    pub stored: ByteBuf,
    pub stored_count: u32,
    pub staging_offset: u64,
    pub byte_len: u64,
    pub weight: u64,
    /// Contribution index once committed.
    pub contribution: Option<u64>,
}

/// A committed contribution plus where its delta is retained, if it is.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StoredContribution {
    pub contribution: Contribution,
    pub retained_offset: Option<u64>,
    pub byte_len: u64,
}

type Map<K, V> = StableBTreeMap<K, V, Mem>;

pub struct State {
    pub(crate) meta: StableCell<Stored<Meta>, Mem>,
    pub(crate) weights: Mem,
    /// The open round's FedAvg accumulator (`i64` per parameter), on the heap: a commit adds
    /// into it without copying 16 bytes per parameter to and from stable memory. Empty until
    /// the round's first commit; zeroed by the close. The heap rolls back with a trap like
    /// stable memory does, so only upgrades need care: [`State::save_for_upgrade`] spills it
    /// to `accumulator` and [`State::load`] reads it back.
    pub(crate) acc: Vec<i64>,
    /// Where `acc` waits out an upgrade (read only when the round has commits).
    pub(crate) accumulator: Mem,
    pub(crate) staging: Mem,
    pub(crate) datasets: Map<u64, Stored<Dataset>>,
    pub(crate) datasets_by_owner: Map<(Principal, u64), ()>,
    pub(crate) submissions: Map<u64, Stored<Submission>>,
    pub(crate) submitters: Map<Principal, u64>,
    pub(crate) contributions: Map<u64, Stored<StoredContribution>>,
    pub(crate) by_contributor: Map<(Principal, u64), ()>,
    pub(crate) by_dataset: Map<(u64, u64), ()>,
    pub(crate) rounds: Map<u64, Stored<RoundRecord>>,
    pub(crate) versions: Map<[u8; 32], u64>,
    /// Flat `f32` LE copy of the initial model, kept with `retain_contributions`.
    pub(crate) initial_weights: Mem,
    /// Heap cache of the certified tree's history, rebuilt from `rounds` on load.
    pub(crate) certified: CertifiedTree,
    pub(crate) evaluations: Map<(u64, Principal), Stored<Evaluation>>,
    pub(crate) metrics: StableCell<Stored<Metrics>, Mem>,
}

impl State {
    /// Opens (or creates) every structure in `memory`. Used by init and post_upgrade alike.
    pub fn load(memory: DefaultMemoryImpl) -> Self {
        let m = Memories::init(memory);
        let rounds: Map<u64, Stored<RoundRecord>> = StableBTreeMap::init(m.get(MEMORY_ROUNDS));
        let certified = CertifiedTree::from_history(rounds.iter().map(|e| e.value().0));
        let meta = StableCell::init(m.get(MEMORY_META), Stored(Meta::default()));
        let accumulator = m.get(MEMORY_ACCUMULATOR);
        let acc = {
            let m: &Meta = &meta.get().0;
            if m.committed > 0 {
                read_i64s(&accumulator, 0, m.param_count as usize)
            } else {
                Vec::new()
            }
        };
        Self {
            meta,
            weights: m.get(MEMORY_WEIGHTS),
            acc,
            accumulator,
            staging: m.get(MEMORY_STAGING),
            datasets: StableBTreeMap::init(m.get(MEMORY_DATASETS)),
            datasets_by_owner: StableBTreeMap::init(m.get(MEMORY_DATASETS_BY_OWNER)),
            submissions: StableBTreeMap::init(m.get(MEMORY_SUBMISSIONS)),
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
        if self.meta().committed > 0 {
            write_i64s(&self.accumulator, 0, &self.acc);
        }
    }

    pub fn meta(&self) -> &Meta {
        &self.meta.get().0
    }

    pub(crate) fn set_meta(&mut self, meta: Meta) {
        self.meta.set(Stored(meta));
    }

    /// The timer deadline the runtime should arm (0 = none).
    pub fn timer_deadline(&self) -> u64 {
        let m = self.meta();
        if m.job_state() == JobState::Running {
            m.deadline_ns
        } else {
            0
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
        let state = self.meta().job_state();
        if matches!(state, JobState::Running | JobState::Paused) {
            return Err(AdminError::WrongState {
                state,
                needed: "not started".into(),
            });
        }
        let frac_bits = config.validate()?;
        let mut m = self.meta().clone();
        let param_count = config.model_spec.param_count();
        let chunks = flic_protocol::chunking::chunk_count(param_count * 4, config.chunk_size());
        m.job_id += 1;
        m.spec_id = Some(Hash::new(config.model_spec.spec_id()));
        m.param_count = param_count;
        m.frac_bits = frac_bits;
        m.model_chunks = ByteBuf::from(vec![0u8; chunks as usize]);
        m.model_version = None;
        m.state = Some(JobState::AwaitingModel);
        m.config = Some(config);
        let job_id = m.job_id;
        self.set_meta(m);
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
        let m = self.meta();
        let state = m.job_state();
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
        let total = m.param_count * 4;
        let chunk_size = m.config().chunk_size();
        let chunk_count = m.model_chunks.len() as u32;
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
        let mut m = m.clone();
        m.model_chunks[index as usize] = 1;
        let missing = m.model_chunks.iter().filter(|&&b| b == 0).count() as u32;
        m.state = Some(if missing == 0 {
            JobState::Ready
        } else {
            JobState::AwaitingModel
        });
        self.set_meta(m);
        Ok(missing)
    }

    /// Checks the initial model, computes its version and opens round 0.
    pub fn start_job(&mut self, ctx: &CallContext) -> Result<(), AdminError> {
        Self::require_controller(ctx)?;
        let m = self.meta();
        match m.job_state() {
            JobState::Ready => {}
            JobState::Unconfigured => return Err(AdminError::NotConfigured),
            JobState::AwaitingModel => {
                let missing = m.model_chunks.iter().filter(|&&b| b == 0).count() as u32;
                let first_missing = m.model_chunks.iter().position(|&b| b == 0).unwrap_or(0) as u32;
                return Err(AdminError::ModelIncomplete {
                    missing,
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
        let spec_id = m.spec_id.expect("configured").into_array();
        let version =
            crate::aggregation::check_and_hash_weights(&self.weights, m.param_count, &spec_id)?;
        // The accumulator's upgrade spill area exists from the first round on, so an
        // upgrade never has to grow stable memory.
        ensure_capacity(&self.accumulator, m.param_count * 8);
        if m.config().retain_contributions {
            // Lineage verifiers replay every round from the initial model.
            let bytes = read_bytes(&self.weights, 0, m.param_count * 4);
            write_bytes(&self.initial_weights, 0, &bytes);
        }
        let mut m = m.clone();
        m.model_version = Some(Hash::new(version));
        m.state = Some(JobState::Running);
        m.round = 0;
        m.round_opened_at_ns = ctx.now;
        m.deadline_ns = ctx.now + m.config().round_duration_ns;
        m.first_contribution_of_round = m.next_contribution;
        self.versions.insert(version, 0);
        self.set_meta(m);
        Ok(())
    }

    pub fn pause_job(&mut self, ctx: &CallContext) -> Result<(), AdminError> {
        Self::require_controller(ctx)?;
        let state = self.meta().job_state();
        if state != JobState::Running {
            return Err(AdminError::WrongState {
                state,
                needed: "Running".into(),
            });
        }
        let mut m = self.meta().clone();
        m.paused_remaining_ns = m.deadline_ns.saturating_sub(ctx.now);
        m.state = Some(JobState::Paused);
        self.set_meta(m);
        Ok(())
    }

    /// Resumes a paused job; the open round gets back the time it had left.
    pub fn resume_job(&mut self, ctx: &CallContext) -> Result<(), AdminError> {
        Self::require_controller(ctx)?;
        let state = self.meta().job_state();
        if state != JobState::Paused {
            return Err(AdminError::WrongState {
                state,
                needed: "Paused".into(),
            });
        }
        let mut m = self.meta().clone();
        m.deadline_ns = ctx.now + m.paused_remaining_ns;
        m.paused_remaining_ns = 0;
        m.state = Some(JobState::Running);
        self.set_meta(m);
        Ok(())
    }

    /// Applies upgrade arguments (post_upgrade runs as a controller).
    pub fn apply_upgrade(&mut self, args: &UpgradeArgs) -> Result<(), AdminError> {
        if let Some(d) = args.round_duration_ns {
            if !(MIN_ROUND_DURATION_NS..=MAX_ROUND_DURATION_NS).contains(&d) {
                return Err(AdminError::InvalidConfig {
                    reason: format!("round_duration_ns {d} is out of range"),
                });
            }
            let mut m = self.meta().clone();
            match m.config.as_mut() {
                Some(c) => c.round_duration_ns = d,
                None => return Err(AdminError::NotConfigured),
            }
            self.set_meta(m);
        }
        Ok(())
    }

    /// The certified-data hash of the current state.
    pub fn certified_state(&self) -> flic_protocol::api::CertifiedState {
        let m = self.meta();
        flic_protocol::api::CertifiedState {
            job_id: m.job_id,
            round: m.round,
            model_version: m.model_version.unwrap_or_default(),
            history_root: Hash::new(m.history().root()),
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

    /// Cross-structure invariants; tests call this after every mutation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let m = self.meta();
        let ensure = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_string()) };
        ensure(
            m.next_contribution == self.contributions.len(),
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
            self.rounds.len() == m.history_size,
            "history frontier covers every round",
        )?;
        ensure(
            self.certified.rounds() == self.rounds.len(),
            "certified tree holds every round record",
        )?;
        ensure(
            self.datasets.len() == self.datasets_by_owner.len(),
            "every dataset indexed by owner",
        )?;
        ensure(
            self.submitters.len() == self.submissions.len(),
            "one submission per submitter",
        )?;
        let mut committed = 0u32;
        for e in self.submissions.iter() {
            let s = e.value().0;
            ensure(s.round == m.round, "submissions belong to the open round")?;
            ensure(
                self.submitters.get(&s.contributor) == Some(s.id),
                "submitter index points at the submission",
            )?;
            ensure(
                s.stored.iter().filter(|&&b| b == 1).count() as u32 == s.stored_count,
                "stored_count matches",
            )?;
            ensure(
                s.staging_offset + s.byte_len <= m.staging_top,
                "staged bytes inside the arena",
            )?;
            if s.contribution.is_some() {
                committed += 1;
            }
        }
        ensure(
            committed == m.committed,
            "committed count matches the committed submissions",
        )?;
        if let Some(c) = &m.config {
            ensure(m.committed <= c.max_clients, "committed <= max_clients")?;
        }
        let round_weight: u64 = (m.first_contribution_of_round..m.next_contribution)
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
            round_weight == m.total_weight,
            "total_weight is the sum of this round's weights",
        )?;
        ensure(
            m.next_contribution - m.first_contribution_of_round == m.committed as u64,
            "this round's contributions are the committed submissions",
        )?;
        if m.committed == 0 {
            ensure(
                self.acc.iter().all(|&a| a == 0),
                "accumulator is zero when nothing is committed",
            )?;
        } else {
            ensure(
                self.acc.len() as u64 == m.param_count,
                "accumulator has one entry per parameter once the round has commits",
            )?;
        }
        if matches!(m.job_state(), JobState::Running | JobState::Paused) {
            ensure(
                m.history_size == m.round,
                "one history entry per closed round",
            )?;
            let v = m
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
