//! Candid types of the aggregator canister API: arguments, replies and typed errors.
//! The canister, the client and the tests all use these very types.

use candid::{CandidType, Principal};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::chunking::{
    chunk_count, DEFAULT_CHUNK_SIZE, MAX_CHUNKS, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE,
};
use crate::encoding::{DeltaEncoding, DeltaError};
use crate::fedavg::AggregationLimits;
use crate::hash::to_hex;
use crate::model::ModelSpec;
use crate::optimizers::ServerOptimizer;
use crate::privacy::{distributed_frac_bits, DpConfig, DpError, DpMode};
use crate::rules::AggregationRule;
use crate::secagg::SecAggConfig;
use crate::submission::{SignatureError, SubmissionHeader};
use crate::Hash;

/// Largest model a spec may describe (weights 4 B + accumulator 8 B per parameter). A job
/// must also fit the IC's message limits ([`crate::ic_limits`]), which bind first: at
/// about 3.7e7 parameters with both encodings, 4.3e7 with int8 only.
pub const MAX_PARAMS: u64 = 100_000_000;
/// Largest `max_clients`.
pub const MAX_CLIENTS: u32 = 10_000;
pub const MIN_ROUND_DURATION_NS: u64 = 1_000_000_000;
pub const MAX_ROUND_DURATION_NS: u64 = 366 * 24 * 3600 * 1_000_000_000;
/// Largest server learning rate, and largest clip norm: with both bounded, a round moves
/// a weight by at most `MAX_SERVER_LR * MAX_CLIP_NORM`, so weights that start finite stay
/// finite for more rounds than any job can run (about 3e31).
pub const MAX_SERVER_LR: f32 = 10.0;
pub const MAX_CLIP_NORM: f32 = 1e6;
/// Largest page any paginated query returns.
pub const MAX_PAGE_LEN: u32 = 100;
/// Contributors a page of round records may hold in total (`round_history`, its certified
/// form and `/api/rounds`): a page ends before the record that would pass it, so a page of
/// records at `MAX_CLIENTS` holds two and stays far below the IC's 2 MiB reply limit
/// (about 31 bytes of Candid and 66 of JSON per contributor). A page always holds at least
/// one record; `next` points at the rest.
pub const MAX_PAGE_CONTRIBUTORS: u64 = 2 * MAX_CLIENTS as u64;
pub const MAX_DATASET_NAME_LEN: usize = 128;
pub const MAX_LICENSE_LEN: usize = 128;
pub const MAX_DESCRIPTION_LEN: usize = 4096;
pub const MAX_DATASETS_PER_OWNER: u64 = 64;
/// Datasets the registry holds in all (principals are free, so the per-owner cap alone
/// bounds nothing): about 1 KB each, so at most ~1 GB of stable memory.
pub const MAX_DATASETS: u64 = 1_000_000;
/// Largest sample count a dataset may register (2^40, about 10^12): self-declared counts
/// are bounded so that every weight, sum and evaluation total stays far from overflow.
pub const MAX_SAMPLE_COUNT: u64 = 1 << 40;
/// Evaluations kept per closed round (one per reporter; a reporter's new report replaces
/// its old one).
pub const MAX_EVALUATIONS_PER_ROUND: usize = 16;
/// Of those, the slots only controllers may fill: contributors are free principals.
pub const EVALUATIONS_RESERVED_FOR_CONTROLLERS: usize = 4;
/// How long an upload may go without storing a new chunk before it counts as stalled and
/// gives way to a new one when the round's uploads are full; the default of
/// [`JobConfig::upload_stall_ns`] (never more than a quarter of the round).
pub const DEFAULT_UPLOAD_STALL_NS: u64 = 120 * 1_000_000_000;
pub const MIN_UPLOAD_STALL_NS: u64 = 1_000_000_000;
/// Largest FedProx coefficient a job may set (past this the proximal term alone decides
/// every step: the clients would learn nothing from their data).
pub const MAX_PROXIMAL_MU: f32 = 1000.0;
/// Principals one `update_allow_list` call may add or remove.
pub const MAX_ALLOW_LIST_CHANGE: usize = 1_000;

// ---------------------------------------------------------------- job configuration

#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Optimizer {
    Sgd,
    Adam,
}

/// Local training settings every client must use.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ClientHyperparameters {
    pub learning_rate: f32,
    pub batch_size: u32,
    pub local_epochs: u32,
    pub optimizer: Optimizer,
    pub seed: u64,
    /// FedProx's proximal term: every client minimises its loss plus
    /// `mu / 2 * ||w - w_global||^2` (Li et al., 2020). `None` (or 0) is plain local
    /// training. Added after version 1: older configurations decode as `None`.
    #[serde(default)]
    pub proximal_mu: Option<f32>,
}

