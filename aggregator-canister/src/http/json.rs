//! The JSON views of `/api/...`: rounds, datasets, contributors, lineage, status.

use std::collections::BTreeMap;

use candid::Principal;
use flic_protocol::api::{
    Contribution, Dataset, Evaluation, HttpResponse, JobState, PageArgs, RoundInfo, RoundRecord,
    MAX_PAGE_LEN,
};
use flic_protocol::Hash;
use serde_json::{json, Value};

use super::{json_response, not_found, HttpEnv, LINEAGE_SCAN_MAX};
use crate::evaluations::RoundQuality;
use crate::state::State;

pub(super) fn hx(h: &Hash) -> String {
    flic_protocol::hash::to_hex(h.as_slice())
}

fn quality_json(q: Option<RoundQuality>) -> Value {
    match q {
        Some(q) => json!({
            "accuracy": q.accuracy, "loss": q.loss, "samples": q.samples, "reports": q.reports
        }),
        None => Value::Null,
    }
}

fn round_json(state: &State, r: &RoundRecord) -> Value {
    json!({
        "round": r.round,
        "base_version": hx(&r.base_version),
        "new_version": hx(&r.new_version),
        "contributions_root": hx(&r.contributions_root),
        "first_contribution": r.first_contribution,
        "contribution_count": r.contribution_count,
        "total_weight": r.total_weight,
        "contributors": r.contributors.iter().map(|p| p.to_text()).collect::<Vec<_>>(),
        "frac_bits": r.frac_bits,
        "server_lr": r.server_lr,
        "opened_at_ns": r.opened_at_ns,
        "closed_at_ns": r.closed_at_ns,
        "extensions": r.extensions,
        "epsilon_spent": r.epsilon_spent,
        "clip_norm": r.adaptive_clip.map(|c| c.clip_norm),
        "clip_noised_count": r.adaptive_clip.map(|c| c.noised_count),
        "quality": quality_json(state.round_quality(r.round)),
    })
}

fn evaluation_json(e: &Evaluation) -> Value {
    json!({
        "round": e.round,
        "model_version": hx(&e.model_version),
        "reporter": e.reporter.to_text(),
        "accuracy": e.accuracy,
        "loss": e.loss,
        "samples": e.samples,
        "reported_at_ns": e.reported_at_ns,
    })
}

fn contribution_json(c: &Contribution) -> Value {
    json!({
        "index": c.index,
        "round": c.round,
        "index_in_round": c.index_in_round,
        "contributor": c.contributor.to_text(),
        "dataset_id": c.dataset_id,
        "sample_count": c.header.sample_count,
        "weight": c.weight,
        "encoding": c.header.encoding.to_string(),
        "header_hash": hx(&c.header_hash),
        "committed_at_ns": c.committed_at_ns,
        "retained": c.retained,
    })
}

fn dataset_json(d: &Dataset) -> Value {
    json!({
        "id": d.id,
        "owner": d.owner.to_text(),
        "name": d.name,
        "commitment": hx(&d.commitment),
        "sample_count": d.sample_count,
        "license": d.license,
        "description": d.description,
        "registered_at_ns": d.registered_at_ns,
        "revoked_at_ns": d.revoked_at_ns,
    })
}

pub(super) fn status_json(
    info: &RoundInfo,
    secagg: Option<&flic_protocol::api::SecAggRound>,
    env: &HttpEnv,
) -> Value {
    json!({
        "canister_id": env.canister_id.to_text(),
        "now_ns": env.now_ns,
        "job_id": info.job_id,
        "state": info.state.to_string(),
        "round": info.round,
        "model_version": info.model_version.as_ref().map(hx),
        "param_count": info.param_count,
        "opened_at_ns": info.opened_at_ns,
        "deadline_ns": info.deadline_ns,
        "committed": info.committed,
        "pending": info.pending,
        "min_clients": info.config.as_ref().map(|c| c.min_clients),
        "max_clients": info.config.as_ref().map(|c| c.max_clients),
        "aggregation": info.config.as_ref().map(|c| c.aggregation().to_string()),
        "allowed_encodings": info.config.as_ref().map(|c| c
            .allowed_encodings
            .iter()
            .map(|e| json!({ "encoding": e.to_string(), "bytes_per_param": e.bytes_per_param() }))
            .collect::<Vec<_>>()),
        "server_optimizer": info.config.as_ref().map(|c| c.server_optimizer().to_string()),
        "proximal_mu": info.config.as_ref().map(|c| c.client.proximal_mu()),
        "admission": info.config.as_ref().map(|c| format!("{:?}", c.admission())),
        "privacy": info.config.as_ref().and_then(|c| c.dp).map(|dp| json!({
            "mode": dp.mode.name(),
            "noise_multiplier": dp.noise_multiplier,
            "delta": dp.delta,
            "target_epsilon": dp.target_epsilon,
            "epsilon_spent": dp.epsilon_after(info.round),
            "rounds_closed": info.round,
            "rounds_within_budget": dp.rounds_within_budget(),
            "adaptive_clip": dp.adaptive_clip.map(|c| json!({
                "target_quantile": c.target_quantile,
                "learning_rate": c.learning_rate,
                "round_clip_norm": info.clip_norm(),
            })),
        })),
        "secure_aggregation": secagg.map(|v| v.summary()),
    })
}

fn page_json(p: PageArgs, next: Option<u64>, items: Vec<Value>) -> Value {
    json!({ "offset": p.start, "limit": p.limit, "next": next, "items": items })
}

