//! Submissions: `begin_submission` verifies a signed header and opens an upload,
//! `put_chunk` stores chunks checked against their hashes, `commit_submission` validates
//! the whole delta and accumulates it (closing the round at `max_clients`).
//!
//! `begin_submission` applies its checks as small named functions, cheapest first, so a
//! wrong request costs as little as possible and the Ed25519 verification, the most
//! expensive, runs only for a request that is right in every other way. Each returns the
//! typed error of its rejection; when several apply, the first in this order wins.

use candid::Principal;
use flic_protocol::api::{
    Admission, BeginSubmissionArgs, CommitReceipt, JobState, PutChunkArgs, SubmissionStatus,
    SubmitError,
};
use flic_protocol::chunking::{chunk_count, chunk_range};
use flic_protocol::fedavg::capped_weight;
use flic_protocol::hash::sha256;
use flic_protocol::merkle::{self, leaf_hash};
use flic_protocol::submission::{principal_of_ed25519, verify_signature};
use flic_protocol::{Hash, SubmissionHeader};
use serde_bytes::ByteBuf;

use crate::aggregation;
use crate::state::{CallContext, State};
use crate::storage::records::{ContributionRecord, PublicContribution, SubmissionRecord};
use crate::storage::{read_bytes_into, write_bytes, Mem, Stored};

/// Uploads in progress a round accepts at once: twice `max_clients`, so honest
/// contributors find room while staged bytes stay bounded by `3 × max_clients` deltas.
pub fn pending_limit(max_clients: u32) -> u32 {
    max_clients.saturating_mul(2)
}

/// The size of the upload a header announces, once checked.
struct UploadShape {
    byte_len: u64,
    chunk_count: u32,
}

/// What the caller's earlier upload of this round means for a new `begin_submission`.
enum Earlier {
    /// None: a new upload.
    None,
    /// The same header, not committed: resume it.
    Resume(Box<SubmissionRecord>),
}

impl State {
    fn require_running(&self) -> Result<(), SubmitError> {
        let state = self.job().job_state();
        if state != JobState::Running {
            return Err(SubmitError::JobNotRunning { state });
        }
        if self.close_pending() {
            return Err(SubmitError::RoundClosing {
                round: self.open_round().round,
            });
        }
        Ok(())
    }

