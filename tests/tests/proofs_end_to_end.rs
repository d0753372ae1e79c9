//! Proofs end to end: a simulated federation on the canister's release wasm in the embedded
//! IC writes every contributor's receipts; `flic verify` checks them (online and offline),
//! recomputes a model version's lineage bit for bit, and checks dataset sample proofs.
//! Tampered files fail with the reason.

mod cli;
use cli::{flic, s};

use flic_client::commands::ExitStatus;
use flic_client::output::Silent;
use flic_client::simulate::{run, SimulationConfig};

/// Runs `args` on the embedded canister with every delta retained, then has `flic verify
/// lineage` recompute the last model version from them; `what` names the run in failures.
fn simulate_and_verify_lineage(
    args: SimulationConfig,
    what: &str,
) -> flic_client::simulate::SimulationReport {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let args = SimulationConfig {
        state: Some(state.clone()),
        retain_contributions: true,
        ..args
    };
    let report = run(&args, &mut Silent).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    let last = &report.rounds.last().unwrap().model_version;
    let mut argv = vec!["verify", "lineage", "--version", last.as_str()];
    argv.extend_from_slice(&["--network", "embedded", "--state", s(&state)]);
    flic(&argv).unwrap_or_else(|e| panic!("lineage of {what}: {e:#}"));
    report
}

#[test]
fn receipts_lineage_and_samples_verify_and_tampering_fails() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let receipts = dir.path().join("receipts");
    let args = SimulationConfig {
        clients: Some(3),
        rounds: 2,
        samples: 600,
        seed: 5,
        state: Some(state.clone()),
        receipts: Some(receipts.clone()),
        retain_contributions: true,
        ..SimulationConfig::default()
    };
    let report = run(&args, &mut Silent).expect("simulation runs");
    let embedded = ["--network", "embedded", "--state", s(&state)];

    // Every contributor's receipt of every round, online and offline.
    for r in 0..2 {
        for c in 0..3 {
            let file = receipts.join(format!("round-{r}/client-{c}.json"));
            let mut argv = vec!["verify", "receipt", s(&file)];
            argv.extend_from_slice(&embedded);
            flic(&argv).unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
            flic(&[
                "verify",
                "receipt",
                s(&file),
                "--network",
                "embedded",
                "--offline",
            ])
            .unwrap();
        }
    }
    // A receipt says where it came from: no flags needed.
    let file = receipts.join("round-0/client-0.json");
    flic(&["verify", "receipt", s(&file)]).expect("the receipt names its saved state");

    // Tampered receipts fail, naming what did not match.
    let file = receipts.join("round-1/client-2.json");
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let tamper = |edit: &dyn Fn(&mut serde_json::Value)| -> String {
        let mut v = original.clone();
        edit(&mut v);
        let bad = dir.path().join("bad-receipt.json");
        std::fs::write(&bad, serde_json::to_vec(&v).unwrap()).unwrap();
        let mut argv = vec!["verify", "receipt", s(&bad)];
        argv.extend_from_slice(&embedded);
        let err = flic(&argv).expect_err("a tampered receipt must fail");
        assert_eq!(
            ExitStatus::of(&err),
            ExitStatus::NotVerified,
            "a receipt that does not verify exits 1: {err:#}"
        );
        format!("{err:#}")
    };
    let msg = tamper(&|v| v["index_in_round"] = serde_json::json!(0));
    assert!(
        msg.contains("contribution index") || msg.contains("inclusion"),
        "{msg}"
    );
    let msg = tamper(&|v| {
        v["inclusion_proof"].as_array_mut().unwrap().pop();
    });
    assert!(msg.contains("inclusion proof has"), "{msg}");
    let msg = tamper(&|v| v["round_record"]["total_weight"] = serde_json::json!(1));
    assert!(msg.contains("record"), "{msg}");
    let msg = tamper(&|v| v["header"]["sample_count"] = serde_json::json!(1));
    assert!(msg.contains("signature"), "{msg}");

    // Lineage of the final model: recomputed bit for bit through both rounds.
    let last = &report.rounds.last().unwrap().model_version;
    let mut argv = vec!["verify", "lineage", "--version", last.as_str()];
    argv.extend_from_slice(&embedded);
    flic(&argv).unwrap();
    let unknown = "00".repeat(32);
    let mut argv = vec!["verify", "lineage", "--version", unknown.as_str()];
    argv.extend_from_slice(&embedded);
    assert!(format!("{:#}", flic(&argv).unwrap_err()).contains("not known"));

    // Dataset commitments: prove one sample of a CSV and verify it.
    let csv = dir.path().join("data.csv");
    let mut text = String::from("label,a,b\n");
    for i in 0..13 {
        text.push_str(&format!("{},{}.5,{}\n", i % 3, i, 2 * i));
    }
    std::fs::write(&csv, text).unwrap();
    let proof = dir.path().join("proof.json");
    flic(&[
        "dataset",
        "prove",
        "--data",
        s(&csv),
        "--format",
        "csv",
        "--sample",
        "5",
        "--out",
        s(&proof),
    ])
    .unwrap();
    flic(&["verify", "sample", s(&proof)]).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&proof).unwrap()).unwrap();
    v["index"] = serde_json::json!(6);
    std::fs::write(&proof, serde_json::to_vec(&v).unwrap()).unwrap();
    let err = flic(&["verify", "sample", s(&proof)]).unwrap_err();
    assert_eq!(ExitStatus::of(&err), ExitStatus::NotVerified, "{err:#}");
    assert!(flic(&[
        "dataset",
        "prove",
        "--data",
        s(&csv),
        "--format",
        "csv",
        "--sample",
        "13",
        "--out",
        s(&proof),
    ])
    .is_err());
}

