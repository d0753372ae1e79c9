//! Byzantine contributors: 2 of 10 clients attack. With the job's L2 clipping bound set at
//! the scale of honest deltas (about 1.2 here), accuracy stays within 3 points of the clean
//! run for every attack; without clipping, an amplified reversed update wrecks the model.

use flic_client::output::Silent;
use flic_client::simulate::{run, SimulationConfig};

fn accuracy(clip_norm: f32, malicious: usize, attack: &str) -> f64 {
    let args = SimulationConfig {
        clients: Some(10),
        rounds: 10,
        clip_norm,
        malicious,
        attack: attack.into(),
        seed: 42,
        ..SimulationConfig::default()
    };
    run(&args, &mut Silent)
        .expect("simulation runs")
        .final_accuracy
}

#[test]
fn clipping_bounds_what_two_attackers_of_ten_can_do() {
    let clean = accuracy(1.0, 0, "signflip");
    assert!(clean > 0.75, "clean run reaches {clean}");
    for attack in ["scale:-10", "signflip", "noise:1"] {
        let attacked = accuracy(1.0, 2, attack);
        eprintln!(
            "{attack}: {:.2}% (clean {:.2}%)",
            attacked * 100.0,
            clean * 100.0
        );
        assert!(
            clean - attacked <= 0.03,
            "{attack} took {:.2} points off with clipping",
            (clean - attacked) * 100.0
        );
    }
    let unclipped = accuracy(1000.0, 2, "scale:-10");
    eprintln!("scale:-10 without clipping: {:.2}%", unclipped * 100.0);
    assert!(
        clean - unclipped > 0.3,
        "without clipping the attack should do visible damage, got {unclipped}"
    );
}

/// 10 clients, no clipping in effect (1000), `malicious` of them attacking, `rule` closing.
fn unclipped(rule: &str, malicious: usize, attack: &str) -> SimulationConfig {
    SimulationConfig {
        clients: Some(10),
        rounds: 10,
        clip_norm: 1000.0,
        malicious,
        attack: attack.into(),
        seed: 42,
        aggregation: rule.parse().unwrap(),
        ..SimulationConfig::default()
    }
}

fn robust_accuracy(rule: &str, malicious: usize, attack: &str) -> f64 {
    run(&unclipped(rule, malicious, attack), &mut Silent)
        .expect("simulation runs")
        .final_accuracy
}

/// Without a tuned clipping bound (1000: none in effect), the robust rules keep 2 amplified
/// reversed updates of 10 from wrecking the model, which FedAvg does not.
#[test]
fn robust_rules_hold_where_fedavg_breaks() {
    let clean = robust_accuracy("fedavg", 0, "signflip");
    let fedavg = robust_accuracy("fedavg", 2, "scale:-10");
    eprintln!(
        "fedavg: clean {:.2}%, attacked {:.2}%",
        clean * 100.0,
        fedavg * 100.0
    );
    assert!(clean - fedavg > 0.3, "the attack breaks FedAvg ({fedavg})");
    for rule in [
        "median",
        "trimmed-mean:0.2",
        "krum:2",
        "multi-krum:2,5",
        "centered-clip",
    ] {
        let attacked = robust_accuracy(rule, 2, "scale:-10");
        eprintln!("{rule}: {:.2}% under scale:-10", attacked * 100.0);
        assert!(
            clean - attacked <= 0.05,
            "{rule} lost {:.2} points to 2 attackers of 10",
            (clean - attacked) * 100.0
        );
    }
}

/// The colluding attacks from the literature run through the canister: ALIE stays inside
/// the benign spread and IPM reverses the benign mean, every attacker sending the same
/// vector; the adaptive coalition steers its gain by the public models. Each is checked
/// for doing what its paper says against FedAvg (IPM with a large eps reverses the mean),
/// and the rules keep them from wrecking the model.
#[test]
fn colluding_attacks_run_and_robust_rules_contain_them() {
    let run_with = |rule: &str, malicious: usize, attack: &str, knowledge: &str, adaptive: bool| {
        let args = SimulationConfig {
            rounds: 6,
            attack_knowledge: knowledge.parse().unwrap(),
            attack_adaptive: adaptive,
            seed: 7,
            ..unclipped(rule, malicious, attack)
        };
        run(&args, &mut Silent).expect("simulation runs")
    };
    let clean = run_with("fedavg", 0, "signflip", "omniscient", false).final_accuracy;
    // IPM with eps = 4 outweighs the 7 honest deltas under FedAvg: 7 - 3 * 4 < 0.
    let ipm = run_with("fedavg", 3, "ipm:4", "omniscient", false).final_accuracy;
    eprintln!(
        "fedavg under ipm:4: {:.2}% (clean {:.2}%)",
        ipm * 100.0,
        clean * 100.0
    );
    assert!(clean - ipm > 0.3, "IPM should reverse FedAvg, got {ipm}");
    let held = run_with("median", 3, "ipm:4", "coalition", false).final_accuracy;
    eprintln!("median under ipm:4 (coalition): {:.2}%", held * 100.0);
    assert!(
        clean - held <= 0.05,
        "median lost {:.2} points",
        (clean - held) * 100.0
    );
    let adaptive = run_with("centered-clip", 3, "alie", "omniscient", true);
    let gains: Vec<f32> = adaptive
        .rounds
        .iter()
        .filter_map(|r| r.attack_gain)
        .collect();
    eprintln!(
        "centered-clip under adaptive alie: {:.2}%, gains {gains:?}",
        adaptive.final_accuracy * 100.0
    );
    assert_eq!(gains.len(), 6, "every round reports the coalition's gain");
    assert_eq!(gains[0], 1.0);
    assert!(gains.iter().any(|&g| g != 1.0), "the coalition adapts");
    assert!(clean - adaptive.final_accuracy <= 0.1);
}
