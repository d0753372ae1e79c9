//! Wasm-level scenarios of the aggregator, written once for every [`IcEnv`].
//! Each public function is one test (see `tests/tests/*.rs`).

use std::time::Duration;

use candid::Principal;
use serde_bytes::ByteBuf;

use flic_protocol::api::{AdminError, DatasetError, JobState, SubmissionStatus, SubmitError};
use flic_protocol::encoding::DeltaError;
use flic_protocol::submission::SignatureError;
use flic_protocol::{chunking, merkle, DeltaEncoding, Hash};

use crate::env::{CallFailure, IcEnv};
use crate::fixture::{
    delta, initial_weights, job, Fixture, Upload, CHUNK_SIZE, PARAMS, ROUND_NS, SAMPLES,
};

/// Runs `call`, asserts it fails with an error matching `pattern`, and that no visible
/// state changed.
macro_rules! rejects {
    ($f:expr, $call:expr, $pattern:pat) => {{
        let before = $f.snapshot();
        let result = $call;
        assert!(
            matches!(result, Err($pattern)),
            "expected {}, got {:?}",
            stringify!($pattern),
            result
        );
        let after = $f.snapshot();
        assert_eq!(
            before,
            after,
            "a rejected call ({}) changed state",
            stringify!($pattern)
        );
    }};
}

/// Three contributors commit; the third reaches `max_clients` and closes the round. The new
/// model version equals the one recomputed natively from the same contributions, in
/// another order, bit for bit.
pub fn full_round_three_contributors<E: IcEnv>(env: E) {
    let mut f = Fixture::new(env, 3, job());
    let (v0, w0) = f.model();
    let info = f.round_info();
    assert_eq!(
        (info.state, info.round, info.committed),
        (JobState::Running, 0, 0)
    );
    assert_eq!(info.model_version, Some(v0));

    let ups: Vec<Upload> = (0..3)
        .map(|c| {
            f.prepare(
                c,
                &delta(c, 0),
                if c == 1 {
                    DeltaEncoding::Int8Blocks
                } else {
                    DeltaEncoding::F32
                },
            )
        })
        .collect();
    for (c, up) in ups.iter().enumerate() {
        let status = f.begin(c, up).expect("begin");
        // Chunks in reverse order: uploads are order-free.
        for i in (0..up.chunk_count()).rev() {
            f.put(c, status.submission_id, i, up.chunk(i))
                .expect("put_chunk");
        }
        let receipt = f.commit(c, status.submission_id).expect("commit");
        assert_eq!(receipt.round, 0);
        assert_eq!(receipt.index_in_round, c as u32);
        assert_eq!(receipt.weight, SAMPLES);
        assert_eq!(receipt.round_closed, c == 2);
    }
    let info = f.round_info();
    assert_eq!(info.round, 1, "the third commit closes the round");
    assert_eq!(info.committed, 0);
    let (v1, w1) = f.model();
    assert_ne!(v1, v0);

    let reversed: Vec<&Upload> = ups.iter().rev().collect();
    let (expected, w_expected) = f.expected_next(&w0, &reversed, info.frac_bits);
    assert_eq!(v1, expected, "canister and native FedAvg disagree");
    assert_eq!(
        w1.iter().map(|w| w.to_bits()).collect::<Vec<_>>(),
        w_expected.iter().map(|w| w.to_bits()).collect::<Vec<_>>()
    );

    let history = f.snapshot().history;
    assert_eq!(history.len(), 1);
    let record = &history[0];
    assert_eq!(
        (record.round, record.base_version, record.new_version),
        (0, v0, v1)
    );
    assert_eq!(record.contribution_count, 3);
    assert_eq!(record.total_weight, 3 * SAMPLES);
    // RFC 6962 leaves are the header hashes, in commit order.
    let leaves: Vec<[u8; 32]> = ups
        .iter()
        .map(|u| merkle::leaf_hash(&u.args.header.header_hash()))
        .collect();
    assert_eq!(
        *record.contributions_root,
        merkle::root(&leaves),
        "contributions root"
    );
    let contributors: Vec<Principal> = f.contributors.iter().map(|c| c.principal).collect();
    assert_eq!(record.contributors, contributors);
}

