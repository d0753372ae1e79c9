//! The records kept in stable memory: the canister's own types, not the API's, so that the
//! interface (`flic_protocol::api`) can change without touching what earlier releases
//! wrote. Each converts to and from the API type it is shown as: a field added to an API
//! type fails to compile here until someone decides what the stored record does about it.
//!
//! Every record is written with a version tag ([`super::versioned`]) and follows its rule:
//! **a stored record that gains a field must still decode what the previous release wrote**
//! (an `Option` field, or a new version that converts the old shape); never rename, retype
//! or remove a field or enum variant in place; extend `tests::stable_image`.
//!
//! Version 1 of every record that existed before versioned records has exactly the Candid
//! shape that release wrote bare (version 0), so both decode alike. The job, open round,
//! allocator and history records are new in version 1: they split that release's `Meta`
//! ([`super::legacy`]).

use candid::{CandidType, Principal};
use flic_protocol::api::{
    Admission, ClientHyperparameters, Contribution, Dataset, Evaluation, JobConfig, JobState,
    Optimizer, RoundClip, RoundRecord,
};
use flic_protocol::chunking::DEFAULT_CHUNK_SIZE;
use flic_protocol::encoding::DeltaEncoding;
use flic_protocol::merkle::MerkleFrontier;
use flic_protocol::model::{ModelSpec, TensorSpec};
use flic_protocol::optimizers::ServerOptimizer;
use flic_protocol::privacy::{AdaptiveClip, DpConfig, DpMode};
use flic_protocol::rules::AggregationRule;
use flic_protocol::secagg::SecAggConfig;
use flic_protocol::{Hash, SubmissionHeader};
use serde::Deserialize;
use serde_bytes::ByteBuf;

use super::versioned::StoredRecord;

// ---------------------------------------------------------------- the job (MemoryId 18)

/// The job: its configuration and the constants derived from it.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct JobRecord {
    /// Set by every `configure_job` ([`crate::state::next_job_id`]; 0: never configured).
    pub job_id: u64,
    pub state: JobStateRecord,
    pub config: Option<JobConfigRecord>,
    pub spec_id: Option<Hash>,
    pub param_count: u64,
    /// Fractional bits of the accumulator's fixed point, derived from the job's limits.
    pub frac_bits: u32,
    /// Initial-model chunks received (one byte per chunk: 0 or 1).
    pub model_chunks: ByteBuf,
    /// Set by an upgrade (`UpgradeArgs::close_slice_instructions`), kept by later jobs.
    /// Added after version 1 was first written: `None` in older records (the default).
    pub close_slice_instructions: Option<u64>,
}

impl StoredRecord for JobRecord {
    const VERSION: u8 = 1;
}

impl JobRecord {
    pub fn job_state(&self) -> JobState {
        self.state.into()
    }

    /// Instructions a robust close may use per message.
    pub fn close_slice_instructions(&self) -> u64 {
        self.close_slice_instructions
            .unwrap_or(flic_protocol::ic_limits::CLOSE_SLICE_INSTRUCTIONS)
    }

    pub fn config(&self) -> &JobConfigRecord {
        self.config.as_ref().expect("a configured job")
    }

    pub fn spec_id(&self) -> [u8; 32] {
        self.spec_id.expect("a configured job").into_array()
    }

