//! `flic bench` at toy sizes: the reports are complete and consistent with each other and
//! with the IC fee formulas. Never checks timing.

use flic_client::bench::aggregate::{self, AggregateCase};
use flic_client::bench::fees::{RoundCycles, INGRESS_BYTE_CYCLES, INGRESS_MESSAGE_CYCLES};
use flic_client::bench::{doc, learning};
use flic_client::output::Silent;
use flic_client::simulate::SimulationConfig;
use flic_protocol::DeltaEncoding;

#[test]
fn aggregate_report_is_consistent() {
    let wasm = flic_aggregator_wasm::AGGREGATOR_WASM;
    let (params, k, chunk) = (3000u64, 3u32, 1024u32);
    let mut reports = Vec::new();
    for encoding in [DeltaEncoding::F32, DeltaEncoding::Int8Blocks] {
        let case = AggregateCase {
            params,
            contributions: k,
            encoding,
            chunk_size: chunk,
            download: true,
            rule: Default::default(),
        };
        let r = aggregate::run(wasm, "default", &case, &mut Silent).unwrap();
        assert!(r.verified);
        assert_eq!(r.payload_bytes, encoding.encoded_len(params));
        let chunks = r.payload_bytes.div_ceil(chunk as u64);
        assert_eq!(r.begin_submission.calls, k as u64);
        assert_eq!(r.commit_submission.calls, k as u64);
        assert_eq!(r.put_chunk.calls, k as u64 * chunks);
        assert_eq!(r.ingress_messages, k as u64 * (chunks + 2));
        assert_eq!(r.executions, r.ingress_messages + 1);
        // Every chunk's bytes travel in the put_chunk arguments.
        assert!(r.put_chunk.arg_bytes > k as u64 * r.payload_bytes);
        assert_eq!(
            r.instructions,
            r.begin_submission.instructions
                + r.put_chunk.instructions
                + r.commit_submission.instructions
                + r.close_instructions
        );
        let per_pc = r.commit_submission.instructions as f64 / (params * k as u64) as f64;
        assert!((r.commit_per_param_contribution - per_pc).abs() < 1e-9);
        assert!(r.commit_per_param_contribution > 0.0 && r.close_per_param > 0.0);
        assert!(r.max_message_instructions >= r.commit_submission.max_instructions);
        assert!(r.max_message_instructions >= r.close_instructions);
        assert_eq!(
            r.cycles,
            RoundCycles::new(
                r.executions,
                r.instructions,
                r.ingress_messages,
                r.ingress_bytes
            )
        );
        assert!(
            r.cycles.ingress
                == r.ingress_messages * INGRESS_MESSAGE_CYCLES
                    + r.ingress_bytes * INGRESS_BYTE_CYCLES
        );
        let dl = r.download.as_ref().unwrap();
        assert_eq!(dl.bytes, params * 4);
        assert_eq!(dl.queries, (params * 4).div_ceil(chunk as u64));
        reports.push(r);
    }
    // int8 uploads 1 + 4/256 bytes per parameter against f32's 4.
    let ratio = reports[1].payload_ratio_to_f32;
    assert!(
        (ratio - (3000.0 + 4.0 * 12.0) / 12000.0).abs() < 1e-12,
        "{ratio}"
    );
    // int8 commits are cheaper than f32 ones: a quarter of the bytes to read and no float
    // conversion per element.
    assert!(reports[1].commit_per_param_contribution < reports[0].commit_per_param_contribution);

    let table = aggregate::render_aggregate(&reports);
    assert_eq!(table.matches("\n| 3,000 | 3 |").count(), 2, "{table}");
    let bytes = aggregate::render_bytes(&reports);
    assert!(
        bytes.contains("| 3,000 | int8 | 3,048 | 0.2540 |"),
        "{bytes}"
    );
    let cost = aggregate::render_cost(&reports, "default");
    assert_eq!(cost.matches("\n| 3,000 |").count(), 2);
    let text = doc::replace_section("", "aggregate", &table);
    assert!(text.contains("<!-- bench:aggregate:begin -->"));
}

#[test]
fn learning_report_has_every_series() {
    let args = SimulationConfig {
        clients: Some(2),
        rounds: 2,
        samples: 400,
        local_epochs: 1,
        ..SimulationConfig::default()
    };
    let parts = vec!["iid".to_string(), "shards:2".to_string()];
    let report = learning::run(&args, &parts, &mut Silent).unwrap();
    assert_eq!(report.results.len(), 2);
    for r in &report.results {
        for series in [&r.canister_f32, &r.canister_int8, &r.float_reference] {
            assert_eq!(series.len(), 2);
            assert!(series.iter().all(|a| (0.0..=1.0).contains(a)));
        }
        assert!(r.upload_bytes_int8 < r.upload_bytes_f32);
    }
    let svg = learning::svg(&report);
    assert_eq!(svg.matches("<polyline").count(), 2 * 3);
    let md = learning::render(&report, "benchmarks/learning.svg");
    assert!(md.contains("![test accuracy per round](benchmarks/learning.svg)"));
    // Two partitions x two rounds in the per-round table.
    assert_eq!(
        md.matches("\n| iid | ").count() + md.matches("\n| shards:2 | ").count(),
        4 + 2
    );
}

