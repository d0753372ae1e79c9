//! The round and model queries, and their certified forms: the core adds the witness of
//! the certified state tree; the boundary adds the IC certificate (`certificate`, empty
//! outside non-replicated queries).

use flic_protocol::api::{
    page_limit, Certification, CertifiedModelInfo, CertifiedRoundInfo, CertifiedRoundPage,
    ContributionProof, JobState, Lineage, LineageArgs, ModelChunk, ModelInfo, PageArgs, QueryError,
    RoundInfo, RoundPage, RoundRecord, SubmissionStatus, MAX_PAGE_CONTRIBUTORS,
};
use flic_protocol::chunking::{chunk_count, chunk_range};
use flic_protocol::merkle::{self, leaf_hash};
use flic_protocol::Hash;
use serde_bytes::ByteBuf;

use crate::certification::HistoryWitness;
use crate::state::State;
use crate::storage::read_bytes;

impl State {
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
            round_clip_norm: self.adaptive_clip().map(|_| self.round_clip_norm()),
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

    /// Closed rounds with number `>= page.start`, oldest first: at most `page.limit`
    /// records (capped at `MAX_PAGE_LEN`) holding at most [`MAX_PAGE_CONTRIBUTORS`]
    /// contributors together, so that the reply (Candid here, JSON at `/api/rounds`) stays
    /// far below the IC's reply limit whatever `max_clients` is. The first record is always
    /// included; `next` is the first round left out.
    pub fn round_history(&self, page: PageArgs) -> RoundPage {
        self.round_history_within(page, MAX_PAGE_CONTRIBUTORS)
    }

    /// [`round_history`](Self::round_history) with a contributor budget of `budget`.
    pub(crate) fn round_history_within(&self, page: PageArgs, budget: u64) -> RoundPage {
        let limit = page_limit(page.limit);
        let mut items: Vec<RoundRecord> = Vec::new();
        let mut contributors = 0u64;
        for e in self.rounds.range(page.start..) {
            if items.len() == limit {
                return RoundPage {
                    items,
                    next: Some(*e.key()),
                };
            }
            let record: RoundRecord = e.value().0.into();
            let n = record.contributors.len() as u64;
            if !items.is_empty() && contributors.saturating_add(n) > budget {
                return RoundPage {
                    items,
                    next: Some(record.round),
                };
            }
            contributors = contributors.saturating_add(n);
            items.push(record);
        }
        RoundPage { items, next: None }
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
    /// the page. When the page ends the history (`next` is `None`) nothing after its last
    /// round is pruned, which proves that no later round exists; an empty page reveals the
    /// last closed round's key, proving that no round from `start` on exists (see
    /// [`HistoryWitness::Range`]).
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
