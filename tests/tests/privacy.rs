//! Differential privacy end to end: simulated federations on the canister's release wasm
//! in the embedded IC. Central DP's rounds take their noise seed from the management
//! canister's `raw_rand`; distributed DP's clients add discrete Gaussian noise inside their
//! masked inputs. Both certify the epsilon spent and stop at the budget; `flic verify
//! privacy` recomputes it.

mod cli;
use cli::{flic, s, simulate_one_round};

use std::path::Path;

use flic_client::commands::ExitStatus;
use flic_client::output::Silent;
use flic_client::simulate::{run, SimulationConfig};
use flic_protocol::privacy::{noise_for_budget, DpConfig, DpMode};

/// `flic verify privacy` on the saved embedded federation at `state`, `--json` if asked.
fn verify_privacy(state: &Path, json: bool) -> anyhow::Result<()> {
    let mut argv = vec![
        "verify",
        "privacy",
        "--network",
        "embedded",
        "--state",
        s(state),
    ];
    if json {
        argv.push("--json");
    }
    flic(&argv)
}

fn base(state: &Path) -> SimulationConfig {
    SimulationConfig {
        clients: Some(3),
        rounds: 4,
        samples: 600,
        seed: 7,
        state: Some(state.to_path_buf()),
        retain_contributions: true,
        ..SimulationConfig::default()
    }
}

