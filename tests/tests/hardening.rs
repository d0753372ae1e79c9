//! An open federation against strangers with free principals (issue 12), on the
//! aggregator's release wasm in the embedded IC: squatted upload slots, staging memory,
//! the allow-list, copied commitments, inflated counts.

use std::time::Duration;

use candid::Principal;
use flic_protocol::api::{
    AdminError, Admission, AllowListChange, DatasetError, EvaluationError, HttpRequest,
    HttpResponse, JobConfig, RegisterDatasetArgs, ReportEvaluationArgs, SubmitError,
    MAX_EVALUATIONS_PER_ROUND, MAX_SAMPLE_COUNT,
};
use flic_protocol::{DeltaEncoding, Hash};
use flic_tests::embedded::EmbeddedEnv;
use flic_tests::env::{CallFailure, IcEnv};
use flic_tests::fixture::{delta, job, Fixture, SAMPLES};

/// Two places per round, and round deadlines far beyond the stall time.
fn two_client_job() -> JobConfig {
    JobConfig {
        min_clients: 2,
        max_clients: 2,
        ..job()
    }
}

fn stall_ns(f: &Fixture<EmbeddedEnv>) -> u64 {
    f.job.upload_stall_ns()
}

/// Begins an upload for contributor `c` and stores nothing: a squatter.
fn squat(f: &mut Fixture<EmbeddedEnv>, c: usize) -> Result<u64, SubmitError> {
    let up = f.prepare(c, &delta(c, 0), DeltaEncoding::F32);
    f.begin(c, &up).map(|s| s.submission_id)
}

/// Squatters that begin the moment a round opens and never upload cannot keep two honest
/// contributors from closing the round within its first deadline: once stalled, a squatter
/// gives way to a new upload, and an upload that progresses is never the one that does.
#[test]
fn squatters_cannot_stop_a_round_from_closing() {
    let mut f = Fixture::new(EmbeddedEnv::new(), 2, two_client_job());
    let limit = 4; // twice max_clients
    let first_deadline = f.round_info().deadline_ns;
    let squatters: Vec<usize> = (0..3 * limit).map(|i| f.add_contributor(100 + i)).collect();
    let mut held = 0;
    for &s in &squatters {
        match squat(&mut f, s) {
            Ok(_) => held += 1,
            Err(SubmitError::TooManyPendingSubmissions { .. }) => {}
            Err(e) => panic!("unexpected rejection of a squatter: {e}"),
        }
    }
    assert_eq!(held, limit, "squatters hold every slot");

    // An honest contributor arriving now is told when to come back, and nothing changed.
    let up0 = f.prepare(0, &delta(0, 0), DeltaEncoding::F32);
    let before = f.snapshot();
    let retry = match f.begin(0, &up0) {
        Err(SubmitError::TooManyPendingSubmissions {
            retry_after_ns,
            limit: l,
            ..
        }) => {
            assert_eq!(l as usize, limit);
            retry_after_ns
        }
        other => panic!("expected TooManyPendingSubmissions, got {other:?}"),
    };
    assert!(retry > 0 && retry <= stall_ns(&f));
    assert_eq!(f.snapshot(), before, "a rejection changes nothing");

    f.env.advance_time(Duration::from_nanos(retry));
    // Contributor 0 takes a stalled squatter's slot and starts uploading.
    let s0 = f
        .begin(0, &up0)
        .expect("a stalled squatter gives way")
        .submission_id;
    f.put(0, s0, 0, up0.chunk(0)).expect("first chunk");

    // Fresh squatters arrive while contributor 0 uploads slowly: they may push out the
    // stalled squatters, never contributor 0, whose last chunk is recent.
    f.env.advance_time(Duration::from_nanos(stall_ns(&f) / 2));
    f.put(0, s0, 1, up0.chunk(1)).expect("second chunk");
    f.env
        .advance_time(Duration::from_nanos(stall_ns(&f) / 2 + 1));
    let late: Vec<usize> = (0..2 * limit).map(|i| f.add_contributor(200 + i)).collect();
    for &s in &late {
        let _ = squat(&mut f, s);
    }
    let status: Result<flic_protocol::api::SubmissionStatus, flic_protocol::api::QueryError> =
        f.query1("submission_status", (s0,));
    assert!(status.is_ok(), "a progressing upload is never evicted");
    for i in 2..up0.chunk_count() {
        f.put(0, s0, i, up0.chunk(i)).expect("chunk");
    }
    f.commit(0, s0).expect("contributor 0 commits");

    // Contributor 1 gets in once a squatter has stalled, and the round closes at
    // max_clients, before its first deadline.
    let up1 = f.prepare(1, &delta(1, 0), DeltaEncoding::F32);
    let s1 = loop {
        match f.begin(1, &up1) {
            Ok(s) => break s.submission_id,
            Err(SubmitError::TooManyPendingSubmissions { retry_after_ns, .. }) => {
                f.env.advance_time(Duration::from_nanos(retry_after_ns))
            }
            Err(e) => panic!("{e}"),
        }
    };
    for i in 0..up1.chunk_count() {
        f.put(1, s1, i, up1.chunk(i)).expect("chunk");
    }
    let receipt = f.commit(1, s1).expect("contributor 1 commits");
    assert!(receipt.round_closed);
    assert!(
        f.env.time_ns() < first_deadline,
        "closed within the first deadline"
    );
    assert_eq!(f.round_info().round, 1);
    assert_eq!(f.round_info().pending, 0, "the close freed every slot");
}

