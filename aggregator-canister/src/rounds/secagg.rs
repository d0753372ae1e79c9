//! Secure aggregation's phases (Bonawitz et al. 2017 over a complete graph), with the
//! canister as the bulletin board; the cryptography is `flic_protocol::secagg`.
//!
//! A round of a job with secure aggregation runs four phases, each until every
//! participant of the phase before has acted, or until its deadline (the timer):
//!
//! 1. **advertise keys** (`secagg_advertise`): up to `max_clients` admitted principals
//!    that own a dataset post their signed public keys and take an index in arrival
//!    order; at the deadline with `min_clients` (else the deadline moves on), or when
//!    full, the threshold `t` is fixed from their number `n`;
//! 2. **share keys** (`secagg_post_shares`): each posts one sealed envelope for every
//!    other participant; those that did form `U1`;
//! 3. **masked input**: members of `U1` upload their masked inputs through
//!    `begin_submission`, `put_chunk` and `commit_submission`; the commits add into the
//!    accumulator with wrapping arithmetic; those that committed are the survivors `U2`;
//! 4. **unmask** (`secagg_reveal`): survivors reveal one share per member of `U1`; with
//!    `t` reveals the canister rebuilds the survivors' self-mask seeds and the dropped
//!    participants' mask secrets, removes their masks from the sum (which is then the
//!    plain sum, bit for bit) and closes the round as FedAvg does.
//!
//! A phase that ends with fewer than `t` of its participants left cannot finish: the
//! round starts over from phase 1, its masked commits void, and the principals that did
//! not act are barred from the round until it closes, so that holding a place and
//! vanishing cannot stall a job for long. The canister only ever holds masked inputs, their
//! sum, sealed envelopes and at most one kind of share per participant.

use candid::Principal;
use flic_protocol::api::{
    AdvertiseKeysArgs, InboxEnvelope, JobState, PostSharesArgs, RevealSharesArgs, SecAggCallError,
    SecAggParticipant, SecAggPhase, SecAggRound,
};
use flic_protocol::secagg::keys::{AdvertisedKeys, RoundContext, ENVELOPE_BYTES};
use flic_protocol::secagg::unmask::{self, Participant};
use flic_protocol::secagg::{SecAggConfig, SeedShare};
use serde_bytes::ByteBuf;

use crate::state::{CallContext, State};
use crate::storage::records::{OpenRoundRecord, SecAggRoundRecord};

const PARTICIPANT: u8 = 1;
const ENVELOPE: u8 = 2;
const REVEAL: u8 = 3;
const BENCHED: u8 = 4;

const SHARED: u8 = 1;
const MASKED: u8 = 2;
const REVEALED: u8 = 4;

fn phase_of(p: u8) -> SecAggPhase {
    match p {
        0 => SecAggPhase::AdvertiseKeys,
        1 => SecAggPhase::ShareKeys,
        2 => SecAggPhase::MaskedInput,
        _ => SecAggPhase::Unmask,
    }
}

fn phase_code(p: SecAggPhase) -> u8 {
    match p {
        SecAggPhase::AdvertiseKeys => 0,
        SecAggPhase::ShareKeys => 1,
        SecAggPhase::MaskedInput => 2,
        SecAggPhase::Unmask => 3,
    }
}

/// A participant as stored: its principal and the keys it signed.
struct StoredParticipant {
    principal: Principal,
    public_key: [u8; 32],
    keys: AdvertisedKeys,
    signature: [u8; 64],
}

impl StoredParticipant {
    fn to_bytes(&self) -> Vec<u8> {
        let p = self.principal.as_slice();
        let mut out = Vec::with_capacity(1 + p.len() + 4 * 32 + 64);
        out.push(p.len() as u8);
        out.extend_from_slice(p);
        out.extend_from_slice(&self.public_key);
        out.extend_from_slice(&self.keys.c_public);
        out.extend_from_slice(&self.keys.s_public);
        out.extend_from_slice(&self.keys.self_seed_commitment);
        out.extend_from_slice(&self.signature);
        out
    }