#[test]
fn a_central_dp_federation_certifies_its_budget_and_stops_at_it() {
    let dir = tempfile::tempdir().unwrap();
    // Noise for exactly three rounds within epsilon 30; the simulation asks for four.
    let dp = DpConfig {
        mode: DpMode::Central,
        noise_multiplier: noise_for_budget(30.0, 1e-5, 3).unwrap(),
        target_epsilon: 30.0,
        delta: 1e-5,
        adaptive_clip: None,
    };
    assert_eq!(dp.rounds_within_budget(), 3);
    let state = dir.path().join("dp");
    let args = SimulationConfig {
        dp: Some(dp),
        ..base(&state)
    };
    let report = run(&args, &mut Silent).expect("the DP simulation runs");
    assert_eq!(report.rounds.len(), 3, "the budget stops the fourth round");
    for (r, round) in report.rounds.iter().enumerate() {
        assert_eq!(round.epsilon_spent, Some(dp.epsilon_after(r as u64 + 1)));
    }
    let embedded = ["--network", "embedded", "--state", s(&state)];
    verify_privacy(&state, false).expect("the certified budget recomputes");
    verify_privacy(&state, true).unwrap();

    // Same seed, same noise (the embedded IC's raw_rand is seeded by the simulation's
    // seed), so the same models; without DP, other models.
    let again = run(
        &SimulationConfig {
            state: Some(dir.path().join("again")),
            ..args.clone()
        },
        &mut Silent,
    )
    .unwrap();
    let versions = |r: &flic_client::simulate::SimulationReport| {
        r.rounds
            .iter()
            .map(|x| x.model_version.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(versions(&report), versions(&again));
    let plain_state = dir.path().join("plain");
    let plain = run(
        &SimulationConfig {
            rounds: 3,
            ..base(&plain_state)
        },
        &mut Silent,
    )
    .unwrap();
    assert_ne!(versions(&plain)[0], versions(&report)[0]);

    // A job without DP has no privacy to verify; a DP job's models cannot be recomputed.
    let err = verify_privacy(&plain_state, false).unwrap_err();
    assert_eq!(ExitStatus::of(&err), ExitStatus::NotVerified, "{err:#}");
    assert!(
        format!("{err:#}").contains("no differential privacy"),
        "{err:#}"
    );
    let last = report.rounds.last().unwrap().model_version.clone();
    let mut lineage = vec!["verify", "lineage", "--version", last.as_str()];
    lineage.extend_from_slice(&embedded);
    let err = flic(&lineage).unwrap_err();
    assert!(
        format!("{err:#}").contains("differential privacy"),
        "{err:#}"
    );
}

#[test]
fn a_distributed_dp_federation_noises_inside_the_masks_and_stops_at_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let dp = DpConfig {
        mode: DpMode::Distributed,
        noise_multiplier: noise_for_budget(30.0, 1e-5, 2).unwrap(),
        target_epsilon: 30.0,
        delta: 1e-5,
        adaptive_clip: None,
    };
    let secure = |state: &str, dp: Option<DpConfig>| SimulationConfig {
        clients: Some(5),
        rounds: 3,
        dp,
        retain_contributions: false,
        secure_aggregation: Some(flic_protocol::secagg::SecAggConfig {
            max_dropout_fraction: 0.0,
            phase_duration_ns: 60_000_000_000,
        }),
        dropouts: 1,
        ..base(&dir.path().join(state))
    };
    let report = run(&secure("ddp", Some(dp)), &mut Silent).expect("distributed DP runs");
    assert_eq!(report.rounds.len(), 2, "the budget stops the third round");
    for (r, round) in report.rounds.iter().enumerate() {
        assert_eq!(round.contributors, 4, "one drops out of each round");
        assert_eq!(round.epsilon_spent, Some(dp.epsilon_after(r as u64 + 1)));
    }
    let state = dir.path().join("ddp");
    verify_privacy(&state, false).expect("the certified budget recomputes");
    // The clients' noise is seeded by their session randomness (from the simulation's
    // seed here): same seed, same models; without DP, other models.
    let again = run(&secure("again", Some(dp)), &mut Silent).unwrap();
    let plain = run(&secure("plain", None), &mut Silent).unwrap();
    let first = |r: &flic_client::simulate::SimulationReport| r.rounds[0].model_version.clone();
    assert_eq!(first(&report), first(&again));
    assert_ne!(first(&report), first(&plain));
}

/// `--dp-adaptive-clip Q` through the CLI: every round's record publishes the clip it used
/// and its noised count, the clip moves the way the count says, and `flic verify privacy`
/// recomputes the whole chain.
#[test]
fn an_adaptive_clip_follows_the_noised_counts_and_verifies() {
    use flic_protocol::privacy::AdaptiveClip;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("adaptive");
    let json = dir.path().join("report.json");
    flic(&[
        "simulate",
        "--clients",
        "4",
        "--rounds",
        "4",
        "--samples",
        "600",
        "--seed",
        "11",
        "--clip-norm",
        "5",
        "--dp",
        "central",
        "--dp-epsilon",
        "60",
        "--dp-adaptive-clip",
        "0.5",
        "--dp-clip-lr",
        "0.5",
        "--state",
        s(&state),
        "--json",
        s(&json),
    ])
    .expect("an adaptive-clip simulation runs");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let dp: DpConfig = serde_json::from_value(report["config"]["dp"].clone()).unwrap();
    let clip: AdaptiveClip = dp.adaptive_clip.expect("the flag sets adaptive clipping");
    assert_eq!((clip.target_quantile, clip.learning_rate), (0.5, 0.5));
    let rounds = report["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 4);
    let mut expected = 5.0f32;
    for r in rounds {
        let c: flic_protocol::api::RoundClip =
            serde_json::from_value(r["adaptive_clip"].clone()).unwrap();
        assert_eq!(c.clip_norm, expected, "round {}", r["round"]);
        // The count is the contributions at or below the clip, plus noise of its scale.
        let m = r["contributors"].as_u64().unwrap() as f64;
        let below = m - r["clipped"].as_u64().unwrap() as f64;
        assert!(
            (c.noised_count - below).abs() < 8.0 * clip.count_noise_std,
            "{c:?} for {below} below"
        );
        let next = clip.next_clip(c.clip_norm, c.noised_count, m as u32, 5.0);
        // Above the quantile the clip shrinks, below it grows (up to the ceiling).
        if c.noised_count / m > 0.5 {
            assert!(next < c.clip_norm);
        } else {
            assert!(next >= c.clip_norm);
        }
        expected = next;
    }
    verify_privacy(&state, false).expect("every clip and epsilon recomputes");
    verify_privacy(&state, true).unwrap();
}

#[test]
fn dp_flags_are_checked_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    let simulate = |extra: &[&str]| simulate_one_round("2", &state, extra);
    // --dp needs a budget; a budget needs --dp.
    assert!(simulate(&["--dp", "central"]).is_err());
    assert!(simulate(&["--dp-epsilon", "1"]).is_err());
    let err = simulate(&["--dp", "distributed", "--dp-epsilon", "5"]).unwrap_err();
    assert!(format!("{err:#}").contains("secure aggregation"), "{err:#}");
    let err = simulate(&["--dp", "central", "--dp-epsilon", "1", "--dp-noise", "0.1"]).unwrap_err();
    assert!(format!("{err:#}").contains("one round"), "{err:#}");
    let err = simulate(&[
        "--dp",
        "central",
        "--dp-epsilon",
        "5",
        "--aggregation",
        "median",
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("FedAvg"), "{err:#}");
    // Adaptive clipping: a quantile in (0, 1), central DP, no secure aggregation.
    let err = simulate(&[
        "--dp",
        "central",
        "--dp-epsilon",
        "50",
        "--dp-adaptive-clip",
        "1.5",
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("quantile"), "{err:#}");
    assert!(
        simulate(&["--dp-adaptive-clip", "0.5"]).is_err(),
        "needs --dp"
    );
    let err = simulate(&[
        "--dp",
        "central",
        "--dp-epsilon",
        "50",
        "--dp-adaptive-clip",
        "0.5",
        "--secure-aggregation",
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("secure aggregation"), "{err:#}");
    assert!(!state.exists(), "nothing ran");
}