impl ClientHyperparameters {
    /// The proximal coefficient clients use (0 when unset).
    pub fn proximal_mu(&self) -> f32 {
        self.proximal_mu.unwrap_or(0.0)
    }
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JobConfig {
    pub model_spec: ModelSpec,
    pub client: ClientHyperparameters,
    /// Contributions needed to close a round at its deadline.
    pub min_clients: u32,
    /// A round closes as soon as this many contributions are committed.
    pub max_clients: u32,
    /// Round length; a round short of `min_clients` at its deadline is extended by this.
    pub round_duration_ns: u64,
    pub allowed_encodings: Vec<DeltaEncoding>,
    /// L2 bound every delta must respect.
    pub clip_norm: f32,
    /// Cap on a contribution's weight (its sample count).
    pub max_weight: u64,
    pub server_lr: f32,
    /// Bytes per upload/download chunk; default [`DEFAULT_CHUNK_SIZE`].
    pub chunk_size: Option<u32>,
    /// Keep committed deltas in stable memory so anyone can download and re-check them.
    pub retain_contributions: bool,
    /// Who may register datasets and submit: anyone (`None`, the default) or the
    /// principals a controller lists.
    pub admission: Option<Admission>,
    /// See [`JobConfig::upload_stall_ns`]; `None` takes the default.
    pub upload_stall_ns: Option<u64>,
    /// How a round's contributions become the update (`None`: FedAvg). See
    /// [`crate::rules`].
    pub aggregation: Option<AggregationRule>,
    /// How the update moves the model (`None`: SGD with `server_lr`). See
    /// [`crate::optimizers`].
    pub server_optimizer: Option<ServerOptimizer>,
    /// Client-level differential privacy with a budget (`None`: none). See
    /// [`crate::privacy`].
    pub dp: Option<DpConfig>,
    /// Secure aggregation (`None`: none): the canister only ever holds masked inputs and
    /// their sum. See [`crate::secagg`].
    pub secure_aggregation: Option<SecAggConfig>,
}

/// Who may take part in a job.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Admission {
    /// Any non-anonymous principal (an open federation).
    #[default]
    Open,
    /// Only the principals on the canister's allow-list (`update_allow_list`): a
    /// permissioned federation, where strangers cannot register, upload or hold a place.
    AllowList,
}

impl JobConfig {
    /// A job for `model_spec` whose clients train with `client`; every other field takes
    /// the default of `flic job start`: 2 to 10 clients, one-hour rounds, `f32` and int8
    /// deltas, L2 clip 10, weight cap 100,000, server learning rate 1, the default chunk
    /// size, contributions not retained. Change fields with struct update syntax.
    pub fn new(model_spec: ModelSpec, client: ClientHyperparameters) -> Self {
        Self {
            model_spec,
            client,
            min_clients: 2,
            max_clients: 10,
            round_duration_ns: 3_600 * 1_000_000_000,
            allowed_encodings: vec![DeltaEncoding::F32, DeltaEncoding::Int8Blocks],
            clip_norm: 10.0,
            max_weight: 100_000,
            server_lr: 1.0,
            chunk_size: None,
            retain_contributions: false,
            admission: None,
            upload_stall_ns: None,
            aggregation: None,
            server_optimizer: None,
            dp: None,
            secure_aggregation: None,
        }
    }

    pub fn server_optimizer(&self) -> ServerOptimizer {
        self.server_optimizer.unwrap_or_default()
    }

