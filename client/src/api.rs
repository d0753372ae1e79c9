//! Typed access to the aggregator canister over any [`Transport`].
//!
//! Every method encodes its arguments with Candid, calls the canister, decodes the reply
//! into the very types the canister uses (`flic_protocol::api`), and turns the canister's
//! typed errors into [`ApiError`]. Instruction counts reported by the transport are kept
//! in [`CallStats`] for simulations and benchmarks.

use std::collections::BTreeMap;

use candid::utils::{ArgumentDecoder, ArgumentEncoder};
use candid::{CandidType, Principal};
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

use flic_proofs::certified::{check_model_info, check_round_info, verify_round_page};
use flic_proofs::receipt::{verify_receipt, Receipt};
use flic_proofs::{CertifiedView, Freshness, Trust};
use flic_protocol::api::{
    AdminError, AllowListChange, BeginSubmissionArgs, CertifiedModelInfo, CertifiedRoundInfo,
    CertifiedRoundPage, CommitReceipt, Contribution, ContributionPage, ContributionProof, Dataset,
    DatasetError, DatasetPage, Evaluation, EvaluationError, HttpRequest, HttpResponse, JobConfig,
    Lineage, LineageArgs, ModelChunk, ModelInfo, PageArgs, PutChunkArgs, QueryError,
    RegisterDatasetArgs, ReportEvaluationArgs, RoundInfo, RoundPage, SubmissionStatus, SubmitError,
};
use flic_protocol::api::{
    AdvertiseKeysArgs, InboxEnvelope, PostSharesArgs, RevealSharesArgs, SecAggCallError,
    SecAggRound,
};
use flic_protocol::{model_version, ModelSpec, ModelVersionHasher};