    pub fn missing_model_chunks(&self) -> u32 {
        self.model_chunks.iter().filter(|&&b| b == 0).count() as u32
    }
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum JobStateRecord {
    #[default]
    Unconfigured,
    AwaitingModel,
    Ready,
    Running,
    Paused,
}

impl From<JobState> for JobStateRecord {
    fn from(s: JobState) -> Self {
        match s {
            JobState::Unconfigured => Self::Unconfigured,
            JobState::AwaitingModel => Self::AwaitingModel,
            JobState::Ready => Self::Ready,
            JobState::Running => Self::Running,
            JobState::Paused => Self::Paused,
        }
    }
}

impl From<JobStateRecord> for JobState {
    fn from(s: JobStateRecord) -> Self {
        match s {
            JobStateRecord::Unconfigured => Self::Unconfigured,
            JobStateRecord::AwaitingModel => Self::AwaitingModel,
            JobStateRecord::Ready => Self::Ready,
            JobStateRecord::Running => Self::Running,
            JobStateRecord::Paused => Self::Paused,
        }
    }
}

/// A job configuration as stored (see [`JobConfig`] for the fields' meaning).
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
pub struct JobConfigRecord {
    pub model_spec: ModelSpecRecord,
    pub client: ClientHyperparametersRecord,
    pub min_clients: u32,
    pub max_clients: u32,
    pub round_duration_ns: u64,
    pub allowed_encodings: Vec<EncodingRecord>,
    pub clip_norm: f32,
    pub max_weight: u64,
    pub server_lr: f32,
    pub chunk_size: Option<u32>,
    pub retain_contributions: bool,
    /// Added after version 1 was first written: `None` in older records (open admission).
    pub admission: Option<AdmissionRecord>,
    /// Added after version 1 was first written: `None` in older records (the default).
    pub upload_stall_ns: Option<u64>,
    /// Added after version 1 was first written: `None` in older records (FedAvg).
    pub aggregation: Option<AggregationRuleRecord>,
    /// Added after version 1 was first written: `None` in older records (SGD).
    pub server_optimizer: Option<ServerOptimizerRecord>,
    /// Added after version 1 was first written: `None` in older records (no DP).
    pub dp: Option<DpConfigRecord>,
    /// Added after version 1 was first written: `None` in older records (no secure
    /// aggregation).
    pub secure_aggregation: Option<SecAggConfigRecord>,
}

/// A job's secure aggregation as stored (see [`SecAggConfig`]).
#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct SecAggConfigRecord {
    pub max_dropout_fraction: f64,
    pub phase_duration_ns: u64,
}

impl From<SecAggConfig> for SecAggConfigRecord {
    fn from(c: SecAggConfig) -> Self {
        Self {
            max_dropout_fraction: c.max_dropout_fraction,
            phase_duration_ns: c.phase_duration_ns,
        }
    }
}

impl From<SecAggConfigRecord> for SecAggConfig {
    fn from(c: SecAggConfigRecord) -> Self {
        Self {
            max_dropout_fraction: c.max_dropout_fraction,
            phase_duration_ns: c.phase_duration_ns,
        }
    }
}

/// A job's differential privacy as stored (see [`DpConfig`]).
#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct DpConfigRecord {
    pub mode: DpModeRecord,
    pub noise_multiplier: f64,
    pub target_epsilon: f64,
    pub delta: f64,
    /// Added after version 1 was first written: `None` in older records (a fixed clip).
    pub adaptive_clip: Option<AdaptiveClipRecord>,
}

/// Adaptive clipping as stored (see [`AdaptiveClip`]).
#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveClipRecord {
    pub target_quantile: f64,
    pub learning_rate: f64,
    pub count_noise_std: f64,
}

impl From<AdaptiveClip> for AdaptiveClipRecord {
    fn from(c: AdaptiveClip) -> Self {
        Self {
            target_quantile: c.target_quantile,
            learning_rate: c.learning_rate,
            count_noise_std: c.count_noise_std,
        }
    }
}

