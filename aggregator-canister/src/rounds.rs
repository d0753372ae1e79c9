//! The round lifecycle: submissions (begin, chunks, commit), closing rounds by quorum or
//! deadline, and the round/model queries.

use candid::Principal;
use flic_protocol::api::{
    page_limit, BeginSubmissionArgs, Certification, CertifiedModelInfo, CertifiedRoundInfo,
    CertifiedRoundPage, CommitReceipt, Contribution, ContributionProof, JobState, Lineage,
    LineageArgs, ModelChunk, ModelInfo, PageArgs, PutChunkArgs, QueryError, RoundInfo, RoundPage,
    RoundRecord, SubmissionStatus, SubmitError,
};
use flic_protocol::chunking::{chunk_count, chunk_range};
use flic_protocol::fedavg::capped_weight;
use flic_protocol::merkle::{self, leaf_hash};
use flic_protocol::submission::{principal_of_ed25519, verify_signature};
use flic_protocol::Hash;
use serde_bytes::ByteBuf;

use crate::aggregation;
use crate::certification::HistoryWitness;
use crate::state::{CallContext, State};
use crate::storage::records::{
    ClosedRoundRecord, ContributionRecord, HistoryRecord, PublicContribution, SubmissionRecord,
};
use crate::storage::{read_bytes, write_bytes, Stored};

impl State {
    fn require_running(&self) -> Result<(), SubmitError> {
        let state = self.job().job_state();
        if state != JobState::Running {
            return Err(SubmitError::JobNotRunning { state });
        }
        Ok(())
    }

