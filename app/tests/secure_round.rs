//! The app in a secure-aggregation round on a local network, beside two `flic train`
//! contributors: a devnet serves the canister's real wasm over the IC's HTTP interface,
//! every party talks to it through `ic-agent`, and the round's four phases (keys, sealed
//! shares, masked inputs, unmasking) need all three online at once. The app is driven
//! through its accessibility tree like the other UI tests.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use candid::Principal;
use clap::Parser;
use common::{click, config, harness, idle, seeded_home, type_into, wait, wait_for_identity};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use flic_app::FlicApp;
use flic_client::api::AggregatorApi;
use flic_client::cli::Cli;
use flic_client::identity::Identity;
use flic_client::transport::agent::{AgentTransport, Management, Network};
use flic_devnet::server::{self, Background};
use flic_devnet::{Devnet, DevnetConfig};
use flic_protocol::api::{InitArg, InitArgs, RegisterDatasetArgs};
use flic_protocol::Hash;

/// Long enough that nobody's phase runs out on a slow machine: every phase here ends
/// early, once all three participants have acted.
const PHASE_SECS: u64 = 120;

/// Runs `flic ARGS` in this process, as the binary would.
fn flic(args: &[&str]) -> anyhow::Result<()> {
    let cli = Cli::try_parse_from(std::iter::once("flic").chain(args.iter().copied()))?;
    flic_client::commands::run(cli)
}

/// A CSV of 120 samples in `dir` (a cluster seed of its own).
fn write_data(dir: &Path, seed: u8) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let csv = dir.join("data.csv");
    flic_model_zoo::dataset::write_csv(
        &csv,
        &flic_model_zoo::dataset::synthetic_clusters(120, 16, 4, seed as u64),
    )
    .unwrap();
    csv.to_str().unwrap().to_string()
}

/// A contributor's identity file and data in `dir`.
fn contributor(dir: &Path, seed: u8) -> (Identity, String, String) {
    let csv = write_data(dir, seed);
    let identity = Identity::from_seed([seed; 32]);
    let pem = dir.join("identity.pem");
    identity.write_new(&pem).unwrap();
    (identity, pem.to_str().unwrap().to_string(), csv)
}

/// A devnet with the aggregator deployed and a secure-aggregation job of exactly three
/// participants per round started by its controller.
struct SecureJob {
    devnet: Background,
    network: Network,
    canister: Principal,
    canister_id: String,
}