impl From<AdaptiveClipRecord> for AdaptiveClip {
    fn from(c: AdaptiveClipRecord) -> Self {
        Self {
            target_quantile: c.target_quantile,
            learning_rate: c.learning_rate,
            count_noise_std: c.count_noise_std,
        }
    }
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DpModeRecord {
    Central,
    Distributed,
}

impl From<DpConfig> for DpConfigRecord {
    fn from(d: DpConfig) -> Self {
        Self {
            mode: match d.mode {
                DpMode::Central => DpModeRecord::Central,
                DpMode::Distributed => DpModeRecord::Distributed,
            },
            noise_multiplier: d.noise_multiplier,
            target_epsilon: d.target_epsilon,
            delta: d.delta,
            adaptive_clip: d.adaptive_clip.map(Into::into),
        }
    }
}

impl From<DpConfigRecord> for DpConfig {
    fn from(d: DpConfigRecord) -> Self {
        Self {
            mode: match d.mode {
                DpModeRecord::Central => DpMode::Central,
                DpModeRecord::Distributed => DpMode::Distributed,
            },
            noise_multiplier: d.noise_multiplier,
            target_epsilon: d.target_epsilon,
            delta: d.delta,
            adaptive_clip: d.adaptive_clip.map(Into::into),
        }
    }
}

/// A server optimizer as stored (see [`ServerOptimizer`]).
#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq)]
pub enum ServerOptimizerRecord {
    Sgd,
    Momentum { beta: f32 },
    Nesterov { beta: f32 },
    Adagrad { tau: f32 },
    Adam { beta1: f32, beta2: f32, tau: f32 },
    Yogi { beta1: f32, beta2: f32, tau: f32 },
}

impl From<ServerOptimizer> for ServerOptimizerRecord {
    fn from(o: ServerOptimizer) -> Self {
        match o {
            ServerOptimizer::Sgd => Self::Sgd,
            ServerOptimizer::Momentum { beta } => Self::Momentum { beta },
            ServerOptimizer::Nesterov { beta } => Self::Nesterov { beta },
            ServerOptimizer::Adagrad { tau } => Self::Adagrad { tau },
            ServerOptimizer::Adam { beta1, beta2, tau } => Self::Adam { beta1, beta2, tau },
            ServerOptimizer::Yogi { beta1, beta2, tau } => Self::Yogi { beta1, beta2, tau },
        }
    }
}

impl From<ServerOptimizerRecord> for ServerOptimizer {
    fn from(o: ServerOptimizerRecord) -> Self {
        match o {
            ServerOptimizerRecord::Sgd => Self::Sgd,
            ServerOptimizerRecord::Momentum { beta } => Self::Momentum { beta },
            ServerOptimizerRecord::Nesterov { beta } => Self::Nesterov { beta },
            ServerOptimizerRecord::Adagrad { tau } => Self::Adagrad { tau },
            ServerOptimizerRecord::Adam { beta1, beta2, tau } => Self::Adam { beta1, beta2, tau },
            ServerOptimizerRecord::Yogi { beta1, beta2, tau } => Self::Yogi { beta1, beta2, tau },
        }
    }
}

/// An aggregation rule as stored (see [`AggregationRule`]).
#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq)]
pub enum AggregationRuleRecord {
    FedAvg,
    Median,
    TrimmedMean { beta: f32 },
    Krum { f: u32 },
    MultiKrum { f: u32, m: u32 },
    CenteredClip { iters: u32 },
    Bulyan { f: u32 },
}

impl From<AggregationRule> for AggregationRuleRecord {
    fn from(r: AggregationRule) -> Self {
        match r {
            AggregationRule::FedAvg => Self::FedAvg,
            AggregationRule::Median => Self::Median,
            AggregationRule::TrimmedMean { beta } => Self::TrimmedMean { beta },
            AggregationRule::Krum { f } => Self::Krum { f },
            AggregationRule::MultiKrum { f, m } => Self::MultiKrum { f, m },
            AggregationRule::CenteredClip { iters } => Self::CenteredClip { iters },
            AggregationRule::Bulyan { f } => Self::Bulyan { f },
        }
    }
}

impl From<AggregationRuleRecord> for AggregationRule {
    fn from(r: AggregationRuleRecord) -> Self {
        match r {
            AggregationRuleRecord::FedAvg => Self::FedAvg,
            AggregationRuleRecord::Median => Self::Median,
            AggregationRuleRecord::TrimmedMean { beta } => Self::TrimmedMean { beta },
            AggregationRuleRecord::Krum { f } => Self::Krum { f },
            AggregationRuleRecord::MultiKrum { f, m } => Self::MultiKrum { f, m },
            AggregationRuleRecord::CenteredClip { iters } => Self::CenteredClip { iters },
            AggregationRuleRecord::Bulyan { f } => Self::Bulyan { f },
        }
    }
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdmissionRecord {
    Open,
    AllowList,
}

impl From<Admission> for AdmissionRecord {
    fn from(a: Admission) -> Self {
        match a {
            Admission::Open => Self::Open,
            Admission::AllowList => Self::AllowList,
        }
    }
}

impl From<AdmissionRecord> for Admission {
    fn from(a: AdmissionRecord) -> Self {
        match a {
            AdmissionRecord::Open => Self::Open,
            AdmissionRecord::AllowList => Self::AllowList,
        }
    }
}

impl JobConfigRecord {
    /// As [`JobConfig::chunk_size`].
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE)
    }

