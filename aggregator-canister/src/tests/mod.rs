//! Native tests of the pure core on `VectorMemory`. Every rejection is checked to leave the
//! whole stable memory byte-for-byte unchanged, and invariants are checked after mutations.

use candid::Principal;
use ed25519_dalek::SigningKey;
use flic_protocol::api::*;
use flic_protocol::chunking::{chunk_count, chunk_hashes};
use flic_protocol::encoding::{clip_l2, encode, DeltaEncoding, DeltaError};
use flic_protocol::fedavg::Accumulator;
use flic_protocol::merkle;
use flic_protocol::model::{model_version, weights_from_le_bytes, ModelSpec};
use flic_protocol::submission::SignatureError;
use flic_protocol::{Hash, SubmissionHeader};
use ic_stable_structures::DefaultMemoryImpl;
use serde_bytes::ByteBuf;

use crate::state::{CallContext, State};

mod history_bounds;
mod stable_image;

const PARAMS: u64 = 300;
const CHUNK: u32 = 256;
const DURATION: u64 = flic_test_fixtures::ROUND_NS;

fn spec() -> ModelSpec {
    flic_test_fixtures::linear_spec(29, 10)
}

fn config() -> JobConfig {
    JobConfig {
        client: ClientHyperparameters {
            optimizer: Optimizer::Adam,
            ..flic_test_fixtures::hyperparameters()
        },
        retain_contributions: true,
        ..flic_test_fixtures::job(spec(), CHUNK)
    }
}

fn initial_weights() -> Vec<f32> {
    flic_test_fixtures::smooth_weights(PARAMS)
}

/// Deterministic pseudo-random delta, clipped to the job's bound.
fn delta(seed: u64) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut d: Vec<f32> = (0..PARAMS)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect();
    clip_l2(&mut d, 1.0);
    d
}

struct Harness {
    mem: DefaultMemoryImpl,
    state: State,
    now: u64,
    canister: Principal,
    controller: Principal,
}

#[derive(Clone)]
struct Client {
    key: SigningKey,
    principal: Principal,
    dataset: u64,
}

impl Harness {
    fn new() -> Self {
        let mem = DefaultMemoryImpl::default();
        let state = State::load(mem.clone());
        Self {
            mem,
            state,
            now: 1_000_000_000_000,
            canister: Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 1, 1]),
            controller: Principal::from_slice(&[0xc0; 10]),
        }
    }

    fn ctx(&self, caller: Principal) -> CallContext {
        CallContext {
            caller,
            now: self.now,
            canister_id: self.canister,
            is_controller: caller == self.controller,
        }
    }

    fn admin(&self) -> CallContext {
        self.ctx(self.controller)
    }

    /// Stable memory, then the heap accumulator: everything a rejection must leave alone.
    fn snapshot(&self) -> Vec<u8> {
        let mut bytes = self.mem.borrow().clone();
        bytes.extend(self.state.acc.iter().flat_map(|a| a.to_le_bytes()));
        bytes
    }

    fn check(&self) {
        self.state.check_invariants().unwrap();
    }

    /// Simulates an upgrade: the heap is lost, stable memory stays.
    fn upgrade(&mut self) {
        self.state.save_for_upgrade();
        self.state = State::load(self.mem.clone());
        self.check();
    }

    /// Configured, model uploaded (chunks out of order), started.
    fn running() -> Self {
        Self::running_with(config())
    }

    fn running_with(config: JobConfig) -> Self {
        let mut h = Self::new();
        h.state.configure_job(&h.admin(), config).unwrap();
        let bytes = flic_protocol::model::weights_to_le_bytes(&initial_weights());
        let n = chunk_count(bytes.len() as u64, CHUNK) as u32;
        for i in (0..n).rev() {
            let chunk =
                &bytes[(i * CHUNK) as usize..((i + 1) * CHUNK).min(bytes.len() as u32) as usize];
            h.state.upload_model_chunk(&h.admin(), i, chunk).unwrap();
        }
        h.state.start_job(&h.admin()).unwrap();
        h.check();
        h
    }

    fn client(&mut self, seed: u8, samples: u64) -> Client {
        let flic_test_fixtures::Key {
            signing: key,
            principal,
        } = flic_test_fixtures::key([seed; 32]);
        let dataset = self
            .state
            .register_dataset(&self.ctx(principal), dataset_args(samples))
            .unwrap();
        self.check();
        Client {
            key,
            principal,
            dataset,
        }
    }

    fn header(
        &self,
        c: &Client,
        encoding: DeltaEncoding,
        bytes: &[u8],
        samples: u64,
    ) -> SubmissionHeader {
        let info = self.state.round_info();
        SubmissionHeader {
            canister_id: self.canister,
            job_id: info.job_id,
            round: info.round,
            base_model_version: info.model_version.unwrap(),
            dataset_id: c.dataset,
            sample_count: samples,
            encoding,
            param_count: PARAMS,
            chunk_count: chunk_count(bytes.len() as u64, CHUNK) as u32,
            chunk_root: Hash::new(flic_protocol::chunking::chunk_root(bytes, CHUNK)),
        }
    }

    fn args(&self, c: &Client, header: SubmissionHeader, bytes: &[u8]) -> BeginSubmissionArgs {
        BeginSubmissionArgs {
            signature: ByteBuf::from(header.sign(&c.key).to_vec()),
            header,
            public_key: ByteBuf::from(c.key.verifying_key().to_bytes().to_vec()),
            chunk_hashes: chunk_hashes(bytes, CHUNK)
                .into_iter()
                .map(Hash::new)
                .collect(),
            below_clip: None,
        }
    }

    fn begin(
        &mut self,
        c: &Client,
        bytes: &[u8],
        encoding: DeltaEncoding,
        samples: u64,
    ) -> SubmissionStatus {
        let header = self.header(c, encoding, bytes, samples);
        let args = self.args(c, header, bytes);
        let s = self
            .state
            .begin_submission(&self.ctx(c.principal), args)
            .unwrap();
        self.check();
        s
    }

    fn put_all(&mut self, c: &Client, id: u64, bytes: &[u8]) {
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK as usize).collect();
        // Reverse order: order must not matter.
        for (i, chunk) in chunks.iter().enumerate().rev() {
            let args = PutChunkArgs {
                submission_id: id,
                index: i as u32,
                bytes: ByteBuf::from(chunk.to_vec()),
            };
            self.state.put_chunk(&self.ctx(c.principal), args).unwrap();
            self.check();
        }
    }

    fn submit(
        &mut self,
        c: &Client,
        d: &[f32],
        encoding: DeltaEncoding,
        samples: u64,
    ) -> CommitReceipt {
        let bytes = encode(encoding, d).unwrap();
        let s = self.begin(c, &bytes, encoding, samples);
        self.put_all(c, s.submission_id, &bytes);
        let r = self
            .state
            .commit_submission(&self.ctx(c.principal), s.submission_id)
            .unwrap();
        self.check();
        r
    }

    /// Every closed round's record (one page of the most a page holds).
    fn records(&self) -> Vec<RoundRecord> {
        self.state
            .round_history(PageArgs {
                start: 0,
                limit: MAX_PAGE_LEN,
            })
            .items
    }

    fn weights(&self) -> Vec<f32> {
        let info = self.state.model_info().unwrap();
        let mut bytes = Vec::new();
        for i in 0..info.chunk_count {
            let c = self.state.model_chunk(i).unwrap();
            assert_eq!(c.version, info.version);
            bytes.extend_from_slice(&c.bytes);
        }
        weights_from_le_bytes(&bytes).unwrap()
    }
}

