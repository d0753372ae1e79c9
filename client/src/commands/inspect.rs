//! `flic status` and `flic rounds`: read-only views of the canister.

use flic_protocol::api::PageArgs;

use crate::cli::TargetArgs;
use crate::output::{comma_list, key_value_table, relative, short_hex, table, utc, Printer};

pub fn status(printer: &Printer, target: &TargetArgs, json: bool) -> anyhow::Result<()> {
    let mut session = super::connect_reader(target)?;
    let info = session.api.round_info()?;
    // Secure aggregation's phase (a job without it answers `None`, and so does a canister
    // of a release before it, which has no such query).
    let secagg = session.api.secagg_round().unwrap_or(None);
    let version = info
        .model_version
        .as_ref()
        .map(|v| hex::encode(v.as_slice()));
    if json {
        return Ok(printer.json(&serde_json::json!({
            "canister": session.api.canister_id().to_text(),
            "job_id": info.job_id,
            "state": info.state.to_string(),
            "round": info.round,
            "model_version": version,
            "param_count": info.param_count,
            "deadline_ns": info.deadline_ns,
            "committed": info.committed,
            "pending": info.pending,
            "min_clients": info.config.as_ref().map(|c| c.min_clients),
            "max_clients": info.config.as_ref().map(|c| c.max_clients),
            "architecture": info.config.as_ref().map(|c| c.model_spec.architecture.clone()),
            "aggregation": info.config.as_ref().map(|c| c.aggregation().to_string()),
            "server_optimizer": info.config.as_ref().map(|c| c.server_optimizer().to_string()),
            "proximal_mu": info.config.as_ref().map(|c| c.client.proximal_mu()),
            "admission": info.config.as_ref().map(|c| format!("{:?}", c.admission())),
            "privacy": info.config.as_ref().and_then(|c| c.dp).map(|dp| serde_json::json!({
                "mode": dp.mode.name(),
                "noise_multiplier": dp.noise_multiplier,
                "delta": dp.delta,
                "target_epsilon": dp.target_epsilon,
                "epsilon_spent": dp.epsilon_after(info.round),
                "rounds_within_budget": dp.rounds_within_budget(),
                "adaptive_clip": dp.adaptive_clip.map(|c| serde_json::json!({
                    "target_quantile": c.target_quantile,
                    "learning_rate": c.learning_rate,
                    "round_clip_norm": info.clip_norm(),
                })),
            })),
            "secure_aggregation": secagg.as_ref().map(|v| v.summary()),
        }))?);
    }
    let mut rows = vec![
        ("canister".to_string(), session.api.canister_id().to_text()),
        ("job".into(), info.job_id.to_string()),
        ("state".into(), info.state.to_string()),
        ("round".into(), info.round.to_string()),
        (
            "model version".into(),
            version.unwrap_or_else(|| "-".into()),
        ),
        ("parameters".into(), info.param_count.to_string()),
        (
            "committed / pending".into(),
            format!("{} / {}", info.committed, info.pending),
        ),
    ];
    if let Some(c) = &info.config {
        rows.push(("architecture".into(), c.model_spec.architecture.clone()));
        rows.push((
            "clients (min..max)".into(),
            format!("{}..{}", c.min_clients, c.max_clients),
        ));
        rows.push(("clip norm".into(), c.clip_norm.to_string()));
        rows.push(("aggregation".into(), c.aggregation().to_string()));
        rows.push(("server optimizer".into(), c.server_optimizer().to_string()));
        if c.client.proximal_mu() > 0.0 {
            rows.push(("FedProx mu".into(), c.client.proximal_mu().to_string()));
        }
        rows.push(("admission".into(), format!("{:?}", c.admission())));
        if let Some(dp) = &c.dp {
            let total = dp.rounds_within_budget();
            rows.push((
                "privacy".into(),
                format!(
                    "{} DP: epsilon {:.3} of {} spent at delta {} (noise multiplier {:.3}, {} of {} rounds left)",
                    dp.mode.name(),
                    dp.epsilon_after(info.round),
                    dp.target_epsilon,
                    dp.delta,
                    dp.noise_multiplier,
                    total.saturating_sub(info.round),
                    total
                ),
            ));
            if let (Some(a), Some(clip)) = (dp.adaptive_clip, info.clip_norm()) {
                rows.push((
                    "adaptive clip".into(),
                    format!(
                        "this round clips to {clip} (tracking the {} quantile of update norms, at most {})",
                        a.target_quantile, c.clip_norm
                    ),
                ));
            }
        }
        if let Some(v) = &secagg {
            rows.push(("secure aggregation".into(), v.summary().to_string()));
        }
        rows.push(("encodings".into(), comma_list(&c.allowed_encodings)));
    }
    if info.deadline_ns > 0 {
        let now = crate::transport::Transport::now_ns(session.api.transport());
        rows.push((
            "deadline".into(),
            format!(
                "{} ({})",
                utc(info.deadline_ns),
                relative(info.deadline_ns, now)
            ),
        ));
    }
    printer.out(key_value_table(rows))?;
    Ok(())
}

pub fn rounds(
    printer: &Printer,
    target: &TargetArgs,
    offset: u64,
    limit: u64,
    json: bool,
) -> anyhow::Result<()> {
    let mut session = super::connect_reader(target)?;
    let page = session.api.round_history(PageArgs {
        start: offset,
        limit: limit.min(u32::MAX as u64) as u32,
    })?;
    if json {
        let rows: Vec<_> = page
            .items
            .iter()
            .map(|r| {
                serde_json::json!({
                    "round": r.round,
                    "base_version": hex::encode(r.base_version.as_slice()),
                    "new_version": hex::encode(r.new_version.as_slice()),
                    "contributions_root": hex::encode(r.contributions_root.as_slice()),
                    "contributions": r.contribution_count,
                    "total_weight": r.total_weight,
                    "contributors": r.contributors.iter().map(|p| p.to_text()).collect::<Vec<_>>(),
                    "opened_at_ns": r.opened_at_ns,
                    "closed_at_ns": r.closed_at_ns,
                    "extensions": r.extensions,
                })
            })
            .collect();
        return Ok(printer.json(&serde_json::json!({ "rounds": rows, "next": page.next }))?);
    }
    let rows = page.items.iter().map(|r| {
        vec![
            r.round.to_string(),
            r.contribution_count.to_string(),
            r.total_weight.to_string(),
            short_hex(r.base_version.as_slice()),
            short_hex(r.new_version.as_slice()),
            r.extensions.to_string(),
        ]
    });
    printer.out(format!(
        "{}",
        table(
            &[
                "round",
                "contributions",
                "weight",
                "base",
                "new version",
                "extensions"
            ],
            rows
        )
    ))?;
    if let Some(next) = page.next {
        printer.info(format!("more: --offset {next}"));
    }
    Ok(())
}