/// Every rejection of DESIGN section 4, through the wasm; none changes visible state.
pub fn every_rejection_leaves_state_unchanged<E: IcEnv>(env: E) {
    let mut f = Fixture::new(env, 3, job());
    let good = f.prepare(0, &delta(0, 0), DeltaEncoding::F32);
    let info = f.round_info();
    let base = info.model_version.unwrap();

    // Signature and caller.
    let mut bad_sig = good.clone();
    bad_sig.args.signature[0] ^= 1;
    rejects!(
        f,
        f.begin(0, &bad_sig),
        SubmitError::Signature(SignatureError::BadSignature)
    );
    let other = f.contributors[1].principal;
    rejects!(
        f,
        f.begin_as(other, &good),
        SubmitError::CallerMismatch { .. }
    );
    // Anonymous ingress never reaches the update: inspect_message drops it.
    let before = f.snapshot();
    let anonymous = f.update1::<_, Result<SubmissionStatus, SubmitError>>(
        Principal::anonymous(),
        "begin_submission",
        (&good.args,),
    );
    match anonymous {
        Err(CallFailure::Other(m)) => assert!(m.contains("anonymous"), "{m}"),
        other => panic!("anonymous begin_submission: {other:?}"),
    }
    assert!(before == f.snapshot());
    let mut short_key = good.clone();
    short_key.args.public_key = ByteBuf::from(vec![1u8; 31]);
    rejects!(
        f,
        f.begin(0, &short_key),
        SubmitError::Signature(SignatureError::PublicKeyLength { .. })
            | SubmitError::CallerMismatch { .. }
    );

    // Round and version.
    let future = f.prepare_for(0, &delta(0, 0), DeltaEncoding::F32, 1, base);
    rejects!(
        f,
        f.begin(0, &future),
        SubmitError::FutureRound { current: 0, got: 1 }
    );
    let wrong_base = f.prepare_for(0, &delta(0, 0), DeltaEncoding::F32, 0, Hash::new([9; 32]));
    rejects!(
        f,
        f.begin(0, &wrong_base),
        SubmitError::WrongBaseVersion { .. }
    );

    // Datasets: unknown, someone else's, inflated sample count, revoked.
    let mut unknown = f.prepare(0, &delta(0, 0), DeltaEncoding::F32);
    unknown.args.header.dataset_id = 999;
    resign(&f, 0, &mut unknown);
    rejects!(
        f,
        f.begin(0, &unknown),
        SubmitError::UnknownDataset { dataset_id: 999 }
    );
    let mut theirs = f.prepare(0, &delta(0, 0), DeltaEncoding::F32);
    theirs.args.header.dataset_id = f.contributors[1].dataset_id;
    resign(&f, 0, &mut theirs);
    rejects!(f, f.begin(0, &theirs), SubmitError::DatasetNotOwned { .. });
    let mut inflated = f.prepare(0, &delta(0, 0), DeltaEncoding::F32);
    inflated.args.header.sample_count = SAMPLES + 1;
    resign(&f, 0, &mut inflated);
    rejects!(
        f,
        f.begin(0, &inflated),
        SubmitError::SampleCountExceedsDataset { .. }
    );

    // Sizes: wrong parameter count, wrong chunk count, chunk hashes not matching the root.
    let mut wrong_len = f.prepare(0, &delta(0, 0), DeltaEncoding::F32);
    wrong_len.args.header.param_count = PARAMS + 1;
    resign(&f, 0, &mut wrong_len);
    rejects!(
        f,
        f.begin(0, &wrong_len),
        SubmitError::WrongParamCount { .. }
    );
    let mut forged_hashes = good.clone();
    forged_hashes.args.chunk_hashes[0] = Hash::new([7; 32]);
    rejects!(
        f,
        f.begin(0, &forged_hashes),
        SubmitError::ChunkRootMismatch { .. }
    );

    // Non-controllers cannot administer: inspect_message drops their ingress (and the
    // update would refuse it with `NotController`).
    let c0 = f.contributors[0].principal;
    let before = f.snapshot();
    let not_admin = f.update1::<_, Result<(), AdminError>>(c0, "pause_job", ());
    assert!(
        matches!(&not_admin, Err(CallFailure::Other(m)) if m.contains("not a controller")),
        "{not_admin:?}"
    );
    let cfg = job();
    let reconfigure = f.update1::<_, Result<u64, AdminError>>(c0, "configure_job", (&cfg,));
    assert!(
        matches!(&reconfigure, Err(CallFailure::Other(m)) if m.contains("not a controller")),
        "{reconfigure:?}"
    );
    assert!(before == f.snapshot());

    // Chunks: wrong hash, wrong length, out of range; then commit with chunks missing.
    let status = f.begin(0, &good).expect("begin");
    let id = status.submission_id;
    let mut tampered = good.chunk(0);
    tampered[0] ^= 1;
    rejects!(
        f,
        f.put(0, id, 0, tampered),
        SubmitError::ChunkHashMismatch { index: 0, .. }
    );
    let mut long = good.chunk(0);
    long.push(0);
    rejects!(
        f,
        f.put(0, id, 0, long),
        SubmitError::ChunkLengthMismatch { .. }
    );
    rejects!(
        f,
        f.put(0, id, good.chunk_count(), vec![0; 4]),
        SubmitError::ChunkIndexOutOfRange { .. }
    );
    f.put(0, id, 0, good.chunk(0)).expect("first chunk");
    rejects!(f, f.commit(0, id), SubmitError::MissingChunks { .. });
    rejects!(f, f.commit(1, id), SubmitError::NotSubmissionOwner { .. });
    rejects!(f, f.commit(0, 777), SubmitError::UnknownSubmission { .. });

    // A delta with a NaN, signed and chunked correctly, is refused at commit.
    let nan = nan_upload(&f, 1);
    let status = f
        .begin(1, &nan)
        .expect("a NaN cannot be seen before the bytes arrive");
    for i in 0..nan.chunk_count() {
        f.put(1, status.submission_id, i, nan.chunk(i))
            .expect("chunks match their hashes");
    }
    rejects!(
        f,
        f.commit(1, status.submission_id),
        SubmitError::InvalidDelta(DeltaError::NonFiniteValue { .. })
    );

    // An int8 delta whose block is not canonical, signed and chunked correctly, is refused
    // at commit: the largest scale the clip bound allows and small values everywhere (the
    // attack that bought a quantisation allowance growing with the parameter count).
    let attacker = f.add_contributor(5);
    let bound = f.job.clip_norm as f64 * (1.0 + flic_protocol::encoding::CLIP_TOLERANCE);
    let non_canonical = tampered_upload(&f, attacker, DeltaEncoding::Int8Blocks, |p| {
        p[..4].copy_from_slice(&((bound / 127.0) as f32 * 0.999).to_le_bytes());
        p[4..].fill(1);
    });
    let status5 = f
        .begin(attacker, &non_canonical)
        .expect("the header is valid");
    for i in 0..non_canonical.chunk_count() {
        f.put(attacker, status5.submission_id, i, non_canonical.chunk(i))
            .expect("chunks match their hashes");
    }
    rejects!(
        f,
        f.commit(attacker, status5.submission_id),
        SubmitError::InvalidDelta(DeltaError::NonCanonicalBlock { block: 0 })
    );

    // Complete the good one; a second, different submission in the round is a duplicate.
    for i in 1..good.chunk_count() {
        f.put(0, id, i, good.chunk(i)).expect("put");
    }
    let receipt = f.commit(0, id).expect("commit");
    // The same commit again (a retry after a lost reply) returns the same receipt.
    let before = f.snapshot();
    assert_eq!(f.commit(0, id).expect("repeated commit"), receipt);
    assert!(before == f.snapshot());
    let second = f.prepare(0, &delta(0, 9), DeltaEncoding::F32);
    rejects!(
        f,
        f.begin(0, &second),
        SubmitError::DuplicateSubmission {
            committed: true,
            ..
        }
    );

    // Revoked datasets take no further submissions: not one in flight when its dataset is
    // revoked (refused at commit), nor a new one.
    let in_flight = f.prepare(2, &delta(2, 0), DeltaEncoding::F32);
    let status2 = f.begin(2, &in_flight).expect("begin before the revocation");
    for i in 0..in_flight.chunk_count() {
        f.put(2, status2.submission_id, i, in_flight.chunk(i))
            .expect("chunks before the revocation");
    }
    let c2 = f.contributors[2].principal;
    let ds2 = f.contributors[2].dataset_id;
    let revoked: Result<(), DatasetError> =
        f.update1(c2, "revoke_dataset", (ds2,)).expect("reached");
    revoked.expect("owner revokes");
    rejects!(
        f,
        f.commit(2, status2.submission_id),
        SubmitError::DatasetRevoked { .. }
    );
    let after_revoke = f.prepare(2, &delta(2, 0), DeltaEncoding::F32);
    rejects!(
        f,
        f.begin(2, &after_revoke),
        SubmitError::DatasetRevoked { .. }
    );

    // After the round closes: stale headers, and uploads into a discarded submission.
    let pending = f.prepare(1, &delta(1, 0), DeltaEncoding::F32);
    let fresh = f.add_contributor(3);
    f.submit(fresh, &delta(3, 0), DeltaEncoding::F32)
        .expect("third commit");
    let i4 = f.add_contributor(4);
    f.submit(i4, &delta(4, 0), DeltaEncoding::F32)
        .expect("closing commit");
    assert_eq!(f.round_info().round, 1);
    rejects!(
        f,
        f.begin(1, &pending),
        SubmitError::StaleRound { current: 1, got: 0 }
    );
    rejects!(
        f,
        f.put(1, status.submission_id, 0, nan.chunk(0)),
        SubmitError::UnknownSubmission { .. }
    );
}