    pub fn aggregation(&self) -> AggregationRule {
        self.aggregation.unwrap_or_default()
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE)
    }

    pub fn admission(&self) -> Admission {
        self.admission.unwrap_or_default()
    }

    /// How long an upload may store no new chunk before it counts as stalled: when the
    /// round's uploads in progress are at their limit, the most stalled one gives way to a
    /// new upload, and a deadline extension drops every stalled one. Default: the smaller
    /// of [`DEFAULT_UPLOAD_STALL_NS`] and a quarter of the round.
    pub fn upload_stall_ns(&self) -> u64 {
        upload_stall_ns(self.upload_stall_ns, self.round_duration_ns)
    }

    pub fn limits(&self) -> AggregationLimits {
        AggregationLimits {
            max_clients: self.max_clients as u64,
            max_weight: self.max_weight,
            clip_norm: self.clip_norm,
        }
    }

    /// The discrete Gaussian a client adds to its masked input in a secure round of
    /// threshold `threshold` (distributed DP), or `None` when the job's clients add none.
    pub fn client_noise(
        &self,
        frac_bits: u32,
        threshold: u32,
    ) -> Result<Option<crate::privacy::discrete_gaussian::Variance>, DpError> {
        match &self.dp {
            Some(dp) if dp.mode == DpMode::Distributed => crate::privacy::distributed_variance(
                dp,
                self.clip_norm,
                self.max_weight,
                frac_bits,
                self.model_spec.param_count(),
                threshold,
            )
            .map(Some),
            _ => Ok(None),
        }
    }

    /// Checks every field; returns the accumulator's fractional bits.
    pub fn validate(&self) -> Result<u32, AdminError> {
        let bad = |reason: String| Err(AdminError::InvalidConfig { reason });
        if let Err(e) = self.model_spec.validate(MAX_PARAMS) {
            return bad(format!("model spec: {e}"));
        }
        let c = &self.client;
        if !(c.learning_rate.is_finite() && c.learning_rate > 0.0) {
            return bad(format!(
                "client learning_rate must be finite and positive, got {}",
                c.learning_rate
            ));
        }
        if c.batch_size == 0 || c.local_epochs == 0 {
            return bad("client batch_size and local_epochs must be at least 1".into());
        }
        if let Some(mu) = c.proximal_mu {
            if !(mu.is_finite() && (0.0..=MAX_PROXIMAL_MU).contains(&mu)) {
                return bad(format!(
                    "client proximal_mu must be in [0, {MAX_PROXIMAL_MU}], got {mu}"
                ));
            }
        }
        if self.min_clients == 0
            || self.min_clients > self.max_clients
            || self.max_clients > MAX_CLIENTS
        {
            return bad(format!(
                "need 1 <= min_clients ({}) <= max_clients ({}) <= {MAX_CLIENTS}",
                self.min_clients, self.max_clients
            ));
        }
        if !(MIN_ROUND_DURATION_NS..=MAX_ROUND_DURATION_NS).contains(&self.round_duration_ns) {
            return bad(format!(
                "round_duration_ns {} is outside [{MIN_ROUND_DURATION_NS}, {MAX_ROUND_DURATION_NS}]",
                self.round_duration_ns
            ));
        }
        if self.allowed_encodings.is_empty() {
            return bad("allowed_encodings is empty".into());
        }
        let mut encodings = self.allowed_encodings.clone();
        encodings.sort();
        encodings.dedup();
        if encodings.len() != self.allowed_encodings.len() {
            return bad("allowed_encodings lists an encoding twice".into());
        }
        for e in &self.allowed_encodings {
            e.check().map_err(|err| AdminError::InvalidConfig {
                reason: format!("allowed_encodings: {err}"),
            })?;
        }
        if !(self.server_lr.is_finite() && self.server_lr > 0.0 && self.server_lr <= MAX_SERVER_LR)
        {
            return bad(format!(
                "server_lr must be in (0, {MAX_SERVER_LR}], got {}",
                self.server_lr
            ));
        }
        if self.clip_norm > MAX_CLIP_NORM {
            return bad(format!(
                "clip_norm {} is above {MAX_CLIP_NORM}",
                self.clip_norm
            ));
        }
        if let Some(stall) = self.upload_stall_ns {
            if !(MIN_UPLOAD_STALL_NS..=self.round_duration_ns).contains(&stall) {
                return bad(format!(
                    "upload_stall_ns {stall} is outside [{MIN_UPLOAD_STALL_NS}, round_duration_ns = {}]",
                    self.round_duration_ns
                ));
            }
        }
        let cs = self.chunk_size();
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&cs) {
            return bad(format!(
                "chunk_size {cs} is outside [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]"
            ));
        }
        // The f32 encoding (4 bytes per parameter) is the largest payload: model and deltas.
        let chunks = chunk_count(
            DeltaEncoding::F32.encoded_len(self.model_spec.param_count()),
            cs,
        );
        if chunks > MAX_CHUNKS as u64 {
            return bad(format!("the model needs {chunks} chunks of {cs} bytes, above {MAX_CHUNKS}: raise chunk_size"));
        }
        self.server_optimizer()
            .validate()
            .map_err(|reason| AdminError::InvalidConfig {
                reason: format!("server optimizer: {reason}"),
            })?;
        self.aggregation()
            .validate(self.min_clients, self.max_clients)
            .map_err(|e| AdminError::InvalidConfig {
                reason: e.to_string(),
            })?;
        crate::ic_limits::WorstCase::of(
            self.model_spec.param_count(),
            self.max_clients,
            &self.allowed_encodings,
        )
        .with_rule(
            &self.aggregation(),
            self.model_spec.param_count(),
            self.max_clients,
        )
        .with_optimizer(&self.server_optimizer(), self.model_spec.param_count())
        .with_dp(self.dp.as_ref(), self.model_spec.param_count())
        .with_secagg(
            self.secure_aggregation.as_ref(),
            self.model_spec.param_count(),
            self.max_clients,
        )
        .check()
        .map_err(|reason| AdminError::InvalidConfig { reason })?;
        if let Some(dp) = &self.dp {
            dp.check().map_err(|e| AdminError::InvalidConfig {
                reason: format!("dp: {e}"),
            })?;
            // The noise is calibrated to the sum's sensitivity; a robust rule's output has
            // another one, which this accountant does not bound.
            if self.aggregation() != AggregationRule::FedAvg {
                return bad(format!(
                    "dp needs FedAvg aggregation: the noise is calibrated to the sensitivity of the round's sum, not to that of {}",
                    self.aggregation()
                ));
            }
        }
        let masked = self.allowed_encodings.contains(&DeltaEncoding::Masked);
        match &self.secure_aggregation {
            None if masked => {
                return bad("the masked encoding is secure aggregation's: allow it only with secure_aggregation".into())
            }
            None => {}
            Some(sa) => {
                sa.check(self.min_clients, self.max_clients)
                    .map_err(|e| AdminError::InvalidConfig {
                        reason: format!("secure_aggregation: {e}"),
                    })?;
                if self.allowed_encodings != [DeltaEncoding::Masked] {
                    return bad("secure aggregation takes masked inputs only: allowed_encodings must be [Masked]".into());
                }
                // The canister sees only masked inputs: nothing a rule could rank, nothing
                // a verifier could re-check.
                if self.aggregation() != AggregationRule::FedAvg {
                    return bad(format!("secure aggregation needs FedAvg: {} reads every contribution, which masking hides (choose one: a robust rule or secure aggregation)", self.aggregation()));
                }
                if self.retain_contributions {
                    return bad("secure aggregation cannot retain contributions: a masked input cannot be re-checked by anyone".into());
                }
            }
        }
        let safe = self
            .limits()
            .safe_frac_bits()
            .map_err(|e| AdminError::InvalidConfig {
                reason: e.to_string(),
            })?;
        match &self.dp {
            Some(dp) if dp.adaptive_clip.is_some() && self.secure_aggregation.is_some() => bad(
                format!("dp: {}", DpError::AdaptiveClipWithSecureAggregation),
            ),
            Some(dp) if dp.mode == DpMode::Distributed => {
                if self.secure_aggregation.is_none() {
                    return bad(format!(
                        "dp: {}",
                        DpError::DistributedNeedsSecureAggregation
                    ));
                }
                // Fewer fractional bits, so the clients' noise cannot wrap the sum.
                distributed_frac_bits(dp, &self.limits(), self.model_spec.param_count(), safe)
                    .map_err(|e| AdminError::InvalidConfig {
                        reason: format!("dp: {e}"),
                    })
            }
            _ => Ok(safe),
        }
    }
}

/// The canister's single install argument.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum InitArg {
    Init(InitArgs),
    Upgrade(Option<UpgradeArgs>),
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct InitArgs {
    /// Configure the job at install time (the installer is a controller).
    pub job: Option<JobConfig>,
}

/// [`JobConfig::upload_stall_ns`] from its two fields (the stored job record calls it too).
pub fn upload_stall_ns(configured: Option<u64>, round_duration_ns: u64) -> u64 {
    configured.unwrap_or_else(|| {
        DEFAULT_UPLOAD_STALL_NS
            .min(round_duration_ns / 4)
            .max(MIN_UPLOAD_STALL_NS)
    })
}