    fn from_bytes(b: &[u8]) -> Self {
        let l = b[0] as usize;
        let at = |k: usize| -> [u8; 32] {
            b[1 + l + 32 * k..1 + l + 32 * (k + 1)]
                .try_into()
                .expect("32 bytes")
        };
        Self {
            principal: Principal::from_slice(&b[1..1 + l]),
            public_key: at(0),
            keys: AdvertisedKeys {
                c_public: at(1),
                s_public: at(2),
                self_seed_commitment: at(3),
            },
            signature: b[1 + l + 128..1 + l + 192].try_into().expect("64 bytes"),
        }
    }
}

fn key32(b: &ByteBuf, what: &str) -> Result<[u8; 32], SecAggCallError> {
    b.as_slice()
        .try_into()
        .map_err(|_| SecAggCallError::BadKeys(format!("{what} is {} bytes, not 32", b.len())))
}

impl State {
    pub(crate) fn secagg_config(&self) -> Option<SecAggConfig> {
        self.job.get().0.config.as_ref()?.secure_aggregation()
    }

    /// The open round's phase record (a round whose phases have not been written yet is in
    /// its first phase, from when it opened).
    pub(crate) fn secagg_record(&self) -> SecAggRoundRecord {
        let round = self.open_round();
        round.secagg.clone().unwrap_or_else(|| SecAggRoundRecord {
            phase_deadline_ns: round.opened_at_ns
                + self.secagg_config().map_or(0, |c| c.phase_duration_ns),
            ..Default::default()
        })
    }

    fn set_secagg_record(&mut self, record: SecAggRoundRecord) {
        let mut round = self.open_round().clone();
        round.secagg = Some(record);
        self.set_open_round(round);
    }

    fn round_context(&self, canister_id: Principal) -> RoundContext {
        RoundContext {
            canister_id: canister_id.as_slice().to_vec(),
            job_id: self.job().job_id,
            round: self.open_round().round,
        }
    }

    fn participant(&self, index: u32) -> Option<StoredParticipant> {
        self.secagg
            .get(&(PARTICIPANT, index, 0))
            .map(|b| StoredParticipant::from_bytes(&b))
    }

    fn participant_index(&self, caller: Principal) -> Option<u32> {
        self.secagg
            .range((PARTICIPANT, 0, 0)..(PARTICIPANT + 1, 0, 0))
            .find(|e| StoredParticipant::from_bytes(&e.value()).principal == caller)
            .map(|e| e.key().1)
    }

    fn is_benched(&self, caller: Principal) -> bool {
        self.secagg
            .range((BENCHED, 0, 0)..(BENCHED + 1, 0, 0))
            .any(|e| e.value() == caller.as_slice())
    }

    /// The checks every secure-aggregation update starts with.
    fn secagg_call(
        &self,
        ctx: &CallContext,
        round: u64,
        phase: SecAggPhase,
    ) -> Result<SecAggRoundRecord, SecAggCallError> {
        self.secagg_config()
            .ok_or(SecAggCallError::NotSecureAggregation)?;
        if ctx.caller == Principal::anonymous() {
            return Err(SecAggCallError::Submit(
                flic_protocol::api::SubmitError::AnonymousCaller,
            ));
        }
        let state = self.job().job_state();
        if state != JobState::Running {
            return Err(SecAggCallError::Submit(
                flic_protocol::api::SubmitError::JobNotRunning { state },
            ));
        }
        let current = self.open_round().round;
        if round != current || self.close_pending() {
            return Err(SecAggCallError::WrongRound {
                current,
                got: round,
            });
        }
        let record = self.secagg_record();
        if phase_of(record.phase) != phase {
            return Err(SecAggCallError::WrongPhase {
                expected: phase,
                current: phase_of(record.phase),
            });
        }
        Ok(record)
    }

    /// The caller's index in the round, if it is a participant.
    fn caller_index(&self, ctx: &CallContext) -> Result<u32, SecAggCallError> {
        self.participant_index(ctx.caller)
            .ok_or(SecAggCallError::NotAParticipant { late: false })
    }

    // ------------------------------------------------------------ phase 1

