//! The desktop app as a contributor uses it, driven headless through its accessibility
//! tree (`egui_kittest`): widgets are found by their labels and clicked or typed into, and
//! the app talks to the canister's real wasm in an embedded IC saved by `flic simulate`.
//! Training is real burn training on the CPU; signatures, certificates and receipts are
//! the library's real ones.

mod common;

use std::time::{Duration, Instant};

use common::{
    click, config, harness, idle, seeded_home, settle, simulated_state, type_into, wait,
    wait_for_identity,
};
use egui_kittest::kittest::Queryable;
use flic_app::app::{IdentityState, NetworkChoice};
use flic_app::failure::FailureKind;
use flic_app::Page;

#[test]
fn a_contributor_joins_registers_trains_and_sees_what_the_data_built() {
    let home = tempfile::tempdir().unwrap();
    let state = simulated_state(home.path());
    let data = flic_model_zoo::dataset::synthetic_clusters(200, 32, 10, 5);
    let csv = home.path().join("clinic.csv");
    flic_model_zoo::dataset::write_csv(&csv, &data).unwrap();
    let mut h = harness(config(home.path()));

    // First start: no identity yet, so the app offers to create one.
    wait(&mut h, "the identity check", |a| {
        a.identity == IdentityState::Missing && idle(a)
    });
    click(&mut h, "Create a new identity");
    wait(&mut h, "the new identity", |a| {
        matches!(a.identity, IdentityState::Loaded(_)) && idle(a)
    });
    let pem = home.path().join("identity.pem");
    let me = flic_client::identity::Identity::load(&pem)
        .unwrap()
        .principal()
        .to_text();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&pem).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "only the owner reads the key");
    }
    assert!(h.query_by_label(&format!("you: {me}")).is_some());

    // Connect to the saved embedded IC; the job's facts come certificate-checked.
    assert_eq!(h.state().network, NetworkChoice::Embedded);
    type_into(&mut h, "State folder", state.to_str().unwrap());
    click(&mut h, "Connect");
    wait(&mut h, "the connection", |a| {
        a.overview.is_some() && idle(a)
    });
    assert!(h.state().connection_error.is_none());
    assert!(h
        .query_by_label_contains("Verified: job, round, model version")
        .is_some());
    let version_before = h.state().overview.as_ref().unwrap().info.model_version;
    let round = h.state().overview.as_ref().unwrap().info.round;
    let arch = h
        .state()
        .overview
        .as_ref()
        .unwrap()
        .info
        .config
        .as_ref()
        .unwrap()
        .model_spec
        .architecture
        .clone();
    assert!(
        h.query_by_label(&arch).is_some(),
        "the model ({arch}) is shown"
    );
    assert!(h
        .query_by_label(&hex::encode(version_before.unwrap().as_slice()))
        .is_some());

    // My data: preview, then register with a progress phase and a commitment.
    click(&mut h, "My data");
    assert_eq!(h.state().page, Page::Data);
    type_into(&mut h, "Data file or folder", csv.to_str().unwrap());
    click(&mut h, "Preview");
    wait(&mut h, "the preview", |a| a.preview.is_some() && idle(a));
    assert!(
        h.query_by_label("200 samples, shape [32], 10 classes")
            .is_some(),
        "{:?}",
        h.state().preview
    );
    let expected = flic_client::data::dataset_commitment(&data);
    assert!(h
        .query_by_label(&format!("unsalted commitment {}", hex::encode(expected)))
        .is_some());
    assert_eq!(h.state().dataset_name, "clinic", "named after the file");
    click(&mut h, "Register dataset");
    wait(&mut h, "the registration and the fresh overview", |a| {
        a.registered.is_some()
            && idle(a)
            && a.overview.as_ref().is_some_and(|o| !o.datasets.is_empty())
    });
    let id = match &h.state().registered {
        Some(Ok(id)) => *id,
        other => panic!("registration failed: {other:?}"),
    };
    assert!(h.query_by_label(&format!("Revoke {id}")).is_some());
    let mine = h.state().overview.as_ref().unwrap().datasets.clone();
    assert_eq!(mine.len(), 1, "only my datasets are listed");
    assert_eq!(*mine[0].commitment, expected);
    assert!(
        h.state()
            .notes
            .iter()
            .any(|n| *n == format!("commitment {} over 200 samples", hex::encode(expected))),
        "the commitment phase reported: {:?}",
        h.state().notes
    );

    // Sample proofs: one sample proven in the registered dataset, the proof checked, and a
    // tampered copy refused.
    type_into(&mut h, "Sample number", "many");
    assert!(h
        .query_by_label("The sample number is a whole number, 0 or more.")
        .is_some());
    h.state_mut().prove_index.clear();
    type_into(&mut h, "Sample number", "3");
    click(&mut h, "Write sample proof");
    wait(&mut h, "the sample proof", |a| {
        a.proved.is_some() && idle(a)
    });
    let proved = h
        .state()
        .proved
        .clone()
        .unwrap()
        .expect("the proof is written");
    assert!(
        proved.contains(&format!("sample 3 of 200 is in your dataset {id}")),
        "{proved}"
    );
    let proof_file = flic_app::app::default_proof_path(&csv, 3);
    let proof = flic_client::data::read_sample_proof(&proof_file).unwrap();
    flic_proofs::sample::verify_sample_in_dataset(&proof, &expected, 200).unwrap();
    type_into(&mut h, "Proof to check", proof_file.to_str().unwrap());
    click(&mut h, "Check sample proof");
    wait(&mut h, "the proof check", |a| {
        a.proof_checked.is_some() && idle(a)
    });
    let checked = h
        .state()
        .proof_checked
        .clone()
        .unwrap()
        .expect("the proof holds");
    assert!(
        checked.contains(&format!(
            "sample 3 is in dataset {id} (`clinic`, owner {me})"
        )),
        "{checked}"
    );
    let mut tampered = proof.clone();
    tampered.sample[0] ^= 1;
    std::fs::write(&proof_file, serde_json::to_vec(&tampered).unwrap()).unwrap();
    click(&mut h, "Check sample proof");
    wait(&mut h, "the tampered proof check", |a| {
        a.proof_checked.is_some() && idle(a)
    });
    assert!(
        matches!(&h.state().proof_checked, Some(Err(f)) if f.message.contains("does not verify")),
        "{:?}",
        h.state().proof_checked
    );
    assert!(h.query_by_label("The sample proof does not hold").is_some());

    // Contribute: train the open round, with progress and a loss curve, off the UI thread.
    click(&mut h, "Contribute");
    let auto = h.state().overview.as_ref().unwrap().auto_backend.clone();
    let backend = h.get_by_label("Backend");
    assert_eq!(
        backend.value().as_deref(),
        Some(format!("auto: {auto}").as_str()),
        "auto's pick is shown: {backend:?}"
    );
    let preferred = h.get_by_label("Encoding").value().unwrap_or_default();
    assert!(
        preferred.starts_with("the job's preferred: "),
        "{preferred}"
    );
    // A bad upload limit is caught before anything starts.
    type_into(&mut h, "Upload limit (KiB/s)", "fast");
    assert!(h
        .query_by_label("The upload limit is a whole number of KiB/s, at least 1.")
        .is_some());
    h.state_mut().upload_limit.clear();
    type_into(&mut h, "Upload limit (KiB/s)", "4096");
    assert_eq!(
        flic_app::app::upload_rate(&h.state().upload_limit),
        Some(4096 * 1024)
    );
    click(&mut h, "Train this round");
    assert!(h.state().training);
    let start = Instant::now();
    while h.state().training || !idle(h.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "training timed out"
        );
        // The window keeps drawing while the worker trains.
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    settle(&mut h);
    match &h.state().train_result {
        Some(Ok(_)) => {}
        other => panic!("training failed: {other:?}; notes {:?}", h.state().notes),
    }
    // The phases can start and end between two frames on a fast machine, so what is checked
    // is what every phase leaves behind: its summary in the activity log.
    assert!(
        h.state()
            .notes
            .iter()
            .any(|n| n.starts_with("trained 200 samples")),
        "the training phase reported: {:?}",
        h.state().notes
    );
    let app = h.state();
    assert!(app.backend_used.is_some());
    assert_eq!(app.commits.len(), 1);
    assert_eq!(app.commits[0].round, round);
    assert_eq!(app.commits[0].weight, 200);
    assert!(
        app.commits[0].round_closed,
        "max_clients 1: the commit closed it"
    );
    assert!(
        app.losses.len() >= 200 / 32,
        "one loss per batch: {}",
        app.losses.len()
    );
    assert!(h.query_by_label("loss curve").is_some());

    // What my data built: the receipt verifies; the new version is 100 % mine.
    wait(&mut h, "the overview after the commit", |a| {
        a.overview.as_ref().is_some_and(|o| o.info.round > round)
    });
    click(&mut h, "What my data built");
    let o = h.state().overview.as_ref().unwrap().clone();
    assert_eq!(o.info.round, round + 1);
    assert_eq!(o.contributions.len(), 1);
    assert_eq!(
        o.receipts.len(),
        1,
        "the receipt was collected once the round closed"
    );
    assert_eq!(o.receipts[0].verified, Ok(()));
    assert!(o.receipts[0].path.starts_with(home.path().join("work")));
    assert!(h.query_by_label("verified").is_some());
    let shaped = flic_app::app::shaped_versions(&o);
    assert_eq!(shaped.len(), 1);
    assert_eq!(shaped[0].round, round);
    assert_eq!(shaped[0].share(), 1.0);
    assert_eq!(
        shaped[0].version,
        o.info.model_version.unwrap().as_slice().to_vec()
    );
    assert!(h.query_by_label("100.0 %").is_some());

    // Recompute the current model from its lineage: the simulation's round, then mine.
    click(&mut h, "Recompute from the lineage");
    wait(&mut h, "the recomputation", |a| {
        a.recomputed.is_some() && idle(a)
    });
    let recomputed = h
        .state()
        .recomputed
        .clone()
        .unwrap()
        .expect("it recomputes");
    let total: u64 = o.rounds.iter().map(|r| r.total_weight).sum();
    assert!(
        recomputed.contains(&format!(
            "through {} certified round(s); your data weighs 200 of {total}",
            o.rounds.len()
        )),
        "{recomputed}"
    );
    assert!(total > 200, "the simulation's contributor weighs in too");

    // Export the current model; it reads back as the certified version.
    let out = home.path().join("exported.safetensors");
    h.state_mut().export_path.clear();
    type_into(&mut h, "File", out.to_str().unwrap());
    click(&mut h, "Export safetensors");
    wait(&mut h, "the export", |a| a.exported.is_some() && idle(a));
    assert!(
        matches!(h.state().exported, Some(Ok(_))),
        "{:?}",
        h.state().exported
    );
    let (spec, weights) = flic_model_zoo::read_safetensors(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(
        flic_protocol::model_version(&spec.spec_id(), &weights),
        *o.info.model_version.unwrap()
    );

    // Revoke, confirming first; the dataset takes no further contributions.
    click(&mut h, "My data");
    click(&mut h, &format!("Revoke {id}"));
    assert!(
        h.query_by_label("revoked").is_none(),
        "not before confirming"
    );
    click(&mut h, &format!("Confirm revoking {id}"));
    wait(&mut h, "the revocation and the fresh overview", |a| {
        a.revoked.is_some()
            && idle(a)
            && a.overview
                .as_ref()
                .is_some_and(|o| o.datasets.iter().all(|d| d.revoked_at_ns.is_some()))
    });
    assert!(matches!(h.state().revoked, Some(Ok(r)) if r == id));
    assert!(h.query_by_label("revoked").is_some());
    click(&mut h, "Contribute");
    assert!(h
        .query_by_label("Register a dataset under My data first.")
        .is_some());
}