/// Re-signs an upload after a header field was changed on purpose.
fn resign<E: IcEnv>(f: &Fixture<E>, c: usize, up: &mut Upload) {
    up.args.signature = ByteBuf::from(up.args.header.sign(&f.contributors[c].key).to_vec());
}

/// An f32 delta with a NaN in it, otherwise well-formed and signed.
fn nan_upload<E: IcEnv>(f: &Fixture<E>, c: usize) -> Upload {
    tampered_upload(f, c, DeltaEncoding::F32, |p| {
        p[8..12].copy_from_slice(&f32::NAN.to_le_bytes())
    })
}

/// Contributor `c`'s round-0 delta encoded with `enc`, its payload changed by `edit`, then
/// chunked and signed as if the bytes were honest.
fn tampered_upload<E: IcEnv>(
    f: &Fixture<E>,
    c: usize,
    enc: DeltaEncoding,
    edit: impl Fn(&mut Vec<u8>),
) -> Upload {
    let mut up = f.prepare_for(c, &delta(c, 0), enc, 0, f_base(f));
    edit(&mut up.payload);
    let hashes = chunking::chunk_hashes(&up.payload, CHUNK_SIZE);
    up.args.header.chunk_root = Hash::new(merkle::root(&hashes));
    up.args.chunk_hashes = hashes.into_iter().map(Hash::new).collect();
    resign(f, c, &mut up);
    up
}

