//! The `flic` binary as a user runs it: identities, a simulation saved to a state
//! directory, and the other commands against that embedded canister.

use std::path::Path;
use std::process::{Command, Output};

fn flic(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flic"))
        .args(args)
        .env("FLIC_HOME", home)
        .env_remove("FLIC_IDENTITY")
        .env_remove("FLIC_NETWORK")
        .env_remove("FLIC_CANISTER")
        .output()
        .expect("run flic")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "flic failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).expect("stdout is JSON")
}

#[test]
fn keygen_whoami_and_refusal_to_overwrite() {
    let home = tempfile::tempdir().unwrap();
    let principal = ok(&flic(&["keygen"], home.path())).trim().to_string();
    let who = json(&flic(&["whoami", "--json"], home.path()));
    assert_eq!(who["principal"], principal);
    assert!(
        !who.to_string().contains("PRIVATE"),
        "no key material in JSON"
    );
    let again = flic(&["keygen"], home.path());
    assert_eq!(again.status.code(), Some(2), "an error exits 2");
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    // The key file is untouched.
    assert_eq!(ok(&flic(&["whoami"], home.path())).trim(), principal);
}

#[test]
fn simulate_then_inspect_register_and_train_against_the_saved_state() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let report = home.path().join("report.json");
    let s = state.to_str().unwrap();
    ok(&flic(
        &[
            "simulate",
            "-q",
            "--clients",
            "2",
            "--rounds",
            "1",
            "--samples",
            "600",
            "--state",
            s,
            "--json",
            report.to_str().unwrap(),
        ],
        home.path(),
    ));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["rounds"].as_array().unwrap().len(), 1);
    let version = report["rounds"][0]["model_version"]
        .as_str()
        .unwrap()
        .to_string();
    for key in [
        "round",
        "test_accuracy",
        "test_loss",
        "contributors",
        "upload_bytes",
        "model_version",
        "instructions",
    ] {
        assert!(
            report["rounds"][0].get(key).is_some(),
            "per-round field {key}"
        );
    }
    assert!(report["final_accuracy"].as_f64().unwrap() > 0.0);

    let embedded = ["--network", "embedded", "--state", s];
    // Queries need no key: without an identity file the reader is anonymous.
    let human = ok(&flic(&[&["status"][..], &embedded].concat(), home.path()));
    assert!(
        human.contains("deadline") && human.contains(" UTC ("),
        "{human}"
    );
    assert!(
        !human
            .lines()
            .any(|l| l.trim_matches(|c: char| "│┆ ".contains(c)).is_empty()),
        "no empty header row:\n{human}"
    );
    let quiet = flic(
        &[&["status", "--quiet"][..], &embedded].concat(),
        home.path(),
    );
    assert!(ok(&quiet).is_empty(), "--quiet prints nothing on stdout");
    assert!(quiet.stderr.is_empty(), "--quiet prints nothing on stderr");
    ok(&flic(&["keygen"], home.path()));
    let status = json(&flic(
        &[&["status", "--json"][..], &embedded].concat(),
        home.path(),
    ));
    assert_eq!(status["round"], 1);
    assert_eq!(status["model_version"], version);
    let rounds = json(&flic(
        &[&["rounds", "--json"][..], &embedded].concat(),
        home.path(),
    ));
    assert_eq!(rounds["rounds"][0]["new_version"], version);

    // The downloaded model is verified and readable as safetensors.
    let out = home.path().join("model.safetensors");
    ok(&flic(
        &[
            &["model", "pull", "-q", "--out", out.to_str().unwrap()][..],
            &embedded,
        ]
        .concat(),
        home.path(),
    ));
    let (spec, weights) = flic_model_zoo::read_safetensors(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(
        hex::encode(flic_protocol::model_version(&spec.spec_id(), &weights)),
        version
    );

    // A new contributor registers local data and trains one round against the same canister.
    let data = flic_model_zoo::dataset::synthetic_clusters(200, 32, 10, 5);
    let csv = home.path().join("mine.csv");
    flic_model_zoo::dataset::write_csv(&csv, &data).unwrap();
    let reg = json(&flic(
        &[
            &[
                "dataset",
                "register",
                "--json",
                "--data",
                csv.to_str().unwrap(),
                "--format",
                "csv",
                "--name",
                "mine",
            ][..],
            &embedded,
        ]
        .concat(),
        home.path(),
    ));
    let id = reg["dataset_id"].as_u64().unwrap().to_string();
    let trained = json(&flic(
        &[
            &[
                "train",
                "-q",
                "--json",
                "--data",
                csv.to_str().unwrap(),
                "--format",
                "csv",
                "--dataset-id",
                &id,
            ][..],
            &embedded,
        ]
        .concat(),
        home.path(),
    ));
    assert_eq!(trained["round"], 1);
    assert_eq!(trained["weight"], 200);
    let status = json(&flic(
        &[&["status", "--json"][..], &embedded].concat(),
        home.path(),
    ));
    assert_eq!(
        status["committed"], 1,
        "the commit was saved to the state directory"
    );

    // Only the controller administers the job: the simulation saved its key.
    let denied = flic(&[&["job", "pause"][..], &embedded].concat(), home.path());
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("not a controller"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    let controller = state.join("controller.pem");
    let as_controller = ["--identity", controller.to_str().unwrap()];
    ok(&flic(
        &[&["job", "pause"][..], &embedded, &as_controller].concat(),
        home.path(),
    ));
    let status = json(&flic(
        &[&["status", "--json"][..], &embedded].concat(),
        home.path(),
    ));
    assert_eq!(status["state"], "Paused");
    ok(&flic(
        &[&["job", "resume"][..], &embedded, &as_controller].concat(),
        home.path(),
    ));
    let status = json(&flic(
        &[&["status", "--json"][..], &embedded].concat(),
        home.path(),
    ));
    assert_eq!(status["state"], "Running");

    // Training on data that differs from the registered commitment is refused.
    let other = home.path().join("other.csv");
    flic_model_zoo::dataset::write_csv(
        &other,
        &flic_model_zoo::dataset::synthetic_clusters(200, 32, 10, 6),
    )
    .unwrap();
    let refused = flic(
        &[
            &[
                "train",
                "-q",
                "--data",
                other.to_str().unwrap(),
                "--format",
                "csv",
                "--dataset-id",
                &id,
            ][..],
            &embedded,
        ]
        .concat(),
        home.path(),
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("does not match"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // A commitment is registered once: registering mine.csv again is refused, typed.
    let again = flic(
        &[
            &[
                "dataset",
                "register",
                "--data",
                csv.to_str().unwrap(),
                "--format",
                "csv",
                "--name",
                "copy",
            ][..],
            &embedded,
        ]
        .concat(),
        home.path(),
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already registered"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // A salted commitment of other.csv: the salt goes to a file, the registered value is
    // not the data's Merkle root, and a sample proof made with the salt verifies against it.
    let salted = json(&flic(
        &[
            &[
                "dataset",
                "register",
                "--json",
                "--salted",
                "--data",
                other.to_str().unwrap(),
                "--format",
                "csv",
                "--name",
                "other",
            ][..],
            &embedded,
        ]
        .concat(),
        home.path(),
    ));
    assert_eq!(salted["salted"], true);
    let salt_file = home.path().join("other.csv.salt");
    assert!(salt_file.exists(), "the salt is kept beside the data");
    let loaded = flic_client::data::load(&other, flic_client::data::DataFormat::Csv).unwrap();
    let root = hex::encode(flic_client::data::dataset_commitment(&loaded));
    assert_ne!(salted["commitment"].as_str().unwrap(), root);
    let salted_id = salted["dataset_id"].as_u64().unwrap().to_string();
    let proof = home.path().join("proof.json");
    ok(&flic(
        &[
            "dataset",
            "prove",
            "--data",
            other.to_str().unwrap(),
            "--format",
            "csv",
            "--salt-file",
            salt_file.to_str().unwrap(),
            "--sample",
            "3",
            "--out",
            proof.to_str().unwrap(),
        ],
        home.path(),
    ));
    let verified = ok(&flic(
        &[
            &[
                "verify",
                "sample",
                proof.to_str().unwrap(),
                "--dataset-id",
                &salted_id,
            ][..],
            &embedded,
        ]
        .concat(),
        home.path(),
    ));
    assert!(verified.contains("sample proof OK"), "{verified}");
}

/// `flic train --encoding topk:...` keeps what each upload leaves unsent in its work
/// directory and adds it to its next round: the residual file is written after the
/// commit, replaced after the next one, and the reports say what was sent.
#[test]
fn train_with_top_k_keeps_its_residual_across_runs() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let s = state.to_str().unwrap();
    ok(&flic(
        &[
            "simulate",
            "-q",
            "--clients",
            "2",
            "--rounds",
            "1",
            "--samples",
            "600",
            "--encoding",
            "topk:0.05,4",
            "--state",
            s,
        ],
        home.path(),
    ));
    let embedded = ["--network", "embedded", "--state", s];
    // Two new contributors, each with their own home (identity) and data.
    let homes = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut ids = Vec::new();
    for (i, h) in homes.iter().enumerate() {
        ok(&flic(&["keygen"], h.path()));
        let csv = h.path().join("mine.csv");
        let data = flic_model_zoo::dataset::synthetic_clusters(200, 32, 10, 20 + i as u64);
        flic_model_zoo::dataset::write_csv(&csv, &data).unwrap();
        let reg = json(&flic(
            &[
                &[
                    "dataset",
                    "register",
                    "--json",
                    "--data",
                    csv.to_str().unwrap(),
                    "--format",
                    "csv",
                    "--name",
                    "mine",
                ][..],
                &embedded,
            ]
            .concat(),
            h.path(),
        ));
        ids.push(reg["dataset_id"].as_u64().unwrap().to_string());
    }
    let train = |i: usize| {
        let h = homes[i].path();
        let csv = h.join("mine.csv");
        let work = h.join("work");
        json(&flic(
            &[
                &[
                    "train",
                    "-q",
                    "--json",
                    "--encoding",
                    "topk:0.05,4",
                    "--backend",
                    "ndarray",
                    "--data",
                    csv.to_str().unwrap(),
                    "--format",
                    "csv",
                    "--dataset-id",
                    &ids[i],
                    "--work-dir",
                    work.to_str().unwrap(),
                ][..],
                &embedded,
            ]
            .concat(),
            h,
        ))
    };
    let residual = homes[0].path().join("work").join("residual.bin");
    let first = train(0);
    assert_eq!(first["encoding"], "topk:13/256,4");
    assert!(first["bytes_per_param"].as_f64().unwrap() < 0.12, "{first}");
    assert!(first["residual_norm"].as_f64().unwrap() > 0.0, "{first}");
    // The embedded canister counts instructions, so execution cycles are known too.
    assert!(first["instructions"].as_u64().unwrap() > 0, "{first}");
    assert!(first["execution_cycles"].as_u64().unwrap() > first["instructions"].as_u64().unwrap());
    assert!(first["ingress_cycles"].as_u64().unwrap() > 0);
    let kept = std::fs::read(&residual).expect("the residual is saved after the commit");
    // The second contributor closes round 1; the first trains round 2 with its residual.
    train(1);
    let second = train(0);
    assert_eq!(second["round"], 2);
    let kept_again = std::fs::read(&residual).unwrap();
    assert_ne!(kept, kept_again, "the next commit replaces the residual");
    // An encoding the job does not allow is refused before training, saying what it allows.
    let refused = flic(
        &[
            &[
                "train",
                "-q",
                "--encoding",
                "int4",
                "--data",
                homes[0].path().join("mine.csv").to_str().unwrap(),
                "--format",
                "csv",
                "--dataset-id",
                &ids[0],
            ][..],
            &embedded,
        ]
        .concat(),
        homes[0].path(),
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("int4") && err.contains("allows"), "{err}");
    // A malformed encoding is a usage error (exit 2) that says what is accepted.
    let bad = flic(
        &["train", "--encoding", "topk:2", "--dataset-id", "1"],
        home.path(),
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("(0, 1]"));
}