#[test]
fn an_unreachable_network_is_a_clear_state_and_changes_nothing() {
    let home = seeded_home(3);
    let mut h = harness(config(home.path()));
    wait_for_identity(&mut h);
    click(&mut h, "Gateway URL");
    // Port 9 (discard) on loopback: nothing listens there.
    type_into(&mut h, "URL", "http://127.0.0.1:9");
    type_into(&mut h, "Canister id", "ryjl3-tyaaa-aaaaa-aaaba-cai");
    click(&mut h, "Connect");
    wait(&mut h, "the failed connection", |a| {
        a.connection_error.is_some() && idle(a)
    });
    let f = h.state().connection_error.clone().unwrap();
    assert_eq!(f.kind, FailureKind::NetworkDown, "{f:?}");
    assert!(h.query_by_label("Cannot reach the federation").is_some());
    assert!(h.state().overview.is_none());
    // The other pages need a connection.
    click(&mut h, "My data");
    assert_eq!(h.state().page, Page::Federation);
}

#[test]
fn a_missing_state_folder_says_what_to_do() {
    let home = seeded_home(4);
    let mut h = harness(config(home.path()));
    wait_for_identity(&mut h);
    type_into(
        &mut h,
        "State folder",
        home.path().join("nowhere").to_str().unwrap(),
    );
    click(&mut h, "Connect");
    wait(&mut h, "the failed connection", |a| {
        a.connection_error.is_some() && idle(a)
    });
    let f = h.state().connection_error.clone().unwrap();
    assert!(f.message.contains("loading the embedded IC state"), "{f:?}");
}