use crate::transport::{Transport, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot decode the reply of `{method}`: {message}")]
    Decode { method: String, message: String },
    #[error("{0}")]
    Admin(#[from] AdminError),
    #[error("{0}")]
    Submit(#[from] SubmitError),
    #[error("{0}")]
    Dataset(#[from] DatasetError),
    #[error("{0}")]
    Query(#[from] QueryError),
    #[error("{0}")]
    Evaluation(#[from] EvaluationError),
    #[error("{0}")]
    SecAgg(#[from] SecAggCallError),
    /// What the canister served does not match what it claims (hash, spec, size).
    #[error("verification failed: {0}")]
    Verification(String),
    /// A certified reply did not verify against the root key.
    #[error("certificate check failed for `{method}`: {error}")]
    Proof {
        method: String,
        error: flic_proofs::ProofError,
    },
}

/// Instructions per method, as reported by the transport (embedded IC only).
#[derive(Debug, Default, Clone)]
pub struct CallStats {
    pub per_method: BTreeMap<String, MethodStats>,
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct MethodStats {
    pub calls: u64,
    pub instructions: u64,
    pub max_instructions: u64,
    pub arg_bytes: u64,
}

impl MethodStats {
    /// Both together: calls, instructions and bytes summed, the larger single call.
    pub fn plus(self, o: MethodStats) -> MethodStats {
        MethodStats {
            calls: self.calls + o.calls,
            instructions: self.instructions + o.instructions,
            max_instructions: self.max_instructions.max(o.max_instructions),
            arg_bytes: self.arg_bytes + o.arg_bytes,
        }
    }
}

impl CallStats {
    fn record(&mut self, method: &str, arg_bytes: usize, instructions: Option<u64>) {
        let s = self.per_method.entry(method.to_string()).or_default();
        s.calls += 1;
        s.arg_bytes += arg_bytes as u64;
        if let Some(i) = instructions {
            s.instructions += i;
            s.max_instructions = s.max_instructions.max(i);
        }
    }

    /// The update calls that uploads make (`begin_submission`, `put_chunk`,
    /// `commit_submission`), summed: calls, instructions and argument bytes, and the
    /// largest single call.
    pub fn submissions(&self) -> MethodStats {
        ["begin_submission", "put_chunk", "commit_submission"]
            .iter()
            .filter_map(|m| self.per_method.get(*m))
            .fold(MethodStats::default(), |a, s| a.plus(*s))
    }

    pub fn total_instructions(&self) -> u64 {
        self.per_method.values().map(|s| s.instructions).sum()
    }

    pub fn max_instructions(&self) -> u64 {
        self.per_method
            .values()
            .map(|s| s.max_instructions)
            .max()
            .unwrap_or(0)
    }

    pub fn merge(&mut self, other: &CallStats) {
        for (m, o) in &other.per_method {
            let s = self.per_method.entry(m.clone()).or_default();
            *s = s.plus(*o);
        }
    }
}

/// A verified model download.
#[derive(Debug, Clone)]
pub struct DownloadedModel {
    pub info: ModelInfo,
    pub spec: ModelSpec,
    pub weights: Vec<f32>,
}

pub struct AggregatorApi<T: Transport> {
    transport: T,
    pub stats: CallStats,
}

impl<T: Transport> AggregatorApi<T> {
    pub fn new(transport: T) -> Self {
        Self {
            transport,
            stats: CallStats::default(),
        }
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    pub fn caller(&self) -> Principal {
        self.transport.caller()
    }

    pub fn canister_id(&self) -> Principal {
        self.transport.canister_id()
    }

    fn call<A, R>(&mut self, update: bool, method: &str, args: A) -> Result<R, ApiError>
    where
        A: ArgumentEncoder,
        R: for<'a> ArgumentDecoder<'a>,
    {
        let arg = candid::encode_args(args).map_err(|e| ApiError::Decode {
            method: method.into(),
            message: format!("encoding the argument: {e}"),
        })?;
        let len = arg.len();
        let reply = if update {
            self.transport.update(method, arg)?
        } else {
            self.transport.query(method, arg)?
        };
        self.stats.record(method, len, reply.instructions);
        candid::decode_args(&reply.bytes).map_err(|e| ApiError::Decode {
            method: method.into(),
            message: e.to_string(),
        })
    }

    fn update1<A: ArgumentEncoder, R: CandidType + DeserializeOwned>(
        &mut self,
        method: &str,
        args: A,
    ) -> Result<R, ApiError> {
        self.call::<A, (R,)>(true, method, args).map(|(r,)| r)
    }

    fn query1<A: ArgumentEncoder, R: CandidType + DeserializeOwned>(
        &mut self,
        method: &str,
        args: A,
    ) -> Result<R, ApiError> {
        self.call::<A, (R,)>(false, method, args).map(|(r,)| r)
    }

    // ------------------------------------------------------------ admin (controllers)

    pub fn configure_job(&mut self, config: &JobConfig) -> Result<u64, ApiError> {
        Ok(self.update1::<_, Result<u64, AdminError>>("configure_job", (config,))??)
    }

    pub fn upload_model_chunk(&mut self, index: u32, bytes: Vec<u8>) -> Result<u32, ApiError> {
        Ok(self.update1::<_, Result<u32, AdminError>>(
            "upload_model_chunk",
            (index, ByteBuf::from(bytes)),
        )??)
    }

    pub fn start_job(&mut self) -> Result<(), ApiError> {
        Ok(self.update1::<_, Result<(), AdminError>>("start_job", ())??)
    }

    pub fn pause_job(&mut self) -> Result<(), ApiError> {
        Ok(self.update1::<_, Result<(), AdminError>>("pause_job", ())??)
    }

    pub fn resume_job(&mut self) -> Result<(), ApiError> {
        Ok(self.update1::<_, Result<(), AdminError>>("resume_job", ())??)
    }

    /// Changes the allow-list; returns its new length.
    pub fn update_allow_list(&mut self, change: &AllowListChange) -> Result<u64, ApiError> {
        Ok(self.update1::<_, Result<u64, AdminError>>("update_allow_list", (change,))??)
    }

    pub fn evict_submission(&mut self, submission_id: u64) -> Result<(), ApiError> {
        Ok(self.update1::<_, Result<(), AdminError>>("evict_submission", (submission_id,))??)
    }

    /// Configures `job`, uploads `weights` as the initial model and starts round 0.
    /// Returns the job id.
    pub fn launch_job(&mut self, job: &JobConfig, weights: &[f32]) -> Result<u64, ApiError> {
        let id = self.configure_job(job)?;
        self.upload_initial_model(weights, job.chunk_size())?;
        self.start_job()?;
        Ok(id)
    }

    /// Uploads initial weights in the job's chunk size.
    pub fn upload_initial_model(
        &mut self,
        weights: &[f32],
        chunk_size: u32,
    ) -> Result<(), ApiError> {
        let bytes = flic_protocol::model::weights_to_le_bytes(weights);
        for (i, chunk) in bytes.chunks(chunk_size as usize).enumerate() {
            self.upload_model_chunk(i as u32, chunk.to_vec())?;
        }
        Ok(())
    }

    // ------------------------------------------------------------ registry

    pub fn register_dataset(&mut self, args: &RegisterDatasetArgs) -> Result<u64, ApiError> {
        Ok(self.update1::<_, Result<u64, DatasetError>>("register_dataset", (args,))??)
    }

    pub fn revoke_dataset(&mut self, dataset_id: u64) -> Result<(), ApiError> {
        Ok(self.update1::<_, Result<(), DatasetError>>("revoke_dataset", (dataset_id,))??)
    }

    pub fn get_dataset(&mut self, dataset_id: u64) -> Result<Option<Dataset>, ApiError> {
        self.query1("get_dataset", (dataset_id,))
    }

    pub fn list_datasets(&mut self, page: PageArgs) -> Result<DatasetPage, ApiError> {
        self.query1("list_datasets", (page,))
    }

    /// Every registered dataset, page after page.
    pub fn all_datasets(&mut self) -> Result<Vec<Dataset>, ApiError> {
        all_pages(|page| self.list_datasets(page).map(|p| (p.items, p.next)))
    }

    /// Every dataset `owner` registered, in registration order.
    pub fn all_datasets_of(&mut self, owner: Principal) -> Result<Vec<Dataset>, ApiError> {
        let mut all = self.all_datasets()?;
        all.retain(|d| d.owner == owner);
        Ok(all)
    }

    pub fn contributions_by_contributor(
        &mut self,
        who: Principal,
        page: PageArgs,
    ) -> Result<ContributionPage, ApiError> {
        self.query1("contributions_by_contributor", (who, page))
    }

    /// Every contribution `who` committed, page after page.
    pub fn all_contributions_by_contributor(
        &mut self,
        who: Principal,
    ) -> Result<Vec<Contribution>, ApiError> {
        all_pages(|page| {
            self.contributions_by_contributor(who, page)
                .map(|p| (p.items, p.next))
        })
    }

    pub fn contributions_by_dataset(
        &mut self,
        dataset_id: u64,
        page: PageArgs,
    ) -> Result<ContributionPage, ApiError> {
        self.query1("contributions_by_dataset", (dataset_id, page))
    }

    pub fn lineage(&mut self, args: &LineageArgs) -> Result<Lineage, ApiError> {
        Ok(self.query1::<_, Result<Lineage, QueryError>>("lineage", (args,))??)
    }

    // ------------------------------------------------------------ submissions

    pub fn begin_submission(
        &mut self,
        args: &BeginSubmissionArgs,
    ) -> Result<SubmissionStatus, ApiError> {
        Ok(self.update1::<_, Result<SubmissionStatus, SubmitError>>("begin_submission", (args,))??)
    }

    pub fn put_chunk(
        &mut self,
        submission_id: u64,
        index: u32,
        bytes: Vec<u8>,
    ) -> Result<u32, ApiError> {
        let args = PutChunkArgs {
            submission_id,
            index,
            bytes: ByteBuf::from(bytes),
        };
        Ok(self.update1::<_, Result<u32, SubmitError>>("put_chunk", (args,))??)
    }

    pub fn commit_submission(&mut self, submission_id: u64) -> Result<CommitReceipt, ApiError> {
        Ok(self.update1::<_, Result<CommitReceipt, SubmitError>>(
            "commit_submission",
            (submission_id,),
        )??)
    }

    pub fn submission_status(&mut self, submission_id: u64) -> Result<SubmissionStatus, ApiError> {
        Ok(self.query1::<_, Result<SubmissionStatus, QueryError>>(
            "submission_status",
            (submission_id,),
        )??)
    }

    // ------------------------------------------------------------ secure aggregation

    pub fn secagg_advertise(&mut self, args: &AdvertiseKeysArgs) -> Result<u32, ApiError> {
        Ok(self.update1::<_, Result<u32, SecAggCallError>>("secagg_advertise", (args,))??)
    }

    pub fn secagg_post_shares(&mut self, args: &PostSharesArgs) -> Result<(), ApiError> {
        Ok(self.update1::<_, Result<(), SecAggCallError>>("secagg_post_shares", (args,))??)
    }

    pub fn secagg_reveal(&mut self, args: &RevealSharesArgs) -> Result<(), ApiError> {
        Ok(self.update1::<_, Result<(), SecAggCallError>>("secagg_reveal", (args,))??)
    }

    /// The open round's secure aggregation (`None` for a job without it). Not certified:
    /// a participant checks every key's signature itself (see `crate::secagg`).
    pub fn secagg_round(&mut self) -> Result<Option<SecAggRound>, ApiError> {
        self.query1("secagg_round", ())
    }

    pub fn secagg_inbox(&mut self, round: u64) -> Result<Vec<InboxEnvelope>, ApiError> {
        self.query1("secagg_inbox", (round,))
    }

    // ------------------------------------------------------------ model quality

    /// Reports the quality of closed round `args.round`'s model (controllers and the
    /// round's contributors).
    pub fn report_evaluation(&mut self, args: &ReportEvaluationArgs) -> Result<(), ApiError> {
        Ok(self.update1::<_, Result<(), EvaluationError>>("report_evaluation", (args,))??)
    }

    pub fn round_evaluations(&mut self, round: u64) -> Result<Vec<Evaluation>, ApiError> {
        self.query1("round_evaluations", (round,))
    }

    /// The canister's HTTP interface (`http_request` query), as the IC HTTP gateway calls it.
    pub fn http_request(&mut self, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
        self.query1("http_request", (req,))
    }

    // ------------------------------------------------------------ reads

    /// What certified replies are checked against: the transport's root key and clock, this
    /// canister, and certificates at most five minutes old.
    pub fn trust(&self) -> Trust {
        Trust {
            root_key_der: self.transport.root_key(),
            canister: self.transport.canister_id(),
            freshness: Freshness::Within {
                now_ns: self.transport.now_ns(),
                max_age_ns: flic_proofs::certificate::DEFAULT_MAX_AGE_NS,
            },
        }
    }

    fn verified<R>(method: &str, r: Result<R, flic_proofs::ProofError>) -> Result<R, ApiError> {
        r.map_err(|error| ApiError::Proof {
            method: method.into(),
            error,
        })
    }

    /// The current round; job id, round, model version and the job configuration (by its
    /// hash) are checked against a certificate, so a client never trains with a
    /// configuration the canister did not certify (the rest of `RoundInfo` is
    /// informational).
    pub fn round_info(&mut self) -> Result<RoundInfo, ApiError> {
        const M: &str = "round_info_certified";
        let reply: CertifiedRoundInfo = self.query1(M, ())?;
        let trust = self.trust();
        let view = Self::verified(M, CertifiedView::verify(&reply.certification, &trust))?;
        Self::verified(M, check_round_info(&view, &reply.info))?;
        Ok(reply.info)
    }

    /// Closed rounds; every record is checked against the certified history.
    pub fn round_history(&mut self, page: PageArgs) -> Result<RoundPage, ApiError> {
        const M: &str = "round_history_certified";
        let reply: CertifiedRoundPage = self.query1(M, (page,))?;
        let trust = self.trust();
        Self::verified(M, verify_round_page(&reply, page.start, &trust))?;
        Ok(reply.page)
    }

    /// Every closed round's record, each checked against the certified history.
    pub fn all_round_history(&mut self) -> Result<Vec<flic_protocol::api::RoundRecord>, ApiError> {
        all_pages(|page| self.round_history(page).map(|p| (p.items, p.next)))
    }

    /// The current model's info; its version and round are checked against a certificate.
    pub fn model_info(&mut self) -> Result<ModelInfo, ApiError> {
        const M: &str = "model_info_certified";
        let reply = self.query1::<_, Result<CertifiedModelInfo, QueryError>>(M, ())??;
        let trust = self.trust();
        let view = Self::verified(M, CertifiedView::verify(&reply.certification, &trust))?;
        Self::verified(M, check_model_info(&view, &reply.info))?;
        Ok(reply.info)
    }

    /// A receipt for contribution `index` (its round must be closed), verified before it is
    /// returned.
    pub fn receipt(&mut self, index: u64) -> Result<Receipt, ApiError> {
        const M: &str = "contribution_proof";
        let proof = self.query1::<_, Result<ContributionProof, QueryError>>(M, (index,))??;
        let receipt = Receipt::from_proof(self.canister_id(), proof);
        let trust = self.trust();
        Self::verified(M, verify_receipt(&receipt, &trust))?;
        Ok(receipt)
    }

    /// A committed contribution (uncertified: verifiers check it against certified roots).
    pub fn get_contribution(&mut self, index: u64) -> Result<Option<Contribution>, ApiError> {
        self.query1("get_contribution", (index,))
    }

    /// Chunk `chunk` of a retained contribution's encoded delta.
    pub fn contribution_chunk(&mut self, index: u64, chunk: u32) -> Result<Vec<u8>, ApiError> {
        let bytes =
            self.query1::<_, Result<ByteBuf, QueryError>>("contribution_chunk", (index, chunk))??;
        Ok(bytes.into_vec())
    }

    /// Chunk `index` of the retained initial model.
    pub fn initial_model_chunk(&mut self, index: u32) -> Result<ModelChunk, ApiError> {
        Ok(self.query1::<_, Result<ModelChunk, QueryError>>("initial_model_chunk", (index,))??)
    }

    pub fn model_chunk(&mut self, index: u32) -> Result<ModelChunk, ApiError> {
        Ok(self.query1::<_, Result<ModelChunk, QueryError>>("model_chunk", (index,))??)
    }

    /// Downloads the current model chunk by chunk and checks it: every chunk is of the same
    /// version, the spec hashes to the announced spec id, and the weights hash to the
    /// announced version. A model that changes mid-download is fetched again.
    pub fn download_model(
        &mut self,
        progress: &mut dyn FnMut(u32, u32),
    ) -> Result<DownloadedModel, ApiError> {
        const ATTEMPTS: usize = 3;
        for _ in 0..ATTEMPTS {
            let round = self.round_info()?;
            let spec = round.config.map(|c| c.model_spec).ok_or_else(|| {
                ApiError::Verification("the canister has no job configured".into())
            })?;
            let info = self.model_info()?;
            if spec.spec_id() != *info.spec_id {
                return Err(ApiError::Verification(format!(
                    "the job's model spec hashes to {}, the model claims spec {}",
                    hex::encode(spec.spec_id()),
                    hex::encode(info.spec_id.as_slice())
                )));
            }
            let expected_bytes = spec.param_count() * 4;
            if info.byte_len != expected_bytes {
                return Err(ApiError::Verification(format!(
                    "model is {} bytes, its spec needs {expected_bytes}",
                    info.byte_len
                )));
            }
            let mut hasher = ModelVersionHasher::new(&spec.spec_id());
            let mut bytes = Vec::with_capacity(info.byte_len as usize);
            let mut changed = false;
            for index in 0..info.chunk_count {
                let chunk = self.model_chunk(index)?;
                if chunk.version != info.version {
                    changed = true;
                    break;
                }
                hasher.update(&chunk.bytes);
                bytes.extend_from_slice(&chunk.bytes);
                progress(index + 1, info.chunk_count);
            }
            if changed {
                continue;
            }
            if bytes.len() as u64 != expected_bytes {
                return Err(ApiError::Verification(format!(
                    "downloaded {} bytes, the model has {expected_bytes}",
                    bytes.len()
                )));
            }
            let version = hasher.finish();
            if version != *info.version {
                return Err(ApiError::Verification(format!(
                    "downloaded weights hash to version {}, the canister announced {}",
                    hex::encode(version),
                    hex::encode(info.version.as_slice())
                )));
            }
            let weights = flic_protocol::model::weights_from_le_bytes(&bytes).ok_or_else(|| {
                ApiError::Verification("model bytes are not whole f32 values".into())
            })?;
            debug_assert_eq!(model_version(&spec.spec_id(), &weights), version);
            return Ok(DownloadedModel {
                info,
                spec,
                weights,
            });
        }
        Err(ApiError::Verification(format!(
            "the model changed during {ATTEMPTS} download attempts in a row"
        )))
    }
}

/// Every item of a paged query, from the start to the last page. A page whose cursor does
/// not move on ends the walk, so a faulty reply cannot make it loop.
fn all_pages<I>(
    mut fetch: impl FnMut(PageArgs) -> Result<(Vec<I>, Option<u64>), ApiError>,
) -> Result<Vec<I>, ApiError> {
    let (mut all, mut start) = (Vec::new(), 0);
    loop {
        let (items, next) = fetch(PageArgs { start, limit: 100 })?;
        all.extend(items);
        match next {
            Some(next) if next > start => start = next,
            _ => return Ok(all),
        }
    }
}

/// Lineage replay reads from the canister: round records through the certified history,
/// everything else as plain queries (the replay checks them against those records).
impl<T: Transport> flic_proofs::lineage::LineageSource for AggregatorApi<T> {
    fn certified_history(
        &mut self,
        rounds: u64,
    ) -> Result<Vec<flic_protocol::api::RoundRecord>, flic_proofs::ProofError> {
        let mut out = Vec::new();
        let mut start = 0;
        while (out.len() as u64) < rounds {
            let page = self
                .round_history(PageArgs { start, limit: 100 })
                .map_err(|e| fetch_error("the certified history", e))?;
            out.extend(page.items);
            match page.next {
                Some(n) => start = n,
                None => break,
            }
        }
        out.truncate(rounds as usize);
        Ok(out)
    }

    fn initial_model_chunk(&mut self, index: u32) -> Result<Vec<u8>, flic_proofs::ProofError> {
        self.initial_model_chunk(index)
            .map(|c| c.bytes.into_vec())
            .map_err(|e| fetch_error(&format!("initial model chunk {index}"), e))
    }

    fn contribution(&mut self, index: u64) -> Result<Contribution, flic_proofs::ProofError> {
        self.get_contribution(index)
            .map_err(|e| fetch_error(&format!("contribution {index}"), e))?
            .ok_or_else(|| flic_proofs::ProofError::Fetch {
                what: format!("contribution {index}"),
                reason: "the canister does not have it".into(),
            })
    }

    fn contribution_chunk(
        &mut self,
        index: u64,
        chunk: u32,
    ) -> Result<Vec<u8>, flic_proofs::ProofError> {
        self.contribution_chunk(index, chunk)
            .map_err(|e| fetch_error(&format!("chunk {chunk} of contribution {index}"), e))
    }
}

fn fetch_error(what: &str, e: ApiError) -> flic_proofs::ProofError {
    flic_proofs::ProofError::Fetch {
        what: what.into(),
        reason: e.to_string(),
    }
}