impl SecureJob {
    fn start(root: &Path) -> SecureJob {
        let devnet = Background::start(
            Devnet::start(DevnetConfig::default(), server::wall_clock_ns()).unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .expect("the devnet listens");
        let url = devnet.url();
        let network = Network::parse(&url).unwrap();
        let (admin, admin_pem, _) = contributor(&root.join("admin"), 60);
        let mut management = Management::connect(&network, &admin).unwrap();
        let canister = management.create_canister(100_000_000_000_000).unwrap();
        management
            .install_code(
                canister,
                ic_management_canister_types::CanisterInstallMode::Install,
                flic_aggregator_wasm::AGGREGATOR_WASM,
                candid::encode_one(InitArg::Init(InitArgs::default())).unwrap(),
            )
            .unwrap();
        let canister_id = canister.to_text();
        let phase = PHASE_SECS.to_string();
        flic(&[
            "-q",
            "job",
            "start",
            "--identity",
            &admin_pem,
            "--network",
            &url,
            "--canister",
            &canister_id,
            "--model",
            "linear",
            "--input-shape",
            "16",
            "--classes",
            "4",
            "--min-clients",
            "3",
            "--max-clients",
            "3",
            "--max-weight",
            "1000",
            "--secure-aggregation",
            "--secagg-phase-secs",
            &phase,
        ])
        .expect("starting the job");
        SecureJob {
            devnet,
            network,
            canister,
            canister_id,
        }
    }

    fn url(&self) -> String {
        self.devnet.url()
    }

    fn reader(&self) -> AggregatorApi<AgentTransport> {
        AggregatorApi::new(AgentTransport::connect(&self.network, self.canister, None).unwrap())
    }
}

/// The app connects through the gateway URL and registers the data in `csv`.
fn join_and_register(h: &mut Harness<'_, FlicApp>, job: &SecureJob, csv: &str) {
    wait_for_identity(h);
    click(h, "Gateway URL");
    type_into(h, "URL", &job.url());
    type_into(h, "Canister id", &job.canister_id);
    click(h, "Connect");
    wait(h, "the connection", |a| a.overview.is_some() && idle(a));
    assert!(
        h.state().connection_error.is_none(),
        "{:?}",
        h.state().connection_error
    );
    assert!(h
        .query_by_label_contains("yes: the canister sees only the sum")
        .is_some());
    click(h, "My data");
    type_into(h, "Data file or folder", csv);
    click(h, "Preview");
    wait(h, "the preview", |a| a.preview.is_some() && idle(a));
    click(h, "Register dataset");
    wait(h, "the registration", |a| a.registered.is_some() && idle(a));
    assert!(
        matches!(h.state().registered, Some(Ok(_))),
        "{:?}",
        h.state().registered
    );
}

/// Trains until the app is idle again.
fn train_round(h: &mut Harness<'_, FlicApp>, mut during: impl FnMut(&mut Harness<'_, FlicApp>)) {
    click(h, "Contribute");
    click(h, "Train this round");
    let start = Instant::now();
    while h.state().training || !idle(h.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(6 * PHASE_SECS),
            "the secure round timed out; notes {:?}",
            h.state().notes
        );
        h.step();
        during(h);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_app_takes_part_in_a_secure_aggregation_round_beside_two_flic_train_contributors() {
    let root = tempfile::tempdir().unwrap();
    let job = SecureJob::start(root.path());
    let (url, canister_id, network, canister) = (
        job.url(),
        job.canister_id.clone(),
        job.network.clone(),
        job.canister,
    );
    let mut reader = job.reader();
    let round = reader.round_info().unwrap().round;

    // Two contributors register and run `flic train` in the background: each waits in the
    // key phase for the third participant, the app.
    let others: Vec<_> = (0..2u8)
        .map(|i| {
            let dir = root.path().join(format!("contributor-{i}"));
            let (identity, pem, csv) = contributor(&dir, 61 + i);
            let mut api = AggregatorApi::new(
                AgentTransport::connect(&network, canister, Some(&identity)).unwrap(),
            );
            let data = flic_client::data::load(Path::new(&csv), flic_client::data::DataFormat::Csv)
                .unwrap();
            let id = api
                .register_dataset(&RegisterDatasetArgs {
                    name: format!("lab {i}"),
                    commitment: Hash::new(flic_client::data::dataset_commitment(&data)),
                    sample_count: data.len() as u64,
                    license: "CC-BY-4.0".into(),
                    description: String::new(),
                })
                .unwrap()
                .to_string();
            let work = dir.join("work").to_str().unwrap().to_string();
            let (url, canister_id) = (url.clone(), canister_id.clone());
            std::thread::spawn(move || {
                flic(&[
                    "-q",
                    "train",
                    "--identity",
                    &pem,
                    "--network",
                    &url,
                    "--canister",
                    &canister_id,
                    "--data",
                    &csv,
                    "--format",
                    "csv",
                    "--dataset-id",
                    &id,
                    "--work-dir",
                    &work,
                    "--backend",
                    "cpu",
                ])
            })
        })
        .collect();

    // The app joins through the gateway URL, registers its data and trains the round.
    let home = seeded_home(64);
    let csv = write_data(home.path(), 64);
    let mut h = harness(config(home.path()));
    join_and_register(&mut h, &job, &csv);
    train_round(&mut h, |_| {});
    match &h.state().train_result {
        Some(Ok(_)) => {}
        other => panic!("training failed: {other:?}; notes {:?}", h.state().notes),
    }
    let notes = &h.state().notes;
    for step in [
        "secure aggregation, participant",
        "shares sealed to every participant",
        "masked input committed",
        "shares revealed for the unmasking",
    ] {
        assert!(
            notes.iter().any(|n| n.contains(step)),
            "the app said {step:?}: {notes:?}"
        );
    }
    assert_eq!(h.state().commits.len(), 1);
    assert_eq!(h.state().commits[0].round, round);
    for t in others {
        t.join()
            .unwrap()
            .expect("flic train took part in the round");
    }

    // The round closes once the unmasking is done; the app's receipt then verifies and
    // its share of the new version is a third (three contributors of 120 samples each).
    let closed = Instant::now();
    while reader.round_info().unwrap().round == round {
        assert!(
            closed.elapsed() < Duration::from_secs(2 * PHASE_SECS),
            "round {round} did not close"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    click(&mut h, "Federation");
    click(&mut h, "Refresh");
    wait(&mut h, "the overview after the close", |a| {
        idle(a)
            && a.overview
                .as_ref()
                .is_some_and(|o| o.info.round > round && !o.receipts.is_empty())
    });
    click(&mut h, "What my data built");
    let o = h.state().overview.as_ref().unwrap().clone();
    assert_eq!(o.receipts.len(), 1);
    assert_eq!(o.receipts[0].verified, Ok(()));
    let shaped = flic_app::app::shaped_versions(&o);
    assert_eq!(shaped.len(), 1);
    assert_eq!((shaped[0].mine, shaped[0].total), (120, 360));
    assert!(h.query_by_label("33.3 %").is_some());
}

#[test]
fn stopping_the_app_while_it_waits_for_the_others_keys_leaves_the_round() {
    let root = tempfile::tempdir().unwrap();
    let job = SecureJob::start(root.path());
    let home = seeded_home(66);
    let csv = write_data(home.path(), 66);
    let mut h = harness(config(home.path()));
    join_and_register(&mut h, &job, &csv);
    // Alone, the app advertises its keys and waits for two more participants; Stop ends
    // the wait before it has sealed shares to anyone or trained.
    let mut stopped = false;
    train_round(&mut h, |h| {
        let waiting = h
            .state()
            .notes
            .iter()
            .any(|n| n.contains("waiting for the others' keys"));
        if waiting && !stopped {
            click(h, "Stop after this round");
            stopped = true;
        }
    });
    assert!(
        stopped,
        "the app waited for the others: {:?}",
        h.state().notes
    );
    match &h.state().train_result {
        Some(Err(f)) => assert!(f.message.contains("stopped while waiting"), "{f:?}"),
        other => panic!("expected the stop: {other:?}"),
    }
    assert!(h.state().commits.is_empty());
    let info = job.reader().round_info().unwrap();
    assert_eq!((info.committed, info.pending), (0, 0), "{info:?}");
}