#[test]
fn importing_an_identity_copies_it_with_owner_only_access() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = home.path().join("old.pem");
    let id = flic_client::identity::Identity::from_seed([5; 32]);
    id.write_new(&elsewhere).unwrap();
    let mut h = harness(config(home.path()));
    wait(&mut h, "the identity check", |a| {
        a.identity == IdentityState::Missing && idle(a)
    });
    // A file that is not an identity is refused, and nothing is written.
    let junk = home.path().join("junk.pem");
    std::fs::write(&junk, "not a key").unwrap();
    type_into(&mut h, "Import a PEM file:", junk.to_str().unwrap());
    click(&mut h, "Import");
    wait(&mut h, "the refusal", |a| {
        matches!(a.identity, IdentityState::Failed(_)) && idle(a)
    });
    assert!(!home.path().join("identity.pem").exists());
    h.state_mut().import_path.clear();
    type_into(&mut h, "Import a PEM file:", elsewhere.to_str().unwrap());
    click(&mut h, "Import");
    wait(&mut h, "the import", |a| {
        matches!(a.identity, IdentityState::Loaded(_)) && idle(a)
    });
    let IdentityState::Loaded(v) = &h.state().identity else {
        unreachable!()
    };
    assert_eq!(v.principal, id.principal().to_text());
}

#[test]
fn keyboard_alone_reaches_the_connect_button() {
    let home = seeded_home(6);
    let mut h = harness(config(home.path()));
    wait_for_identity(&mut h);
    h.run();
    // Tab moves focus through every widget; Connect is among them.
    let mut reached = false;
    for _ in 0..20 {
        h.key_press(egui::Key::Tab);
        h.run();
        if h.get_by_label("Connect").is_focused() {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab reaches Connect");
    // Enter... egui buttons take Space or Enter when focused.
    h.key_press(egui::Key::Enter);
    settle(&mut h);
    wait(&mut h, "the connection attempt", |a| {
        a.connection_error.is_some() && idle(a)
    });
    assert!(
        h.state()
            .connection_error
            .as_ref()
            .unwrap()
            .message
            .contains("--state"),
        "an empty state folder is refused with what is missing"
    );
}