/// A deadline extension drops every upload that has stalled.
#[test]
fn an_extension_drops_stalled_uploads() {
    let mut f = Fixture::new(EmbeddedEnv::new(), 1, two_client_job());
    let squatter = f.add_contributor(100);
    squat(&mut f, squatter).expect("slot");
    let up = f.prepare(0, &delta(0, 0), DeltaEncoding::F32);
    let id = f.begin(0, &up).unwrap().submission_id;
    assert_eq!(f.round_info().pending, 2);
    // Contributor 0 progresses just before the deadline; the squatter has stalled.
    let deadline = f.round_info().deadline_ns;
    f.env.advance_time(Duration::from_nanos(
        deadline - f.env.time_ns() - 1_000_000_000,
    ));
    f.put(0, id, 0, up.chunk(0)).unwrap();
    f.env.advance_time(Duration::from_nanos(2_000_000_000));
    let info = f.round_info();
    assert_eq!(info.round, 0, "short of min_clients: extended");
    assert_eq!(
        info.pending, 1,
        "the stalled squatter was dropped, the upload kept"
    );
}

/// A controller can evict an upload in progress; nobody else can, and a committed
/// contribution is never evicted.
#[test]
fn a_controller_evicts_uploads() {
    let mut f = Fixture::new(EmbeddedEnv::new(), 2, job());
    let squatter = f.add_contributor(100);
    let id = squat(&mut f, squatter).unwrap();
    let who = f.contributors[0].principal;
    let denied = f.update1::<_, Result<(), AdminError>>(who, "evict_submission", (id,));
    assert!(
        matches!(&denied, Err(CallFailure::Other(m)) if m.contains("not a controller")),
        "{denied:?}"
    );
    f.admin_call::<_, ()>("evict_submission", (id,))
        .expect("evicted");
    assert_eq!(f.round_info().pending, 0);
    assert!(matches!(
        f.admin_call::<_, ()>("evict_submission", (id,)),
        Err(AdminError::UnknownSubmission { .. })
    ));
    let receipt = f.submit(0, &delta(0, 0), DeltaEncoding::F32).unwrap();
    assert!(matches!(
        f.admin_call::<_, ()>("evict_submission", (receipt.submission_id,)),
        Err(AdminError::SubmissionCommitted { .. })
    ));
}

fn dataset_args(i: u8) -> RegisterDatasetArgs {
    RegisterDatasetArgs {
        name: format!("set-{i}"),
        commitment: Hash::new([i; 32]),
        sample_count: SAMPLES,
        license: "CC0".into(),
        description: String::new(),
    }
}