    fn status_of(s: &SubmissionRecord) -> SubmissionStatus {
        SubmissionStatus {
            submission_id: s.id,
            round: s.round,
            contributor: s.contributor,
            header_hash: s.header_hash,
            chunk_count: s.header.chunk_count,
            stored_chunks: s
                .stored
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == 1)
                .map(|(i, _)| i as u32)
                .collect(),
            committed: s.contribution.is_some(),
        }
    }

    /// Verifies a signed header at once and opens an upload. Calling it again with the same
    /// header resumes the upload (same id, chunks kept).
    pub fn begin_submission(
        &mut self,
        ctx: &CallContext,
        args: BeginSubmissionArgs,
    ) -> Result<SubmissionStatus, SubmitError> {
        if ctx.caller == Principal::anonymous() {
            return Err(SubmitError::AnonymousCaller);
        }
        self.require_running()?;
        let h = &args.header;
        let signing_bytes = h.signing_bytes();
        verify_signature(&args.public_key, &signing_bytes, &args.signature)
            .map_err(SubmitError::Signature)?;
        let pk: [u8; 32] = args
            .public_key
            .as_slice()
            .try_into()
            .expect("length checked by verify_signature");
        let key_principal = principal_of_ed25519(&pk);
        if key_principal != ctx.caller {
            return Err(SubmitError::CallerMismatch {
                caller: ctx.caller,
                key_principal,
            });
        }
        let job = self.job();
        let round = self.open_round();
        if h.canister_id != ctx.canister_id {
            return Err(SubmitError::WrongCanister {
                expected: ctx.canister_id,
                got: h.canister_id,
            });
        }
        if h.job_id != job.job_id {
            return Err(SubmitError::WrongJob {
                expected: job.job_id,
                got: h.job_id,
            });
        }
        if h.round < round.round {
            return Err(SubmitError::StaleRound {
                current: round.round,
                got: h.round,
            });
        }
        if h.round > round.round {
            return Err(SubmitError::FutureRound {
                current: round.round,
                got: h.round,
            });
        }
        let current = round.model_version.expect("a running job has a model");
        if h.base_model_version != current {
            return Err(SubmitError::WrongBaseVersion {
                expected: current,
                got: h.base_model_version,
            });
        }
        let dataset = self
            .dataset(h.dataset_id)
            .ok_or(SubmitError::UnknownDataset {
                dataset_id: h.dataset_id,
            })?;
        if dataset.owner != ctx.caller {
            return Err(SubmitError::DatasetNotOwned {
                dataset_id: h.dataset_id,
                owner: dataset.owner,
            });
        }
        if dataset.revoked_at_ns.is_some() {
            return Err(SubmitError::DatasetRevoked {
                dataset_id: h.dataset_id,
            });
        }
        if h.sample_count == 0 {
            return Err(SubmitError::ZeroSampleCount);
        }
        if h.sample_count > dataset.sample_count {
            return Err(SubmitError::SampleCountExceedsDataset {
                claimed: h.sample_count,
                registered: dataset.sample_count,
            });
        }
        let config = job.config();
        if !config.allows(h.encoding) {
            return Err(SubmitError::EncodingNotAllowed {
                encoding: h.encoding,
            });
        }
        if h.param_count != job.param_count {
            return Err(SubmitError::WrongParamCount {
                expected: job.param_count,
                got: h.param_count,
            });
        }
        let byte_len = h.encoding.encoded_len(job.param_count);
        let expected_chunks = chunk_count(byte_len, config.chunk_size()) as u32;
        if h.chunk_count != expected_chunks {
            return Err(SubmitError::WrongChunkCount {
                encoding: h.encoding,
                expected: expected_chunks,
                got: h.chunk_count,
            });
        }
        if args.chunk_hashes.len() as u64 != expected_chunks as u64 {
            return Err(SubmitError::WrongChunkHashCount {
                expected: expected_chunks,
                got: args.chunk_hashes.len() as u32,
            });
        }
        let leaves: Vec<[u8; 32]> = args.chunk_hashes.iter().map(|x| x.into_array()).collect();
        let computed = Hash::new(merkle::root(&leaves));
        if computed != h.chunk_root {
            return Err(SubmitError::ChunkRootMismatch {
                computed,
                header: h.chunk_root,
            });
        }
        let header_hash = Hash::new(sha256(&signing_bytes));
        if let Some(existing_id) = self.submitters.get(&ctx.caller) {
            let existing = self
                .submissions
                .get(&existing_id)
                .expect("indexed submission")
                .0;
            if existing.header_hash == header_hash && existing.contribution.is_none() {
                return Ok(Self::status_of(&existing));
            }
            return Err(SubmitError::DuplicateSubmission {
                round: round.round,
                submission_id: existing_id,
                committed: existing.contribution.is_some(),
            });
        }
        // Staging is bounded: principals are free to create, so without a cap a flood of
        // uploads that never commit could stage deltas until the round closes.
        let pending = self
            .submissions
            .len()
            .saturating_sub(round.committed as u64);
        let limit = pending_limit(config.max_clients);
        if pending >= limit as u64 {
            return Err(SubmitError::TooManyPendingSubmissions {
                pending: pending as u32,
                limit,
            });
        }
        // Everything checked: allocate the staging region and record the upload.
        let weight = capped_weight(h.sample_count, config.max_weight);
        let open_round = round.round;
        let mut ids = self.allocators().clone();
        let id = ids.next_submission_id;
        ids.next_submission_id += 1;
        let staging_offset = ids.staging_top;
        ids.staging_top += byte_len;
        let submission = SubmissionRecord {
            id,
            round: open_round,
            contributor: ctx.caller,
            header: args.header.into(),
            header_hash,
            public_key: args.public_key,
            signature: args.signature,
            chunk_hashes: args.chunk_hashes,
            stored: ByteBuf::from(vec![0u8; expected_chunks as usize]),
            stored_count: 0,
            staging_offset,
            byte_len,
            weight,
            contribution: None,
        };
        let status = Self::status_of(&submission);
        self.submissions.insert(id, Stored(submission));
        self.submitters.insert(ctx.caller, id);
        self.set_allocators(ids);
        Ok(status)
    }

    fn own_open_submission(
        &self,
        ctx: &CallContext,
        submission_id: u64,
    ) -> Result<SubmissionRecord, SubmitError> {
        self.require_running()?;
        let s = self
            .submissions
            .get(&submission_id)
            .ok_or(SubmitError::UnknownSubmission { submission_id })?
            .0;
        if s.contributor != ctx.caller {
            return Err(SubmitError::NotSubmissionOwner { submission_id });
        }
        if s.contribution.is_some() {
            return Err(SubmitError::AlreadyCommitted { submission_id });
        }
        Ok(s)
    }

    /// Stores one chunk after checking it against its declared hash. Idempotent; any order.
    /// Returns the number of chunks still missing.
    pub fn put_chunk(&mut self, ctx: &CallContext, args: PutChunkArgs) -> Result<u32, SubmitError> {
        let mut s = self.own_open_submission(ctx, args.submission_id)?;
        let chunk_size = self.job().config().chunk_size();
        let chunk_count = s.header.chunk_count;
        let index = args.index;
        let (offset, len) = chunk_range(s.byte_len, chunk_size, index as u64)
            .ok_or(SubmitError::ChunkIndexOutOfRange { index, chunk_count })?;
        if args.bytes.len() as u64 != len {
            return Err(SubmitError::ChunkLengthMismatch {
                index,
                expected: len,
                got: args.bytes.len() as u64,
            });
        }
        let got = Hash::new(leaf_hash(&args.bytes));
        let expected = s.chunk_hashes[index as usize];
        if got != expected {
            return Err(SubmitError::ChunkHashMismatch {
                index,
                expected,
                got,
            });
        }
        let missing = chunk_count - s.stored_count;
        if s.stored[index as usize] == 1 {
            return Ok(missing);
        }
        write_bytes(&self.staging, s.staging_offset + offset, &args.bytes);
        s.stored[index as usize] = 1;
        s.stored_count += 1;
        self.submissions.insert(s.id, Stored(s));
        Ok(missing - 1)
    }

    /// Checks that every chunk is present, validates the delta, accumulates it, and closes
    /// the round when `max_clients` have committed.
    pub fn commit_submission(
        &mut self,
        ctx: &CallContext,
        submission_id: u64,
    ) -> Result<CommitReceipt, SubmitError> {
        let mut s = self.own_open_submission(ctx, submission_id)?;
        if s.stored_count < s.header.chunk_count {
            let first_missing = s.stored.iter().position(|&b| b == 0).unwrap_or(0) as u32;
            return Err(SubmitError::MissingChunks {
                missing: s.header.chunk_count - s.stored_count,
                first_missing,
            });
        }
        let job = self.job();
        let config = job.config();
        let (param_count, frac_bits) = (job.param_count, job.frac_bits);
        let (retain, max_clients) = (config.retain_contributions, config.max_clients);
        let encoding = s.header.encoding();
        aggregation::validate_staged(
            &self.staging,
            s.staging_offset,
            encoding,
            param_count,
            config.clip_norm,
        )
        .map_err(SubmitError::InvalidDelta)?;
        // Validated: from here on nothing can fail.
        if self.acc.len() as u64 != param_count {
            self.acc = vec![0; param_count as usize];
        }
        aggregation::accumulate_staged(
            &self.staging,
            &mut self.acc,
            s.staging_offset,
            encoding,
            s.weight,
            frac_bits,
        );
        let mut round = self.open_round().clone();
        let mut ids = self.allocators().clone();
        let index = ids.next_contribution;
        let index_in_round = (index - round.first_contribution) as u32;
        ids.next_contribution += 1;
        round.committed += 1;
        round.total_weight += s.weight;
        let contribution = PublicContribution {
            index,
            round: round.round,
            index_in_round,
            contributor: s.contributor,
            dataset_id: s.header.dataset_id,
            header: s.header.clone(),
            header_hash: s.header_hash,
            public_key: s.public_key.clone(),
            signature: s.signature.clone(),
            weight: s.weight,
            committed_at_ns: ctx.now,
            retained: retain,
        };
        self.contributions.insert(
            index,
            Stored(ContributionRecord {
                contribution,
                retained_offset: retain.then_some(s.staging_offset),
                byte_len: s.byte_len,
            }),
        );
        self.by_contributor.insert((s.contributor, index), ());
        self.by_dataset.insert((s.header.dataset_id, index), ());
        s.contribution = Some(index);
        let receipt_base = (s.id, s.round, s.header_hash, s.weight);
        self.submissions.insert(s.id, Stored(s));
        let close = round.committed >= max_clients;
        self.set_open_round(round);
        self.set_allocators(ids);
        if close {
            self.close_round(ctx.now);
        }
        Ok(CommitReceipt {
            submission_id: receipt_base.0,
            round: receipt_base.1,
            contribution_index: index,
            index_in_round,
            header_hash: receipt_base.2,
            weight: receipt_base.3,
            round_closed: close,
        })
    }

    /// Closes the open round: computes `w_{r+1}`, records the round, discards uncommitted
    /// uploads, and opens round `r + 1`. Needs at least one commit.
    fn close_round(&mut self, now: u64) {
        let job = self.job();
        let config = job.config();
        let (retain, server_lr, round_duration_ns) = (
            config.retain_contributions,
            config.server_lr,
            config.round_duration_ns,
        );
        let (frac_bits, spec_id) = (job.frac_bits, job.spec_id());
        let mut round = self.open_round().clone();
        let new_version = aggregation::finalize(
            &self.weights,
            &mut self.acc,
            round.total_weight,
            frac_bits,
            server_lr,
            &spec_id,
        );
        let next_contribution = self.allocators().next_contribution;
        let contributions: Vec<Contribution> = (round.first_contribution..next_contribution)
            .map(|i| self.contribution(i).expect("round contribution"))
            .collect();
        let leaves: Vec<[u8; 32]> = contributions
            .iter()
            .map(|c| leaf_hash(c.header_hash.as_slice()))
            .collect();
        let record = RoundRecord {
            round: round.round,
            base_version: round.model_version.expect("running"),
            new_version: Hash::new(new_version),
            contributions_root: Hash::new(merkle::root(&leaves)),
            first_contribution: round.first_contribution,
            contribution_count: contributions.len() as u32,
            total_weight: round.total_weight,
            contributors: contributions.iter().map(|c| c.contributor).collect(),
            frac_bits,
            server_lr,
            opened_at_ns: round.opened_at_ns,
            closed_at_ns: now,
            extensions: round.extensions,
        };
        let mut history = self.history().frontier();
        history.push(record.history_leaf());
        self.set_history(HistoryRecord::of(&history));
        self.certified.push_round(&record);
        self.rounds
            .insert(round.round, Stored(ClosedRoundRecord::from(record)));
        self.versions.insert(new_version, round.round + 1);
        // Stale uploads of the closed round are discarded.
        let ids: Vec<u64> = self.submissions.keys().collect();
        for id in ids {
            self.submissions.remove(&id);
        }
        let who: Vec<Principal> = self.submitters.keys().collect();
        for p in who {
            self.submitters.remove(&p);
        }
        if !retain {
            let mut ids = self.allocators().clone();
            ids.staging_top = 0;
            self.set_allocators(ids);
        }
        round.round += 1;
        round.model_version = Some(Hash::new(new_version));
        round.opened_at_ns = now;
        round.deadline_ns = now + round_duration_ns;
        round.extensions = 0;
        round.committed = 0;
        round.total_weight = 0;
        round.first_contribution = next_contribution;
        self.set_open_round(round);
    }

    /// The deadline timer: close the round if it has `min_clients`, else extend it by one
    /// round duration from now. Does nothing before the deadline or when not running.
    pub fn on_timer(&mut self, now: u64) {
        let job = self.job();
        let round = self.open_round();
        if job.job_state() != JobState::Running || round.deadline_ns == 0 || now < round.deadline_ns
        {
            return;
        }
        if round.committed >= job.config().min_clients {
            self.close_round(now);
        } else {
            let mut round = round.clone();
            round.deadline_ns = now + job.config().round_duration_ns;
            round.extensions += 1;
            self.set_open_round(round);
        }
    }

    // ------------------------------------------------------------ queries

    pub fn round_info(&self) -> RoundInfo {
        let job = self.job();
        let round = self.open_round();
        RoundInfo {
            job_id: job.job_id,
            state: job.job_state(),
            round: round.round,
            model_version: round.model_version,
            spec_id: job.spec_id,
            param_count: job.param_count,
            opened_at_ns: round.opened_at_ns,
            deadline_ns: self.timer_deadline(),
            committed: round.committed,
            pending: self.submissions.len() as u32 - round.committed,
            frac_bits: job.frac_bits,
            config: job.config.clone().map(Into::into),
        }
    }

    pub fn submission_status(&self, submission_id: u64) -> Result<SubmissionStatus, QueryError> {
        self.submissions
            .get(&submission_id)
            .map(|s| Self::status_of(&s.0))
            .ok_or(QueryError::UnknownSubmission { submission_id })
    }

    pub fn model_info(&self) -> Result<ModelInfo, QueryError> {
        let job = self.job();
        let round = self.open_round();
        let version = round.model_version.ok_or(QueryError::NoModel)?;
        let chunk_size = job.config().chunk_size();
        Ok(ModelInfo {
            version,
            spec_id: job.spec_id.expect("configured"),
            round: round.round,
            param_count: job.param_count,
            byte_len: job.param_count * 4,
            chunk_size,
            chunk_count: chunk_count(job.param_count * 4, chunk_size) as u32,
        })
    }

    pub fn model_chunk(&self, index: u32) -> Result<ModelChunk, QueryError> {
        let info = self.model_info()?;
        let (offset, len) = chunk_range(info.byte_len, info.chunk_size, index as u64).ok_or(
            QueryError::ChunkIndexOutOfRange {
                index,
                chunk_count: info.chunk_count,
            },
        )?;
        Ok(ModelChunk {
            version: info.version,
            index,
            chunk_count: info.chunk_count,
            bytes: ByteBuf::from(read_bytes(&self.weights, offset, len)),
        })
    }

    /// Closed rounds with number `>= page.start`, oldest first.
    pub fn round_history(&self, page: PageArgs) -> RoundPage {
        let limit = page_limit(page.limit);
        let mut items: Vec<RoundRecord> = self
            .rounds
            .range(page.start..)
            .take(limit + 1)
            .map(|e| e.value().0.into())
            .collect();
        let next = (items.len() > limit).then(|| items.pop().expect("limit + 1 items").round);
        RoundPage { items, next }
    }

    /// Every contribution that shaped `model_version`: all contributions of the rounds
    /// before the round it is the base of (transitively, each round builds on the last).
    pub fn lineage(&self, args: LineageArgs) -> Result<Lineage, QueryError> {
        let round = self.versions.get(&args.model_version.into_array()).ok_or(
            QueryError::UnknownModelVersion {
                version: args.model_version,
            },
        )?;
        let total = if round == 0 {
            0
        } else {
            let r = self.rounds.get(&(round - 1)).expect("closed round").0;
            r.first_contribution + r.contribution_count as u64
        };
        Ok(Lineage {
            model_version: args.model_version,
            round,
            total,
            contributions: self.contributions_range(total, args.page),
        })
    }

    /// Chunk `chunk` (job chunk size) of a retained contribution's encoded delta.
    pub fn contribution_chunk(&self, index: u64, chunk: u32) -> Result<ByteBuf, QueryError> {
        let c = self
            .contributions
            .get(&index)
            .ok_or(QueryError::UnknownContribution { index })?
            .0;
        let offset = c.retained_offset.ok_or(QueryError::NotRetained { index })?;
        let chunk_size = self.job().config().chunk_size();
        let (o, len) = chunk_range(c.byte_len, chunk_size, chunk as u64).ok_or(
            QueryError::ChunkIndexOutOfRange {
                index: chunk,
                chunk_count: chunk_count(c.byte_len, chunk_size) as u32,
            },
        )?;
        Ok(ByteBuf::from(read_bytes(&self.staging, offset + o, len)))
    }
}

