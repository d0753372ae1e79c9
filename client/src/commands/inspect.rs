//! `flic status` and `flic rounds`: read-only views of the canister.

use flic_protocol::api::PageArgs;

use crate::cli::TargetArgs;
use crate::output::{short_hex, table};

pub fn status(target: &TargetArgs, json: bool) -> anyhow::Result<()> {
    let mut session = super::connect(target)?;
    let info = session.api.round_info()?;
    let version = info
        .model_version
        .as_ref()
        .map(|v| hex::encode(v.as_slice()));
    if json {
        return super::print_json(&serde_json::json!({
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
        }));
    }
    let mut rows = vec![
        vec!["canister".into(), session.api.canister_id().to_text()],
        vec!["job".into(), info.job_id.to_string()],
        vec!["state".into(), info.state.to_string()],
        vec!["round".into(), info.round.to_string()],
        vec![
            "model version".into(),
            version.unwrap_or_else(|| "-".into()),
        ],
        vec!["parameters".into(), info.param_count.to_string()],
        vec![
            "committed / pending".into(),
            format!("{} / {}", info.committed, info.pending),
        ],
    ];
    if let Some(c) = &info.config {
        rows.push(vec![
            "architecture".into(),
            c.model_spec.architecture.clone(),
        ]);
        rows.push(vec![
            "clients (min..max)".into(),
            format!("{}..{}", c.min_clients, c.max_clients),
        ]);
        rows.push(vec!["clip norm".into(), c.clip_norm.to_string()]);
        rows.push(vec![
            "encodings".into(),
            format!("{:?}", c.allowed_encodings),
        ]);
    }
    if info.deadline_ns > 0 {
        rows.push(vec![
            "deadline (ns since epoch)".into(),
            info.deadline_ns.to_string(),
        ]);
    }
    println!("{}", table(&["", ""], rows));
    Ok(())
}

pub fn rounds(target: &TargetArgs, offset: u64, limit: u64, json: bool) -> anyhow::Result<()> {
    let mut session = super::connect(target)?;
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
        return super::print_json(&serde_json::json!({ "rounds": rows, "next": page.next }));
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
    println!(
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
    );
    if let Some(next) = page.next {
        eprintln!("more: --offset {next}");
    }
    Ok(())
}
