//! End to end: contributors training real burn models on synthetic non-IID data, with
//! real Ed25519 signatures, through the canister's release wasm in the embedded IC.

use flic_client::output::Silent;
use flic_client::simulate::{run, SimulationConfig};
use flic_protocol::DeltaEncoding;

fn federation(encoding: DeltaEncoding) -> flic_client::simulate::SimulationReport {
    let args = SimulationConfig {
        clients: Some(4),
        rounds: 5,
        model: "mlp".into(),
        hidden: vec![32],
        encoding,
        partition: "dirichlet:0.5".into(),
        samples: 3000,
        seed: 7,
        ..SimulationConfig::default()
    };
    run(&args, &mut Silent).expect("simulation runs")
}

#[test]
fn four_clients_non_iid_learn_and_int8_matches_f32() {
    let f32_run = federation(DeltaEncoding::F32);
    let int8_run = federation(DeltaEncoding::Int8Blocks);
    for report in [&f32_run, &int8_run] {
        assert_eq!(report.rounds.len(), 5);
        assert!(report.rounds.iter().all(|r| r.contributors == 4));
        // 10 balanced classes: chance is 10%.
        assert!(
            report.initial_accuracy < 0.25,
            "initial accuracy {}",
            report.initial_accuracy
        );
        assert!(
            report.final_accuracy > 0.6,
            "final accuracy {} is not far above chance",
            report.final_accuracy
        );
        assert!(report.rounds.iter().all(|r| r.instructions > 0));
        let versions: std::collections::BTreeSet<_> =
            report.rounds.iter().map(|r| &r.model_version).collect();
        assert_eq!(
            versions.len(),
            5,
            "every round produced a new model version"
        );
    }
    let gap = (f32_run.final_accuracy - int8_run.final_accuracy).abs();
    assert!(gap <= 0.01, "int8 ends {:.2} points from f32", gap * 100.0);
    let ratio = int8_run.rounds[0].upload_bytes as f64 / f32_run.rounds[0].upload_bytes as f64;
    assert!(ratio < 0.3, "int8 uploads {ratio:.2} of the f32 bytes");
}

#[test]
fn same_seed_same_model_versions() {
    let args = SimulationConfig {
        clients: Some(3),
        rounds: 2,
        samples: 900,
        seed: 11,
        ..SimulationConfig::default()
    };
    let a = run(&args, &mut Silent).expect("first run");
    let b = run(&args, &mut Silent).expect("second run");
    let va: Vec<_> = a.rounds.iter().map(|r| r.model_version.clone()).collect();
    let vb: Vec<_> = b.rounds.iter().map(|r| r.model_version.clone()).collect();
    assert_eq!(va, vb, "a simulation is deterministic given its seed");
}
