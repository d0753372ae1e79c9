//! Robustness: every aggregation rule against every attack, at 0 to 3 attackers of 10, on
//! IID and non-IID federations, with the final accuracy set against the clean FedAvg run;
//! what each rule costs the canister at the close; and how many rounds each server
//! optimizer (and FedProx) takes to a target accuracy on a non-IID federation.
//!
//! Every figure comes from `flic simulate`: the canister's release wasm aggregates, burn
//! trains, and the attackers pass the canister's checks like anyone else.

use serde::Serialize;

use flic_protocol::optimizers::ServerOptimizer;
use flic_protocol::rules::AggregationRule;
use flic_protocol::DeltaEncoding;

use crate::bench::aggregate::{self, AggregateCase};
use crate::bench::doc::{table, thousands};
use crate::output::{Progress, Silent};
use crate::simulate::{run as simulate, SimulationConfig, SimulationReport};

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct RobustPlan {
    /// Model, data, rounds, clip norm, seed, attack knowledge: everything but what the
    /// grid varies.
    pub base: SimulationConfig,
    pub rules: Vec<AggregationRule>,
    pub attacks: Vec<String>,
    /// Attacker counts (0 is the clean run of each rule).
    pub attackers: Vec<usize>,
    pub partitions: Vec<String>,
    /// Server optimizers with their server learning rates, on `optimizer_partition`.
    pub optimizers: Vec<(ServerOptimizer, f32)>,
    /// FedProx coefficients tried with FedAvg and SGD.
    pub proximal_mus: Vec<f32>,
    pub optimizer_partition: String,
    /// Rounds-to-target threshold [default: 95% of FedAvg's best accuracy].
    pub target: Option<f64>,
    /// The rule-cost case: parameters and contributions.
    pub cost_params: u64,
    pub cost_contributions: u32,
}

/// One cell of the grid.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub partition: String,
    pub rule: String,
    pub attack: String,
    pub attackers: usize,
    pub final_accuracy: f64,
    pub best_accuracy: f64,
}