    pub fn secagg_advertise(
        &mut self,
        ctx: &CallContext,
        args: AdvertiseKeysArgs,
    ) -> Result<u32, SecAggCallError> {
        let mut record = self.secagg_call(ctx, args.round, SecAggPhase::AdvertiseKeys)?;
        self.check_admitted(ctx.caller).map_err(|caller| {
            SecAggCallError::Submit(flic_protocol::api::SubmitError::NotAllowed { caller })
        })?;
        super::submission::check_key_is_callers(ctx, &args.public_key)
            .map_err(SecAggCallError::Submit)?;
        if self.participant_index(ctx.caller).is_some() {
            return Err(SecAggCallError::AlreadyDone);
        }
        if self.is_benched(ctx.caller) {
            return Err(SecAggCallError::DroppedBefore);
        }
        let max = self.job().config().max_clients;
        let n = record.flags.len() as u32;
        if n >= max {
            return Err(SecAggCallError::RoundFull { max });
        }
        // A place is for a contributor with data: one dataset it owns, not revoked.
        let owns_dataset = self
            .datasets_by_owner
            .range((ctx.caller, 0)..=(ctx.caller, u64::MAX))
            .any(|e| {
                self.datasets
                    .get(&e.key().1)
                    .is_some_and(|d| d.0.revoked_at_ns.is_none())
            });
        if !owns_dataset {
            return Err(SecAggCallError::NoDataset);
        }
        let keys = AdvertisedKeys {
            c_public: key32(&args.c_public, "c_public")?,
            s_public: key32(&args.s_public, "s_public")?,
            self_seed_commitment: key32(&args.self_seed_commitment, "self_seed_commitment")?,
        };
        let public_key = key32(&args.public_key, "public_key")?;
        keys.verify(
            &self.round_context(ctx.canister_id),
            &public_key,
            &args.signature,
        )
        .map_err(|e| SecAggCallError::BadKeys(e.to_string()))?;
        let signature: [u8; 64] = args
            .signature
            .as_slice()
            .try_into()
            .expect("verified: 64 bytes");
        let stored = StoredParticipant {
            principal: ctx.caller,
            public_key,
            keys,
            signature,
        };
        self.secagg.insert((PARTICIPANT, n, 0), stored.to_bytes());
        let mut flags = record.flags.into_vec();
        flags.push(0);
        record.flags = ByteBuf::from(flags);
        if n + 1 >= max {
            self.advance_to_share_keys(record, ctx.now);
        } else {
            self.set_secagg_record(record);
        }
        Ok(n)
    }

    /// Starts `phase` (or, for the phase the round is in, its next stretch) at `now`.
    fn enter_phase(&mut self, mut record: SecAggRoundRecord, phase: SecAggPhase, now: u64) {
        let sa = self.secagg_config().expect("secure aggregation");
        record.phase = phase_code(phase);
        record.phase_deadline_ns = now + sa.phase_duration_ns;
        self.set_secagg_record(record);
    }

    fn advance_to_share_keys(&mut self, mut record: SecAggRoundRecord, now: u64) {
        let sa = self.secagg_config().expect("secure aggregation");
        record.threshold = sa.threshold(record.flags.len() as u32);
        self.enter_phase(record, SecAggPhase::ShareKeys, now);
    }

    // ------------------------------------------------------------ phase 2

    pub fn secagg_post_shares(
        &mut self,
        ctx: &CallContext,
        args: PostSharesArgs,
    ) -> Result<(), SecAggCallError> {
        let mut record = self.secagg_call(ctx, args.round, SecAggPhase::ShareKeys)?;
        let i = self.caller_index(ctx)?;
        if record.flags[i as usize] & SHARED != 0 {
            return Err(SecAggCallError::AlreadyDone);
        }
        let n = record.flags.len() as u32;
        if args.envelopes.len() as u32 != n - 1 {
            return Err(SecAggCallError::WrongEnvelopeCount {
                expected: n - 1,
                got: args.envelopes.len() as u32,
            });
        }
        for (position, e) in args.envelopes.iter().enumerate() {
            if e.len() != ENVELOPE_BYTES {
                return Err(SecAggCallError::EnvelopeLength {
                    position: position as u32,
                    expected: ENVELOPE_BYTES as u32,
                    got: e.len() as u32,
                });
            }
        }
        let recipients = (0..n).filter(|&j| j != i);
        for (to, e) in recipients.zip(args.envelopes) {
            self.secagg.insert((ENVELOPE, to, i), e.into_vec());
        }
        let mut flags = record.flags.into_vec();
        flags[i as usize] |= SHARED;
        let all = flags.iter().all(|f| f & SHARED != 0);
        record.flags = ByteBuf::from(flags);
        if all {
            self.enter_phase(record, SecAggPhase::MaskedInput, ctx.now);
        } else {
            self.set_secagg_record(record);
        }
        Ok(())
    }