/// A change to the allow-list of an [`Admission::AllowList`] job (at most
/// [`MAX_ALLOW_LIST_CHANGE`] principals in all); removals apply after additions.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct AllowListChange {
    pub add: Vec<Principal>,
    pub remove: Vec<Principal>,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct UpgradeArgs {
    /// New round duration for the rounds to come (the current deadline is kept).
    pub round_duration_ns: Option<u64>,
    /// Instructions a robust rule's close may use per message before it goes on in the
    /// next (default [`crate::ic_limits::CLOSE_SLICE_INSTRUCTIONS`]; at least
    /// [`MIN_CLOSE_SLICE_INSTRUCTIONS`]). Kept across later upgrades.
    #[serde(default)]
    pub close_slice_instructions: Option<u64>,
}

/// The smallest close slice an upgrade may set.
pub const MIN_CLOSE_SLICE_INSTRUCTIONS: u64 = 1_000_000;

#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// No job configured yet.
    Unconfigured,
    /// Configured; the initial model is being uploaded.
    AwaitingModel,
    /// Initial model complete; waiting for `start`.
    Ready,
    Running,
    Paused,
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

// ---------------------------------------------------------------- errors

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, thiserror::Error)]
pub enum AdminError {
    #[error("caller {caller} is not a controller of this canister")]
    NotController { caller: Principal },
    #[error("invalid job configuration: {reason}")]
    InvalidConfig { reason: String },
    #[error("no job is configured: call configure_job first")]
    NotConfigured,
    #[error("the job is {state}; this action needs it to be {needed}")]
    WrongState { state: JobState, needed: String },
    #[error("model chunk {index} is out of range: the model has {chunk_count} chunks")]
    ModelChunkOutOfRange { index: u32, chunk_count: u32 },
    #[error("model chunk {index} is {got} bytes, expected {expected}")]
    ModelChunkLength { index: u32, expected: u64, got: u64 },
    #[error(
        "the initial model is incomplete: {missing} chunks missing, the first is {first_missing}"
    )]
    ModelIncomplete { missing: u32, first_missing: u32 },
    #[error("initial weight {index} is NaN or infinite")]
    NonFiniteWeight { index: u64 },
    #[error("submission {submission_id} does not exist or was already evicted")]
    UnknownSubmission { submission_id: u64 },
    #[error("submission {submission_id} is committed: a committed contribution is never evicted")]
    SubmissionCommitted { submission_id: u64 },
    #[error("an allow-list change names {len} principals, the limit per call is {max}")]
    AllowListChangeTooLarge { len: u64, max: u64 },
    #[error("the privacy budget is spent: {rounds} rounds used epsilon {epsilon_spent}, and one more would exceed the target {target_epsilon}")]
    PrivacyBudgetSpent {
        rounds: u64,
        epsilon_spent: f64,
        target_epsilon: f64,
    },
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, thiserror::Error)]
pub enum SubmitError {
    #[error("the anonymous principal cannot submit")]
    AnonymousCaller,
    #[error("the job is {state}, not running: no submissions are accepted")]
    JobNotRunning { state: JobState },
    #[error("{0}")]
    Signature(SignatureError),
    #[error("caller {caller} is not the principal {key_principal} of the signing key")]
    CallerMismatch {
        caller: Principal,
        key_principal: Principal,
    },
    #[error("header names canister {got}, this is {expected}")]
    WrongCanister { expected: Principal, got: Principal },
    #[error("header names job {got}, the current job is {expected}")]
    WrongJob { expected: u64, got: u64 },
    #[error("header is for round {got}, which is closed; the open round is {current}")]
    StaleRound { current: u64, got: u64 },
    #[error("header is for round {got}, which is not open yet; the open round is {current}")]
    FutureRound { current: u64, got: u64 },
    #[error(
        "header's base model version is {}, the round is on {}: download the current model",
        to_hex(got.as_slice()),
        to_hex(expected.as_slice())
    )]
    WrongBaseVersion { expected: Hash, got: Hash },
    #[error("dataset {dataset_id} is not registered")]
    UnknownDataset { dataset_id: u64 },
    #[error("dataset {dataset_id} belongs to {owner}, not the caller")]
    DatasetNotOwned { dataset_id: u64, owner: Principal },
    #[error("dataset {dataset_id} was revoked and takes no further submissions")]
    DatasetRevoked { dataset_id: u64 },
    #[error("sample count {claimed} exceeds the {registered} samples registered for the dataset")]
    SampleCountExceedsDataset { claimed: u64, registered: u64 },
    #[error("sample count is zero")]
    ZeroSampleCount,
    #[error("encoding {encoding} is not allowed by this job")]
    EncodingNotAllowed { encoding: DeltaEncoding },
    #[error("{}", if *expected { "this job clips adaptively: set below_clip, whether the delta's norm before clipping was at most the round's clip (round_info's round_clip_norm)" } else { "this job has no adaptive clipping: leave below_clip unset" })]
    ClipBit { expected: bool },
    #[error("header has {got} parameters, the model has {expected}")]
    WrongParamCount { expected: u64, got: u64 },
    #[error("header has {got} chunks, a {encoding} delta of this model in chunks of the job's size has {expected}")]
    WrongChunkCount {
        encoding: DeltaEncoding,
        expected: u32,
        got: u32,
    },
    #[error("{got} chunk hashes were sent, the header has {expected} chunks")]
    WrongChunkHashCount { expected: u32, got: u32 },
    #[error(
        "the chunk hashes' Merkle root {} differs from the header's chunk root {}",
        to_hex(computed.as_slice()),
        to_hex(header.as_slice())
    )]
    ChunkRootMismatch { computed: Hash, header: Hash },
    #[error("the caller already has submission {submission_id} in round {round}{}", if *committed { " (committed)" } else { " with a different header" })]
    DuplicateSubmission {
        round: u64,
        submission_id: u64,
        committed: bool,
    },
    #[error("the round already has {pending} uploads in progress, the limit (twice max_clients), and none has stalled; the oldest stalls in {:.1} s unless it progresses: try again then", *retry_after_ns as f64 / 1e9)]
    TooManyPendingSubmissions {
        pending: u32,
        limit: u32,
        /// When the least recently progressing upload counts as stalled, from now.
        retry_after_ns: u64,
    },
    #[error("the job admits only principals on its allow-list, and {caller} is not on it")]
    NotAllowed { caller: Principal },
    #[error("round {round} is closing (its robust rule reads every delta over several messages): nothing changes until round {} opens, in a few seconds", round + 1)]
    RoundClosing { round: u64 },
    #[error("secure aggregation: {reason}")]
    SecureAggregation { reason: String },
    #[error("submission {submission_id} does not exist (a submission not committed before its round closed is discarded)")]
    UnknownSubmission { submission_id: u64 },
    #[error("submission {submission_id} belongs to another principal")]
    NotSubmissionOwner { submission_id: u64 },
    #[error("submission {submission_id} is already committed")]
    AlreadyCommitted { submission_id: u64 },
    #[error("chunk {index} is out of range: the submission has {chunk_count} chunks")]
    ChunkIndexOutOfRange { index: u32, chunk_count: u32 },
    #[error("chunk {index} is {got} bytes, expected {expected}")]
    ChunkLengthMismatch { index: u32, expected: u64, got: u64 },
    #[error(
        "chunk {index} hashes to {}, the submission declared {}",
        to_hex(got.as_slice()),
        to_hex(expected.as_slice())
    )]
    ChunkHashMismatch {
        index: u32,
        expected: Hash,
        got: Hash,
    },
    #[error(
        "{missing} chunks are missing (first: {first_missing}); upload them before committing"
    )]
    MissingChunks { missing: u32, first_missing: u32 },
    #[error("invalid delta: {0}")]
    InvalidDelta(DeltaError),
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DatasetError {
    #[error("the anonymous principal cannot own datasets")]
    AnonymousCaller,
    #[error("the job admits only principals on its allow-list, and {caller} is not on it")]
    NotAllowed { caller: Principal },
    #[error("round {round} is closing (its robust rule reads every delta over several messages): nothing changes until round {} opens, in a few seconds", round + 1)]
    RoundClosing { round: u64 },
    #[error("dataset name is empty")]
    EmptyName,
    #[error("{field} is {len} bytes, the limit is {max}")]
    FieldTooLong { field: String, len: u64, max: u64 },
    #[error("sample count is zero")]
    ZeroSampleCount,
    #[error("sample count {got} is above the limit {max}")]
    SampleCountTooLarge { got: u64, max: u64 },
    #[error("this commitment is already registered as dataset {dataset_id}: a dataset is registered once, by its owner (register a salted commitment to keep a public dataset's commitment from being recognised)")]
    CommitmentTaken { dataset_id: u64 },
    #[error("the registry holds {max} datasets, its limit")]
    RegistryFull { max: u64 },
    #[error("the caller already owns {max} datasets, the limit")]
    TooManyDatasets { max: u64 },
    #[error("dataset {dataset_id} is not registered")]
    UnknownDataset { dataset_id: u64 },
    #[error("dataset {dataset_id} belongs to {owner}, not the caller")]
    NotOwner { dataset_id: u64, owner: Principal },
    #[error("dataset {dataset_id} is already revoked")]
    AlreadyRevoked { dataset_id: u64 },
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("no model yet: the job is not configured or its initial model is incomplete")]
    NoModel,
    #[error("chunk {index} is out of range: there are {chunk_count} chunks")]
    ChunkIndexOutOfRange { index: u32, chunk_count: u32 },
    #[error("model version {} is not known to this canister", to_hex(version.as_slice()))]
    UnknownModelVersion { version: Hash },
    #[error("submission {submission_id} does not exist")]
    UnknownSubmission { submission_id: u64 },
    #[error("contribution {index} does not exist")]
    UnknownContribution { index: u64 },
    #[error("contribution {index}'s delta was not retained (retain_contributions is off)")]
    NotRetained { index: u64 },
    #[error("round {round} is still open: its record and proofs exist once it closes")]
    RoundNotClosed { round: u64 },
    #[error("the initial model was not retained (retain_contributions is off)")]
    InitialModelNotRetained,
}