/// Certified queries: the core adds the witness; the boundary adds the IC certificate
/// (`certificate`, empty outside non-replicated queries).
impl State {
    fn certification(&self, certificate: Vec<u8>, history: HistoryWitness) -> Certification {
        Certification {
            certificate: ByteBuf::from(certificate),
            tree: ByteBuf::from(self.certified_witness(history)),
        }
    }

    pub fn round_info_certified(&self, certificate: Vec<u8>) -> CertifiedRoundInfo {
        CertifiedRoundInfo {
            info: self.round_info(),
            certification: self.certification(certificate, HistoryWitness::Pruned),
        }
    }

    pub fn model_info_certified(
        &self,
        certificate: Vec<u8>,
    ) -> Result<CertifiedModelInfo, QueryError> {
        Ok(CertifiedModelInfo {
            info: self.model_info()?,
            certification: self.certification(certificate, HistoryWitness::Pruned),
        })
    }

    /// A page of round records; the witness reveals the hashes of exactly the rounds in
    /// the page (an empty page reveals the rounds around `start`, proving there are none).
    pub fn round_history_certified(
        &self,
        certificate: Vec<u8>,
        page: PageArgs,
    ) -> CertifiedRoundPage {
        let page = self.round_history(page);
        let (first, last) = match (page.items.first(), page.items.last()) {
            (Some(a), Some(b)) => (a.round, b.round),
            _ => (self.history().size, self.history().size),
        };
        CertifiedRoundPage {
            page,
            certification: self.certification(certificate, HistoryWitness::Range { first, last }),
        }
    }