fn f_base<E: IcEnv>(f: &Fixture<E>) -> Hash {
    Hash::new(flic_protocol::model_version(
        &f.job.model_spec.spec_id(),
        &initial_weights(),
    ))
}

/// An upgrade in the middle of a round keeps the round, the accepted submissions, the
/// staged chunks and the accumulator: finishing the round afterwards gives the same model
/// as the same round without an upgrade.
pub fn upgrade_mid_round_loses_nothing<E: IcEnv>(env: E) {
    let mut f = Fixture::new(env, 3, job());
    let (_, w0) = f.model();
    let ups: Vec<Upload> = (0..3)
        .map(|c| f.prepare(c, &delta(c, 0), DeltaEncoding::Int8Blocks))
        .collect();
    f.submit(0, &delta(0, 0), DeltaEncoding::Int8Blocks)
        .expect("first commit");
    let status = f.begin(1, &ups[1]).expect("begin");
    f.put(1, status.submission_id, 0, ups[1].chunk(0))
        .expect("one chunk before the upgrade");
    let before = f.snapshot();

    let wasm = f.wasm.clone();
    let arg = candid::encode_one(flic_protocol::api::InitArg::Upgrade(None)).unwrap();
    let (canister, admin) = (f.canister, f.admin);
    f.env.upgrade(canister, &wasm, arg, admin).expect("upgrade");
    assert_eq!(
        f.snapshot(),
        before,
        "state visible before the upgrade is the same after it"
    );

    // Resume: begin again with the same header returns the stored chunks.
    let resumed = f.begin(1, &ups[1]).expect("resume");
    assert_eq!(resumed.submission_id, status.submission_id);
    assert_eq!(resumed.stored_chunks, vec![0]);
    for i in 1..ups[1].chunk_count() {
        f.put(1, status.submission_id, i, ups[1].chunk(i))
            .expect("put");
    }
    f.commit(1, status.submission_id)
        .expect("commit after upgrade");
    let s2 = f.begin(2, &ups[2]).expect("begin");
    for i in 0..ups[2].chunk_count() {
        f.put(2, s2.submission_id, i, ups[2].chunk(i)).expect("put");
    }
    f.commit(2, s2.submission_id).expect("closing commit");
    let (v1, _) = f.model();
    let frac_bits = f.round_info().frac_bits;
    let refs: Vec<&Upload> = ups.iter().collect();
    assert_eq!(
        v1,
        f.expected_next(&w0, &refs, frac_bits).0,
        "the upgrade changed the aggregate"
    );
}

