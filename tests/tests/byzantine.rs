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

fn robust_accuracy(rule: &str, malicious: usize, attack: &str) -> f64 {
    let args = SimulationConfig {
        clients: Some(10),
        rounds: 10,
        clip_norm: 1000.0,
        malicious,
        attack: attack.into(),
        seed: 42,
        aggregation: rule.parse().unwrap(),
        ..SimulationConfig::default()
    };
    run(&args, &mut Silent)
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
    for rule in ["median", "trimmed-mean:0.2", "krum:2", "multi-krum:2,5"] {
        let attacked = robust_accuracy(rule, 2, "scale:-10");
        eprintln!("{rule}: {:.2}% under scale:-10", attacked * 100.0);
        assert!(
            clean - attacked <= 0.05,
            "{rule} lost {:.2} points to 2 attackers of 10",
            (clean - attacked) * 100.0
        );
    }
}