    pub fn admission(&self) -> Admission {
        self.admission.map(Into::into).unwrap_or_default()
    }

    pub fn aggregation(&self) -> AggregationRule {
        self.aggregation.map(Into::into).unwrap_or_default()
    }

    pub fn server_optimizer(&self) -> ServerOptimizer {
        self.server_optimizer.map(Into::into).unwrap_or_default()
    }

    pub fn dp(&self) -> Option<DpConfig> {
        self.dp.map(Into::into)
    }

    pub fn secure_aggregation(&self) -> Option<SecAggConfig> {
        self.secure_aggregation.map(Into::into)
    }

    /// As [`JobConfig::upload_stall_ns`].
    pub fn upload_stall_ns(&self) -> u64 {
        flic_protocol::api::upload_stall_ns(self.upload_stall_ns, self.round_duration_ns)
    }

    /// Bytes of the largest delta an allowed encoding makes: one staging slot.
    pub fn slot_bytes(&self, param_count: u64) -> u64 {
        self.allowed_encodings
            .iter()
            .map(|&e| DeltaEncoding::from(e).encoded_len(param_count))
            .max()
            .unwrap_or(0)
    }

    pub fn allows(&self, encoding: DeltaEncoding) -> bool {
        self.allowed_encodings.contains(&encoding.into())
    }
}

impl From<JobConfig> for JobConfigRecord {
    fn from(c: JobConfig) -> Self {
        Self {
            model_spec: c.model_spec.into(),
            client: c.client.into(),
            min_clients: c.min_clients,
            max_clients: c.max_clients,
            round_duration_ns: c.round_duration_ns,
            allowed_encodings: c.allowed_encodings.into_iter().map(Into::into).collect(),
            clip_norm: c.clip_norm,
            max_weight: c.max_weight,
            server_lr: c.server_lr,
            chunk_size: c.chunk_size,
            retain_contributions: c.retain_contributions,
            admission: c.admission.map(Into::into),
            upload_stall_ns: c.upload_stall_ns,
            aggregation: c.aggregation.map(Into::into),
            server_optimizer: c.server_optimizer.map(Into::into),
            dp: c.dp.map(Into::into),
            secure_aggregation: c.secure_aggregation.map(Into::into),
        }
    }
}