    pub(super) fn status_of(s: &SubmissionRecord) -> SubmissionStatus {
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
    ///
    /// An upload holds no place in the round (places are taken by commits), only one of
    /// the round's `pending_limit` staging slots; when they are all held, the most stalled
    /// upload gives way if it has stalled (see [`JobConfig::upload_stall_ns`]), so an upload
    /// that is not progressing never keeps out one that is.
    ///
    /// [`JobConfig::upload_stall_ns`]: flic_protocol::api::JobConfig::upload_stall_ns
    pub fn begin_submission(
        &mut self,
        ctx: &CallContext,
        args: BeginSubmissionArgs,
    ) -> Result<SubmissionStatus, SubmitError> {
        check_caller(ctx)?;
        self.require_running()?;
        self.check_admitted(ctx.caller)
            .map_err(|caller| SubmitError::NotAllowed { caller })?;
        check_key_is_callers(ctx, &args.public_key)?;
        let h = &args.header;
        self.check_target(ctx, h)?;
        self.check_secagg_upload(ctx.caller)
            .map_err(|e| SubmitError::SecureAggregation {
                reason: e.to_string(),
            })?;
        let shape = self.check_shape(h, &args)?;
        self.check_clip_bit(&args)?;
        self.check_dataset(ctx, h)?;
        let signing_bytes = h.signing_bytes();
        let header_hash = Hash::new(sha256(&signing_bytes));
        let earlier = self.check_earlier_upload(ctx, header_hash)?;
        let gives_way = match earlier {
            Earlier::None => self.check_pending_limit(ctx.now)?,
            Earlier::Resume(_) => None,
        };
        check_chunk_root(h, &args)?;
        verify_signature(&args.public_key, &signing_bytes, &args.signature)
            .map_err(SubmitError::Signature)?;
        if let Earlier::Resume(existing) = earlier {
            return Ok(Self::status_of(&existing));
        }

        // Everything checked: the most stalled upload gives way if it must, then this one
        // takes a slot.
        if let Some(stalled) = gives_way {
            self.drop_upload(stalled);
        }
        let weight = capped_weight(h.sample_count, self.job().config().max_weight);
        let slot = self.take_slot();
        let slot_bytes = self.job().config().slot_bytes(self.job().param_count);
        let mut ids = self.allocators().clone();
        let id = ids.next_submission_id;
        ids.next_submission_id += 1;
        let submission = SubmissionRecord {
            id,
            round: self.open_round().round,
            contributor: ctx.caller,
            header: args.header.into(),
            header_hash,
            public_key: args.public_key,
            signature: args.signature,
            chunk_hashes: args.chunk_hashes,
            stored: ByteBuf::from(vec![0u8; shape.chunk_count as usize]),
            stored_count: 0,
            staging_offset: slot * slot_bytes,
            byte_len: shape.byte_len,
            weight,
            contribution: None,
            slot: Some(slot),
            last_progress_ns: Some(ctx.now),
            below_clip: args.below_clip,
        };
        let status = Self::status_of(&submission);
        self.uploads_by_progress.insert((ctx.now, id), ());
        self.submissions.insert(id, Stored(submission));
        self.submitters.insert(ctx.caller, id);
        self.set_allocators(ids);
        Ok(status)
    }

    /// `Err(caller)` when the job admits only its allow-list and `caller` is not on it.
    pub(crate) fn check_admitted(&self, caller: Principal) -> Result<(), Principal> {
        let admitted = match self.job.get().0.config.as_ref() {
            Some(c) => c.admission() == Admission::Open || self.allow_list.contains_key(&caller),
            None => true,
        };
        if admitted {
            Ok(())
        } else {
            Err(caller)
        }
    }

    /// A free staging slot (the lowest freed one, else a new one).
    fn take_slot(&mut self) -> u64 {
        if let Some((slot, ())) = self.free_slots.first_key_value() {
            self.free_slots.remove(&slot);
            return slot;
        }
        let mut ids = self.allocators().clone();
        let slot = ids.next_slot();
        ids.next_slot = Some(slot + 1);
        self.set_allocators(ids);
        slot
    }

    /// Where an upload's bytes are staged: its slot, or the arena for an upload begun by
    /// the release before slots.
    pub(crate) fn staged_in(&self, s: &SubmissionRecord) -> &Mem {
        staged_memory(&self.staging_slots, &self.staging, s)
    }

    /// Removes an upload that is not committed, freeing its slot.
    pub(crate) fn drop_upload(&mut self, submission_id: u64) {
        let dropped = self.remove_upload(submission_id);
        debug_assert!(
            dropped.is_none_or(|s| s.contribution.is_none()),
            "a committed upload is never dropped"
        );
    }

    /// Removes an upload record, committed or not, with its indexes, and frees its slot
    /// (a FedAvg upload's was freed at its commit already; freeing twice changes nothing).
    pub(crate) fn remove_upload(&mut self, submission_id: u64) -> Option<SubmissionRecord> {
        let s = self.submissions.remove(&submission_id)?.0;
        self.submitters.remove(&s.contributor);
        self.uploads_by_progress
            .remove(&(s.last_progress_ns(), s.id));
        if let Some(slot) = s.slot {
            self.free_slots.insert(slot, ());
        }
        Some(s)
    }

    /// Drops every upload in progress that stored no chunk for the job's stall time.
    pub(crate) fn drop_stalled_uploads(&mut self, now: u64) {
        let stall = self.job().config().upload_stall_ns();
        let stalled: Vec<u64> = self
            .uploads_by_progress
            .keys()
            .take_while(|&(at, _)| now.saturating_sub(at) >= stall)
            .map(|(_, id)| id)
            .collect();
        for id in stalled {
            self.drop_upload(id);
        }
    }

    /// The header names this canister, job, open round and its base model.
    fn check_target(&self, ctx: &CallContext, h: &SubmissionHeader) -> Result<(), SubmitError> {
        let job_id = self.job().job_id;
        let round = self.open_round();
        if h.canister_id != ctx.canister_id {
            return Err(SubmitError::WrongCanister {
                expected: ctx.canister_id,
                got: h.canister_id,
            });
        }
        if h.job_id != job_id {
            return Err(SubmitError::WrongJob {
                expected: job_id,
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
        Ok(())
    }

    /// The adaptive-clipping bit is there exactly when the job clips adaptively.
    fn check_clip_bit(&self, args: &BeginSubmissionArgs) -> Result<(), SubmitError> {
        let expected = self.adaptive_clip().is_some();
        if args.below_clip.is_some() != expected {
            return Err(SubmitError::ClipBit { expected });
        }
        Ok(())
    }

    /// Encoding allowed, and the parameter, chunk and chunk-hash counts the job implies.
    fn check_shape(
        &self,
        h: &SubmissionHeader,
        args: &BeginSubmissionArgs,
    ) -> Result<UploadShape, SubmitError> {
        let job = self.job();
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
        let chunk_count = chunk_count(byte_len, config.chunk_size()) as u32;
        if h.chunk_count != chunk_count {
            return Err(SubmitError::WrongChunkCount {
                encoding: h.encoding,
                expected: chunk_count,
                got: h.chunk_count,
            });
        }
        if args.chunk_hashes.len() as u64 != chunk_count as u64 {
            return Err(SubmitError::WrongChunkHashCount {
                expected: chunk_count,
                got: args.chunk_hashes.len() as u32,
            });
        }
        Ok(UploadShape {
            byte_len,
            chunk_count,
        })
    }

    /// The dataset is registered, the caller's, not revoked, and has the samples claimed.
    fn check_not_revoked(&self, dataset_id: u64) -> Result<(), SubmitError> {
        match self.datasets.get(&dataset_id) {
            Some(d) if d.0.revoked_at_ns.is_none() => Ok(()),
            _ => Err(SubmitError::DatasetRevoked { dataset_id }),
        }
    }

    fn check_dataset(&self, ctx: &CallContext, h: &SubmissionHeader) -> Result<(), SubmitError> {
        let dataset = self
            .datasets
            .get(&h.dataset_id)
            .ok_or(SubmitError::UnknownDataset {
                dataset_id: h.dataset_id,
            })?
            .0;
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
        Ok(())
    }

    /// One upload per caller and round: the same header again resumes it (once the rest
    /// of the request checks out); anything else is a duplicate.
    fn check_earlier_upload(
        &self,
        ctx: &CallContext,
        header_hash: Hash,
    ) -> Result<Earlier, SubmitError> {
        let Some(existing_id) = self.submitters.get(&ctx.caller) else {
            return Ok(Earlier::None);
        };
        let existing = self
            .submissions
            .get(&existing_id)
            .expect("indexed submission")
            .0;
        if existing.header_hash == header_hash && existing.contribution.is_none() {
            return Ok(Earlier::Resume(Box::new(existing)));
        }
        Err(SubmitError::DuplicateSubmission {
            round: self.open_round().round,
            submission_id: existing_id,
            committed: existing.contribution.is_some(),
        })
    }

    /// Staging is bounded: principals are free to create, so the round's uploads in
    /// progress are limited, and at the limit the most stalled one gives way (returned, to
    /// be dropped once the new upload is accepted) if it has stalled.
    fn check_pending_limit(&self, now: u64) -> Result<Option<u64>, SubmitError> {
        let pending = self.uploads_by_progress.len();
        let limit = pending_limit(self.job().config().max_clients);
        if pending < limit as u64 {
            return Ok(None);
        }
        let (at, id) = self
            .uploads_by_progress
            .first_key_value()
            .map(|(k, ())| k)
            .expect("the limit is at least 2");
        let stall = self.job().config().upload_stall_ns();
        let idle = now.saturating_sub(at);
        if idle >= stall {
            return Ok(Some(id));
        }
        Err(SubmitError::TooManyPendingSubmissions {
            pending: pending as u32,
            limit,
            retry_after_ns: stall - idle,
        })
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

    /// The receipt of the caller's commit of `submission_id` if it was already committed,
    /// in the open round or (the upload record gone with its round) as the caller's latest
    /// contribution.
    fn earlier_receipt(&self, ctx: &CallContext, submission_id: u64) -> Option<CommitReceipt> {
        let index = match self.submissions.get(&submission_id) {
            Some(s) if s.0.contributor == ctx.caller => s.0.contribution?,
            Some(_) => return None,
            None => {
                let (_, index) = self
                    .by_contributor
                    .keys_range((ctx.caller, 0)..=(ctx.caller, u64::MAX))
                    .next_back()?;
                index
            }
        };
        let c = self.contributions.get(&index)?.0;
        if c.submission_id != Some(submission_id) {
            return None;
        }
        let p = c.contribution;
        Some(CommitReceipt {
            submission_id,
            round: p.round,
            contribution_index: p.index,
            index_in_round: p.index_in_round,
            header_hash: p.header_hash,
            weight: p.weight,
            round_closed: p.round < self.open_round().round,
        })
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
        write_bytes(self.staged_in(&s), s.staging_offset + offset, &args.bytes);
        s.stored[index as usize] = 1;
        s.stored_count += 1;
        self.uploads_by_progress
            .remove(&(s.last_progress_ns(), s.id));
        self.uploads_by_progress.insert((ctx.now, s.id), ());
        s.last_progress_ns = Some(ctx.now);
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
        if let Some(receipt) = self.earlier_receipt(ctx, submission_id) {
            // A retry after a lost reply: the same receipt, nothing changes.
            return Ok(receipt);
        }
        let mut s = self.own_open_submission(ctx, submission_id)?;
        if s.stored_count < s.header.chunk_count {
            let first_missing = s.stored.iter().position(|&b| b == 0).unwrap_or(0) as u32;
            return Err(SubmitError::MissingChunks {
                missing: s.header.chunk_count - s.stored_count,
                first_missing,
            });
        }
        // A dataset revoked while its upload was in flight takes no contribution.
        self.check_not_revoked(s.header.dataset_id)?;
        let job = self.job();
        let config = job.config();
        let (param_count, frac_bits) = (job.param_count, job.frac_bits);
        let (retain, max_clients) = (config.retain_contributions, config.max_clients);
        let keeps_delta = config.aggregation().needs_all_deltas();
        let encoding = s.header.encoding();
        aggregation::validate_staged(
            self.staged_in(&s),
            s.staging_offset,
            encoding,
            param_count,
            self.round_clip_norm(),
        )
        .map_err(SubmitError::InvalidDelta)?;
        // Validated: from here on nothing can fail. FedAvg adds the delta now; a rule that
        // needs every delta of the round keeps it in its slot until the close.
        if !keeps_delta {
            if self.acc.len() as u64 != param_count {
                self.acc = vec![0; param_count as usize];
            }
            aggregation::accumulate_staged(
                // Field by field (not `staged_in`): `self.acc` is borrowed mutably.
                staged_memory(&self.staging_slots, &self.staging, &s),
                &mut self.acc,
                s.staging_offset,
                encoding,
                s.weight,
                frac_bits,
            );
        }
        let mut round = self.open_round().clone();
        let mut ids = self.allocators().clone();
        let index = ids.next_contribution;
        let index_in_round = (index - round.first_contribution) as u32;
        ids.next_contribution += 1;
        round.committed += 1;
        round.total_weight += s.weight;
        if s.below_clip == Some(true) {
            round.below_clip = Some(round.below_clip.unwrap_or(0) + 1);
        }
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
        // The delta leaves its slot: copied to the retained arena if the job keeps
        // contributions (an upload of the release before slots is already there).
        let retained_offset = match (retain, s.slot) {
            (false, _) => None,
            (true, None) => Some(s.staging_offset),
            (true, Some(_)) => {
                let top = ids.staging_top;
                copy_window_by_window(
                    &self.staging_slots,
                    s.staging_offset,
                    &self.staging,
                    top,
                    s.byte_len,
                );
                ids.staging_top += s.byte_len;
                Some(top)
            }
        };
        self.uploads_by_progress
            .remove(&(s.last_progress_ns(), s.id));
        if let (Some(slot), false) = (s.slot, keeps_delta) {
            self.free_slots.insert(slot, ());
        }
        self.contributions.insert(
            index,
            Stored(ContributionRecord {
                contribution,
                retained_offset,
                byte_len: s.byte_len,
                submission_id: Some(s.id),
            }),
        );
        self.by_contributor.insert((s.contributor, index), ());
        self.by_dataset.insert((s.header.dataset_id, index), ());
        s.contribution = Some(index);
        let receipt_base = (s.id, s.round, s.header_hash, s.weight);
        let receipt_base_caller = s.contributor;
        self.submissions.insert(s.id, Stored(s));
        // Secure aggregation closes when the masks are removed, never at a commit.
        let secagg = self.secagg_config().is_some();
        let close = round.committed >= max_clients && !secagg;
        self.set_open_round(round);
        self.set_allocators(ids);
        if secagg {
            self.secagg_committed(receipt_base_caller, ctx.now);
        }
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
            // A robust close may go on in later messages, and a DP close waits for its
            // noise seed.
            round_closed: close && self.open_round().round > receipt_base.1,
        })
    }
}

fn check_caller(ctx: &CallContext) -> Result<(), SubmitError> {
    if ctx.caller == Principal::anonymous() {
        return Err(SubmitError::AnonymousCaller);
    }
    Ok(())
}

/// The public key is 32 bytes and its self-authenticating principal is the caller (a hash,
/// far cheaper than the signature, which is verified last).
pub(super) fn check_key_is_callers(
    ctx: &CallContext,
    public_key: &[u8],
) -> Result<(), SubmitError> {
    let pk: [u8; 32] = public_key.try_into().map_err(|_| {
        SubmitError::Signature(flic_protocol::submission::SignatureError::PublicKeyLength {
            len: public_key.len() as u64,
        })
    })?;
    let key_principal = principal_of_ed25519(&pk);
    if key_principal != ctx.caller {
        return Err(SubmitError::CallerMismatch {
            caller: ctx.caller,
            key_principal,
        });
    }
    Ok(())
}

/// The chunk hashes' Merkle root is the one the header signs.
fn check_chunk_root(h: &SubmissionHeader, args: &BeginSubmissionArgs) -> Result<(), SubmitError> {
    let leaves: Vec<[u8; 32]> = args.chunk_hashes.iter().map(|x| x.into_array()).collect();
    let computed = Hash::new(merkle::root(&leaves));
    if computed != h.chunk_root {
        return Err(SubmitError::ChunkRootMismatch {
            computed,
            header: h.chunk_root,
        });
    }
    Ok(())
}

/// The staging slots for an upload in a slot, the arena for one begun by the release
/// before slots.
fn staged_memory<'a>(slots: &'a Mem, arena: &'a Mem, s: &SubmissionRecord) -> &'a Mem {
    match s.slot {
        Some(_) => slots,
        None => arena,
    }
}

/// Copies `len` bytes from `from` at `src` to `to` at `dst`, one aggregation window at a
/// time (heap use stays bounded whatever the model size).
fn copy_window_by_window(from: &Mem, src: u64, to: &Mem, dst: u64, len: u64) {
    const WINDOW: u64 = aggregation::WINDOW_PARAMS * 4;
    let mut buf = Vec::new();
    let mut done = 0;
    while done < len {
        let n = WINDOW.min(len - done);
        read_bytes_into(from, src + done, n as usize, &mut buf);
        write_bytes(to, dst + done, &buf);
        done += n;
    }
}