    /// The envelopes sent to the caller this round (sealed: only it can open them).
    pub fn secagg_inbox(&self, caller: Principal, round: u64) -> Vec<InboxEnvelope> {
        if round != self.open_round().round {
            return Vec::new();
        }
        let Some(i) = self.participant_index(caller) else {
            return Vec::new();
        };
        self.secagg
            .range((ENVELOPE, i, 0)..=(ENVELOPE, i, u32::MAX))
            .map(|e| InboxEnvelope {
                from: e.key().2,
                ciphertext: ByteBuf::from(e.value()),
            })
            .collect()
    }

    // ------------------------------------------------------------ phase 3

    /// `begin_submission` in a job with secure aggregation: only in the masked-input
    /// phase, only from a participant that posted its shares.
    pub(super) fn check_secagg_upload(&self, caller: Principal) -> Result<(), SecAggCallError> {
        if self.secagg_config().is_none() {
            return Ok(());
        }
        let record = self.secagg_record();
        if phase_of(record.phase) != SecAggPhase::MaskedInput {
            return Err(SecAggCallError::WrongPhase {
                expected: SecAggPhase::MaskedInput,
                current: phase_of(record.phase),
            });
        }
        match self.participant_index(caller) {
            Some(i) if record.flags[i as usize] & SHARED != 0 => Ok(()),
            Some(_) => Err(SecAggCallError::NotAParticipant { late: true }),
            None => Err(SecAggCallError::NotAParticipant { late: false }),
        }
    }

    /// After a masked commit: the caller survives; when every member of `U1` has, the
    /// round moves to unmasking.
    pub(super) fn secagg_committed(&mut self, caller: Principal, now: u64) {
        let Some(i) = self.participant_index(caller) else {
            return;
        };
        let mut record = self.secagg_record();
        let mut flags = record.flags.into_vec();
        flags[i as usize] |= MASKED;
        let all = flags.iter().all(|f| f & SHARED == 0 || f & MASKED != 0);
        record.flags = ByteBuf::from(flags);
        if all {
            self.advance_to_unmask(record, now);
        } else {
            self.set_secagg_record(record);
        }
    }

    fn advance_to_unmask(&mut self, record: SecAggRoundRecord, now: u64) {
        // Uploads still in progress can no longer count.
        let pending: Vec<u64> = self
            .submissions
            .iter()
            .filter(|e| e.value().0.contribution.is_none())
            .map(|e| *e.key())
            .collect();
        for id in pending {
            self.drop_upload(id);
        }
        self.enter_phase(record, SecAggPhase::Unmask, now);
    }

    // ------------------------------------------------------------ phase 4

    fn participants(&self, record: &SecAggRoundRecord) -> Vec<Participant> {
        record
            .flags
            .iter()
            .enumerate()
            .map(|(i, f)| Participant {
                keys: self.participant(i as u32).expect("participant").keys,
                shared: f & SHARED != 0,
                masked: f & MASKED != 0,
            })
            .collect()
    }