/// A trap inside `commit_submission` (here: the message runs out of instructions) leaves
/// the state as it was, and the same commit succeeds afterwards.
pub fn trap_during_commit_rolls_back<E: IcEnv>(env: E) {
    let mut f = Fixture::new(env, 3, job());
    let up = f.prepare(0, &delta(0, 0), DeltaEncoding::F32);
    let status = f.begin(0, &up).expect("begin");
    for i in 0..up.chunk_count() {
        f.put(0, status.submission_id, i, up.chunk(i)).expect("put");
    }
    let canister = f.canister;
    if !f.env.limit_next_update(canister, 50_000) {
        eprintln!(
            "skipped on {}: the host cannot limit one call's instructions",
            f.env.name()
        );
        return;
    }
    let before = f.snapshot();
    let who = f.contributors[0].principal;
    let trapped = f.update1::<_, Result<flic_protocol::api::CommitReceipt, SubmitError>>(
        who,
        "commit_submission",
        (status.submission_id,),
    );
    assert!(matches!(trapped, Err(CallFailure::Trap(_))), "{trapped:?}");
    assert_eq!(f.snapshot(), before, "a trapped commit changed state");
    let receipt = f
        .commit(0, status.submission_id)
        .expect("the same commit succeeds afterwards");
    assert_eq!(receipt.index_in_round, 0);
}

/// The deadline timer: short of `min_clients` the round is extended; with `min_clients`
/// committed it closes at the deadline.
pub fn deadline_timer_closes_or_extends<E: IcEnv>(env: E) {
    let mut f = Fixture::new(env, 3, job());
    f.submit(0, &delta(0, 0), DeltaEncoding::F32)
        .expect("one commit");
    let first_deadline = f.round_info().deadline_ns;
    assert!(first_deadline > f.env.time_ns());
    f.env
        .advance_time(Duration::from_nanos(ROUND_NS + 1_000_000_000));
    let info = f.round_info();
    assert_eq!(
        info.round, 0,
        "one commit is short of min_clients = 2: the round stays open"
    );
    assert!(info.deadline_ns > first_deadline, "the deadline moved on");
    f.submit(1, &delta(1, 0), DeltaEncoding::F32)
        .expect("second commit");
    assert_eq!(
        f.round_info().round,
        0,
        "two of three: open until the deadline"
    );
    f.env
        .advance_time(Duration::from_nanos(ROUND_NS + 1_000_000_000));
    let info = f.round_info();
    assert_eq!(info.round, 1, "the timer closed the round with min_clients");
    let record = f.snapshot().history.pop().expect("a round record");
    assert_eq!(record.contribution_count, 2);
    assert_eq!(record.extensions, 1);
}

/// Every update reports its instruction count on hosts that count them, far inside the
/// IC's 40 B per message.
pub fn instruction_counts_are_reported<E: IcEnv>(env: E) {
    let mut f = Fixture::new(env, 3, job());
    for c in 0..3 {
        f.submit(c, &delta(c, 0), DeltaEncoding::Int8Blocks)
            .expect("submit");
    }
    let counted: Vec<&(String, Option<u64>)> =
        f.instructions.iter().filter(|(_, i)| i.is_some()).collect();
    if counted.is_empty() {
        eprintln!("{} does not report instruction counts", f.env.name());
        return;
    }
    assert_eq!(
        counted.len(),
        f.instructions.len(),
        "some updates had no count"
    );
    for (method, instructions) in &f.instructions {
        let n = instructions.unwrap();
        assert!(n > 0 && n < 40_000_000_000, "{method}: {n}");
        eprintln!("{:<20} {:>12} instructions", method, n);
    }
}