pub(super) fn rounds(state: &State, p: PageArgs) -> HttpResponse {
    let page = state.round_history(p);
    let mut v = page_json(
        p,
        page.next,
        page.items.iter().map(|r| round_json(state, r)).collect(),
    );
    v["total"] = json!(state.history().size);
    json_response(200, &v)
}

pub(super) fn round(state: &State, n: u64) -> HttpResponse {
    let Some(r) = state.rounds.get(&n).map(|s| RoundRecord::from(s.0)) else {
        let open = state.open_round().round;
        return not_found(
            if n >= open && state.job().job_state() != JobState::Unconfigured {
                format!("round {n} is not closed yet (the open round is {open}; see /api/status)")
            } else {
                format!("round {n} does not exist")
            },
        );
    };
    let mut v = round_json(state, &r);
    v["evaluations"] = state
        .round_evaluations(n)
        .iter()
        .map(evaluation_json)
        .collect();
    let page = state.contributions_range(
        r.first_contribution + r.contribution_count as u64,
        PageArgs {
            start: r.first_contribution,
            limit: MAX_PAGE_LEN,
        },
    );
    v["contributions"] = page.items.iter().map(contribution_json).collect();
    v["contributions_truncated"] = json!(page.next.is_some());
    json_response(200, &v)
}

pub(super) fn datasets(state: &State, p: PageArgs) -> HttpResponse {
    let page = state.list_datasets(p);
    let mut v = page_json(p, page.next, page.items.iter().map(dataset_json).collect());
    v["total"] = json!(state.datasets.len());
    json_response(200, &v)
}

pub(super) fn contributor(state: &State, principal: Principal, p: PageArgs) -> HttpResponse {
    let owned: Vec<Value> = state
        .datasets_by_owner
        .keys_range((principal, 0)..=(principal, u64::MAX))
        .filter_map(|(_, id)| state.dataset(id))
        .map(|d| dataset_json(&d))
        .collect();
    let page = state.contributions_by_contributor(principal, p);
    if owned.is_empty() && page.items.is_empty() && p.start == 0 {
        return not_found(format!(
            "principal {principal} has no datasets and no contributions"
        ));
    }
    json_response(
        200,
        &json!({
            "principal": principal.to_text(),
            "datasets": owned,
            "contributions": page_json(p, page.next, page.items.iter().map(contribution_json).collect()),
        }),
    )
}

/// One dataset's share of a lineage.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetShare {
    pub dataset_id: u64,
    pub name: String,
    pub owner: Principal,
    pub revoked: bool,
    pub contributions: u64,
    pub rounds: u64,
    pub weight: u64,
}

/// Per-dataset totals over the contributions `0..total` that built a version, reading at
/// most [`LINEAGE_SCAN_MAX`]; returns the shares (largest weight first) and how many
/// contributions were read.
pub fn lineage_shares(state: &State, total: u64) -> (Vec<DatasetShare>, u64) {
    let scanned = total.min(LINEAGE_SCAN_MAX);
    let mut by_dataset: BTreeMap<u64, (u64, u64, u64, Option<u64>)> = BTreeMap::new();
    for e in state.contributions.range(..scanned) {
        let c = e.value().0.contribution;
        let entry = by_dataset.entry(c.dataset_id).or_insert((0, 0, 0, None));
        entry.0 += 1;
        entry.2 += c.weight;
        if entry.3 != Some(c.round) {
            entry.1 += 1;
            entry.3 = Some(c.round);
        }
    }
    let mut shares: Vec<DatasetShare> = by_dataset
        .into_iter()
        .map(|(id, (contributions, rounds, weight, _))| {
            let d = state.dataset(id);
            DatasetShare {
                dataset_id: id,
                name: d.as_ref().map(|d| d.name.clone()).unwrap_or_default(),
                owner: d.as_ref().map_or(Principal::anonymous(), |d| d.owner),
                revoked: d.as_ref().is_some_and(|d| d.revoked_at_ns.is_some()),
                contributions,
                rounds,
                weight,
            }
        })
        .collect();
    shares.sort_by(|a, b| {
        b.weight
            .cmp(&a.weight)
            .then(a.dataset_id.cmp(&b.dataset_id))
    });
    (shares, scanned)
}

pub(super) fn lineage(state: &State, version: Hash, p: PageArgs) -> HttpResponse {
    let l = match state.lineage(flic_protocol::api::LineageArgs {
        model_version: version,
        page: p,
    }) {
        Ok(l) => l,
        Err(e) => return not_found(e.to_string()),
    };
    let (shares, scanned) = lineage_shares(state, l.total);
    let total_weight: u64 = shares.iter().map(|s| s.weight).sum();
    let datasets: Vec<Value> = shares
        .iter()
        .map(|s| {
            json!({
                "dataset_id": s.dataset_id,
                "name": s.name,
                "owner": s.owner.to_text(),
                "revoked": s.revoked,
                "contributions": s.contributions,
                "rounds": s.rounds,
                "weight": s.weight,
                "share": if total_weight == 0 { 0.0 } else { s.weight as f64 / total_weight as f64 },
            })
        })
        .collect();
    json_response(
        200,
        &json!({
            "model_version": hx(&l.model_version),
            "round": l.round,
            "total_contributions": l.total,
            "summarised_contributions": scanned,
            "datasets": datasets,
            "contributions": page_json(p, l.contributions.next, l.contributions.items.iter().map(contribution_json).collect()),
        }),
    )
}