// ---------------------------------------------------------------- registry

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RegisterDatasetArgs {
    pub name: String,
    /// Merkle root over per-sample hashes, computed by the owner.
    pub commitment: Hash,
    pub sample_count: u64,
    pub license: String,
    pub description: String,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
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

// ---------------------------------------------------------------- submissions

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BeginSubmissionArgs {
    pub header: SubmissionHeader,
    /// Raw 32-byte Ed25519 public key; the caller must be its self-authenticating principal.
    pub public_key: ByteBuf,
    /// Ed25519 signature (64 bytes) over `header.signing_bytes()`.
    pub signature: ByteBuf,
    /// Leaf hash of every chunk, in order; their Merkle root must be `header.chunk_root`.
    pub chunk_hashes: Vec<Hash>,
    /// Adaptive clipping (a job with `dp.adaptive_clip`): whether the update's norm before
    /// clipping was at most the round's clip. Needed by such jobs, refused by others. Not
    /// in the signed header, which is public: only the round's noised count of these bits
    /// is published.
    pub below_clip: Option<bool>,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PutChunkArgs {
    pub submission_id: u64,
    pub index: u32,
    pub bytes: ByteBuf,
}

/// Where an upload stands; what a resuming client asks for.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SubmissionStatus {
    pub submission_id: u64,
    pub round: u64,
    pub contributor: Principal,
    pub header_hash: Hash,
    pub chunk_count: u32,
    /// Indices of the chunks already stored, ascending.
    pub stored_chunks: Vec<u32>,
    pub committed: bool,
}

/// Returned by `commit_submission`: enough to later prove the contribution's inclusion.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CommitReceipt {
    pub submission_id: u64,
    pub round: u64,
    /// Global contribution index.
    pub contribution_index: u64,
    /// Position in the round's contributions root.
    pub index_in_round: u32,
    pub header_hash: Hash,
    pub weight: u64,
    /// Whether this commit closed the round (max_clients reached).
    pub round_closed: bool,
}