impl From<JobConfigRecord> for JobConfig {
    fn from(c: JobConfigRecord) -> Self {
        Self {
            model_spec: c.model_spec.into(),
            client: c.client.into(),
            min_clients: c.min_clients,
            max_clients: c.max_clients,
            round_duration_ns: c.round_duration_ns,
            allowed_encodings: c.allowed_encodings.into_iter().map(Into::into).collect(),
            clip_norm: c.clip_norm,
            max_weight: c.max_weight,
            server_lr: c.server_lr,
            chunk_size: c.chunk_size,
            retain_contributions: c.retain_contributions,
            admission: c.admission.map(Into::into),
            upload_stall_ns: c.upload_stall_ns,
            aggregation: c.aggregation.map(Into::into),
            server_optimizer: c.server_optimizer.map(Into::into),
            dp: c.dp.map(Into::into),
            secure_aggregation: c.secure_aggregation.map(Into::into),
        }
    }
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
pub struct ModelSpecRecord {
    pub architecture: String,
    pub config_json: String,
    pub tensors: Vec<TensorRecord>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
pub struct TensorRecord {
    pub name: String,
    pub shape: Vec<u64>,
    pub offset: u64,
}

impl From<ModelSpec> for ModelSpecRecord {
    fn from(s: ModelSpec) -> Self {
        Self {
            architecture: s.architecture,
            config_json: s.config_json,
            tensors: s
                .tensors
                .into_iter()
                .map(|t| TensorRecord {
                    name: t.name,
                    shape: t.shape,
                    offset: t.offset,
                })
                .collect(),
        }
    }
}

impl From<ModelSpecRecord> for ModelSpec {
    fn from(s: ModelSpecRecord) -> Self {
        Self {
            architecture: s.architecture,
            config_json: s.config_json,
            tensors: s
                .tensors
                .into_iter()
                .map(|t| TensorSpec {
                    name: t.name,
                    shape: t.shape,
                    offset: t.offset,
                })
                .collect(),
        }
    }
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
pub struct ClientHyperparametersRecord {
    pub learning_rate: f32,
    pub batch_size: u32,
    pub local_epochs: u32,
    pub optimizer: OptimizerRecord,
    pub seed: u64,
    /// Added after version 1 was first written: `None` in older records (no proximal term).
    pub proximal_mu: Option<f32>,
}

impl From<ClientHyperparameters> for ClientHyperparametersRecord {
    fn from(c: ClientHyperparameters) -> Self {
        Self {
            learning_rate: c.learning_rate,
            batch_size: c.batch_size,
            local_epochs: c.local_epochs,
            optimizer: match c.optimizer {
                Optimizer::Sgd => OptimizerRecord::Sgd,
                Optimizer::Adam => OptimizerRecord::Adam,
            },
            seed: c.seed,
            proximal_mu: c.proximal_mu,
        }
    }
}

impl From<ClientHyperparametersRecord> for ClientHyperparameters {
    fn from(c: ClientHyperparametersRecord) -> Self {
        Self {
            learning_rate: c.learning_rate,
            batch_size: c.batch_size,
            local_epochs: c.local_epochs,
            optimizer: match c.optimizer {
                OptimizerRecord::Sgd => Optimizer::Sgd,
                OptimizerRecord::Adam => Optimizer::Adam,
            },
            seed: c.seed,
            proximal_mu: c.proximal_mu,
        }
    }
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerRecord {
    Sgd,
    Adam,
}

/// A delta encoding as stored. Variants are only ever added (records of earlier releases
/// hold `F32` and `Int8Blocks`).
#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodingRecord {
    F32,
    Int8Blocks,
    LowBitBlocks { bits: u8 },
    TopK { k: u16, bits: u8 },
    Masked,
}

impl From<DeltaEncoding> for EncodingRecord {
    fn from(e: DeltaEncoding) -> Self {
        match e {
            DeltaEncoding::F32 => Self::F32,
            DeltaEncoding::Int8Blocks => Self::Int8Blocks,
            DeltaEncoding::LowBitBlocks { bits } => Self::LowBitBlocks { bits },
            DeltaEncoding::TopK { k, bits } => Self::TopK { k, bits },
            DeltaEncoding::Masked => Self::Masked,
        }
    }
}

impl From<EncodingRecord> for DeltaEncoding {
    fn from(e: EncodingRecord) -> Self {
        match e {
            EncodingRecord::F32 => Self::F32,
            EncodingRecord::Int8Blocks => Self::Int8Blocks,
            EncodingRecord::LowBitBlocks { bits } => Self::LowBitBlocks { bits },
            EncodingRecord::TopK { k, bits } => Self::TopK { k, bits },
            EncodingRecord::Masked => Self::Masked,
        }
    }
}

// ---------------------------------------------------------------- the open round (19)

/// The open round's scalars.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct OpenRoundRecord {
    pub round: u64,
    /// The model the round trains on, `H_r` (none before the job starts).
    pub model_version: Option<Hash>,
    pub opened_at_ns: u64,
    /// 0 when no round is open.
    pub deadline_ns: u64,
    /// Time left on the deadline when the job was paused.
    pub paused_remaining_ns: u64,
    pub extensions: u32,
    pub committed: u32,
    pub total_weight: u64,
    /// Global index of the round's first contribution.
    pub first_contribution: u64,
    /// Central DP: when the round's close became due while it waited for its noise seed
    /// (the round takes no submissions meanwhile). Added after version 1 was first
    /// written: `None` in older records.
    pub close_due_ns: Option<u64>,
    /// Secure aggregation: the round's phase. Added after version 1 was first written:
    /// `None` in older records, and in rounds whose phases have not started.
    pub secagg: Option<SecAggRoundRecord>,
    /// Adaptive clipping: the round's clip (`None`: the job's `clip_norm`, and in records
    /// written before the field).
    pub clip_norm: Option<f32>,
    /// Adaptive clipping: the round's commits whose norm before clipping was at most the
    /// clip (`None` in records written before the field: none).
    pub below_clip: Option<u32>,
}

/// Where a secure-aggregation round stands (its keys, envelopes and shares are in
/// `MEMORY_SECAGG`).
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SecAggRoundRecord {
    /// 0 advertise keys, 1 share keys, 2 masked input, 3 unmask.
    pub phase: u8,
    pub phase_deadline_ns: u64,
    /// Fixed when the advertise phase ends.
    pub threshold: u32,
    pub restarts: u32,
    /// One byte per participant, in index order: bit 0 shared, 1 masked, 2 revealed.
    pub flags: ByteBuf,
    /// Principals barred from this round after it started over without them.
    pub benched: u32,
}

impl StoredRecord for OpenRoundRecord {
    const VERSION: u8 = 1;
}

// ---------------------------------------------------------------- allocators (20)

/// The next ids to hand out, the retained arena's bump pointer, and the staging slots'
/// high-water mark.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct AllocatorsRecord {
    pub next_contribution: u64,
    pub next_submission_id: u64,
    pub next_dataset_id: u64,
    /// End of the arena in `MEMORY_STAGING`: retained deltas (and, in the release before
    /// staging slots, uploads in progress).
    pub staging_top: u64,
    /// Staging slots ever handed out in this job (`None` in older records: none); slots
    /// below it that are free are in `free_slots`.
    pub next_slot: Option<u64>,
}

impl AllocatorsRecord {
    pub fn next_slot(&self) -> u64 {
        self.next_slot.unwrap_or(0)
    }
}

impl StoredRecord for AllocatorsRecord {
    const VERSION: u8 = 1;
}

// ---------------------------------------------------------------- history frontier (21)

/// The RFC 6962 frontier of the round history: its size and the roots of its perfect
/// subtrees.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct HistoryRecord {
    pub size: u64,
    pub peaks: Vec<Hash>,
}