    pub fn secagg_reveal(
        &mut self,
        ctx: &CallContext,
        args: RevealSharesArgs,
    ) -> Result<(), SecAggCallError> {
        let mut record = self.secagg_call(ctx, args.round, SecAggPhase::Unmask)?;
        let r = self.caller_index(ctx)?;
        if record.flags[r as usize] & REVEALED != 0 {
            return Err(SecAggCallError::AlreadyDone);
        }
        let participants = self.participants(&record);
        let shares: Vec<Vec<u8>> = args.shares.into_iter().map(ByteBuf::into_vec).collect();
        let shares = unmask::check_reveal(&participants, r, &shares)
            .map_err(|e| SecAggCallError::Reveal(e.to_string()))?;
        for (position, share) in shares.iter().enumerate() {
            self.secagg
                .insert((REVEAL, r, position as u32), share.to_bytes().to_vec());
        }
        let mut flags = record.flags.into_vec();
        flags[r as usize] |= REVEALED;
        let revealed = flags.iter().filter(|f| *f & REVEALED != 0).count() as u32;
        record.flags = ByteBuf::from(flags);
        let threshold = record.threshold;
        self.set_secagg_record(record);
        if revealed >= threshold {
            self.finish_secagg(ctx.canister_id, ctx.now);
        }
        Ok(())
    }

    /// Removes the masks with the reveals and closes the round; if the shares do not
    /// rebuild the seeds they committed to, the round starts over.
    fn finish_secagg(&mut self, canister_id: Principal, now: u64) {
        let record = self.secagg_record();
        let participants = self.participants(&record);
        let u1 = unmask::sharers(&participants);
        let reveals: Vec<(u32, Vec<SeedShare>)> = record
            .flags
            .iter()
            .enumerate()
            .filter(|(_, f)| *f & REVEALED != 0)
            .map(|(r, _)| {
                // One range scan per revealer: a `get` per share walks the tree from its
                // root each time, which made this close quadratic in stable-memory reads
                // (2.6 B instructions at 100 participants).
                let r = r as u32;
                let shares: Vec<SeedShare> = self
                    .secagg
                    .range((REVEAL, r, 0)..=(REVEAL, r, u32::MAX))
                    .map(|e| SeedShare::from_bytes(&e.value()).expect("a stored share is checked"))
                    .collect();
                assert_eq!(
                    shares.len(),
                    u1.len(),
                    "a reveal holds one share per sharer"
                );
                (r, shares)
            })
            .collect();
        let ctx = self.round_context(canister_id);
        let n = self.job().param_count as usize;
        if self.acc.len() != n {
            self.acc = vec![0; n];
        }
        match unmask::unmask(
            &mut self.acc,
            &ctx,
            &participants,
            &reveals,
            record.threshold,
        ) {
            Ok(_) => self.close_round(now),
            Err(_) => {
                // A wrong share (from a faulty or malicious revealer): the sum cannot be
                // trusted to unmask, so the round starts over; nobody is barred, since the
                // canister cannot tell which share was wrong.
                self.restart_secagg(now, Vec::new());
            }
        }
    }

    // ------------------------------------------------------------ the timer

    /// The open round's phase deadline (for the timer); `None` without secure aggregation.
    pub(crate) fn secagg_deadline(&self) -> Option<u64> {
        self.secagg_config()?;
        Some(self.secagg_record().phase_deadline_ns)
    }

    /// At a phase's deadline: move on with those that acted, or start over.
    pub(super) fn secagg_timer(&mut self, now: u64) {
        let record = self.secagg_record();
        if now < record.phase_deadline_ns {
            return;
        }
        let (n, t) = (record.flags.len() as u32, record.threshold);
        let count = |bit: u8| record.flags.iter().filter(|f| *f & bit != 0).count() as u32;
        let lacking = |bit: u8, among: u8| -> Vec<u32> {
            record
                .flags
                .iter()
                .enumerate()
                .filter(|(_, f)| *f & among == among && *f & bit == 0)
                .map(|(i, _)| i as u32)
                .collect()
        };
        match phase_of(record.phase) {
            SecAggPhase::AdvertiseKeys => {
                if n >= self.job().config().min_clients {
                    self.advance_to_share_keys(record, now);
                } else {
                    // Not min_clients yet: the phase waits one more stretch.
                    self.enter_phase(record, SecAggPhase::AdvertiseKeys, now);
                }
            }
            SecAggPhase::ShareKeys => {
                if count(SHARED) >= t {
                    self.enter_phase(record, SecAggPhase::MaskedInput, now);
                } else {
                    let bench = lacking(SHARED, 0);
                    self.restart_secagg(now, bench);
                }
            }
            SecAggPhase::MaskedInput => {
                if count(MASKED) >= t {
                    self.advance_to_unmask(record, now);
                } else {
                    let bench = lacking(MASKED, SHARED);
                    self.restart_secagg(now, bench);
                }
            }
            SecAggPhase::Unmask => {
                let bench = lacking(REVEALED, MASKED);
                self.restart_secagg(now, bench);
            }
        }
    }