// ---------------------------------------------------------------- secure aggregation

/// The phase of a secure-aggregation round; each lasts until every participant of the one
/// before has acted or until its deadline.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecAggPhase {
    /// Participants post their signed public keys (`secagg_advertise`), up to
    /// `max_clients`; at the deadline with at least `min_clients` (or when full), the
    /// round moves on.
    AdvertiseKeys,
    /// Every participant posts one sealed envelope of shares for each other participant
    /// (`secagg_post_shares`).
    ShareKeys,
    /// Those that posted shares upload their masked inputs (`begin_submission` and the
    /// rest, encoding `Masked`).
    MaskedInput,
    /// The survivors reveal their shares (`secagg_reveal`); with `threshold` of them the
    /// canister removes the masks and closes the round.
    Unmask,
}

impl SecAggPhase {
    pub fn name(self) -> &'static str {
        match self {
            SecAggPhase::AdvertiseKeys => "advertise keys",
            SecAggPhase::ShareKeys => "share keys",
            SecAggPhase::MaskedInput => "masked input",
            SecAggPhase::Unmask => "unmask",
        }
    }
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AdvertiseKeysArgs {
    pub round: u64,
    /// The caller's raw 32-byte Ed25519 key (its self-authenticating principal).
    pub public_key: ByteBuf,
    pub c_public: ByteBuf,
    pub s_public: ByteBuf,
    pub self_seed_commitment: ByteBuf,
    /// Over `secagg::keys::AdvertisedKeys::signing_bytes`.
    pub signature: ByteBuf,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PostSharesArgs {
    pub round: u64,
    /// One sealed envelope for every other participant, in index order.
    pub envelopes: Vec<ByteBuf>,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RevealSharesArgs {
    pub round: u64,
    /// One share per participant that posted shares, in index order: of its self-mask
    /// seed if it committed a masked input, else of its mask secret.
    pub shares: Vec<ByteBuf>,
}

/// One participant of a secure-aggregation round, as everyone may read it.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecAggParticipant {
    pub index: u32,
    pub principal: Principal,
    pub public_key: ByteBuf,
    pub c_public: ByteBuf,
    pub s_public: ByteBuf,
    pub self_seed_commitment: ByteBuf,
    pub signature: ByteBuf,
    pub shared: bool,
    pub masked: bool,
    pub revealed: bool,
}

/// The open round's secure aggregation (`secagg_round`).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecAggRound {
    pub round: u64,
    pub phase: SecAggPhase,
    pub phase_deadline_ns: u64,
    /// Shares needed to rebuild a seed (fixed when the advertise phase ends; 0 before).
    pub threshold: u32,
    /// How often this round started over (too few participants left in a phase).
    pub restarts: u32,
    pub participants: Vec<SecAggParticipant>,
}

/// Where a secure-aggregation round stands, in counts (for status pages and `--json`).
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct SecAggSummary {
    pub phase: &'static str,
    pub phase_deadline_ns: u64,
    pub threshold: u32,
    pub restarts: u32,
    pub participants: usize,
    pub shared: usize,
    pub masked: usize,
    pub revealed: usize,
}

impl SecAggRound {
    pub fn summary(&self) -> SecAggSummary {
        let count =
            |f: fn(&SecAggParticipant) -> bool| self.participants.iter().filter(|p| f(p)).count();
        SecAggSummary {
            phase: self.phase.name(),
            phase_deadline_ns: self.phase_deadline_ns,
            threshold: self.threshold,
            restarts: self.restarts,
            participants: self.participants.len(),
            shared: count(|p| p.shared),
            masked: count(|p| p.masked),
            revealed: count(|p| p.revealed),
        }
    }
}

impl std::fmt::Display for SecAggSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} phase: {} keys, {} shared, {} masked, {} revealed (threshold {}, {} restarts)",
            self.phase,
            self.participants,
            self.shared,
            self.masked,
            self.revealed,
            self.threshold,
            self.restarts
        )
    }
}

/// An envelope for the caller (`secagg_inbox`).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct InboxEnvelope {
    pub from: u32,
    pub ciphertext: ByteBuf,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, thiserror::Error)]
pub enum SecAggCallError {
    #[error("this job has no secure aggregation")]
    NotSecureAggregation,
    #[error("{0}")]
    Submit(SubmitError),
    #[error("the call is for round {got}, the open round is {current}")]
    WrongRound { current: u64, got: u64 },
    #[error("the round is in its {} phase, not {}", current.name(), expected.name())]
    WrongPhase {
        expected: SecAggPhase,
        current: SecAggPhase,
    },
    #[error("the caller is not a participant of this round{}", if *late { " (it advertised no keys before the phase ended)" } else { "" })]
    NotAParticipant { late: bool },
    #[error("the caller already did this in this round")]
    AlreadyDone,
    #[error("the round already has its {max} participants (max_clients)")]
    RoundFull { max: u32 },
    #[error("the caller dropped out of this round before it started over, and may not take part again until it closes")]
    DroppedBefore,
    #[error("the caller owns no registered dataset that is not revoked: register one first")]
    NoDataset,
    #[error("bad keys: {0}")]
    BadKeys(String),
    #[error("{got} envelopes sent, the round has {expected} other participants")]
    WrongEnvelopeCount { expected: u32, got: u32 },
    #[error("envelope {position} is {got} bytes, a sealed pair of shares is {expected}")]
    EnvelopeLength {
        position: u32,
        expected: u32,
        got: u32,
    },
    #[error("bad reveal: {0}")]
    Reveal(String),
}