#[test]
fn training_report_covers_every_model_and_backend() {
    use flic_client::bench::training::{self, Settings};
    use flic_model_zoo::Backend;
    let backends: Vec<Backend> = Backend::compiled()
        .into_iter()
        .filter(|b| b.is_cpu())
        .collect();
    let models = ["linear", "mlp", "lenet", "cifar-cnn"];
    // 64 samples per model: one batch each.
    let workloads = training::workloads(&models, 0.0, 3).unwrap();
    let settings = Settings {
        backends: &backends,
        batch_size: 32,
        threads: 1,
        epochs: 1,
        lr: 0.01,
        seed: 3,
        pytorch: None,
        pytorch_device: "cpu",
        script: "unused".into(),
    };
    let report = training::measure(&workloads, &settings, &mut Silent).unwrap();
    assert_eq!(report.models.len(), models.len());
    for (m, name) in report.models.iter().zip(models) {
        assert_eq!(m.model, name);
        assert_eq!(m.samples, 64);
        assert_eq!(m.results.len(), backends.len());
        let first = &m.results[0];
        for t in &m.results {
            assert!(t.samples_per_sec > 0.0 && t.seconds > 0.0);
            assert!(t.last_epoch_loss.is_finite());
            // Every backend starts from the same model: the same initial loss.
            assert!(
                (t.initial_loss - first.initial_loss).abs() < 1e-4,
                "{name}: {} vs {}",
                t.framework,
                first.framework
            );
        }
    }
    let text = training::render(&report);
    for name in models {
        assert!(text.contains(&format!("| {name} |")));
    }
    assert!(text.contains("PyTorch was not run"));
}

/// The robustness grid at toy size: every cell is there, a rule's clean run is shared by
/// its attacks, the close costs come from verified rounds (a robust close costs more than
/// FedAvg's), and the rendered section names every rule and optimizer.
#[test]
fn robust_report_covers_the_grid() {
    use flic_client::bench::robust::{self, RobustPlan};
    use flic_protocol::optimizers::ServerOptimizer;
    use flic_protocol::rules::AggregationRule;
    let plan = RobustPlan {
        base: SimulationConfig {
            clients: Some(5),
            rounds: 1,
            samples: 600,
            ..SimulationConfig::default()
        },
        rules: vec![AggregationRule::FedAvg, AggregationRule::Median],
        attacks: vec!["signflip".into(), "ipm".into()],
        attackers: vec![0, 1],
        partitions: vec!["iid".into()],
        optimizers: vec![(ServerOptimizer::Sgd, 1.0)],
        proximal_mus: vec![0.01],
        optimizer_partition: "iid".into(),
        target: Some(0.0),
        cost_params: 2_000,
        cost_contributions: 3,
    };
    let report = robust::run(&plan, &mut Silent).unwrap();
    // Per rule: one clean run and one per attack with one attacker.
    assert_eq!(report.cells.len(), 2 * (1 + 2));
    assert!(report.clean("iid").is_some());
    assert_eq!(report.costs.len(), 2);
    assert!(report.costs[1].close_instructions > report.costs[0].close_instructions);
    assert!(report
        .costs
        .iter()
        .all(|c| c.close_messages == 1 && c.max_params > 0));
    assert_eq!(report.optimizers.len(), 2, "sgd and one FedProx run");
    assert!(report
        .optimizers
        .iter()
        .all(|o| o.rounds_to_target == Some(1)));
    let text = robust::render(&report);
    for needle in [
        "`fedavg`",
        "`median`",
        "`ipm`",
        "`sgd`",
        "fedprox (mu 0.01)",
        "1 of 5",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
}

#[test]
fn secagg_report_is_consistent() {
    let args = SimulationConfig {
        clients: Some(5),
        rounds: 1,
        samples: 400,
        local_epochs: 1,
        ..SimulationConfig::default()
    };
    let report = flic_client::bench::secagg::run(&args, &[0, 1], 30, &mut Silent).unwrap();
    assert_eq!(report.runs.len(), 3);
    let (plain, none, one) = (&report.runs[0], &report.runs[1], &report.runs[2]);
    assert_eq!(
        none.model_version, plain.model_version,
        "masking changes nothing"
    );
    assert_eq!((none.contributors, one.contributors), (5, 4));
    // Masked words are twice f32's bytes, and secure aggregation adds calls and a close.
    assert!(none.bytes_per_client > 1.9 * plain.bytes_per_client);
    assert!(none.messages_per_client > plain.messages_per_client);
    assert!(none.close_instructions > plain.close_instructions);
    assert_eq!((none.seeds, one.seeds), (5, 4 + 4));
    // No phase waits without dropouts; the masked-input phase waits its 30 s with one.
    assert_eq!((none.open_seconds, one.open_seconds), (0.0, 30.0));
    let md = flic_client::bench::secagg::render(&report);
    assert_eq!(md.matches("\n| secure aggregation, ").count(), 2);
}