/// A signed submission cannot be replayed: not into a later round, not into another
/// canister running the same job (the header names the canister), not with another job id.
pub fn replayed_submissions_are_rejected<E: IcEnv>(env: E) {
    let mut f = Fixture::new(env, 3, job());
    let up = f.prepare(0, &delta(0, 0), DeltaEncoding::F32);
    let status = f.begin(0, &up).expect("begin");
    for i in 0..up.chunk_count() {
        f.put(0, status.submission_id, i, up.chunk(i)).expect("put");
    }
    f.commit(0, status.submission_id).expect("commit");

    // Another canister with the same job, model and a dataset of the same contributor with
    // the same id: only the canister id in the signed header tells them apart.
    let other = f.another_canister(0);
    let replay_elsewhere = f.on_canister(other, |f| {
        let before = f.snapshot();
        let r = f.begin(0, &up);
        assert_eq!(
            f.snapshot(),
            before,
            "the replay changed the other canister"
        );
        r
    });
    assert!(
        matches!(replay_elsewhere, Err(SubmitError::WrongCanister { .. })),
        "{replay_elsewhere:?}"
    );

    let mut other_job = f.prepare(0, &delta(0, 1), DeltaEncoding::F32);
    other_job.args.header.job_id += 1;
    resign(&f, 0, &mut other_job);
    rejects!(f, f.begin(0, &other_job), SubmitError::WrongJob { .. });

    f.submit(1, &delta(1, 0), DeltaEncoding::F32)
        .expect("second");
    f.submit(2, &delta(2, 0), DeltaEncoding::F32)
        .expect("closing");
    assert_eq!(f.round_info().round, 1);
    rejects!(
        f,
        f.begin(0, &up),
        SubmitError::StaleRound { current: 1, got: 0 }
    );
}