/// With `Admission::AllowList`, only listed principals register datasets and upload.
#[test]
fn an_allow_list_keeps_strangers_out() {
    let job = JobConfig {
        admission: Some(Admission::AllowList),
        ..job()
    };
    let mut f = Fixture::new(EmbeddedEnv::new(), 0, job);
    let member = flic_test_fixtures::key_for(0).principal;
    let stranger = flic_test_fixtures::key_for(1).principal;
    let len = f
        .admin_call::<_, u64>(
            "update_allow_list",
            (AllowListChange {
                add: vec![member],
                remove: vec![],
            },),
        )
        .unwrap();
    assert_eq!(len, 1);
    let c = f.add_contributor(0);
    f.submit(c, &delta(0, 0), DeltaEncoding::F32)
        .expect("a listed contributor submits");
    let refused: Result<u64, DatasetError> = f
        .update1(stranger, "register_dataset", (dataset_args(200),))
        .unwrap();
    assert_eq!(refused, Err(DatasetError::NotAllowed { caller: stranger }));
    // Removed from the list: no further upload.
    f.admin_call::<_, u64>(
        "update_allow_list",
        (AllowListChange {
            add: vec![],
            remove: vec![member],
        },),
    )
    .unwrap();
    f.env.advance_time(Duration::from_secs(1));
    let up = f.prepare(c, &delta(0, 1), DeltaEncoding::F32);
    let before = f.snapshot();
    assert_eq!(
        f.begin(c, &up).unwrap_err(),
        SubmitError::NotAllowed { caller: member }
    );
    assert_eq!(f.snapshot(), before);
    let too_many = AllowListChange {
        add: vec![member; flic_protocol::api::MAX_ALLOW_LIST_CHANGE + 1],
        remove: vec![],
    };
    assert!(matches!(
        f.admin_call::<_, u64>("update_allow_list", (too_many,)),
        Err(AdminError::AllowListChangeTooLarge { .. })
    ));
}

/// A gauge of the canister's `/metrics`.
fn gauge(f: &mut Fixture<EmbeddedEnv>, name: &str) -> u64 {
    let req = HttpRequest {
        method: "GET".into(),
        url: "/metrics".into(),
        headers: vec![],
        body: Default::default(),
        certificate_version: None,
    };
    let r: HttpResponse = f.query1("http_request", (req,));
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics"))
}

/// Staging is a fixed set of slots: many rounds of uploads that write only their last
/// chunk and never commit, with contributions retained, grow staging by nothing and the
/// retained arena by the committed deltas only.
#[test]
fn abandoned_uploads_do_not_grow_staging() {
    let job = JobConfig {
        retain_contributions: true,
        ..two_client_job()
    };
    let mut f = Fixture::new(EmbeddedEnv::new(), 2, job);
    let squatters: Vec<usize> = (0..2).map(|i| f.add_contributor(100 + i)).collect();
    let delta_bytes = DeltaEncoding::F32.encoded_len(flic_tests::fixture::PARAMS);
    let rounds = 10u64;
    for round in 0..rounds {
        for &s in &squatters {
            let up = f.prepare(s, &delta(s, round), DeltaEncoding::F32);
            let id = f.begin(s, &up).expect("slot").submission_id;
            let last = up.chunk_count() - 1;
            f.put(s, id, last, up.chunk(last)).expect("last chunk only");
        }
        for c in 0..2 {
            f.submit(c, &delta(c, round), DeltaEncoding::F32)
                .expect("honest commit");
        }
        assert_eq!(f.round_info().round, round + 1);
    }
    // At most 3 uploads were ever in progress at once (2 squatters and an honest one):
    // every round reuses those slots.
    assert_eq!(gauge(&mut f, "flic_staging_slots_bytes"), 3 * delta_bytes);
    assert_eq!(
        gauge(&mut f, "flic_retained_bytes"),
        rounds * 2 * delta_bytes,
        "only committed deltas are retained"
    );
}