/// A rule's cost at the close, from one measured round.
#[derive(Debug, Clone, Serialize)]
pub struct RuleCost {
    pub rule: String,
    pub params: u64,
    pub contributions: u32,
    pub close_instructions: u64,
    /// Close instructions per parameter and contribution.
    pub close_per_value: f64,
    /// Messages the close took (each below the slice budget).
    pub close_messages: u32,
    /// The largest model this rule fits at `contributions` per round (the job limit check).
    pub max_params: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OptimizerRun {
    pub name: String,
    pub server_lr: f32,
    pub accuracy: Vec<f64>,
    pub rounds_to_target: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RobustReport {
    pub plan: RobustPlan,
    /// Clients per federation (as the simulations found them).
    pub clients: usize,
    pub cells: Vec<Cell>,
    pub costs: Vec<RuleCost>,
    pub target: f64,
    pub optimizers: Vec<OptimizerRun>,
}

impl RobustReport {
    fn cell(&self, partition: &str, rule: &str, attack: &str, attackers: usize) -> Option<&Cell> {
        self.cells.iter().find(|c| {
            c.partition == partition
                && c.rule == rule
                && c.attackers == attackers
                && (attackers == 0 || c.attack == attack)
        })
    }

    /// Clean FedAvg's final accuracy on `partition`.
    pub fn clean(&self, partition: &str) -> Option<f64> {
        self.cell(partition, "fedavg", "", 0)
            .map(|c| c.final_accuracy)
    }

    /// Rules within `points` of clean FedAvg with `attackers` under every attack, and
    /// within `clean_points` without attackers, on every partition.
    pub fn meeting(&self, attackers: usize, points: f64, clean_points: f64) -> Vec<String> {
        self.plan
            .rules
            .iter()
            .map(|r| r.to_string())
            .filter(|rule| {
                self.plan.partitions.iter().all(|p| {
                    let Some(clean) = self.clean(p) else {
                        return false;
                    };
                    let ok = |c: Option<&Cell>, pts: f64| {
                        c.is_some_and(|c| clean - c.final_accuracy <= pts / 100.0)
                    };
                    ok(self.cell(p, rule, "", 0), clean_points)
                        && self
                            .plan
                            .attacks
                            .iter()
                            .all(|a| ok(self.cell(p, rule, a, attackers), points))
                })
            })
            .collect()
    }
}

fn run_one(args: &SimulationConfig) -> anyhow::Result<SimulationReport> {
    simulate(args, &mut Silent)
}

fn best(r: &SimulationReport) -> f64 {
    r.rounds
        .iter()
        .map(|x| x.test_accuracy)
        .fold(r.initial_accuracy, f64::max)
}

/// Runs the plan: the grid, the rule costs and the optimizers.
pub fn run(plan: &RobustPlan, progress: &mut dyn Progress) -> anyhow::Result<RobustReport> {
    let attacked: Vec<usize> = plan.attackers.iter().copied().filter(|&k| k > 0).collect();
    let runs = plan.partitions.len()
        * plan.rules.len()
        * (usize::from(plan.attackers.contains(&0)) + plan.attacks.len() * attacked.len())
        + plan.optimizers.len()
        + plan.proximal_mus.len()
        + plan.rules.len();
    progress.start("robustness grid", runs as u64);
    let mut done = 0u64;
    let mut tick = |progress: &mut dyn Progress, what: &str| {
        done += 1;
        progress.set(done);
        progress.note(what);
    };
    let mut cells = Vec::new();
    let mut clients = plan.base.clients.unwrap_or(0);
    for partition in &plan.partitions {
        for rule in &plan.rules {
            let mut args = plan.base.clone();
            args.partition = partition.clone();
            args.aggregation = *rule;
            args.state = None;
            args.receipts = None;
            let mut grid: Vec<(String, usize)> = Vec::new();
            if plan.attackers.contains(&0) {
                grid.push((String::new(), 0));
            }
            for attack in &plan.attacks {
                for &k in &attacked {
                    grid.push((attack.clone(), k));
                }
            }
            for (attack, k) in grid {
                args.malicious = k;
                if k > 0 {
                    args.attack = attack.clone();
                }
                let r = run_one(&args)?;
                clients = r.clients;
                let cell = Cell {
                    partition: partition.clone(),
                    rule: rule.to_string(),
                    attack: attack.clone(),
                    attackers: k,
                    final_accuracy: r.final_accuracy,
                    best_accuracy: best(&r),
                };
                tick(
                    progress,
                    &format!(
                        "{partition} {rule} {} x{k}: {:.2}%",
                        if k == 0 { "clean" } else { &attack },
                        cell.final_accuracy * 100.0
                    ),
                );
                cells.push(cell);
            }
        }
    }

    let mut costs = Vec::new();
    for rule in &plan.rules {
        let case = AggregateCase {
            params: plan.cost_params,
            contributions: plan.cost_contributions,
            encoding: DeltaEncoding::Int8Blocks,
            chunk_size: flic_protocol::chunking::DEFAULT_CHUNK_SIZE,
            download: false,
            rule: *rule,
        };
        let r = aggregate::run(
            flic_aggregator_wasm::AGGREGATOR_WASM,
            "embedded",
            &case,
            &mut Silent,
        )?;
        costs.push(RuleCost {
            rule: rule.to_string(),
            params: case.params,
            contributions: case.contributions,
            close_instructions: r.close_instructions,
            close_per_value: r.close_instructions as f64
                / (case.params * case.contributions as u64) as f64,
            close_messages: r.close_messages,
            max_params: largest_fitting(rule, plan.cost_contributions),
        });
        tick(
            progress,
            &format!("cost of {rule}: {} instructions", r.close_instructions),
        );
    }

    let mut optimizers = Vec::new();
    let mut opt_base = plan.base.clone();
    opt_base.partition = plan.optimizer_partition.clone();
    opt_base.malicious = 0;
    opt_base.aggregation = AggregationRule::FedAvg;
    opt_base.state = None;
    opt_base.receipts = None;
    let mut variants: Vec<(String, SimulationConfig)> = Vec::new();
    for (opt, lr) in &plan.optimizers {
        let mut a = opt_base.clone();
        a.server_optimizer = *opt;
        a.server_lr = *lr;
        a.proximal_mu = None;
        variants.push((opt.to_string(), a));
    }
    for &mu in &plan.proximal_mus {
        let mut a = opt_base.clone();
        a.server_optimizer = ServerOptimizer::Sgd;
        a.proximal_mu = Some(mu);
        variants.push((format!("fedprox (mu {mu}) + {}", a.server_optimizer), a));
    }
    let mut runs_by_name = Vec::new();
    for (name, a) in variants {
        let r = run_one(&a)?;
        tick(
            progress,
            &format!("{name}: {:.2}%", r.final_accuracy * 100.0),
        );
        runs_by_name.push((name, a.server_lr, r));
    }
    progress.finish("");
    let fedavg_best = runs_by_name
        .iter()
        .find(|(n, _, _)| n == "sgd")
        .map(|(_, _, r)| best(r))
        .unwrap_or(0.0);
    let target = plan.target.unwrap_or(0.95 * fedavg_best);
    for (name, server_lr, r) in runs_by_name {
        let accuracy: Vec<f64> = r.rounds.iter().map(|x| x.test_accuracy).collect();
        let rounds_to_target = accuracy.iter().position(|&a| a >= target).map(|i| i + 1);
        optimizers.push(OptimizerRun {
            name,
            server_lr,
            accuracy,
            rounds_to_target,
        });
    }
    Ok(RobustReport {
        plan: plan.clone(),
        clients,
        cells,
        costs,
        target,
        optimizers,
    })
}

/// The largest model size (from 1e3 up in steps of 25%) whose job passes `configure_job`'s
/// limit check with this rule at `contributions` per round.
fn largest_fitting(rule: &AggregationRule, contributions: u32) -> u64 {
    let mut best = 0;
    let mut n = 1_000u64;
    while n <= 1_000_000_000 {
        let fits = flic_protocol::ic_limits::WorstCase::of(
            n,
            contributions,
            &[DeltaEncoding::F32, DeltaEncoding::Int8Blocks],
        )
        .with_rule(rule, n, contributions)
        .check()
        .is_ok();
        if !fits {
            break;
        }
        best = n;
        n = n * 5 / 4;
    }
    best
}

fn pct(x: f64) -> String {
    format!("{:.1}", x * 100.0)
}

/// The section of `docs/benchmarks.md`.
pub fn render(report: &RobustReport) -> String {
    let plan = &report.plan;
    let mut out = String::new();
    let b = &plan.base;
    out.push_str(&format!(
        "{} clients, model `{}`, {} rounds, clip norm {}, client lr {}, {} local epochs, seed {}; \
         attackers are the last K clients, colluding attacks with {} knowledge{}. Final test \
         accuracy in %; in brackets, points against clean FedAvg on the same partition.\n\n",
        report.clients,
        b.model,
        b.rounds,
        b.clip_norm,
        b.lr,
        b.local_epochs,
        b.seed,
        b.attack_knowledge,
        if b.attack_adaptive { ", adaptive" } else { "" },
    ));
    let n = report.clients;
    for partition in &plan.partitions {
        let clean = report.clean(partition).unwrap_or(f64::NAN);
        out.push_str(&format!(
            "**{partition}** (clean FedAvg {}%)\n\n",
            pct(clean)
        ));
        let mut headers = vec!["rule".to_string(), "attack".to_string()];
        headers.extend(plan.attackers.iter().map(|k| format!("{k} of {n}")));
        let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let mut rows = Vec::new();
        for rule in &plan.rules {
            let rule = rule.to_string();
            for attack in &plan.attacks {
                let mut row = vec![format!("`{rule}`"), format!("`{attack}`")];
                for &k in &plan.attackers {
                    row.push(match report.cell(partition, &rule, attack, k) {
                        Some(c) => format!(
                            "{} ({:+.1})",
                            pct(c.final_accuracy),
                            (c.final_accuracy - clean) * 100.0
                        ),
                        None => "-".into(),
                    });
                }
                rows.push(row);
            }
        }
        out.push_str(&table(&header_refs, &rows));
        out.push('\n');
    }
    let verdict = |k: usize| {
        let ok = report.meeting(k, 3.0, 2.0);
        if ok.is_empty() {
            "none".to_string()
        } else {
            ok.iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    if plan.attackers.contains(&2) {
        out.push_str(&format!(
            "Rules within 3 points of clean FedAvg with 2 attackers of {n} under every attack, and within 2 points without attackers, on every partition: {}.\n\n",
            verdict(2)
        ));
    }

    out.push_str(&format!(
        "**Cost at the close** ({} parameters, {} int8 contributions, measured on the release wasm; \
         the largest model is what `configure_job` accepts at {} contributions per round)\n\n",
        thousands(plan.cost_params),
        plan.cost_contributions,
        plan.cost_contributions
    ));
    let rows: Vec<Vec<String>> = report
        .costs
        .iter()
        .map(|c| {
            vec![
                format!("`{}`", c.rule),
                thousands(c.close_instructions),
                format!("{:.1}", c.close_per_value),
                c.close_messages.to_string(),
                format!("{:.2e}", c.max_params as f64),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "rule",
            "close instructions",
            "per parameter-contribution",
            "messages",
            "largest model",
        ],
        &rows,
    ));
    out.push('\n');

    out.push_str(&format!(
        "**Server optimizers** on `{}`, no attackers, FedAvg rule: rounds to {}% test accuracy \
         (95% of FedAvg's best unless set).\n\n",
        plan.optimizer_partition,
        pct(report.target)
    ));
    let rows: Vec<Vec<String>> = report
        .optimizers
        .iter()
        .map(|o| {
            vec![
                format!("`{}`", o.name),
                o.server_lr.to_string(),
                o.rounds_to_target
                    .map_or("not reached".into(), |r| r.to_string()),
                pct(o.accuracy.last().copied().unwrap_or(f64::NAN)),
                pct(o.accuracy.iter().copied().fold(0.0, f64::max)),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "optimizer",
            "server lr",
            "rounds to target",
            "final %",
            "best %",
        ],
        &rows,
    ));
    out
}