impl StoredRecord for HistoryRecord {
    const VERSION: u8 = 1;
}

impl HistoryRecord {
    pub fn frontier(&self) -> MerkleFrontier {
        MerkleFrontier::from_parts(
            self.size,
            self.peaks.iter().map(|h| h.into_array()).collect(),
        )
        .expect("stored history frontier is consistent")
    }

    pub fn of(f: &MerkleFrontier) -> Self {
        Self {
            size: f.size(),
            peaks: f.peaks().iter().map(|p| Hash::new(*p)).collect(),
        }
    }
}

// ---------------------------------------------------------------- datasets (4)

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
pub struct DatasetRecord {
    pub id: u64,
    pub owner: Principal,
    pub name: String,
    pub commitment: Hash,
    pub sample_count: u64,
    pub license: String,
    pub description: String,
    pub registered_at_ns: u64,
    pub revoked_at_ns: Option<u64>,
}

impl StoredRecord for DatasetRecord {
    const VERSION: u8 = 1;
}

impl From<DatasetRecord> for Dataset {
    fn from(d: DatasetRecord) -> Self {
        Self {
            id: d.id,
            owner: d.owner,
            name: d.name,
            commitment: d.commitment,
            sample_count: d.sample_count,
            license: d.license,
            description: d.description,
            registered_at_ns: d.registered_at_ns,
            revoked_at_ns: d.revoked_at_ns,
        }
    }
}

// ---------------------------------------------------------------- submissions (6)

