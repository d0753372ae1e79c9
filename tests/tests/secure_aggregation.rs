//! Secure aggregation end to end: simulated federations on the canister's release wasm in
//! the embedded IC, whose contributors advertise keys, seal shares to each other, upload
//! masked inputs and reveal what the unmasking needs, with the phases ended by the
//! canister's timers when some drop out.

mod cli;
use cli::simulate_one_round;

use flic_client::simulate::{run, SimulationConfig, SimulationReport};
use flic_protocol::secagg::SecAggConfig;

fn base() -> SimulationConfig {
    SimulationConfig {
        clients: Some(10),
        rounds: 2,
        samples: 1000,
        seed: 11,
        ..SimulationConfig::default()
    }
}

fn secure(dropouts: usize) -> SimulationConfig {
    SimulationConfig {
        secure_aggregation: Some(SecAggConfig {
            max_dropout_fraction: 0.0,
            phase_duration_ns: 60_000_000_000,
        }),
        dropouts,
        ..base()
    }
}

fn versions(r: &SimulationReport) -> Vec<String> {
    r.rounds.iter().map(|x| x.model_version.clone()).collect()
}

#[test]
fn masking_changes_nothing_in_the_sum_same_seed_same_model_versions() {
    let plain = run(&base(), &mut flic_client::output::Silent).expect("plain FedAvg runs");
    let masked =
        run(&secure(0), &mut flic_client::output::Silent).expect("secure aggregation runs");
    assert_eq!(masked.rounds.len(), 2);
    assert_eq!(
        versions(&masked),
        versions(&plain),
        "bit for bit the same models"
    );
    for r in &masked.rounds {
        assert_eq!(r.contributors, 10);
        // 8 bytes per parameter: weighted fixed-point words.
        assert!(
            (r.bytes_per_param - 8.0).abs() < 0.01,
            "{}",
            r.bytes_per_param
        );
    }
    assert!(masked.final_accuracy > masked.initial_accuracy);
}

#[test]
fn a_federation_survives_10_and_30_percent_dropping_out_at_every_phase() {
    let plain = run(&base(), &mut flic_client::output::Silent).unwrap();
    // One drops before its masked input; three drop before it, before their shares and
    // before the unmasking (the last one's input still counts).
    for (k, contributors) in [(1usize, 9usize), (3, 8)] {
        let report = run(&secure(k), &mut flic_client::output::Silent)
            .unwrap_or_else(|e| panic!("{k} dropouts: {e:#}"));
        assert_eq!(report.rounds.len(), 2, "{k} dropouts");
        for r in &report.rounds {
            assert_eq!(r.contributors, contributors, "{k} dropouts");
            assert!(r.test_loss.is_finite());
        }
        assert_ne!(
            versions(&report)[0],
            versions(&plain)[0],
            "fewer contributions, another model"
        );
        assert!(
            report.final_accuracy > report.initial_accuracy,
            "{k} dropouts"
        );
    }
}

#[test]
fn secure_aggregation_flags_are_checked_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    let simulate = |extra: &[&str]| simulate_one_round("10", &state, extra);
    assert!(
        simulate(&["--dropouts", "1"]).is_err(),
        "--dropouts needs --secure-aggregation"
    );
    let err = simulate(&["--secure-aggregation", "--dropouts", "5"]).unwrap_err();
    assert!(format!("{err:#}").contains("fewer than half"), "{err:#}");
    let err = simulate(&["--secure-aggregation", "--retain-contributions"]).unwrap_err();
    assert!(format!("{err:#}").contains("re-checked"), "{err:#}");
    let err = simulate(&["--secure-aggregation", "--aggregation", "median"]).unwrap_err();
    assert!(format!("{err:#}").contains("FedAvg"), "{err:#}");
    let err = simulate(&["--secure-aggregation", "--malicious", "1"]).unwrap_err();
    assert!(format!("{err:#}").contains("masked"), "{err:#}");
    assert!(!state.exists(), "nothing ran");
}