/// A commitment is registered once: a copier cannot claim someone else's dataset.
#[test]
fn a_commitment_is_registered_once() {
    let mut f = Fixture::new(EmbeddedEnv::new(), 1, job());
    let copier = flic_test_fixtures::key_for(7).principal;
    let mut copy = dataset_args(0);
    copy.commitment = flic_tests::fixture::commitment(0);
    let before = f.snapshot();
    let refused: Result<u64, DatasetError> =
        f.update1(copier, "register_dataset", (copy,)).unwrap();
    assert_eq!(
        refused,
        Err(DatasetError::CommitmentTaken {
            dataset_id: f.contributors[0].dataset_id
        })
    );
    assert_eq!(f.snapshot(), before);
}

/// Self-declared counts are bounded.
#[test]
fn sample_counts_are_bounded() {
    let mut f = Fixture::new(EmbeddedEnv::new(), 0, job());
    let who = flic_test_fixtures::key_for(3).principal;
    let mut args = dataset_args(3);
    args.sample_count = MAX_SAMPLE_COUNT + 1;
    let refused: Result<u64, DatasetError> =
        f.update1(who, "register_dataset", (args.clone(),)).unwrap();
    assert!(matches!(
        refused,
        Err(DatasetError::SampleCountTooLarge { .. })
    ));
    args.sample_count = MAX_SAMPLE_COUNT;
    let ok: Result<u64, DatasetError> = f.update1(who, "register_dataset", (args,)).unwrap();
    ok.expect("the maximum is allowed");
}