/// A signed submission header as stored (see [`SubmissionHeader`]).
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HeaderRecord {
    pub canister_id: Principal,
    pub job_id: u64,
    pub round: u64,
    pub base_model_version: Hash,
    pub dataset_id: u64,
    pub sample_count: u64,
    pub encoding: EncodingRecord,
    pub param_count: u64,
    pub chunk_count: u32,
    pub chunk_root: Hash,
}

impl From<SubmissionHeader> for HeaderRecord {
    fn from(h: SubmissionHeader) -> Self {
        Self {
            canister_id: h.canister_id,
            job_id: h.job_id,
            round: h.round,
            base_model_version: h.base_model_version,
            dataset_id: h.dataset_id,
            sample_count: h.sample_count,
            encoding: h.encoding.into(),
            param_count: h.param_count,
            chunk_count: h.chunk_count,
            chunk_root: h.chunk_root,
        }
    }
}

impl From<HeaderRecord> for SubmissionHeader {
    fn from(h: HeaderRecord) -> Self {
        Self {
            canister_id: h.canister_id,
            job_id: h.job_id,
            round: h.round,
            base_model_version: h.base_model_version,
            dataset_id: h.dataset_id,
            sample_count: h.sample_count,
            encoding: h.encoding.into(),
            param_count: h.param_count,
            chunk_count: h.chunk_count,
            chunk_root: h.chunk_root,
        }
    }
}

impl HeaderRecord {
    pub fn encoding(&self) -> DeltaEncoding {
        self.encoding.into()
    }
}

/// An upload in the open round.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
pub struct SubmissionRecord {
    pub id: u64,
    pub round: u64,
    pub contributor: Principal,
    pub header: HeaderRecord,
    pub header_hash: Hash,
    pub public_key: ByteBuf,
    pub signature: ByteBuf,
    pub chunk_hashes: Vec<Hash>,
    /// One byte per chunk: 1 when stored.
    pub stored: ByteBuf,
    pub stored_count: u32,
    /// Where the bytes are staged: in slot `slot` of the staging slots, or, for uploads
    /// begun by the release before slots (`slot` is `None`), at this offset of the arena.
    pub staging_offset: u64,
    pub byte_len: u64,
    pub weight: u64,
    /// Contribution index once committed.
    pub contribution: Option<u64>,
    /// The staging slot (`None`: an upload begun by the release before slots).
    pub slot: Option<u64>,
    /// When the upload last stored a new chunk, or began (`None` in older records: it
    /// counts as the most stalled).
    pub last_progress_ns: Option<u64>,
    /// Adaptive clipping: the contributor's bit (see
    /// [`flic_protocol::api::BeginSubmissionArgs::below_clip`]); `None` in other jobs and
    /// in older records.
    pub below_clip: Option<bool>,
}

impl SubmissionRecord {
    pub fn last_progress_ns(&self) -> u64 {
        self.last_progress_ns.unwrap_or(0)
    }
}

impl StoredRecord for SubmissionRecord {
    const VERSION: u8 = 1;
}

// ---------------------------------------------------------------- contributions (8)

/// A committed contribution plus where its delta is retained, if it is.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
pub struct ContributionRecord {
    pub contribution: PublicContribution,
    pub retained_offset: Option<u64>,
    pub byte_len: u64,
    /// The upload it was committed from (`None` in records written before the field), so
    /// a commit retried after a lost reply gets its receipt again.
    pub submission_id: Option<u64>,
}

impl StoredRecord for ContributionRecord {
    const VERSION: u8 = 1;
}

/// What the API shows of a contribution (see [`Contribution`]).
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
pub struct PublicContribution {
    pub index: u64,
    pub round: u64,
    pub index_in_round: u32,
    pub contributor: Principal,
    pub dataset_id: u64,
    pub header: HeaderRecord,
    pub header_hash: Hash,
    pub public_key: ByteBuf,
    pub signature: ByteBuf,
    pub weight: u64,
    pub committed_at_ns: u64,
    pub retained: bool,
}