/// Top-k and low-bit payloads that break their layout, signed and chunked correctly, are
/// refused at commit with a typed error and no state change: unsorted, duplicate and
/// out-of-range offsets, NaN, negative and oversized scales, the forbidden code, nonzero
/// padding, a norm above the clip bound. Well-formed deltas of every encoding are then
/// accepted in one round, which closes on the model the native accumulator computes.
pub fn compressed_payloads_are_validated<E: IcEnv>(env: E) {
    const TOPK: DeltaEncoding = DeltaEncoding::TopK { k: 8, bits: 4 };
    const INT4: DeltaEncoding = DeltaEncoding::LowBitBlocks { bits: 4 };
    const INT2: DeltaEncoding = DeltaEncoding::LowBitBlocks { bits: 2 };
    let mut cfg = job();
    cfg.allowed_encodings = vec![
        DeltaEncoding::F32,
        DeltaEncoding::Int8Blocks,
        TOPK,
        INT4,
        INT2,
    ];
    cfg.max_clients = 12;
    let mut f = Fixture::new(env, 4, cfg);
    let (_, w0) = f.model();
    // One block of PARAMS = 100 parameters: scale [0, 4), offsets [4, 12), codes [12, 16).
    type Edit = fn(&mut Vec<u8>);
    let cases: Vec<(&str, DeltaEncoding, Edit, fn(&DeltaError) -> bool)> = vec![
        (
            "unsorted",
            TOPK,
            |p| p.swap(4, 5),
            |e| matches!(e, DeltaError::UnsortedIndices { position: 1, .. }),
        ),
        (
            "duplicate",
            TOPK,
            |p| p[6] = p[5],
            |e| matches!(e, DeltaError::UnsortedIndices { position: 2, .. }),
        ),
        (
            "out of range",
            TOPK,
            |p| p[11] = 100,
            |e| {
                matches!(
                    e,
                    DeltaError::IndexOutOfRange {
                        offset: 100,
                        block_len: 100,
                        ..
                    }
                )
            },
        ),
        (
            "NaN scale",
            TOPK,
            |p| p[..4].copy_from_slice(&f32::NAN.to_le_bytes()),
            |e| matches!(e, DeltaError::BadScale { .. }),
        ),
        (
            "negative scale",
            TOPK,
            |p| p[..4].copy_from_slice(&(-0.01f32).to_le_bytes()),
            |e| matches!(e, DeltaError::BadScale { .. }),
        ),
        (
            "oversized scale",
            TOPK,
            |p| p[..4].copy_from_slice(&1.0f32.to_le_bytes()),
            |e| matches!(e, DeltaError::BadScale { .. }),
        ),
        (
            "code -8",
            TOPK,
            |p| p[12] = 0x88,
            |e| matches!(e, DeltaError::QuantOutOfRange { .. }),
        ),
        (
            "norm above the clip",
            TOPK,
            |p| {
                p[..4].copy_from_slice(&(1.0f32 / 7.0).to_le_bytes());
                p[12..16].fill(0x77);
            },
            |e| matches!(e, DeltaError::NormAboveClip { .. }),
        ),
        (
            "int4 code -8",
            INT4,
            |p| p[4] = 0x88,
            |e| matches!(e, DeltaError::QuantOutOfRange { index: 0 }),
        ),
        (
            "int4 scale 0 with codes",
            INT4,
            |p| p[..4].copy_from_slice(&0f32.to_le_bytes()),
            |e| matches!(e, DeltaError::NonCanonicalBlock { block: 0 }),
        ),
        (
            "int2 oversized scale",
            INT2,
            |p| p[..4].copy_from_slice(&2.0f32.to_le_bytes()),
            |e| matches!(e, DeltaError::BadScale { .. }),
        ),
    ];
    for (i, (what, enc, edit, want)) in cases.into_iter().enumerate() {
        let c = f.add_contributor(10 + i);
        let up = tampered_upload(&f, c, enc, edit);
        let status = f
            .begin(c, &up)
            .unwrap_or_else(|e| panic!("{what}: the header is valid: {e:?}"));
        for k in 0..up.chunk_count() {
            f.put(c, status.submission_id, k, up.chunk(k))
                .unwrap_or_else(|e| panic!("{what}: chunks match their hashes: {e:?}"));
        }
        let before = f.snapshot();
        match f.commit(c, status.submission_id) {
            Err(SubmitError::InvalidDelta(e)) => assert!(want(&e), "{what}: {e:?}"),
            other => panic!("{what}: expected an invalid delta, got {other:?}"),
        }
        assert!(
            before == f.snapshot(),
            "{what}: a rejected commit changed state"
        );
    }

    // Every encoding, well formed, in one round; the deadline closes it.
    let ups: Vec<Upload> = [TOPK, INT4, INT2, DeltaEncoding::Int8Blocks]
        .iter()
        .enumerate()
        .map(|(c, &enc)| {
            let mut d = delta(c, 0);
            flic_protocol::encoding::clip_l2(&mut d, f.job.clip_norm);
            let mut up = f.prepare(c, &d, DeltaEncoding::F32);
            up.payload = flic_protocol::encoding::encode_within(enc, &d, f.job.clip_norm, c as u64)
                .expect("encodes")
                .bytes;
            up.args.header.encoding = enc;
            up.args.header.param_count = PARAMS;
            let hashes = chunking::chunk_hashes(&up.payload, CHUNK_SIZE);
            up.args.header.chunk_count = hashes.len() as u32;
            up.args.header.chunk_root = Hash::new(merkle::root(&hashes));
            up.args.chunk_hashes = hashes.into_iter().map(Hash::new).collect();
            resign(&f, c, &mut up);
            up
        })
        .collect();
    for (c, up) in ups.iter().enumerate() {
        let status = f.begin(c, up).expect("begin");
        for k in 0..up.chunk_count() {
            f.put(c, status.submission_id, k, up.chunk(k)).expect("put");
        }
        f.commit(c, status.submission_id)
            .unwrap_or_else(|e| panic!("{}: {e:?}", up.args.header.encoding));
    }
    f.env
        .advance_time(Duration::from_nanos(ROUND_NS + 1_000_000_000));
    let info = f.round_info();
    assert_eq!(info.round, 1, "the deadline closed the round");
    let (v1, _) = f.model();
    let refs: Vec<&Upload> = ups.iter().rev().collect();
    let (expected, _) = f.expected_next(&w0, &refs, info.frac_bits);
    assert_eq!(v1, expected, "canister and native accumulator disagree");
}