/// Contributors (free principals) can fill at most 12 of a round's 16 evaluation slots,
/// and cannot report more samples than the bound.
#[test]
fn contributors_cannot_crowd_out_controller_evaluations() {
    let n = MAX_EVALUATIONS_PER_ROUND;
    let job = JobConfig {
        min_clients: n as u32,
        max_clients: n as u32,
        ..job()
    };
    let mut f = Fixture::new(EmbeddedEnv::new(), n, job);
    for c in 0..n {
        f.submit(c, &delta(c, 0), DeltaEncoding::F32).unwrap();
    }
    let version = f.round_info().model_version.unwrap();
    let report = |samples| ReportEvaluationArgs {
        round: 0,
        model_version: version,
        accuracy: 0.5,
        loss: 1.0,
        samples,
    };
    let mut accepted = 0;
    for c in 0..n {
        let who = f.contributors[c].principal;
        let r: Result<(), EvaluationError> =
            f.update1(who, "report_evaluation", (report(10),)).unwrap();
        match r {
            Ok(()) => accepted += 1,
            Err(EvaluationError::TooManyEvaluations { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        accepted,
        n - flic_protocol::api::EVALUATIONS_RESERVED_FOR_CONTROLLERS
    );
    let admin = f.admin;
    let r: Result<(), EvaluationError> = f
        .update1(admin, "report_evaluation", (report(10),))
        .unwrap();
    r.expect("a controller always finds a slot");
    let who = f.contributors[0].principal;
    let r: Result<(), EvaluationError> = f
        .update1(who, "report_evaluation", (report(MAX_SAMPLE_COUNT + 1),))
        .unwrap();
    assert!(matches!(r, Err(EvaluationError::InvalidValue { .. })));
    let _ = Principal::anonymous();
}

/// A commit whose reply was lost is retried: the retry returns the same receipt, also
/// when the lost commit closed the round.
#[test]
fn a_retried_commit_returns_its_receipt() {
    let mut f = Fixture::new(EmbeddedEnv::new(), 2, two_client_job());
    let up = f.prepare(0, &delta(0, 0), DeltaEncoding::F32);
    let id = f.begin(0, &up).unwrap().submission_id;
    for i in 0..up.chunk_count() {
        f.put(0, id, i, up.chunk(i)).unwrap();
    }
    let first = f.commit(0, id).unwrap();
    assert_eq!(
        f.commit(0, id).unwrap(),
        first,
        "same receipt in the open round"
    );
    let last = f.submit(1, &delta(1, 0), DeltaEncoding::F32).unwrap();
    assert!(last.round_closed);
    assert_eq!(f.round_info().round, 1);
    let before = f.snapshot();
    assert_eq!(
        f.commit(1, last.submission_id).unwrap(),
        last,
        "after the round closed"
    );
    assert_eq!(f.snapshot(), before, "a retry changes nothing");
    // Only the owner gets it.
    assert!(matches!(
        f.commit(0, last.submission_id),
        Err(SubmitError::UnknownSubmission { .. })
    ));
}

/// A job whose worst-case message does not fit the IC's limits is refused, and so are an
/// unbounded server learning rate and clip norm.
#[test]
fn a_job_the_ic_limits_cannot_hold_is_refused() {
    let mut f = Fixture::new(EmbeddedEnv::new(), 0, job());
    // A started job cannot be reconfigured: use a second canister in the same host.
    let fresh = f.another_canister_empty();
    let huge = JobConfig {
        model_spec: flic_test_fixtures::linear_spec(5_000, 10_000),
        chunk_size: Some(1024 * 1024),
        ..job()
    };
    for (bad, why) in [
        (huge, "B instructions"),
        (
            JobConfig {
                server_lr: 1e6,
                ..job()
            },
            "server_lr",
        ),
        (
            JobConfig {
                clip_norm: 1e9,
                ..job()
            },
            "clip_norm",
        ),
    ] {
        let r = f.on_canister(fresh, |f| f.admin_call::<_, u64>("configure_job", (&bad,)));
        match r {
            Err(AdminError::InvalidConfig { reason }) => {
                assert!(reason.contains(why), "{reason}")
            }
            other => panic!("expected InvalidConfig ({why}), got {other:?}"),
        }
    }
}

/// A timer message that traps (here: over a lowered instruction limit) is not re-armed by
/// every later update into a loop that burns cycles for nothing; an upgrade arms it again.
#[test]
fn a_trapping_timer_is_not_rearmed_into_a_loop() {
    let mut f = Fixture::new(EmbeddedEnv::new(), 2, job());
    f.submit(0, &delta(0, 0), DeltaEncoding::F32).unwrap();
    f.submit(1, &delta(1, 0), DeltaEncoding::F32).unwrap();
    let normal = f.env.ic.config().limits;
    let deadline = f.round_info().deadline_ns;
    f.env
        .ic
        .set_instruction_limits(flic_embedded_ic::InstructionLimits {
            update: 1_000_000,
            ..normal
        });
    let fired = f
        .env
        .ic
        .advance_time(Duration::from_nanos(deadline - f.env.time_ns() + 1));
    assert_eq!(fired.len(), 1);
    assert!(fired[0].result.is_err(), "the close traps");
    f.env.ic.set_instruction_limits(normal);
    let mut runs = 0;
    for i in 0..5 {
        // Updates in between (each settles the state and would re-arm the timer).
        let c = f.add_contributor(300 + i);
        let _ = c;
        runs += f.env.ic.advance_time(Duration::from_secs(1)).len();
    }
    assert_eq!(runs, 0, "no timer ran again after the trap");
    assert_eq!(f.round_info().round, 0);
    // An upgrade arms the timer again, and the close succeeds.
    let wasm = f.wasm.clone();
    let arg = candid::encode_one(flic_protocol::api::InitArg::Upgrade(None)).unwrap();
    let (canister, admin) = (f.canister, f.admin);
    f.env.upgrade(canister, &wasm, arg, admin).unwrap();
    let fired = f.env.ic.advance_time(Duration::from_secs(1));
    assert!(fired.iter().all(|t| t.result.is_ok()));
    assert_eq!(f.round_info().round, 1, "closed once the timer could run");
}

/// Junk ingress from strangers is dropped by `canister_inspect_message` before the IC
/// accepts it: the canister pays neither the ingress fee nor an execution. 100 junk
/// calls: anonymous registrations, controller methods from a stranger, oversized chunks,
/// queries called as updates, and uploads while the job is paused.
#[test]
fn junk_ingress_is_dropped_before_it_is_billed() {
    let mut f = Fixture::new(EmbeddedEnv::new(), 1, job());
    let stranger = flic_test_fixtures::key_for(900).principal;
    let up = f.prepare(0, &delta(0, 0), DeltaEncoding::F32);
    let mut junk: Vec<(Principal, &str, Vec<u8>)> = Vec::new();
    for i in 0..20u8 {
        junk.push((
            Principal::anonymous(),
            "register_dataset",
            candid::encode_one(dataset_args(i)).unwrap(),
        ));
        junk.push((
            stranger,
            "configure_job",
            candid::encode_one(job()).unwrap(),
        ));
        let big = flic_protocol::api::PutChunkArgs {
            submission_id: 0,
            index: 0,
            bytes: serde_bytes::ByteBuf::from(vec![i; 64 * 1024]),
        };
        junk.push((stranger, "put_chunk", candid::encode_one(big).unwrap()));
        junk.push((stranger, "round_info", candid::encode_args(()).unwrap()));
    }
    f.admin_call::<_, ()>("pause_job", ()).unwrap();
    for _ in 0..20 {
        let who = f.contributors[0].principal;
        junk.push((
            who,
            "begin_submission",
            candid::encode_one(&up.args).unwrap(),
        ));
    }
    assert_eq!(junk.len(), 100);
    let before = f.snapshot();
    let (mut inspect_instructions, mut bytes) = (0u64, 0u64);
    for (sender, method, arg) in junk {
        bytes += arg.len() as u64;
        match f.env.ic.update(f.canister, sender, method, arg) {
            Err(flic_embedded_ic::CallError::InspectRejected { instructions, .. }) => {
                inspect_instructions += instructions
            }
            other => panic!("{method} by {sender} was accepted: {other:?}"),
        }
    }
    assert_eq!(f.snapshot(), before);
    // Had they been accepted, each would have cost at least the ingress fee (1.2 M cycles
    // plus 2,000 per byte) and the base fee of an execution (5 M): a lower bound.
    let accepted_lower_bound = 100 * (1_200_000 + 5_000_000) + 2_000 * bytes;
    eprintln!(
        "100 junk calls, {bytes} bytes: without the filter at least {accepted_lower_bound} cycles billed; with it 0 (inspect_message ran {inspect_instructions} instructions on one replica, not billed)"
    );
    assert!(
        inspect_instructions < 100 * 5_000_000,
        "inspection stays cheap"
    );
}

/// Job ids never repeat on a canister, even across a reinstall (which wipes the previous
/// ids): a header signed for a job of an earlier install names a job this one never has.
#[test]
fn job_ids_do_not_repeat_after_a_reinstall() {
    let mut f = Fixture::new(EmbeddedEnv::new(), 1, job());
    let first_job = f.job_id;
    let old = f.prepare(0, &delta(0, 0), DeltaEncoding::F32);
    f.env.advance_time(Duration::from_secs(1));
    let init = candid::encode_one(flic_protocol::api::InitArg::Init(Default::default())).unwrap();
    let (canister, admin, wasm) = (f.canister, f.admin, f.wasm.clone());
    f.env
        .ic
        .install_code(
            canister,
            &wasm,
            init,
            flic_embedded_ic::InstallMode::Reinstall,
            admin,
        )
        .expect("reinstall");
    let cfg = job();
    let second_job = f.admin_call::<_, u64>("configure_job", (&cfg,)).unwrap();
    assert!(second_job > first_job, "{second_job} after {first_job}");
    let bytes = flic_protocol::model::weights_to_le_bytes(&flic_tests::fixture::initial_weights());
    for (i, chunk) in bytes.chunks(cfg.chunk_size() as usize).enumerate() {
        f.admin_call::<_, u32>(
            "upload_model_chunk",
            (i as u32, serde_bytes::ByteBuf::from(chunk.to_vec())),
        )
        .unwrap();
    }
    f.admin_call::<_, ()>("start_job", ()).unwrap();
    f.job_id = second_job;
    f.contributors.clear();
    f.add_contributor(0);
    // Same canister, same initial model, same round 0, same contributor: only the job id
    // tells the old signature apart, and it does.
    assert!(matches!(
        f.begin(0, &old),
        Err(SubmitError::WrongJob { .. })
    ));
}