    /// The inclusion proof of contribution `index` in its (closed) round's contributions
    /// root, with the round record and a witness for the record's hash.
    pub fn contribution_proof(
        &self,
        certificate: Vec<u8>,
        index: u64,
    ) -> Result<ContributionProof, QueryError> {
        let contribution = self
            .contribution(index)
            .ok_or(QueryError::UnknownContribution { index })?;
        let round = contribution.round;
        let record: RoundRecord = self
            .rounds
            .get(&round)
            .ok_or(QueryError::RoundNotClosed { round })?
            .0
            .into();
        let leaves: Vec<[u8; 32]> = (record.first_contribution
            ..record.first_contribution + record.contribution_count as u64)
            .map(|i| {
                let c = self.contributions.get(&i).expect("round contribution").0;
                leaf_hash(c.contribution.header_hash.as_slice())
            })
            .collect();
        let inclusion_proof = merkle::inclusion_proof(&leaves, contribution.index_in_round as u64)
            .expect("index_in_round is inside its round")
            .into_iter()
            .map(Hash::new)
            .collect();
        Ok(ContributionProof {
            contribution,
            record,
            inclusion_proof,
            certification: self.certification(
                certificate,
                HistoryWitness::Range {
                    first: round,
                    last: round,
                },
            ),
        })
    }