// ---------------------------------------------------------------- queries

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RoundInfo {
    pub job_id: u64,
    pub state: JobState,
    pub round: u64,
    /// Current model version (the base of the open round).
    pub model_version: Option<Hash>,
    pub spec_id: Option<Hash>,
    pub param_count: u64,
    pub opened_at_ns: u64,
    /// 0 when no round is open.
    pub deadline_ns: u64,
    pub committed: u32,
    pub pending: u32,
    pub frac_bits: u32,
    pub config: Option<JobConfig>,
    /// Adaptive clipping: the open round's clip (`None`: the job's `clip_norm`). Not
    /// certified; clients take at most the certified `clip_norm` ([`RoundInfo::clip_norm`]),
    /// and every round's clip is in its certified record.
    pub round_clip_norm: Option<f32>,
}

impl RoundInfo {
    /// The L2 bound of this round's deltas: the job's `clip_norm`, or under adaptive
    /// clipping the round's clip, never above `clip_norm`. `None` without a job.
    pub fn clip_norm(&self) -> Option<f32> {
        let max = self.config.as_ref()?.clip_norm;
        Some(match self.round_clip_norm {
            Some(c) if c > 0.0 && c < max => c,
            _ => max,
        })
    }

    /// Whether contributions report [`BeginSubmissionArgs::below_clip`].
    pub fn adaptive_clip(&self) -> bool {
        self.config
            .as_ref()
            .and_then(|c| c.dp)
            .is_some_and(|dp| dp.adaptive_clip.is_some())
    }
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    pub version: Hash,
    pub spec_id: Hash,
    /// Round whose base this version is.
    pub round: u64,
    pub param_count: u64,
    pub byte_len: u64,
    pub chunk_size: u32,
    pub chunk_count: u32,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ModelChunk {
    pub version: Hash,
    pub index: u32,
    pub chunk_count: u32,
    pub bytes: ByteBuf,
}

/// A committed contribution, with everything needed to verify it offline.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Contribution {
    pub index: u64,
    pub round: u64,
    pub index_in_round: u32,
    pub contributor: Principal,
    pub dataset_id: u64,
    pub header: SubmissionHeader,
    pub header_hash: Hash,
    pub public_key: ByteBuf,
    pub signature: ByteBuf,
    pub weight: u64,
    pub committed_at_ns: u64,
    pub retained: bool,
}

/// Domain tag that starts the canonical bytes of a round record.
pub const ROUND_RECORD_DOMAIN: &[u8] = b"flic/round/v1";

/// One closed round.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RoundRecord {
    pub round: u64,
    pub base_version: Hash,
    pub new_version: Hash,
    /// RFC 6962 root over the header hashes of the round's contributions, in commit order.
    pub contributions_root: Hash,
    pub first_contribution: u64,
    pub contribution_count: u32,
    pub total_weight: u64,
    pub contributors: Vec<Principal>,
    pub frac_bits: u32,
    pub server_lr: f32,
    pub opened_at_ns: u64,
    pub closed_at_ns: u64,
    /// How many times the deadline passed without quorum.
    pub extensions: u32,
    /// In a job with DP: the epsilon spent by every round up to this one (at the job's
    /// delta), recomputable from the job configuration (`flic verify privacy`).
    pub epsilon_spent: Option<f64>,
    /// In a job with adaptive clipping: the round's clip and its noised count.
    pub adaptive_clip: Option<RoundClip>,
}

/// One round of adaptive clipping, as its record publishes it: the next round's clip is
/// [`crate::privacy::AdaptiveClip::next_clip`] of these and the round's contribution count.
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct RoundClip {
    /// The L2 bound of the round's deltas.
    pub clip_norm: f32,
    /// How many contributions were at or below it before clipping, plus Gaussian noise.
    pub noised_count: f64,
}

impl RoundRecord {
    /// Canonical bytes hashed into the history root: domain tag, then fixed-width LE fields,
    /// contributors as u32 count and length-prefixed principal bytes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(ROUND_RECORD_DOMAIN);
        out.extend_from_slice(&self.round.to_le_bytes());
        out.extend_from_slice(self.base_version.as_slice());
        out.extend_from_slice(self.new_version.as_slice());
        out.extend_from_slice(self.contributions_root.as_slice());
        out.extend_from_slice(&self.first_contribution.to_le_bytes());
        out.extend_from_slice(&self.contribution_count.to_le_bytes());
        out.extend_from_slice(&self.total_weight.to_le_bytes());
        out.extend_from_slice(&(self.contributors.len() as u32).to_le_bytes());
        for p in &self.contributors {
            out.push(p.as_slice().len() as u8);
            out.extend_from_slice(p.as_slice());
        }
        out.extend_from_slice(&self.frac_bits.to_le_bytes());
        out.extend_from_slice(&self.server_lr.to_le_bytes());
        out.extend_from_slice(&self.opened_at_ns.to_le_bytes());
        out.extend_from_slice(&self.closed_at_ns.to_le_bytes());
        out.extend_from_slice(&self.extensions.to_le_bytes());
        // Absent without DP: the records of jobs without it keep their bytes and hashes.
        if let Some(eps) = self.epsilon_spent {
            out.push(1);
            out.extend_from_slice(&eps.to_le_bytes());
        }
        // Absent without adaptive clipping; marker `2`.
        if let Some(clip) = self.adaptive_clip {
            out.push(2);
            out.extend_from_slice(&clip.clip_norm.to_le_bytes());
            out.extend_from_slice(&clip.noised_count.to_le_bytes());
        }
        out
    }

    /// Leaf of the history tree: `leaf_hash(canonical_bytes)`.
    pub fn history_leaf(&self) -> [u8; 32] {
        crate::merkle::leaf_hash(&self.canonical_bytes())
    }
}