/// Every aggregation rule is recomputable by lineage: a 5-client, 2-round federation per
/// rule on the canister's wasm, then `flic verify lineage` recomputes the final version bit
/// for bit from the retained deltas with the protocol's rule driver.
#[test]
fn lineage_recomputes_every_aggregation_rule() {
    use flic_protocol::rules::AggregationRule;
    for rule in [
        AggregationRule::Median,
        AggregationRule::TrimmedMean { beta: 0.2 },
        AggregationRule::Krum { f: 1 },
        AggregationRule::MultiKrum { f: 1, m: 3 },
        AggregationRule::CenteredClip { iters: 2 },
        AggregationRule::Bulyan { f: 0 },
    ] {
        let args = SimulationConfig {
            clients: Some(5),
            rounds: 2,
            samples: 500,
            seed: 9,
            aggregation: rule,
            ..SimulationConfig::default()
        };
        simulate_and_verify_lineage(args, &rule.to_string());
    }
}

/// Every server optimizer is recomputable by lineage: its state lives in the canister's
/// stable memory and lineage replays it from the first round (3 rounds; one robust rule
/// with an adaptive optimizer too).
#[test]
fn lineage_recomputes_every_server_optimizer() {
    use flic_protocol::rules::AggregationRule;
    for (optimizer, rule) in [
        ("momentum:0.9", AggregationRule::FedAvg),
        ("nesterov:0.9", AggregationRule::FedAvg),
        ("adagrad", AggregationRule::FedAvg),
        ("adam", AggregationRule::FedAvg),
        ("yogi", AggregationRule::FedAvg),
        ("adam", AggregationRule::Median),
    ] {
        let args = SimulationConfig {
            clients: Some(3),
            rounds: 3,
            samples: 300,
            seed: 11,
            aggregation: rule,
            server_optimizer: optimizer.parse().unwrap(),
            server_lr: if optimizer == "adam" || optimizer == "yogi" || optimizer == "adagrad" {
                0.01
            } else {
                1.0
            },
            ..SimulationConfig::default()
        };
        let report = simulate_and_verify_lineage(args, &format!("{optimizer} with {rule}"));
        let versions: std::collections::HashSet<&String> =
            report.rounds.iter().map(|r| &r.model_version).collect();
        assert_eq!(
            versions.len(),
            3,
            "{optimizer}: every round moves the model"
        );
    }
}

/// Every delta encoding is recomputable by lineage: a federation per encoding (top-k with
/// error feedback over 3 rounds, so later rounds carry residuals) with FedAvg, and top-k
/// and int4 with the coordinate-wise median too (the rule reads window by window); then
/// `flic verify lineage` recomputes the final version from the retained deltas.
#[test]
fn lineage_recomputes_every_encoding() {
    use flic_protocol::rules::AggregationRule;
    use flic_protocol::DeltaEncoding;
    for (encoding, rule) in [
        ("int4", AggregationRule::FedAvg),
        ("int2", AggregationRule::FedAvg),
        ("topk:0.05,2", AggregationRule::FedAvg),
        ("topk:0.1,8", AggregationRule::FedAvg),
        ("topk:0.05,4", AggregationRule::Median),
        ("int4", AggregationRule::Median),
    ] {
        let encoding: DeltaEncoding = encoding.parse().unwrap();
        let args = SimulationConfig {
            clients: Some(3),
            rounds: 3,
            samples: 300,
            seed: 13,
            aggregation: rule,
            encoding,
            ..SimulationConfig::default()
        };
        let report = simulate_and_verify_lineage(args, &format!("{encoding} with {rule}"));
        let per_param = report.rounds[0].bytes_per_param;
        assert!(
            (per_param - encoding.bytes_per_param()).abs() < 0.05,
            "{encoding}: uploaded {per_param} bytes per parameter"
        );
    }
}