    /// Chunk `index` of the initial model (job chunk size), kept with `retain_contributions`
    /// so that lineage verifiers can replay every round. `version` is round 0's base.
    pub fn initial_model_chunk(&self, index: u32) -> Result<ModelChunk, QueryError> {
        let job = self.job();
        let config = job.config.as_ref().ok_or(QueryError::NoModel)?;
        if !config.retain_contributions {
            return Err(QueryError::InitialModelNotRetained);
        }
        let version = match self.rounds.get(&0) {
            Some(r) => r.0.base_version,
            None => self.open_round().model_version.ok_or(QueryError::NoModel)?,
        };
        if !matches!(job.job_state(), JobState::Running | JobState::Paused) {
            return Err(QueryError::NoModel);
        }
        let byte_len = job.param_count * 4;
        let chunk_count = chunk_count(byte_len, config.chunk_size()) as u32;
        let (offset, len) = chunk_range(byte_len, config.chunk_size(), index as u64)
            .ok_or(QueryError::ChunkIndexOutOfRange { index, chunk_count })?;
        Ok(ModelChunk {
            version,
            index,
            chunk_count,
            bytes: ByteBuf::from(read_bytes(&self.initial_weights, offset, len)),
        })
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// Uploads in progress a round accepts at once: twice `max_clients`, so honest
/// contributors find room while staged bytes stay bounded by `3 × max_clients` deltas.
pub fn pending_limit(max_clients: u32) -> u32 {
    max_clients.saturating_mul(2)
}
