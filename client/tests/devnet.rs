//! The `flic` binary against `flic devnet`, every party in its own process and every
//! call through `ic-agent` over HTTP: the path a contributor takes to a deployed canister.
//! A controller deploys and starts a job, three contributors register and train, rounds
//! close on the canister's timer in wall-clock time, and the results verify against the
//! devnet's root key; then the devnet is killed and restarted from its state directory
//! and the canister upgraded mid-round, and nothing is lost.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn flic(args: &[&str], home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_flic"));
    c.args(args)
        .env("FLIC_HOME", home)
        .env("FLIC_NO_PROGRESS", "true")
        .env_remove("FLIC_IDENTITY")
        .env_remove("FLIC_NETWORK")
        .env_remove("FLIC_CANISTER")
        .env_remove("FLIC_STATE");
    c
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "flic failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn run(args: &[&str], home: &Path) -> String {
    ok(flic(args, home).output().expect("run flic"))
}

fn json(args: &[&str], home: &Path) -> serde_json::Value {
    serde_json::from_str(&run(args, home)).expect("stdout is JSON")
}

/// `flic devnet` in a child process, killed (SIGKILL: no goodbye save) on drop.
struct Devnet {
    child: Child,
    url: String,
}

impl Devnet {
    fn start(state: &Path, home: &Path) -> Devnet {
        let mut child = flic(
            &[
                "devnet",
                "--listen",
                "127.0.0.1:0",
                "--state",
                state.to_str().unwrap(),
                "--json",
                "--no-request-log",
            ],
            home,
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start flic devnet");
        // The first thing on stdout is one JSON object saying where it listens.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut text = String::new();
        let started: serde_json::Value = loop {
            let line = lines
                .next()
                .expect("the devnet prints its address")
                .unwrap();
            text.push_str(&line);
            if let Ok(v) = serde_json::from_str(&text) {
                break v;
            }
        };
        Devnet {
            child,
            url: started["url"].as_str().unwrap().to_string(),
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `flic status` until `done` holds for its JSON (rounds close on the canister's
/// timer, in wall-clock time).
fn wait_for(
    target: &[&str],
    home: &Path,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let status = json(&[&["status", "--json"][..], target].concat(), home);
        if done(&status) {
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}: {status}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

struct Contributor {
    home: PathBuf,
    csv: PathBuf,
    dataset_id: String,
}

#[test]
fn a_federation_of_processes_through_the_devnet_survives_kill_restart_and_upgrade() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("devnet-state");
    let admin = root.path().join("admin");
    run(&["keygen"], &admin);
    let devnet = Devnet::start(&state, &admin);
    let url = devnet.url.clone();

    // The controller deploys the canister wasm built into flic and starts a job whose
    // rounds last 6 s: they close on the canister's timer.
    let deployed = json(&["deploy", "--network", &url, "--json"], &admin);
    let canister = deployed["canister"].as_str().unwrap().to_string();
    let target = ["--network", url.as_str(), "--canister", canister.as_str()];
    run(
        &[
            &[
                "job",
                "start",
                "--input-shape",
                "16",
                "--classes",
                "4",
                "--hidden",
                "8",
                "--min-clients",
                "3",
                "--max-clients",
                "10",
                "--round-seconds",
                "6",
                "--retain-contributions",
            ][..],
            &target,
        ]
        .concat(),
        &admin,
    );

    // Three contributors, each with its own key and data, register their datasets.
    let contributors: Vec<Contributor> = (0..3)
        .map(|i| {
            let home = root.path().join(format!("contributor{i}"));
            run(&["keygen"], &home);
            let csv = home.join("data.csv");
            let data = flic_model_zoo::dataset::synthetic_clusters(120, 16, 4, 100 + i);
            flic_model_zoo::dataset::write_csv(&csv, &data).unwrap();
            let reg = json(
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
                        &format!("clinic {i}"),
                    ][..],
                    &target,
                ]
                .concat(),
                &home,
            );
            Contributor {
                dataset_id: reg["dataset_id"].as_u64().unwrap().to_string(),
                home,
                csv,
            }
        })
        .collect();
    let train = |c: &Contributor, rounds: &str, target: &[&str]| {
        flic(
            &[
                &[
                    "train",
                    "-q",
                    "--json",
                    "--rounds",
                    rounds,
                    "--data",
                    c.csv.to_str().unwrap(),
                    "--format",
                    "csv",
                    "--dataset-id",
                    &c.dataset_id,
                ][..],
                target,
            ]
            .concat(),
            &c.home,
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flic train")
    };

    // All three train rounds 0 and 1 at once; each waits for the timer to close round 0.
    let children: Vec<Child> = contributors
        .iter()
        .map(|c| train(c, "2", &target))
        .collect();
    for child in children {
        ok(child.wait_with_output().unwrap());
    }
    let status = wait_for(&target, &admin, "round 1 to close", |s| {
        s["round"].as_u64() >= Some(2)
    });
    let rounds = json(&[&["rounds", "--json"][..], &target].concat(), &admin);
    let rounds = rounds["rounds"].as_array().unwrap().clone();
    assert_eq!(rounds.len(), 2);
    for r in &rounds {
        assert_eq!(r["contributions"], 3, "{r}");
        assert_eq!(r["total_weight"], 360);
    }
    assert_eq!(
        rounds[1]["new_version"], status["model_version"],
        "the current model is round 1's"
    );

    // The model downloads and verifies; round 0's receipts verify against the devnet's
    // certified history; the lineage of the current model recomputes bit for bit.
    let model = root.path().join("model.safetensors");
    run(
        &[
            &["model", "pull", "--out", model.to_str().unwrap()][..],
            &target,
        ]
        .concat(),
        &admin,
    );
    assert!(std::fs::metadata(&model).unwrap().len() > 0);
    for c in &contributors {
        let receipts: Vec<PathBuf> = std::fs::read_dir(c.home.join("work").join("receipts"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("receipt-round"))
            })
            .collect();
        assert_eq!(
            receipts.len(),
            1,
            "round 0's receipt was collected in round 1"
        );
        run(
            &[
                &["verify", "receipt", receipts[0].to_str().unwrap()][..],
                &target,
            ]
            .concat(),
            &c.home,
        );
    }
    let version = status["model_version"].as_str().unwrap();
    let lineage = json(
        &[
            &["verify", "lineage", "--json", "--version", version][..],
            &target,
        ]
        .concat(),
        &admin,
    );
    assert_eq!(lineage["recomputed"], true, "{lineage}");
    assert_eq!(lineage["contributions"].as_array().unwrap().len(), 6);

    // Round 2: two contributions staged, then the devnet is killed without warning.
    for c in &contributors[..2] {
        ok(train(c, "1", &target).wait_with_output().unwrap());
    }
    let before = wait_for(&target, &admin, "two commits", |s| s["committed"] == 2);
    devnet.kill();
    let devnet = Devnet::start(&state, &admin);
    let target = [
        "--network",
        devnet.url.as_str(),
        "--canister",
        canister.as_str(),
    ];
    let after = json(&[&["status", "--json"][..], &target].concat(), &admin);
    for key in ["round", "model_version", "committed", "job_id"] {
        assert_eq!(after[key], before[key], "{key} survives a kill and restart");
    }

    // An upgrade through install_code mid-round keeps the staged contributions.
    let upgraded = json(
        &[&["deploy", "--json", "--mode", "upgrade"][..], &target].concat(),
        &admin,
    );
    assert_eq!(upgraded["mode"], "upgrade");
    let after = json(&[&["status", "--json"][..], &target].concat(), &admin);
    assert_eq!(
        after["committed"], 2,
        "the staged uploads survive the upgrade"
    );
    assert_eq!(after["round"], before["round"]);

    // The third contributor completes round 2; its timer closes it on the restarted devnet.
    ok(train(&contributors[2], "1", &target)
        .wait_with_output()
        .unwrap());
    let closed = wait_for(&target, &admin, "round 2 to close", |s| {
        s["round"].as_u64() >= Some(3)
    });
    assert_ne!(closed["model_version"], before["model_version"]);
    let rounds = json(&[&["rounds", "--json"][..], &target].concat(), &admin);
    let last = &rounds["rounds"].as_array().unwrap()[2];
    assert_eq!(last["contributions"], 3, "{last}");
}

#[test]
fn simulate_against_the_devnet_ends_on_the_embedded_runs_model_versions() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path();
    let devnet = Devnet::start(&home.join("devnet-state"), home);
    let versions = |network: Option<&str>, name: &str| {
        let report = home.join(name);
        let mut args = vec![
            "simulate",
            "-q",
            "--clients",
            "3",
            "--rounds",
            "2",
            "--samples",
            "600",
            "--seed",
            "11",
            "--aggregation",
            "median",
            "--json",
            report.to_str().unwrap(),
        ];
        if let Some(url) = network {
            args.extend(["--network", url]);
        }
        run(&args, home);
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        report["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["model_version"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let over_http = versions(Some(&devnet.url), "devnet.json");
    let in_process = versions(None, "embedded.json");
    assert_eq!(over_http.len(), 2);
    assert_eq!(
        over_http, in_process,
        "the same seed gives the same model versions over HTTP and in process"
    );
}

/// Central DP over HTTP: each round's noise seed comes from the devnet's `raw_rand` (the
/// operating system's randomness there), and `flic verify privacy` recomputes the certified
/// budget through `ic-agent`.
#[test]
fn a_dp_federation_over_the_devnet_certifies_its_budget_through_ic_agent() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path();
    let devnet = Devnet::start(&home.join("devnet-state"), home);
    let report_path = home.join("dp.json");
    run(
        &[
            "simulate",
            "-q",
            "--clients",
            "3",
            "--rounds",
            "2",
            "--samples",
            "600",
            "--dp",
            "central",
            "--dp-epsilon",
            "30",
            "--network",
            &devnet.url,
            "--json",
            report_path.to_str().unwrap(),
        ],
        home,
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let spent: Vec<f64> = report["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["epsilon_spent"]
                .as_f64()
                .expect("each round certifies epsilon")
        })
        .collect();
    assert_eq!(spent.len(), 2);
    assert!(spent[0] < spent[1] && spent[1] <= 30.0, "{spent:?}");
    let canister = report["canister_id"].as_str().unwrap();
    let v = json(
        &[
            "verify",
            "privacy",
            "--network",
            &devnet.url,
            "--canister",
            canister,
            "--json",
        ],
        home,
    );
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["rounds"], 2);
    assert_eq!(v["epsilon_spent"].as_f64(), Some(spent[1]));
    assert_eq!(v["history"].as_array().unwrap().len(), 2);

    // A controller's `flic job start --dp`: the noise calibrated so that exactly 10 rounds
    // fit, every contribution weighing 1, and the budget in `flic status`.
    let admin = home.join("admin");
    run(&["keygen"], &admin);
    let deployed = json(&["deploy", "--network", &devnet.url, "--json"], &admin);
    let canister = deployed["canister"].as_str().unwrap().to_string();
    let target = [
        "--network",
        devnet.url.as_str(),
        "--canister",
        canister.as_str(),
    ];
    let start = [
        "job",
        "start",
        "--input-shape",
        "16",
        "--classes",
        "4",
        "--dp",
        "central",
        "--dp-epsilon",
        "8",
        "--dp-rounds",
        "10",
    ];
    run(&[&start[..], &target].concat(), &admin);
    let status = json(&[&["status", "--json"][..], &target].concat(), &admin);
    let p = &status["privacy"];
    assert_eq!(p["mode"], "central", "{status}");
    assert_eq!(p["target_epsilon"].as_f64(), Some(8.0));
    assert_eq!(p["rounds_within_budget"].as_u64(), Some(10));
    assert_eq!(p["epsilon_spent"].as_f64(), Some(0.0));
    // --dp needs a budget: a usage error (exit 2) before anything is sent.
    let out = flic(&[&start[..8], &target].concat(), &admin)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn secure_aggregation_over_the_devnet_ends_phases_on_its_timers_through_ic_agent() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path();
    let devnet = Devnet::start(&home.join("devnet-state"), home);
    let report_path = home.join("secagg.json");
    // Five contributors through ic-agent; one drops out of each round before its masked
    // input, so that phase ends on the canister's timer, in wall-clock time.
    run(
        &[
            "simulate",
            "-q",
            "--clients",
            "5",
            "--rounds",
            "2",
            "--samples",
            "500",
            "--secure-aggregation",
            "--dropouts",
            "1",
            "--secagg-phase-secs",
            "8",
            "--network",
            &devnet.url,
            "--json",
            report_path.to_str().unwrap(),
        ],
        home,
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let rounds = report["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2);
    for r in rounds {
        assert_eq!(r["contributors"], 4, "{r}");
        // The masked-input phase waited for its deadline.
        assert!(r["open_seconds"].as_f64().unwrap() >= 8.0, "{r}");
    }
    let canister = report["canister_id"].as_str().unwrap();
    let target = ["--network", devnet.url.as_str(), "--canister", canister];
    let status = json(&[&["status", "--json"][..], &target].concat(), home);
    assert_eq!(status["round"], 2, "{status}");
}

#[test]
fn a_contributor_killed_mid_upload_resumes_against_the_restarted_devnet() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("devnet-state");
    let admin = root.path().join("admin");
    run(&["keygen"], &admin);
    let devnet = Devnet::start(&state, &admin);
    let canister = json(&["deploy", "--network", &devnet.url, "--json"], &admin)["canister"]
        .as_str()
        .unwrap()
        .to_string();
    let target = |url: &str| {
        vec![
            "--network".to_string(),
            url.to_string(),
            "--canister".to_string(),
            canister.clone(),
        ]
    };
    let with = |args: &[&str], url: &str| -> Vec<String> {
        args.iter()
            .map(|s| s.to_string())
            .chain(target(url))
            .collect()
    };
    let strs = |v: &[String]| {
        v.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\u{0}")
    };
    let call = |v: Vec<String>, home: &Path| {
        let joined = strs(&v);
        let args: Vec<&str> = joined.split('\u{0}').collect();
        json(&args, home)
    };
    // f32 deltas in 1 KiB chunks: a 1,348-parameter model is six chunks.
    let start = with(
        &[
            "job",
            "start",
            "--input-shape",
            "16",
            "--classes",
            "4",
            "--hidden",
            "64",
            "--min-clients",
            "1",
            "--max-clients",
            "2",
            "--encodings",
            "f32",
            "--chunk-size",
            "1024",
        ],
        &devnet.url,
    );
    let joined = strs(&start);
    run(&joined.split('\u{0}').collect::<Vec<_>>(), &admin);

    let home = root.path().join("contributor");
    run(&["keygen"], &home);
    let csv = home.join("data.csv");
    flic_model_zoo::dataset::write_csv(
        &csv,
        &flic_model_zoo::dataset::synthetic_clusters(100, 16, 4, 3),
    )
    .unwrap();
    let csv = csv.to_str().unwrap();
    let reg = call(
        with(
            &[
                "dataset", "register", "--json", "--data", csv, "--format", "csv", "--name", "d",
            ],
            &devnet.url,
        ),
        &home,
    );
    let dataset = reg["dataset_id"].as_u64().unwrap().to_string();
    let train_args = |url: &str, rate: Option<&str>| {
        let mut v = with(
            &[
                "train",
                "-q",
                "--json",
                "--data",
                csv,
                "--format",
                "csv",
                "--dataset-id",
                &dataset,
            ],
            url,
        );
        if let Some(rate) = rate {
            v.extend(["--max-upload-rate".to_string(), rate.to_string()]);
        }
        v
    };

    // At 1 KiB/s the upload takes about five seconds: kill the contributor and the
    // devnet once it is under way.
    let args = train_args(&devnet.url, Some("1024"));
    let mut contributor = flic(&args.iter().map(String::as_str).collect::<Vec<_>>(), &home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status_args = with(&["status", "--json"], &devnet.url);
    let status_args: Vec<&str> = status_args.iter().map(String::as_str).collect();
    let under_way = wait_for(&status_args[2..], &admin, "the upload to start", |s| {
        s["pending"] == 1
    });
    assert_eq!(under_way["committed"], 0);
    std::thread::sleep(Duration::from_millis(1500));
    contributor.kill().unwrap();
    contributor.wait().unwrap();
    let mid = json(&status_args, &admin);
    assert_eq!(mid["committed"], 0, "killed before the commit: {mid}");
    devnet.kill();

    // The restarted contributor finds its journal and resumes the stored chunks.
    let devnet = Devnet::start(&state, &admin);
    let args = train_args(&devnet.url, None);
    let resumed = json(&args.iter().map(String::as_str).collect::<Vec<_>>(), &home);
    assert_eq!(resumed["round"], 0);
    let chunks_resumed = resumed["chunks_resumed"].as_u64().unwrap();
    assert!(
        (1..6).contains(&chunks_resumed),
        "some, not all, chunks were stored before the kill: {resumed}"
    );
    assert_eq!(
        chunks_resumed + resumed["chunks_sent"].as_u64().unwrap(),
        6,
        "{resumed}"
    );
    let status = call(with(&["status", "--json"], &devnet.url), &admin);
    assert_eq!(status["committed"], 1, "{status}");
}

#[test]
fn the_devnet_serves_a_saved_simulation_and_its_receipts_verify_over_http() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path();
    let state = home.join("sim-state");
    let receipts = home.join("receipts");
    let report = home.join("report.json");
    run(
        &[
            "simulate",
            "-q",
            "--clients",
            "3",
            "--rounds",
            "2",
            "--samples",
            "600",
            "--retain-contributions",
            "--state",
            state.to_str().unwrap(),
            "--receipts",
            receipts.to_str().unwrap(),
            "--json",
            report.to_str().unwrap(),
        ],
        home,
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let canister = report["canister_id"].as_str().unwrap();
    let last = report["rounds"][1]["model_version"].as_str().unwrap();

    // The same directory, served over HTTP: the job, its history and its receipts.
    let devnet = Devnet::start(&state, home);
    let target = ["--network", devnet.url.as_str(), "--canister", canister];
    let status = json(&[&["status", "--json"][..], &target].concat(), home);
    assert_eq!(status["round"], 2);
    assert_eq!(status["model_version"], last);
    let rounds = json(&[&["rounds", "--json"][..], &target].concat(), home);
    assert_eq!(rounds["rounds"].as_array().unwrap().len(), 2);
    let receipt = receipts.join("round-1").join("client-2.json");
    run(
        &[
            &["verify", "receipt", receipt.to_str().unwrap()][..],
            &target,
        ]
        .concat(),
        home,
    );
    let lineage = json(
        &[
            &["verify", "lineage", "--json", "--version", last][..],
            &target,
        ]
        .concat(),
        home,
    );
    assert_eq!(lineage["recomputed"], true);
    // The dashboard, through the gateway, as a browser on the IC would ask for it.
    let url = devnet.url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(url).unwrap();
    use std::io::{Read, Write};
    write!(
        s,
        "GET /api/rounds?limit=1 HTTP/1.1\r\nHost: {canister}.localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let body: serde_json::Value =
        serde_json::from_str(out.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["items"][0]["round"], 0, "{body}");
}
