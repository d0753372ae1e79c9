//! A contributor that stops mid-upload (a crash) resumes from the chunks the canister
//! already has, and its submission commits exactly once. Uses the client's own upload
//! path against the release wasm in the embedded IC.

use flic_client::api::{AggregatorApi, ApiError};
use flic_client::identity::Identity;
use flic_client::participant::{prepare_submission, upload};
use flic_client::transport::embedded::{share, EmbeddedTransport};
use flic_embedded_ic::{EmbeddedIc, InstallMode};
use flic_protocol::api::{InitArg, InitArgs, RegisterDatasetArgs, SubmitError};
use flic_protocol::{DeltaEncoding, Hash};
use flic_tests::fixture::{delta, initial_weights, job, SAMPLES};

#[test]
fn interrupted_upload_resumes_and_commits_once() {
    let admin = Identity::from_seed([1; 32]);
    let mut ic = EmbeddedIc::new();
    let canister = ic.create_canister(vec![admin.principal()]);
    let init = candid::encode_one(InitArg::Init(InitArgs::default())).unwrap();
    ic.install_code(
        canister,
        flic_aggregator_wasm::AGGREGATOR_WASM,
        init,
        InstallMode::Install,
        admin.principal(),
    )
    .unwrap();
    let ic = share(ic);
    let mut admin_api = AggregatorApi::new(EmbeddedTransport::new(
        ic.clone(),
        canister,
        admin.principal(),
    ));
    let job = job();
    admin_api.configure_job(&job).unwrap();
    admin_api
        .upload_initial_model(&initial_weights(), job.chunk_size())
        .unwrap();
    admin_api.start_job().unwrap();

    let me = Identity::from_seed([2; 32]);
    let mut api = AggregatorApi::new(EmbeddedTransport::new(ic, canister, me.principal()));
    let dataset_id = api
        .register_dataset(&RegisterDatasetArgs {
            name: "mine".into(),
            commitment: Hash::new([3; 32]),
            sample_count: SAMPLES,
            license: "CC0".into(),
            description: String::new(),
        })
        .unwrap();
    let info = api.round_info().unwrap();
    let base = api.download_model(&mut |_, _| {}).unwrap().weights;
    let trained: Vec<f32> = base.iter().zip(delta(0, 0)).map(|(w, d)| w + d).collect();
    let prepared = prepare_submission(
        &me,
        canister,
        &info,
        dataset_id,
        SAMPLES,
        &base,
        &trained,
        DeltaEncoding::F32,
        None,
    )
    .unwrap();
    let total = prepared.header.chunk_count;
    assert!(total >= 3, "the test needs several chunks, got {total}");

    // The "crash": stop before the third chunk.
    let stopped = upload(&mut api, &prepared, &mut |_, _| {}, &mut |index| index < 2).unwrap();
    assert!(stopped.is_none());
    let status = api.begin_submission(&prepared.begin_args()).unwrap();
    assert_eq!(status.stored_chunks, vec![0, 1]);
    assert!(!status.committed);

    // The restarted client sends only what is missing.
    let done = upload(&mut api, &prepared, &mut |_, _| {}, &mut |_| true)
        .unwrap()
        .expect("committed");
    assert_eq!(done.chunks_resumed, 2);
    assert_eq!(done.chunks_sent, total - 2);
    assert_eq!(done.receipt.round, 0);
    assert_eq!(api.round_info().unwrap().committed, 1);

    // Running it a third time cannot commit twice.
    let again = upload(&mut api, &prepared, &mut |_, _| {}, &mut |_| true);
    assert!(
        matches!(
            again,
            Err(ApiError::Submit(SubmitError::DuplicateSubmission {
                committed: true,
                ..
            }))
        ),
        "{again:?}"
    );
    assert_eq!(api.round_info().unwrap().committed, 1);
}