#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageArgs {
    /// First item (index or cursor) to return.
    pub start: u64,
    /// At most this many items; capped at [`MAX_PAGE_LEN`].
    pub limit: u32,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ContributionPage {
    pub items: Vec<Contribution>,
    /// Pass as `start` to get the next page; `None` at the end.
    pub next: Option<u64>,
}

/// Closed rounds from `start`, oldest first: at most `limit` records and at most
/// [`MAX_PAGE_CONTRIBUTORS`] contributors (always at least one record when one exists).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RoundPage {
    pub items: Vec<RoundRecord>,
    pub next: Option<u64>,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DatasetPage {
    pub items: Vec<Dataset>,
    pub next: Option<u64>,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LineageArgs {
    pub model_version: Hash,
    pub page: PageArgs,
}

/// Every contribution that shaped a model version: those of all rounds before it.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Lineage {
    pub model_version: Hash,
    /// The round whose base this version is (0 for the initial model).
    pub round: u64,
    /// Number of contributions in the lineage (global indices `0..total`).
    pub total: u64,
    pub contributions: ContributionPage,
}

/// The scalars of the certified state tree (see [`crate::certified`]); the certified data
/// is the tree's root hash, which also covers the per-round record hashes.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CertifiedState {
    pub job_id: u64,
    pub round: u64,
    pub model_version: Hash,
    pub history_root: Hash,
    /// `/job_config`: `job_config::job_config_hash` of the job's configuration; `None`
    /// before a job is configured.
    pub job_config_hash: Option<Hash>,
}

/// What makes a query reply checkable: the IC's certificate for the canister's certified
/// data, and a witness (pruned copy) of the certified state tree whose root hash must be
/// that certified data.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Certification {
    /// CBOR IC certificate (`ic0.data_certificate_copy`); empty when the method ran as an
    /// update (certificates exist only in non-replicated queries).
    pub certificate: ByteBuf,
    /// CBOR `HashTree` witness: the leaves the reply depends on, the rest pruned.
    pub tree: ByteBuf,
}

/// `round_info` with a witness for `/job`, `/job_config`, `/round` and `/model_version`:
/// the configuration is certified by its hash. The other fields (counters, deadline) are not
/// certified.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CertifiedRoundInfo {
    pub info: RoundInfo,
    pub certification: Certification,
}

/// `model_info` with a witness for `/round` and `/model_version`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CertifiedModelInfo {
    pub info: ModelInfo,
    pub certification: Certification,
}

/// A page of `round_history` with a witness for each record's hash under `/history`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CertifiedRoundPage {
    pub page: RoundPage,
    pub certification: Certification,
}

/// Everything a receipt needs: the contribution, its round's record, the RFC 6962
/// inclusion proof of `leaf_hash(header_hash)` at `index_in_round` against the record's
/// contributions root, and a witness for the record's hash under `/history`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ContributionProof {
    pub contribution: Contribution,
    pub record: RoundRecord,
    pub inclusion_proof: Vec<Hash>,
    pub certification: Certification,
}

/// Caps a page request.
pub fn page_limit(limit: u32) -> usize {
    limit.clamp(1, MAX_PAGE_LEN) as usize
}

// ---------------------------------------------------------------- model quality

/// The quality of the model a closed round produced (`RoundRecord::new_version`), measured
/// by someone on their own test data.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReportEvaluationArgs {
    /// The closed round whose output model was evaluated.
    pub round: u64,
    /// The version evaluated; must be the round's `new_version`.
    pub model_version: Hash,
    /// Fraction of correct predictions, in `[0, 1]`.
    pub accuracy: f64,
    /// Mean loss, finite and `>= 0`.
    pub loss: f64,
    /// Test samples evaluated (at least 1).
    pub samples: u64,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub round: u64,
    pub model_version: Hash,
    pub reporter: Principal,
    pub accuracy: f64,
    pub loss: f64,
    pub samples: u64,
    pub reported_at_ns: u64,
}

#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, thiserror::Error)]
pub enum EvaluationError {
    #[error("the anonymous principal cannot report evaluations")]
    AnonymousCaller,
    #[error("round {round} is not closed yet (closed rounds: {closed_rounds}); only a closed round's model can be evaluated")]
    RoundNotClosed { round: u64, closed_rounds: u64 },
    #[error("caller {caller} is neither a controller nor a contributor of round {round}")]
    NotAllowed { caller: Principal, round: u64 },
    #[error("round {round} produced model {}, not {}", to_hex(expected.as_slice()), to_hex(got.as_slice()))]
    WrongModelVersion {
        round: u64,
        expected: Hash,
        got: Hash,
    },
    #[error("{field} is {value}: {reason}")]
    InvalidValue {
        field: String,
        value: String,
        reason: String,
    },
    #[error("round {round} already has {max} evaluations from other reporters, the limit")]
    TooManyEvaluations { round: u64, max: u64 },
}

// ---------------------------------------------------------------- HTTP gateway

/// One HTTP header, as the IC HTTP gateway encodes it: `record { text; text }`.
pub type HeaderField = (String, String);

/// The argument of `http_request` (HTTP Gateway Protocol).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    /// Path and query, e.g. `/api/rounds?limit=10`.
    pub url: String,
    pub headers: Vec<HeaderField>,
    pub body: ByteBuf,
    pub certificate_version: Option<u16>,
}

/// The reply of `http_request`. Streaming is never used, so the gateway's optional
/// `streaming_strategy` field is left out (Candid decodes a missing `opt` as null).
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status_code: u16,
    pub headers: Vec<HeaderField>,
    pub body: ByteBuf,
    pub upgrade: Option<bool>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