    /// Starts the round over from its first phase: its masked commits void, its uploads
    /// dropped, its keys, envelopes and shares erased; `bench` (indices of those that did
    /// not act) are barred from the round until it closes.
    fn restart_secagg(&mut self, now: u64, bench: Vec<u32>) {
        let mut record = self.secagg_record();
        let benched: Vec<Principal> = bench
            .iter()
            .filter_map(|&i| self.participant(i).map(|p| p.principal))
            .collect();
        for p in benched {
            self.secagg
                .insert((BENCHED, record.benched, 0), p.as_slice().to_vec());
            record.benched += 1;
        }
        self.void_round_commits();
        let keys: Vec<(u8, u32, u32)> = self
            .secagg
            .range((PARTICIPANT, 0, 0)..(BENCHED, 0, 0))
            .map(|e| *e.key())
            .collect();
        for k in keys {
            self.secagg.remove(&k);
        }
        let fresh = SecAggRoundRecord {
            restarts: record.restarts + 1,
            benched: record.benched,
            ..Default::default()
        };
        self.enter_phase(fresh, SecAggPhase::AdvertiseKeys, now);
    }

    /// Removes the open round's contributions and uploads, and zeroes its sum: a
    /// secure-aggregation round that starts over takes none of them (their receipts never
    /// certify).
    fn void_round_commits(&mut self) {
        let first = self.open_round().first_contribution;
        let next = self.allocators().next_contribution;
        for index in first..next {
            if let Some(c) = self.contributions.remove(&index) {
                let c = c.0.contribution;
                self.by_contributor.remove(&(c.contributor, index));
                self.by_dataset.remove(&(c.dataset_id, index));
            }
        }
        let ids: Vec<u64> = self.submissions.keys().collect();
        for id in ids {
            self.remove_upload(id);
        }
        let mut ids = self.allocators().clone();
        ids.next_contribution = first;
        self.set_allocators(ids);
        let mut round = self.open_round().clone();
        round.committed = 0;
        round.total_weight = 0;
        self.set_open_round(round);
        self.acc.clear();
    }

    /// At the close: the round's bulletin board goes.
    pub(super) fn clear_secagg(&mut self, round: &mut OpenRoundRecord) {
        // At once, not key by key: removing the n^2 envelopes and shares one at a time
        // cost most of the closing message (2 B instructions at 100 participants). The
        // map has its own memory; like `remove`, this frees its chunks without zeroing
        // them: what stays is sealed envelopes and the shares the unmasking used.
        self.secagg.clear_new();
        round.secagg = None;
    }

    // ------------------------------------------------------------ queries

    pub fn secagg_round(&self) -> Option<SecAggRound> {
        self.secagg_config()?;
        let record = self.secagg_record();
        let participants = record
            .flags
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let p = self.participant(i as u32).expect("participant");
                SecAggParticipant {
                    index: i as u32,
                    principal: p.principal,
                    public_key: ByteBuf::from(p.public_key.to_vec()),
                    c_public: ByteBuf::from(p.keys.c_public.to_vec()),
                    s_public: ByteBuf::from(p.keys.s_public.to_vec()),
                    self_seed_commitment: ByteBuf::from(p.keys.self_seed_commitment.to_vec()),
                    signature: ByteBuf::from(p.signature.to_vec()),
                    shared: f & SHARED != 0,
                    masked: f & MASKED != 0,
                    revealed: f & REVEALED != 0,
                }
            })
            .collect();
        Some(SecAggRound {
            round: self.open_round().round,
            phase: phase_of(record.phase),
            phase_deadline_ns: record.phase_deadline_ns,
            threshold: record.threshold,
            restarts: record.restarts,
            participants,
        })
    }
}