thread_local! {
    static DATASETS_MADE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A dataset of `samples` samples with a commitment never used before in this test (a
/// commitment is registered once).
fn dataset_args(samples: u64) -> RegisterDatasetArgs {
    let n = DATASETS_MADE.with(|c| c.replace(c.get() + 1));
    RegisterDatasetArgs {
        name: "mnist shard".into(),
        commitment: Hash::new(flic_protocol::hash::sha256(&n.to_le_bytes())),
        sample_count: samples,
        license: "CC-BY-4.0".into(),
        description: "a shard".into(),
    }
}

/// Asserts a typed rejection that leaves every byte of stable memory unchanged and has a
/// readable message.
macro_rules! rejects {
    ($h:expr, $op:expr, $pat:pat) => {{
        let before = $h.snapshot();
        let result = $op;
        assert!(
            matches!(result, Err($pat)),
            "expected {}, got {:?}",
            stringify!($pat),
            result
        );
        assert!(
            before == $h.snapshot(),
            "a rejected call changed the state: {:?}",
            result
        );
        $h.check();
        let message = result.unwrap_err().to_string();
        assert!(message.len() > 10, "message too terse: {message}");
    }};
}

// After `rejects!`, which it uses.
mod privacy;
mod secagg;

#[test]
fn full_round_closes_at_max_clients_with_verifiable_version() {
    let mut h = Harness::running();
    let v0 = h.state.round_info().model_version.unwrap();
    assert_eq!(
        v0.into_array(),
        model_version(&spec().spec_id(), &initial_weights())
    );
    assert_eq!(h.weights(), initial_weights());
    let clients: Vec<Client> = (1..=3).map(|i| h.client(i, 1000)).collect();
    let plan = [
        (DeltaEncoding::F32, 300u64),
        (DeltaEncoding::Int8Blocks, 800),
        (DeltaEncoding::F32, 1000),
    ];
    let mut receipts = Vec::new();
    for (i, (c, (enc, samples))) in clients.iter().zip(plan).enumerate() {
        let r = h.submit(c, &delta(i as u64), enc, samples);
        assert_eq!(r.index_in_round, i as u32);
        assert_eq!(r.weight, samples.min(500));
        assert_eq!(r.round_closed, i == 2);
        receipts.push(r);
    }
    let info = h.state.round_info();
    assert_eq!((info.round, info.committed, info.pending), (1, 0, 0));
    assert_eq!(info.deadline_ns, h.now + DURATION);

    // A verifier recomputes w_1 and H_1 bit for bit from public data.
    let cfg = config();
    let mut acc = Accumulator::new(
        PARAMS as usize,
        cfg.limits(),
        cfg.limits().safe_frac_bits().unwrap(),
    )
    .unwrap();
    for (i, (enc, samples)) in plan.iter().enumerate() {
        // Retained deltas are downloadable and are exactly what was submitted.
        let n = chunk_count(enc.encoded_len(PARAMS), CHUNK) as u32;
        let got: Vec<u8> = (0..n)
            .flat_map(|k| h.state.contribution_chunk(i as u64, k).unwrap().into_vec())
            .collect();
        assert_eq!(got, encode(*enc, &delta(i as u64)).unwrap());
        acc.add(*enc, &got, *samples).unwrap();
    }
    let expected = acc.apply(&initial_weights(), cfg.server_lr).unwrap();
    let w1 = h.weights();
    assert_eq!(
        flic_protocol::model::weights_to_le_bytes(&w1),
        flic_protocol::model::weights_to_le_bytes(&expected)
    );
    let v1 = info.model_version.unwrap();
    assert_eq!(v1.into_array(), model_version(&spec().spec_id(), &expected));

    // The round record and the history.
    let page = h.state.round_history(PageArgs {
        start: 0,
        limit: 10,
    });
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.next, None);
    let rec = &page.items[0];
    assert_eq!(
        (rec.base_version, rec.new_version, rec.total_weight),
        (v0, v1, 300 + 500 + 500)
    );
    assert_eq!(
        rec.contributors,
        clients.iter().map(|c| c.principal).collect::<Vec<_>>()
    );
    let leaves: Vec<_> = receipts
        .iter()
        .map(|r| merkle::leaf_hash(r.header_hash.as_slice()))
        .collect();
    assert_eq!(rec.contributions_root.into_array(), merkle::root(&leaves));
    let cert = h.state.certified_state();
    assert_eq!(
        cert.history_root.into_array(),
        merkle::root(&[rec.history_leaf()])
    );
    assert_eq!((cert.round, cert.model_version), (1, v1));

    // Registry queries and lineage.
    let by_c = h.state.contributions_by_contributor(
        clients[1].principal,
        PageArgs {
            start: 0,
            limit: 10,
        },
    );
    assert_eq!(by_c.items.len(), 1);
    assert_eq!(by_c.items[0].header_hash, receipts[1].header_hash);
    let by_d = h.state.contributions_by_dataset(
        clients[2].dataset,
        PageArgs {
            start: 0,
            limit: 10,
        },
    );
    assert_eq!(by_d.items[0].index, 2);
    let l0 = h
        .state
        .lineage(LineageArgs {
            model_version: v0,
            page: PageArgs {
                start: 0,
                limit: 10,
            },
        })
        .unwrap();
    assert_eq!(
        (l0.round, l0.total, l0.contributions.items.len()),
        (0, 0, 0)
    );
    let l1 = h
        .state
        .lineage(LineageArgs {
            model_version: v1,
            page: PageArgs { start: 0, limit: 2 },
        })
        .unwrap();
    assert_eq!((l1.round, l1.total), (1, 3));
    assert_eq!(l1.contributions.items.len(), 2);
    assert_eq!(l1.contributions.next, Some(2));
    rejects!(
        h,
        h.state.lineage(LineageArgs {
            model_version: Hash::new([1; 32]),
            page: PageArgs { start: 0, limit: 1 }
        }),
        QueryError::UnknownModelVersion { .. }
    );

    // Round 2 builds on round 1: lineage of H_2 is transitive.
    for (i, c) in clients.iter().enumerate() {
        h.submit(c, &delta(10 + i as u64), DeltaEncoding::Int8Blocks, 100);
    }
    let v2 = h.state.round_info().model_version.unwrap();
    let l2 = h
        .state
        .lineage(LineageArgs {
            model_version: v2,
            page: PageArgs {
                start: 0,
                limit: 100,
            },
        })
        .unwrap();
    assert_eq!(l2.total, 6);
    assert_eq!(
        l2.contributions
            .items
            .iter()
            .map(|c| c.round)
            .collect::<Vec<_>>(),
        vec![0, 0, 0, 1, 1, 1]
    );
    // Revoking keeps attribution.
    h.state
        .revoke_dataset(&h.ctx(clients[0].principal), clients[0].dataset)
        .unwrap();
    h.check();
    let still = h.state.contributions_by_dataset(
        clients[0].dataset,
        PageArgs {
            start: 0,
            limit: 10,
        },
    );
    assert_eq!(still.items.len(), 2);
}

#[test]
fn commit_order_does_not_change_the_model() {
    let run = |order: [usize; 3]| {
        let mut h = Harness::running();
        let clients: Vec<Client> = (1..=3).map(|i| h.client(i, 1000)).collect();
        for &i in &order {
            let enc = if i == 1 {
                DeltaEncoding::Int8Blocks
            } else {
                DeltaEncoding::F32
            };
            h.submit(&clients[i], &delta(i as u64), enc, 100 * (i as u64 + 1));
        }
        h.state.round_info().model_version.unwrap()
    };
    let v = run([0, 1, 2]);
    for order in [[2, 1, 0], [1, 0, 2], [2, 0, 1]] {
        assert_eq!(run(order), v);
    }
}

#[test]
fn deadline_closes_with_quorum_and_extends_without_it() {
    let mut h = Harness::running();
    let a = h.client(1, 1000);
    let b = h.client(2, 1000);
    let c = h.client(3, 1000);
    let deadline = h.state.timer_deadline();
    h.submit(&a, &delta(1), DeltaEncoding::F32, 10);
    // A stale upload: begun, never committed.
    let stale_bytes = encode(DeltaEncoding::F32, &delta(3)).unwrap();
    let stale = h.begin(&c, &stale_bytes, DeltaEncoding::F32, 10);
    // Before the deadline nothing happens.
    let before = h.snapshot();
    h.state.on_timer(deadline - 1);
    assert!(before == h.snapshot());
    // At the deadline, 1 < min_clients = 2: extended from now.
    h.now = deadline + 5;
    h.state.on_timer(h.now);
    h.check();
    assert_eq!(h.state.timer_deadline(), h.now + DURATION);
    assert_eq!(h.state.round_info().round, 0);
    h.submit(&b, &delta(2), DeltaEncoding::Int8Blocks, 10);
    h.now = h.state.timer_deadline();
    h.state.on_timer(h.now);
    h.check();
    let info = h.state.round_info();
    assert_eq!((info.round, info.committed, info.pending), (1, 0, 0));
    let rec = &h.state.round_history(PageArgs { start: 0, limit: 1 }).items[0];
    assert_eq!((rec.contribution_count, rec.extensions), (2, 1));
    // The stale upload was discarded: its chunks are refused.
    let args = PutChunkArgs {
        submission_id: stale.submission_id,
        index: 0,
        bytes: ByteBuf::from(stale_bytes[..256].to_vec()),
    };
    rejects!(
        h,
        h.state.put_chunk(&h.ctx(c.principal), args),
        SubmitError::UnknownSubmission { .. }
    );
    rejects!(
        h,
        h.state
            .commit_submission(&h.ctx(c.principal), stale.submission_id),
        SubmitError::UnknownSubmission { .. }
    );
    // ...and its old header is now stale.
    let header = SubmissionHeader {
        round: 0,
        ..h.header(&c, DeltaEncoding::F32, &stale_bytes, 10)
    };
    let args = h.args(&c, header, &stale_bytes);
    rejects!(
        h,
        h.state.begin_submission(&h.ctx(c.principal), args),
        SubmitError::StaleRound { current: 1, got: 0 }
    );
}

#[test]
fn upgrade_mid_round_loses_nothing_and_uploads_resume() {
    let reference = {
        let mut h = Harness::running();
        let (a, b) = (h.client(1, 1000), h.client(2, 1000));
        h.submit(&a, &delta(1), DeltaEncoding::F32, 50);
        h.submit(&b, &delta(2), DeltaEncoding::Int8Blocks, 70);
        h.now = h.state.timer_deadline();
        h.state.on_timer(h.now);
        h.state.round_info().model_version.unwrap()
    };
    let mut h = Harness::running();
    let (a, b) = (h.client(1, 1000), h.client(2, 1000));
    h.submit(&a, &delta(1), DeltaEncoding::F32, 50);
    let bytes = encode(DeltaEncoding::Int8Blocks, &delta(2)).unwrap();
    let s = h.begin(&b, &bytes, DeltaEncoding::Int8Blocks, 70);
    let first = PutChunkArgs {
        submission_id: s.submission_id,
        index: 1,
        bytes: ByteBuf::from(bytes[256..].to_vec()),
    };
    assert_eq!(
        h.state
            .put_chunk(&h.ctx(b.principal), first.clone())
            .unwrap(),
        1
    );
    let info_before = h.state.round_info();
    let cert_before = h.state.certified_state();
    h.upgrade();
    assert_eq!(h.state.round_info(), info_before);
    assert_eq!(h.state.certified_state(), cert_before);
    assert_eq!(h.state.timer_deadline(), info_before.deadline_ns);
    // The crashed client resumes: begin again with the same header returns the same upload.
    let again = h.begin(&b, &bytes, DeltaEncoding::Int8Blocks, 70);
    assert_eq!(again.submission_id, s.submission_id);
    assert_eq!(
        h.state
            .submission_status(s.submission_id)
            .unwrap()
            .stored_chunks,
        vec![1]
    );
    // Re-sending a stored chunk is a no-op.
    let before = h.snapshot();
    assert_eq!(h.state.put_chunk(&h.ctx(b.principal), first).unwrap(), 1);
    assert!(before == h.snapshot());
    let rest = PutChunkArgs {
        submission_id: s.submission_id,
        index: 0,
        bytes: ByteBuf::from(bytes[..256].to_vec()),
    };
    assert_eq!(h.state.put_chunk(&h.ctx(b.principal), rest).unwrap(), 0);
    h.state
        .commit_submission(&h.ctx(b.principal), s.submission_id)
        .unwrap();
    h.upgrade();
    h.now = h.state.timer_deadline();
    h.state.on_timer(h.now);
    h.check();
    assert_eq!(h.state.round_info().model_version.unwrap(), reference);
}

/// The stored records that gained variants (a job allowing top-k and int4, a committed
/// top-k upload, a begun int4 upload) survive an upgrade: the job and the round read
/// back the same, the int4 upload resumes, and the round closes on the model a run without
/// upgrades makes.
#[test]
fn upgrade_keeps_compressed_encodings_and_their_uploads() {
    const TOPK: DeltaEncoding = DeltaEncoding::TopK { k: 8, bits: 4 };
    const INT4: DeltaEncoding = DeltaEncoding::LowBitBlocks { bits: 4 };
    let job = JobConfig {
        allowed_encodings: vec![DeltaEncoding::F32, TOPK, INT4],
        ..config()
    };
    let bytes = |enc, seed| {
        flic_protocol::encoding::encode_within(enc, &delta(seed), 1.0, seed)
            .unwrap()
            .bytes
    };
    let (topk, int4) = (bytes(TOPK, 1), bytes(INT4, 2));
    let run = |upgrades: bool| {
        let mut h = Harness::running_with(job.clone());
        let (a, b) = (h.client(1, 1000), h.client(2, 1000));
        let s = h.begin(&a, &topk, TOPK, 50);
        h.put_all(&a, s.submission_id, &topk);
        h.state
            .commit_submission(&h.ctx(a.principal), s.submission_id)
            .unwrap();
        // Begun, no chunk stored yet (the whole int4 delta is one chunk).
        let s = h.begin(&b, &int4, INT4, 70);
        if upgrades {
            let (info, cert) = (h.state.round_info(), h.state.certified_state());
            h.upgrade();
            assert_eq!(h.state.round_info(), info, "the job's encodings read back");
            assert_eq!(h.state.certified_state(), cert);
            let again = h.begin(&b, &int4, INT4, 70);
            assert_eq!(
                again.submission_id, s.submission_id,
                "the int4 upload resumes"
            );
        }
        h.put_all(&b, s.submission_id, &int4);
        h.state
            .commit_submission(&h.ctx(b.principal), s.submission_id)
            .unwrap();
        if upgrades {
            h.upgrade();
        }
        h.now = h.state.timer_deadline();
        h.state.on_timer(h.now);
        h.check();
        h.state.round_info().model_version.unwrap()
    };
    assert_eq!(run(true), run(false));
}

#[test]
fn admin_methods_are_controller_only_and_validated() {
    let mut h = Harness::new();
    let stranger = Principal::from_slice(&[5; 29]);
    let s = h.ctx(stranger);
    rejects!(
        h,
        h.state.configure_job(&s, config()),
        AdminError::NotController { .. }
    );
    rejects!(h, h.state.start_job(&h.admin()), AdminError::NotConfigured);
    rejects!(
        h,
        h.state.upload_model_chunk(&h.admin(), 0, &[0; 256]),
        AdminError::NotConfigured
    );
    let bad = JobConfig {
        min_clients: 4,
        ..config()
    };
    rejects!(
        h,
        h.state.configure_job(&h.admin(), bad),
        AdminError::InvalidConfig { .. }
    );
    let bad = JobConfig {
        clip_norm: f32::INFINITY,
        ..config()
    };
    rejects!(
        h,
        h.state.configure_job(&h.admin(), bad),
        AdminError::InvalidConfig { .. }
    );
    let bad = JobConfig {
        chunk_size: Some(2 << 20),
        ..config()
    };
    rejects!(
        h,
        h.state.configure_job(&h.admin(), bad),
        AdminError::InvalidConfig { .. }
    );
    let bad = JobConfig {
        allowed_encodings: vec![],
        ..config()
    };
    rejects!(
        h,
        h.state.configure_job(&h.admin(), bad),
        AdminError::InvalidConfig { .. }
    );
    let bad = JobConfig {
        max_clients: 10_000,
        max_weight: u64::MAX / 2,
        ..config()
    };
    rejects!(
        h,
        h.state.configure_job(&h.admin(), bad),
        AdminError::InvalidConfig { .. }
    );
    let mut bad = config();
    bad.model_spec.tensors[1].offset = 7;
    rejects!(
        h,
        h.state.configure_job(&h.admin(), bad),
        AdminError::InvalidConfig { .. }
    );

    // The first job id is the time of configuration (see `next_job_id`), the next one
    // more than that.
    let first = h.state.configure_job(&h.admin(), config()).unwrap();
    assert_eq!(first, crate::state::next_job_id(0, h.now));
    assert_eq!(
        h.state.configure_job(&h.admin(), config()).unwrap(),
        first + 1
    );
    h.check();
    rejects!(
        h,
        h.state.upload_model_chunk(&s, 0, &[0; 256]),
        AdminError::NotController { .. }
    );
    rejects!(
        h,
        h.state.upload_model_chunk(&h.admin(), 5, &[0; 176]),
        AdminError::ModelChunkOutOfRange { .. }
    );
    rejects!(
        h,
        h.state.upload_model_chunk(&h.admin(), 4, &[0; 256]),
        AdminError::ModelChunkLength { expected: 176, .. }
    );
    rejects!(
        h,
        h.state.start_job(&h.admin()),
        AdminError::ModelIncomplete {
            missing: 5,
            first_missing: 0
        }
    );
    let mut w = initial_weights();
    w[299] = f32::NAN;
    let bytes = flic_protocol::model::weights_to_le_bytes(&w);
    for (i, c) in bytes.chunks(256).enumerate() {
        h.state.upload_model_chunk(&h.admin(), i as u32, c).unwrap();
    }
    assert_eq!(h.state.round_info().state, JobState::Ready);
    rejects!(h, h.state.start_job(&s), AdminError::NotController { .. });
    rejects!(
        h,
        h.state.start_job(&h.admin()),
        AdminError::NonFiniteWeight { index: 299 }
    );
    let good = flic_protocol::model::weights_to_le_bytes(&initial_weights());
    h.state
        .upload_model_chunk(&h.admin(), 4, &good[1024..])
        .unwrap();
    h.state.start_job(&h.admin()).unwrap();
    h.check();
    rejects!(
        h,
        h.state.configure_job(&h.admin(), config()),
        AdminError::WrongState {
            state: JobState::Running,
            ..
        }
    );
    rejects!(
        h,
        h.state.upload_model_chunk(&h.admin(), 0, &good[..256]),
        AdminError::WrongState { .. }
    );
    rejects!(h, h.state.pause_job(&s), AdminError::NotController { .. });
    rejects!(
        h,
        h.state.resume_job(&h.admin()),
        AdminError::WrongState { .. }
    );

    // Pause stops submissions and the deadline; resume gives the round its remaining time.
    let c = h.client(1, 100);
    let deadline = h.state.timer_deadline();
    h.now += 10;
    h.state.pause_job(&h.admin()).unwrap();
    h.check();
    assert_eq!(h.state.timer_deadline(), 0);
    let bytes = encode(DeltaEncoding::F32, &delta(1)).unwrap();
    let args = h.args(&c, h.header(&c, DeltaEncoding::F32, &bytes, 10), &bytes);
    rejects!(
        h,
        h.state.begin_submission(&h.ctx(c.principal), args.clone()),
        SubmitError::JobNotRunning {
            state: JobState::Paused
        }
    );
    h.state.on_timer(deadline + 1);
    assert_eq!(h.state.round_info().state, JobState::Paused);
    h.now += 1000;
    h.state.resume_job(&h.admin()).unwrap();
    assert_eq!(h.state.timer_deadline(), deadline + 1000);
    h.state.begin_submission(&h.ctx(c.principal), args).unwrap();
    h.check();
}

#[test]
fn begin_submission_rejections_change_nothing() {
    let mut h = Harness::running();
    let c = h.client(1, 1000);
    let other = h.client(2, 1000);
    let bytes = encode(DeltaEncoding::F32, &delta(1)).unwrap();
    let good_header = h.header(&c, DeltaEncoding::F32, &bytes, 100);
    let ctx = h.ctx(c.principal);
    let with = |h: &Harness, f: &dyn Fn(&mut SubmissionHeader)| {
        let mut hd = good_header.clone();
        f(&mut hd);
        h.args(&c, hd, &bytes)
    };

    let mut bad_sig = h.args(&c, good_header.clone(), &bytes);
    bad_sig.signature[3] ^= 1;
    rejects!(
        h,
        h.state.begin_submission(&ctx, bad_sig),
        SubmitError::Signature(SignatureError::BadSignature)
    );
    let mut short_key = h.args(&c, good_header.clone(), &bytes);
    short_key.public_key.pop();
    rejects!(
        h,
        h.state.begin_submission(&ctx, short_key),
        SubmitError::Signature(SignatureError::PublicKeyLength { len: 31 })
    );
    // Signed by c, sent by another principal.
    let args = h.args(&c, good_header.clone(), &bytes);
    rejects!(
        h,
        h.state.begin_submission(&h.ctx(other.principal), args),
        SubmitError::CallerMismatch { .. }
    );
    let args = h.args(&c, good_header.clone(), &bytes);
    rejects!(
        h,
        h.state
            .begin_submission(&h.ctx(Principal::anonymous()), args),
        SubmitError::AnonymousCaller
    );
    rejects!(
        h,
        h.state.begin_submission(
            &ctx,
            with(&h, &|x| x.canister_id = Principal::from_slice(&[1]))
        ),
        SubmitError::WrongCanister { .. }
    );
    rejects!(
        h,
        h.state.begin_submission(&ctx, with(&h, &|x| x.job_id = 2)),
        SubmitError::WrongJob { got: 2, .. }
    );
    rejects!(
        h,
        h.state.begin_submission(&ctx, with(&h, &|x| x.round = 1)),
        SubmitError::FutureRound { current: 0, got: 1 }
    );
    rejects!(
        h,
        h.state.begin_submission(
            &ctx,
            with(&h, &|x| x.base_model_version = Hash::new([0; 32]))
        ),
        SubmitError::WrongBaseVersion { .. }
    );
    rejects!(
        h,
        h.state
            .begin_submission(&ctx, with(&h, &|x| x.dataset_id = 99)),
        SubmitError::UnknownDataset { dataset_id: 99 }
    );
    let theirs = other.dataset;
    rejects!(
        h,
        h.state
            .begin_submission(&ctx, with(&h, &|x| x.dataset_id = theirs)),
        SubmitError::DatasetNotOwned { .. }
    );
    rejects!(
        h,
        h.state
            .begin_submission(&ctx, with(&h, &|x| x.sample_count = 1001)),
        SubmitError::SampleCountExceedsDataset {
            claimed: 1001,
            registered: 1000
        }
    );
    rejects!(
        h,
        h.state
            .begin_submission(&ctx, with(&h, &|x| x.sample_count = 0)),
        SubmitError::ZeroSampleCount
    );
    rejects!(
        h,
        h.state
            .begin_submission(&ctx, with(&h, &|x| x.param_count = 301)),
        SubmitError::WrongParamCount {
            expected: 300,
            got: 301
        }
    );
    rejects!(
        h,
        h.state
            .begin_submission(&ctx, with(&h, &|x| x.chunk_count = 4)),
        SubmitError::WrongChunkCount {
            expected: 5,
            got: 4,
            ..
        }
    );
    rejects!(
        h,
        h.state
            .begin_submission(&ctx, with(&h, &|x| x.chunk_root = Hash::new([1; 32]))),
        SubmitError::ChunkRootMismatch { .. }
    );
    let mut missing_hash = h.args(&c, good_header.clone(), &bytes);
    missing_hash.chunk_hashes.pop();
    rejects!(
        h,
        h.state.begin_submission(&ctx, missing_hash),
        SubmitError::WrongChunkHashCount {
            expected: 5,
            got: 4
        }
    );
    let mut swapped = h.args(&c, good_header.clone(), &bytes);
    swapped.chunk_hashes.swap(0, 1);
    rejects!(
        h,
        h.state.begin_submission(&ctx, swapped),
        SubmitError::ChunkRootMismatch { .. }
    );

    // Encoding not allowed by a job that only takes int8.
    let mut h2 = Harness::new();
    h2.state
        .configure_job(
            &h2.admin(),
            JobConfig {
                allowed_encodings: vec![DeltaEncoding::Int8Blocks],
                ..config()
            },
        )
        .unwrap();
    let w = flic_protocol::model::weights_to_le_bytes(&initial_weights());
    for (i, ch) in w.chunks(256).enumerate() {
        h2.state
            .upload_model_chunk(&h2.admin(), i as u32, ch)
            .unwrap();
    }
    h2.state.start_job(&h2.admin()).unwrap();
    let c2 = h2.client(1, 1000);
    let args = h2.args(&c2, h2.header(&c2, DeltaEncoding::F32, &bytes, 10), &bytes);
    rejects!(
        h2,
        h2.state.begin_submission(&h2.ctx(c2.principal), args),
        SubmitError::EncodingNotAllowed {
            encoding: DeltaEncoding::F32
        }
    );

    // Revoked dataset.
    let revoked = h.client(3, 1000);
    h.state
        .revoke_dataset(&h.ctx(revoked.principal), revoked.dataset)
        .unwrap();
    let args = h.args(
        &revoked,
        h.header(&revoked, DeltaEncoding::F32, &bytes, 10),
        &bytes,
    );
    rejects!(
        h,
        h.state.begin_submission(&h.ctx(revoked.principal), args),
        SubmitError::DatasetRevoked { .. }
    );

    // Duplicates: a different header while one is pending, and anything after a commit.
    let s = h.begin(&c, &bytes, DeltaEncoding::F32, 100);
    rejects!(
        h,
        h.state
            .begin_submission(&ctx, with(&h, &|x| x.sample_count = 99)),
        SubmitError::DuplicateSubmission {
            committed: false,
            ..
        }
    );
    h.put_all(&c, s.submission_id, &bytes);
    h.state.commit_submission(&ctx, s.submission_id).unwrap();
    let args = h.args(&c, good_header.clone(), &bytes);
    rejects!(
        h,
        h.state.begin_submission(&ctx, args),
        SubmitError::DuplicateSubmission {
            committed: true,
            ..
        }
    );
    // A second commit (a retry after a lost reply) returns the first receipt, unchanged.
    let before = h.snapshot();
    let receipt = h.state.commit_submission(&ctx, s.submission_id).unwrap();
    assert_eq!(receipt.submission_id, s.submission_id);
    assert!(
        before == h.snapshot(),
        "a repeated commit changed the state"
    );
    let again = PutChunkArgs {
        submission_id: s.submission_id,
        index: 0,
        bytes: ByteBuf::from(bytes[..256].to_vec()),
    };
    rejects!(
        h,
        h.state.put_chunk(&ctx, again),
        SubmitError::AlreadyCommitted { .. }
    );
}

/// The Ed25519 signature is verified last: a request wrong in a cheaper way is refused for
/// that, and resuming an upload still needs a valid signature.
#[test]
fn begin_submission_verifies_the_signature_last() {
    let mut h = Harness::running();
    let c = h.client(1, 1000);
    let bytes = encode(DeltaEncoding::F32, &delta(1)).unwrap();
    let ctx = h.ctx(c.principal);
    let header = SubmissionHeader {
        job_id: 9,
        ..h.header(&c, DeltaEncoding::F32, &bytes, 100)
    };
    let mut args = h.args(&c, header, &bytes);
    args.signature[0] ^= 1;
    rejects!(
        h,
        h.state.begin_submission(&ctx, args),
        SubmitError::WrongJob { got: 9, .. }
    );
    let s = h.begin(&c, &bytes, DeltaEncoding::F32, 100);
    let mut resume = h.args(&c, h.header(&c, DeltaEncoding::F32, &bytes, 100), &bytes);
    resume.signature[0] ^= 1;
    rejects!(
        h,
        h.state.begin_submission(&ctx, resume),
        SubmitError::Signature(SignatureError::BadSignature)
    );
    let again = h.begin(&c, &bytes, DeltaEncoding::F32, 100);
    assert_eq!(again.submission_id, s.submission_id);
}

#[test]
fn chunk_and_commit_rejections_change_nothing() {
    let mut h = Harness::running();
    let c = h.client(1, 1000);
    let other = h.client(2, 1000);
    let bytes = encode(DeltaEncoding::F32, &delta(1)).unwrap();
    let s = h.begin(&c, &bytes, DeltaEncoding::F32, 100);
    let id = s.submission_id;
    let ctx = h.ctx(c.principal);
    let chunk = |i: u32, b: Vec<u8>| PutChunkArgs {
        submission_id: id,
        index: i,
        bytes: ByteBuf::from(b),
    };
    rejects!(
        h,
        h.state.put_chunk(
            &ctx,
            PutChunkArgs {
                submission_id: 77,
                ..chunk(0, bytes[..256].to_vec())
            }
        ),
        SubmitError::UnknownSubmission { submission_id: 77 }
    );
    rejects!(
        h,
        h.state
            .put_chunk(&h.ctx(other.principal), chunk(0, bytes[..256].to_vec())),
        SubmitError::NotSubmissionOwner { .. }
    );
    rejects!(
        h,
        h.state.put_chunk(&ctx, chunk(5, bytes[..176].to_vec())),
        SubmitError::ChunkIndexOutOfRange {
            index: 5,
            chunk_count: 5
        }
    );
    rejects!(
        h,
        h.state.put_chunk(&ctx, chunk(0, bytes[..255].to_vec())),
        SubmitError::ChunkLengthMismatch {
            expected: 256,
            got: 255,
            ..
        }
    );
    rejects!(
        h,
        h.state.put_chunk(&ctx, chunk(4, vec![0; 300])),
        SubmitError::ChunkLengthMismatch { expected: 176, .. }
    );
    rejects!(
        h,
        h.state.put_chunk(&ctx, chunk(1, bytes[..256].to_vec())),
        SubmitError::ChunkHashMismatch { index: 1, .. }
    );
    h.state
        .put_chunk(&ctx, chunk(0, bytes[..256].to_vec()))
        .unwrap();
    rejects!(
        h,
        h.state.commit_submission(&ctx, id),
        SubmitError::MissingChunks {
            missing: 4,
            first_missing: 1
        }
    );
    rejects!(
        h,
        h.state.commit_submission(&h.ctx(other.principal), id),
        SubmitError::NotSubmissionOwner { .. }
    );

    // Deltas that are correctly signed and chunked but invalid are refused at commit.
    let cases: Vec<(DeltaEncoding, Vec<u8>, &str)> = vec![
        (
            DeltaEncoding::F32,
            {
                let mut b = bytes.clone();
                b[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
                b
            },
            "nan",
        ),
        (
            DeltaEncoding::F32,
            {
                let mut b = bytes.clone();
                b[0..4].copy_from_slice(&f32::INFINITY.to_le_bytes());
                b
            },
            "inf",
        ),
        (
            DeltaEncoding::F32,
            encode(DeltaEncoding::F32, &vec![0.2f32; PARAMS as usize]).unwrap(),
            "norm",
        ),
        (
            DeltaEncoding::Int8Blocks,
            {
                let mut b = encode(DeltaEncoding::Int8Blocks, &delta(4)).unwrap();
                b[10] = 0x80;
                b
            },
            "q",
        ),
        (
            DeltaEncoding::Int8Blocks,
            {
                let mut b = encode(DeltaEncoding::Int8Blocks, &delta(4)).unwrap();
                b[0..4].copy_from_slice(&1.0f32.to_le_bytes());
                b
            },
            "scale",
        ),
    ];
    for (k, (enc, bad, what)) in cases.into_iter().enumerate() {
        let v = h.client(10 + k as u8, 1000);
        let s = h.begin(&v, &bad, enc, 10);
        h.put_all(&v, s.submission_id, &bad);
        let vctx = h.ctx(v.principal);
        let before = h.snapshot();
        let r = h.state.commit_submission(&vctx, s.submission_id);
        let ok = match (what, &r) {
            ("nan", Err(SubmitError::InvalidDelta(DeltaError::NonFiniteValue { index: 2 }))) => {
                true
            }
            ("inf", Err(SubmitError::InvalidDelta(DeltaError::NonFiniteValue { index: 0 }))) => {
                true
            }
            ("norm", Err(SubmitError::InvalidDelta(DeltaError::NormAboveClip { .. }))) => true,
            ("q", Err(SubmitError::InvalidDelta(DeltaError::QuantOutOfRange { index: 6 }))) => true,
            ("scale", Err(SubmitError::InvalidDelta(DeltaError::BadScale { block: 0, .. }))) => {
                true
            }
            _ => false,
        };
        assert!(ok, "{what}: {r:?}");
        assert!(
            before == h.snapshot(),
            "{what}: rejected commit changed state"
        );
        h.check();
    }
    assert_eq!(h.state.round_info().committed, 0);
}

#[test]
fn registry_rejections_change_nothing() {
    let mut h = Harness::new();
    let owner = Principal::from_slice(&[7; 29]);
    let ctx = h.ctx(owner);
    rejects!(
        h,
        h.state
            .register_dataset(&h.ctx(Principal::anonymous()), dataset_args(10)),
        DatasetError::AnonymousCaller
    );
    rejects!(
        h,
        h.state.register_dataset(
            &ctx,
            RegisterDatasetArgs {
                name: " ".into(),
                ..dataset_args(10)
            }
        ),
        DatasetError::EmptyName
    );
    rejects!(
        h,
        h.state.register_dataset(
            &ctx,
            RegisterDatasetArgs {
                name: "x".repeat(129),
                ..dataset_args(10)
            }
        ),
        DatasetError::FieldTooLong { .. }
    );
    rejects!(
        h,
        h.state.register_dataset(
            &ctx,
            RegisterDatasetArgs {
                description: "x".repeat(5000),
                ..dataset_args(10)
            }
        ),
        DatasetError::FieldTooLong { .. }
    );
    rejects!(
        h,
        h.state.register_dataset(&ctx, dataset_args(0)),
        DatasetError::ZeroSampleCount
    );
    let id = h.state.register_dataset(&ctx, dataset_args(10)).unwrap();
    h.check();
    rejects!(
        h,
        h.state.revoke_dataset(&ctx, id + 1),
        DatasetError::UnknownDataset { .. }
    );
    rejects!(
        h,
        h.state
            .revoke_dataset(&h.ctx(Principal::from_slice(&[8; 29])), id),
        DatasetError::NotOwner { .. }
    );
    h.state.revoke_dataset(&ctx, id).unwrap();
    rejects!(
        h,
        h.state.revoke_dataset(&ctx, id),
        DatasetError::AlreadyRevoked { .. }
    );
    for _ in 1..MAX_DATASETS_PER_OWNER {
        h.state.register_dataset(&ctx, dataset_args(10)).unwrap();
    }
    rejects!(
        h,
        h.state.register_dataset(&ctx, dataset_args(10)),
        DatasetError::TooManyDatasets { .. }
    );
    let second = h.ctx(Principal::from_slice(&[9; 29]));
    for _ in 0..60 {
        h.state.register_dataset(&second, dataset_args(10)).unwrap();
    }
    h.check();
    let p1 = h.state.list_datasets(PageArgs {
        start: 0,
        limit: 1000,
    });
    assert_eq!(p1.items.len(), MAX_PAGE_LEN as usize);
    let p2 = h.state.list_datasets(PageArgs {
        start: p1.next.unwrap(),
        limit: 1000,
    });
    assert_eq!(
        p1.items.len() + p2.items.len(),
        MAX_DATASETS_PER_OWNER as usize + 60
    );
    assert_eq!(p2.items[0].id, p1.items.last().unwrap().id + 1);
    assert_eq!(p2.next, None);
    assert!(h.state.dataset(id).unwrap().revoked_at_ns.is_some());
}

#[test]
fn queries_before_a_model_exists_are_typed_errors() {
    let mut h = Harness::new();
    assert_eq!(h.state.model_info(), Err(QueryError::NoModel));
    h.state.configure_job(&h.admin(), config()).unwrap();
    assert_eq!(h.state.model_chunk(0), Err(QueryError::NoModel));
    assert_eq!(h.state.round_info().state, JobState::AwaitingModel);
    let h = Harness::running();
    assert_eq!(
        h.state.model_chunk(5),
        Err(QueryError::ChunkIndexOutOfRange {
            index: 5,
            chunk_count: 5
        })
    );
    assert_eq!(
        h.state.submission_status(3),
        Err(QueryError::UnknownSubmission { submission_id: 3 })
    );
    assert_eq!(
        h.state.contribution_chunk(0, 0),
        Err(QueryError::UnknownContribution { index: 0 })
    );
}

#[test]
fn certified_tree_witnesses_proofs_and_initial_model() {
    use flic_protocol::certified::{round_key, round_record_hash, u64_leaf};
    use ic_certification::{HashTree, LookupResult};

    let decode = |bytes: &[u8]| -> HashTree { serde_cbor::from_slice(bytes).unwrap() };
    let mut h = Harness::running();
    // Before any round closes: the witness hashes to the certified data and shows round 0.
    let reply = h.state.round_info_certified(b"cert".to_vec());
    assert_eq!(&reply.certification.certificate[..], b"cert");
    let tree = decode(&reply.certification.tree);
    assert_eq!(tree.digest(), h.state.certified_data());
    assert_eq!(
        tree.lookup_path([b"round".as_slice()]),
        LookupResult::Found(&u64_leaf(0)[..])
    );
    let v0 = h.state.round_info().model_version.unwrap();
    assert_eq!(
        tree.lookup_path([b"model_version".as_slice()]),
        LookupResult::Found(v0.as_slice())
    );
    assert_eq!(
        tree.lookup_path([b"history".as_slice(), &round_key(0)]),
        LookupResult::Unknown,
        "history is pruned in a round-info witness"
    );
    let before = h.state.certified_data();

    let clients: Vec<Client> = (1..=3).map(|i| h.client(i, 1000)).collect();
    let mut receipts = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        receipts.push(h.submit(c, &delta(i as u64 + 10), DeltaEncoding::F32, 100));
    }
    assert_ne!(
        h.state.certified_data(),
        before,
        "closing a round changes the root"
    );
    let record = h
        .state
        .round_history(PageArgs {
            start: 0,
            limit: 10,
        })
        .items[0]
        .clone();

    let page = h.state.round_history_certified(
        vec![],
        PageArgs {
            start: 0,
            limit: 10,
        },
    );
    let tree = decode(&page.certification.tree);
    assert_eq!(tree.digest(), h.state.certified_data());
    assert_eq!(
        tree.lookup_path([b"history".as_slice(), &round_key(0)]),
        LookupResult::Found(&round_record_hash(&record)[..])
    );

    for r in &receipts {
        let p = h
            .state
            .contribution_proof(vec![], r.contribution_index)
            .unwrap();
        assert_eq!(p.record, record);
        assert_eq!(
            decode(&p.certification.tree).digest(),
            h.state.certified_data()
        );
        let proof: Vec<[u8; 32]> = p.inclusion_proof.iter().map(|x| x.into_array()).collect();
        merkle::verify_inclusion(
            &merkle::leaf_hash(r.header_hash.as_slice()),
            r.index_in_round as u64,
            record.contribution_count as u64,
            &proof,
            &record.contributions_root.into_array(),
        )
        .unwrap();
    }
    assert_eq!(
        h.state.contribution_proof(vec![], 99).unwrap_err(),
        QueryError::UnknownContribution { index: 99 }
    );
    // A contribution of the open round has no proof yet.
    let c = h.client(9, 1000);
    let r = h.submit(&c, &delta(99), DeltaEncoding::F32, 100);
    assert_eq!(
        h.state
            .contribution_proof(vec![], r.contribution_index)
            .unwrap_err(),
        QueryError::RoundNotClosed { round: 1 }
    );

    // The initial model is retained for lineage replays.
    let first = h.state.initial_model_chunk(0).unwrap();
    assert_eq!(first.version, v0);
    let mut bytes = Vec::new();
    for i in 0..first.chunk_count {
        bytes.extend_from_slice(&h.state.initial_model_chunk(i).unwrap().bytes);
    }
    assert_eq!(weights_from_le_bytes(&bytes).unwrap(), initial_weights());

    // The heap cache is rebuilt on upgrade to the same root.
    let root = h.state.certified_data();
    h.upgrade();
    assert_eq!(h.state.certified_data(), root);
}

/// The O(1) invariants the boundary checks after every update catch a broken counter.
#[test]
fn cheap_invariants_catch_broken_counters() {
    let mut h = Harness::running();
    let c = h.client(1, 1000);
    h.submit(&c, &delta(1), DeltaEncoding::F32, 10);
    h.state.check_cheap_invariants().unwrap();
    let good = h.state.allocators().clone();
    for (what, broken) in [
        ("next_contribution", {
            let mut a = good.clone();
            a.next_contribution += 1;
            a
        }),
        ("next_dataset_id", {
            let mut a = good.clone();
            a.next_dataset_id = 0;
            a
        }),
    ] {
        h.state.set_allocators(broken);
        let err = h.state.check_cheap_invariants().unwrap_err();
        assert!(err.contains(what), "{what}: {err}");
    }
    h.state.set_allocators(good);
    let mut round = h.state.open_round().clone();
    round.committed = 4;
    h.state.set_open_round(round);
    assert!(h.state.check_cheap_invariants().is_err());
}

/// The boundary's counters, kept by the state (MemoryId 17).
#[test]
fn records_calls_rejections_and_survive_reload() {
    let mem = ic_stable_structures::DefaultMemoryImpl::default();
    let mut s = State::load(mem.clone());
    s.record_call(crate::metrics::CallRecord {
        method: "put_chunk",
        rejection: None,
        bytes: 100,
        instructions: 7,
    });
    s.record_call(crate::metrics::CallRecord {
        method: "put_chunk",
        rejection: Some("ChunkHashMismatch"),
        bytes: 50,
        instructions: 3,
    });
    let s = State::load(mem);
    let m = s.metrics();
    let pc = m.method("put_chunk");
    assert_eq!(
        (
            pc.ok,
            pc.rejected,
            pc.bytes_accepted,
            pc.bytes_rejected,
            pc.instructions
        ),
        (1, 1, 100, 50, 10)
    );
    assert_eq!(
        m.rejections
            .get(&("put_chunk".to_string(), "ChunkHashMismatch".to_string())),
        Some(&1)
    );
    assert_eq!(
        m.method("commit_submission"),
        crate::metrics::MethodCounters::default()
    );
}

// ---------------------------------------------------------------- evaluations and HTTP

/// Closes `rounds` rounds with three contributors each (the third commit closes a round).
fn closed_rounds(rounds: u64) -> (Harness, Vec<Client>) {
    let mut h = Harness::running();
    let clients: Vec<Client> = (1..=3).map(|i| h.client(i, 1000)).collect();
    for r in 0..rounds {
        for (i, c) in clients.iter().enumerate() {
            h.submit(
                c,
                &delta(r * 10 + i as u64),
                DeltaEncoding::F32,
                100 * (i as u64 + 1),
            );
        }
    }
    assert_eq!(h.state.round_info().round, rounds);
    (h, clients)
}

fn eval_args(h: &Harness, round: u64, accuracy: f64) -> ReportEvaluationArgs {
    ReportEvaluationArgs {
        round,
        model_version: h
            .state
            .round_history(PageArgs {
                start: round,
                limit: 1,
            })
            .items[0]
            .new_version,
        accuracy,
        loss: 0.5,
        samples: 200,
    }
}

#[test]
fn evaluations_are_checked_bounded_and_averaged() {
    let (mut h, clients) = closed_rounds(2);
    let outsider = h.client(9, 10);
    let admin = h.admin();
    let args = eval_args(&h, 0, 0.5);

    rejects!(
        h,
        h.state
            .report_evaluation(&h.ctx(outsider.principal), args.clone()),
        EvaluationError::NotAllowed { round: 0, .. }
    );
    rejects!(
        h,
        h.state
            .report_evaluation(&h.ctx(Principal::anonymous()), args.clone()),
        EvaluationError::AnonymousCaller
    );
    rejects!(
        h,
        h.state.report_evaluation(
            &admin,
            ReportEvaluationArgs {
                round: 2,
                ..args.clone()
            }
        ),
        EvaluationError::RoundNotClosed {
            round: 2,
            closed_rounds: 2
        }
    );
    rejects!(
        h,
        h.state
            .report_evaluation(&admin, eval_args(&h, 1, 0.5).tap_round(0)),
        EvaluationError::WrongModelVersion { round: 0, .. }
    );
    for (bad, field) in [
        (
            ReportEvaluationArgs {
                accuracy: f64::NAN,
                ..args.clone()
            },
            "accuracy",
        ),
        (
            ReportEvaluationArgs {
                accuracy: 1.01,
                ..args.clone()
            },
            "accuracy",
        ),
        (
            ReportEvaluationArgs {
                loss: -1.0,
                ..args.clone()
            },
            "loss",
        ),
        (
            ReportEvaluationArgs {
                loss: f64::INFINITY,
                ..args.clone()
            },
            "loss",
        ),
        (
            ReportEvaluationArgs {
                samples: 0,
                ..args.clone()
            },
            "samples",
        ),
    ] {
        let before = h.snapshot();
        match h.state.report_evaluation(&admin, bad) {
            Err(EvaluationError::InvalidValue { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected InvalidValue for {field}, got {other:?}"),
        }
        assert!(before == h.snapshot());
    }

    // A contributor of the round and a controller report; the mean is sample-weighted.
    h.state
        .report_evaluation(&h.ctx(clients[0].principal), eval_args(&h, 0, 0.6))
        .unwrap();
    h.state
        .report_evaluation(
            &admin,
            ReportEvaluationArgs {
                samples: 600,
                loss: 0.1,
                ..eval_args(&h, 0, 0.8)
            },
        )
        .unwrap();
    h.check();
    let q = h.state.round_quality(0).unwrap();
    assert!((q.accuracy - 0.75).abs() < 1e-12, "{q:?}");
    assert!((q.loss - 0.2).abs() < 1e-12, "{q:?}");
    assert_eq!((q.samples, q.reports), (800, 2));
    assert_eq!(h.state.round_quality(1), None);

    // Reporting again replaces; reporters per round are capped.
    h.state
        .report_evaluation(&admin, eval_args(&h, 0, 0.9))
        .unwrap();
    assert_eq!(h.state.round_evaluations(0).len(), 2);
    for i in 0..(MAX_EVALUATIONS_PER_ROUND - 2) {
        let ctx = CallContext {
            is_controller: true,
            ..h.ctx(Principal::from_slice(&[0xd0, i as u8]))
        };
        h.state
            .report_evaluation(&ctx, eval_args(&h, 0, 0.5))
            .unwrap();
    }
    let ctx = CallContext {
        is_controller: true,
        ..h.ctx(Principal::from_slice(&[0xd1]))
    };
    rejects!(
        h,
        h.state.report_evaluation(&ctx, eval_args(&h, 0, 0.5)),
        EvaluationError::TooManyEvaluations { round: 0, .. }
    );
    h.state
        .report_evaluation(&admin, eval_args(&h, 0, 0.4))
        .unwrap();
    assert_eq!(
        h.state.round_evaluations(0).len(),
        MAX_EVALUATIONS_PER_ROUND
    );
    // Evaluations live in stable memory.
    h.upgrade();
    assert_eq!(
        h.state.round_evaluations(0).len(),
        MAX_EVALUATIONS_PER_ROUND
    );
}

trait TapRound {
    fn tap_round(self, round: u64) -> Self;
}

impl TapRound for ReportEvaluationArgs {
    /// The same report, claimed for another round (so its version is that of the wrong one).
    fn tap_round(mut self, round: u64) -> Self {
        self.round = round;
        self
    }
}

fn get(h: &Harness, method: &str, url: &str) -> (u16, HttpResponse) {
    let req = HttpRequest {
        method: method.into(),
        url: url.into(),
        headers: vec![],
        body: ByteBuf::new(),
        certificate_version: Some(2),
    };
    let env = crate::http::HttpEnv {
        now_ns: h.now,
        cycle_balance: 3_000_000_000_000,
        canister_id: h.canister,
    };
    let r = crate::http::handle(&h.state, &req, &env);
    (r.status_code, r)
}

fn get_json(h: &Harness, url: &str) -> (u16, serde_json::Value) {
    let (status, r) = get(h, "GET", url);
    assert_eq!(r.header("content-type"), Some("application/json"), "{url}");
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    (status, serde_json::from_slice(&r.body).expect("JSON body"))
}

#[test]
fn json_api_pages_are_capped_and_bad_requests_are_explained() {
    let (mut h, clients) = closed_rounds(3);
    // More datasets than one page holds: 3 owners x 50.
    for seed in 20..23u8 {
        let owner = flic_test_fixtures::key([seed; 32]).principal;
        for _ in 0..50 {
            h.state
                .register_dataset(&h.ctx(owner), dataset_args(10))
                .unwrap();
        }
    }
    let total_datasets = h
        .state
        .list_datasets(PageArgs { start: 0, limit: 1 })
        .items
        .len() as u64
        + 3 * 50
        + 2; // clients' datasets: 3 in all
    let (s, v) = get_json(&h, "/api/datasets?limit=1000");
    assert_eq!(s, 200);
    assert_eq!(v["limit"], MAX_PAGE_LEN);
    assert_eq!(v["items"].as_array().unwrap().len(), MAX_PAGE_LEN as usize);
    assert_eq!(v["total"], total_datasets);
    let next = v["next"].as_u64().expect("a next page");
    let (_, v2) = get_json(&h, &format!("/api/datasets?offset={next}&limit=100"));
    assert_eq!(
        v2["items"].as_array().unwrap().len() as u64,
        total_datasets - MAX_PAGE_LEN as u64
    );
    assert_eq!(v2["next"], serde_json::Value::Null);
    let (_, d) = get_json(&h, "/api/datasets");
    assert_eq!(d["limit"], crate::http::DEFAULT_LIMIT);

    // Rounds, paged by round number.
    let (s, v) = get_json(&h, "/api/rounds?offset=0&limit=2");
    assert_eq!(s, 200);
    let items = v["items"].as_array().unwrap();
    assert_eq!(
        (items.len(), v["next"].as_u64(), v["total"].as_u64()),
        (2, Some(2), Some(3))
    );
    assert_eq!(items[1]["round"], 1);
    assert_eq!(items[0]["contribution_count"], 3);
    let (_, v) = get_json(&h, "/api/rounds?offset=2");
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["next"], serde_json::Value::Null);
    let (_, v) = get_json(&h, "/api/rounds/?offset=7");
    assert_eq!(v["items"].as_array().unwrap().len(), 0);

    // Bad parameters: 400 with a message.
    for url in [
        "/api/rounds?limit=0",
        "/api/rounds?limit=-1",
        "/api/rounds?limit=ten",
        "/api/rounds?offset=x",
        "/api/rounds?limit=1&limit=2",
        "/api/rounds/abc",
        "/api/datasets?limit=",
        "/api/contributors/not-a-principal",
        "/api/lineage/zz",
        "/api/lineage/abcd",
    ] {
        let (s, v) = get_json(&h, url);
        assert_eq!(s, 400, "{url}");
        assert_eq!(v["status"], 400);
        assert!(v["error"].as_str().unwrap().len() > 15, "{url}: {v}");
    }
    // Unknown paths and items: 404 with a message.
    for url in [
        "/nope",
        "/api",
        "/api/rounds/3",
        "/api/rounds/99",
        "/api/rounds/1/extra",
        "/api/contributors/aaaaa-aa",
        "/api/lineage/0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let (s, v) = get_json(&h, url);
        assert_eq!(s, 404, "{url}");
        assert!(v["error"].as_str().unwrap().len() > 15, "{url}: {v}");
    }
    let (_, v) = get_json(&h, "/api/rounds/3");
    assert!(
        v["error"].as_str().unwrap().contains("not closed yet"),
        "{v}"
    );
    // Read-only.
    let (s, r) = get(&h, "POST", "/api/rounds");
    assert_eq!((s, r.header("allow")), (405, Some("GET, HEAD")));
    let (s, r) = get(&h, "HEAD", "/api/rounds");
    assert_eq!(s, 200);
    assert!(r.body.is_empty());
    assert_ne!(r.header("content-length"), Some("0"));

    // One round: evaluations and contributions.
    h.state
        .report_evaluation(&h.admin(), eval_args(&h, 1, 0.625))
        .unwrap();
    let (s, v) = get_json(&h, "/api/rounds/1");
    assert_eq!(s, 200);
    assert_eq!(v["quality"]["accuracy"], 0.625);
    assert_eq!(v["evaluations"].as_array().unwrap().len(), 1);
    let contributions = v["contributions"].as_array().unwrap();
    assert_eq!(contributions.len(), 3);
    assert_eq!(contributions[0]["index"], 3);
    assert_eq!(contributions[2]["weight"], 300);

    // A contributor: datasets and contributions, paged.
    let p = clients[1].principal.to_text();
    let (s, v) = get_json(&h, &format!("/api/contributors/{p}?limit=2"));
    assert_eq!(s, 200);
    assert_eq!(v["datasets"].as_array().unwrap().len(), 1);
    assert_eq!(v["contributions"]["items"].as_array().unwrap().len(), 2);
    assert_eq!(v["contributions"]["next"], 7);

    // Lineage of the current model: 9 contributions from 3 datasets, weights 300/600/900.
    let (s, v) = get_json(&h, "/api/lineage/current?limit=4");
    assert_eq!(s, 200);
    assert_eq!(
        v["model_version"].as_str().unwrap(),
        hex::encode(h.state.round_info().model_version.unwrap().as_slice())
    );
    assert_eq!(
        (v["round"].as_u64(), v["total_contributions"].as_u64()),
        (Some(3), Some(9))
    );
    let ds = v["datasets"].as_array().unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!(ds[0]["dataset_id"], clients[2].dataset);
    assert_eq!(
        (ds[0]["weight"].as_u64(), ds[0]["rounds"].as_u64()),
        (Some(900), Some(3))
    );
    assert!((ds[0]["share"].as_f64().unwrap() - 0.5).abs() < 1e-12);
    assert_eq!(v["contributions"]["items"].as_array().unwrap().len(), 4);
    let v1 = hex::encode(
        h.state.round_history(PageArgs { start: 0, limit: 1 }).items[0]
            .new_version
            .as_slice(),
    );
    let (_, v) = get_json(&h, &format!("/api/lineage/{v1}"));
    assert_eq!(
        (v["round"].as_u64(), v["total_contributions"].as_u64()),
        (Some(1), Some(3))
    );

    let (s, v) = get_json(&h, "/api/status");
    assert_eq!(s, 200);
    assert_eq!(
        (v["round"].as_u64(), v["state"].as_str()),
        (Some(3), Some("Running"))
    );
}

#[test]
fn metrics_and_page_show_the_rounds() {
    let (mut h, clients) = closed_rounds(2);
    h.state
        .report_evaluation(&h.admin(), eval_args(&h, 0, 0.4321))
        .unwrap();
    h.state
        .report_evaluation(&h.ctx(clients[0].principal), eval_args(&h, 1, 0.8765))
        .unwrap();
    h.state.record_call(crate::metrics::CallRecord {
        method: "begin_submission",
        rejection: Some("StaleRound"),
        bytes: 0,
        instructions: 1234,
    });
    h.state.record_call(crate::metrics::CallRecord {
        method: "commit_submission",
        rejection: None,
        bytes: 0,
        instructions: 99,
    });
    let (s, r) = get(&h, "GET", "/metrics");
    assert_eq!(s, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    for line in [
        "flic_rounds_closed_total 2",
        "flic_current_round 2",
        "flic_job_state{state=\"Running\"} 1",
        "flic_job_state{state=\"Paused\"} 0",
        "flic_submissions_accepted_total 1",
        "flic_submissions_rejected_total{method=\"begin_submission\",reason=\"StaleRound\"} 1",
        "flic_instructions_total{method=\"begin_submission\"} 1234",
        "flic_cycle_balance 3000000000000",
        "flic_contributors 3",
        "flic_contributions_total 6",
        "flic_datasets 3",
        "flic_model_accuracy 0.8765",
        "# TYPE flic_rounds_closed_total counter",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
    // Every sample line parses as `name{labels} number`.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = l.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{l}");
    }

    let (s, r) = get(&h, "GET", "/");
    assert_eq!(s, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"));
    let html = String::from_utf8(r.body.to_vec()).unwrap();
    for needle in [
        r#"<tr data-round="0">"#,
        r#"<tr data-round="1">"#,
        "43.21%",
        "87.65%",
        r#"data-round="1" data-value="3""#,
        r#"data-round="0" data-accuracy="0.4321""#,
        r#"id="lineage""#,
        r#"id="deadline""#,
    ] {
        assert!(html.contains(needle), "page lacks {needle}");
    }
    // Nothing external: no URL with a scheme anywhere in the page.
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"));

    // A dataset name is user input: escaped in the page.
    let mut evil = dataset_args(5);
    evil.name = "<img src=x onerror=alert(1)>".into();
    let c = clients[0].principal;
    h.state.register_dataset(&h.ctx(c), evil).unwrap();
    let (_, r) = get(&h, "GET", "/api/datasets");
    assert!(String::from_utf8(r.body.to_vec())
        .unwrap()
        .contains("<img src=x"));
    // (JSON carries it verbatim; the page escapes what it shows.)
    assert_eq!(crate::http::esc("<img>"), "&lt;img&gt;");
}

#[test]
fn page_renders_before_any_round_closes() {
    let h = Harness::new();
    let (s, r) = get(&h, "GET", "/");
    assert_eq!(s, 200);
    let html = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(html.contains("No round has closed yet"));
    assert!(html.contains("There is no model yet"));
    let (s, _) = get_json(&h, "/api/lineage/current");
    assert_eq!(s, 404);
    let h = Harness::running();
    let html = String::from_utf8(get(&h, "GET", "/").1.body.to_vec()).unwrap();
    assert!(html.contains("the initial model"));
}

#[test]
fn pending_uploads_are_capped_at_twice_max_clients() {
    let mut h = Harness::running();
    let limit = crate::rounds::pending_limit(config().max_clients) as usize;
    let bytes = encode(DeltaEncoding::F32, &delta(1)).unwrap();
    let clients: Vec<Client> = (1..=limit as u8 + 1).map(|i| h.client(i, 1000)).collect();
    let mut pending = Vec::new();
    for c in &clients[..limit] {
        pending.push(h.begin(c, &bytes, DeltaEncoding::F32, 100));
    }
    let late = &clients[limit];
    let header = h.header(late, DeltaEncoding::F32, &bytes, 100);
    let args = h.args(late, header, &bytes);
    let ctx = h.ctx(late.principal);
    rejects!(
        h,
        h.state.begin_submission(&ctx, args.clone()),
        SubmitError::TooManyPendingSubmissions { .. }
    );
    // A commit frees a slot.
    h.put_all(&clients[0], pending[0].submission_id, &bytes);
    h.state
        .commit_submission(&h.ctx(clients[0].principal), pending[0].submission_id)
        .unwrap();
    h.check();
    h.state.begin_submission(&ctx, args).unwrap();
    h.check();
    assert_eq!(h.state.round_info().pending as usize, limit);
}

/// The accumulator spilled by `pre_upgrade` carries its round and commits: an upgrade that
/// skipped `pre_upgrade` (the IC's `skip_pre_upgrade`) after another commit would load a
/// stale sum, and the load refuses it instead.
#[test]
fn a_stale_accumulator_spill_is_refused() {
    let mut h = Harness::running();
    let (a, b) = (h.client(1, 1000), h.client(2, 1000));
    h.submit(&a, &delta(1), DeltaEncoding::F32, 50);
    h.upgrade(); // spills round 0 with one commit, and loads it back
    h.submit(&b, &delta(2), DeltaEncoding::F32, 50);
    // An upgrade without pre_upgrade: the spill still says one commit.
    let mem = h.mem.clone();
    let stale = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        State::load(mem).open_round().round
    }));
    let message = *stale
        .expect_err("a stale spill is refused")
        .downcast::<String>()
        .unwrap();
    assert!(message.contains("pre_upgrade did not run"), "{message}");
    // With pre_upgrade, the same state loads.
    h.upgrade();
    h.check();
}