impl From<PublicContribution> for Contribution {
    fn from(c: PublicContribution) -> Self {
        Self {
            index: c.index,
            round: c.round,
            index_in_round: c.index_in_round,
            contributor: c.contributor,
            dataset_id: c.dataset_id,
            header: c.header.into(),
            header_hash: c.header_hash,
            public_key: c.public_key,
            signature: c.signature,
            weight: c.weight,
            committed_at_ns: c.committed_at_ns,
            retained: c.retained,
        }
    }
}

// ---------------------------------------------------------------- round history (11)

/// A closed round (see [`RoundRecord`]; its canonical bytes are the API type's).
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
pub struct ClosedRoundRecord {
    pub round: u64,
    pub base_version: Hash,
    pub new_version: Hash,
    pub contributions_root: Hash,
    pub first_contribution: u64,
    pub contribution_count: u32,
    pub total_weight: u64,
    pub contributors: Vec<Principal>,
    pub frac_bits: u32,
    pub server_lr: f32,
    pub opened_at_ns: u64,
    pub closed_at_ns: u64,
    pub extensions: u32,
    /// Added after version 1 was first written: `None` in older records (no DP).
    pub epsilon_spent: Option<f64>,
    /// Added after version 1 was first written: `None` in older records (a fixed clip).
    pub adaptive_clip: Option<RoundClipRecord>,
}

/// A round's adaptive clip as stored (see [`RoundClip`]).
#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct RoundClipRecord {
    pub clip_norm: f32,
    pub noised_count: f64,
}

impl StoredRecord for ClosedRoundRecord {
    const VERSION: u8 = 1;
}

impl From<RoundRecord> for ClosedRoundRecord {
    fn from(r: RoundRecord) -> Self {
        Self {
            round: r.round,
            base_version: r.base_version,
            new_version: r.new_version,
            contributions_root: r.contributions_root,
            first_contribution: r.first_contribution,
            contribution_count: r.contribution_count,
            total_weight: r.total_weight,
            contributors: r.contributors,
            frac_bits: r.frac_bits,
            server_lr: r.server_lr,
            opened_at_ns: r.opened_at_ns,
            closed_at_ns: r.closed_at_ns,
            extensions: r.extensions,
            epsilon_spent: r.epsilon_spent,
            adaptive_clip: r.adaptive_clip.map(|c| RoundClipRecord {
                clip_norm: c.clip_norm,
                noised_count: c.noised_count,
            }),
        }
    }
}

impl From<ClosedRoundRecord> for RoundRecord {
    fn from(r: ClosedRoundRecord) -> Self {
        Self {
            round: r.round,
            base_version: r.base_version,
            new_version: r.new_version,
            contributions_root: r.contributions_root,
            first_contribution: r.first_contribution,
            contribution_count: r.contribution_count,
            total_weight: r.total_weight,
            contributors: r.contributors,
            frac_bits: r.frac_bits,
            server_lr: r.server_lr,
            opened_at_ns: r.opened_at_ns,
            closed_at_ns: r.closed_at_ns,
            extensions: r.extensions,
            epsilon_spent: r.epsilon_spent,
            adaptive_clip: r.adaptive_clip.map(|c| RoundClip {
                clip_norm: c.clip_norm,
                noised_count: c.noised_count,
            }),
        }
    }
}

// ---------------------------------------------------------------- evaluations (16)

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
pub struct EvaluationRecord {
    pub round: u64,
    pub model_version: Hash,
    pub reporter: Principal,
    pub accuracy: f64,
    pub loss: f64,
    pub samples: u64,
    pub reported_at_ns: u64,
    /// Reported by a controller (`None` in records written before the field: no).
    pub by_controller: Option<bool>,
}

impl StoredRecord for EvaluationRecord {
    const VERSION: u8 = 1;
}

impl From<EvaluationRecord> for Evaluation {
    fn from(e: EvaluationRecord) -> Self {
        Self {
            round: e.round,
            model_version: e.model_version,
            reporter: e.reporter,
            accuracy: e.accuracy,
            loss: e.loss,
            samples: e.samples,
            reported_at_ns: e.reported_at_ns,
        }
    }
}

// ---------------------------------------------------------------- metrics (17)

impl StoredRecord for crate::metrics::Metrics {
    const VERSION: u8 = 1;
}
