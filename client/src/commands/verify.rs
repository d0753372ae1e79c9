//! `flic verify receipt | lineage | sample`: check proofs from public data. No identity
//! is needed: the verifier only queries, as the anonymous principal. A proof that does
//! not hold ends with [`NotVerified`] (exit status 1); a failure to check it (a network
//! that cannot be reached, a file that cannot be read) is an error (exit status 2).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use candid::Principal;
use flic_proofs::receipt::verify_receipt;
use flic_proofs::sample::{verify_sample, verify_sample_in_dataset};
use flic_proofs::{Freshness, Trust};
use flic_protocol::api::PageArgs;
use flic_protocol::certified::IC_MAINNET_ROOT_KEY_DER;

use super::{NotVerified, Session};
use crate::cli::{IdentityArgs, TargetArgs, VerifierArgs};
use crate::output::{short_hex, table, Printer};
use crate::receipts::ReceiptFile;

/// Connects as the anonymous principal (verifiers only query) to `network`.
fn connect(
    target: &VerifierArgs,
    network: &str,
    state: Option<std::path::PathBuf>,
    canister: Option<Principal>,
) -> anyhow::Result<Session> {
    let target = TargetArgs {
        identity: IdentityArgs { identity: None },
        network: network.to_string(),
        canister: target
            .canister
            .clone()
            .or_else(|| canister.map(|c| c.to_text())),
        state,
    };
    super::connect_as(&target, None)
}

/// Connects to the network and state the flags name (default `local`).
fn connect_to_target(target: &VerifierArgs) -> anyhow::Result<Session> {
    connect(
        target,
        target.network.as_deref().unwrap_or("local"),
        target.state.clone(),
        None,
    )
}

fn not_verified(e: impl Into<anyhow::Error>) -> anyhow::Error {
    NotVerified(e.into()).into()
}

/// The root key a verifier can trust without asking the network.
fn offline_root_key(network: &str) -> anyhow::Result<Vec<u8>> {
    match network {
        "ic" => Ok(IC_MAINNET_ROOT_KEY_DER.to_vec()),
        "embedded" => Ok(flic_embedded_ic::BlsCertificateIssuer::test_root().public_key_der()),
        other => bail!(
            "--offline needs a root key known in advance (`ic` or `embedded`); `{other}` \
             has its root key fetched from the replica"
        ),
    }
}

pub fn receipt(
    printer: &Printer,
    file: &Path,
    target: &VerifierArgs,
    offline: bool,
) -> anyhow::Result<()> {
    let ReceiptFile { receipt: r, origin } = crate::receipts::read_receipt(file)?;
    if let Some(text) = &target.canister {
        let asked = Principal::from_text(text)
            .with_context(|| format!("--canister {text} is not a principal"))?;
        if asked != r.canister_id {
            return Err(not_verified(anyhow::anyhow!(
                "the receipt is for canister {}, not {asked}",
                r.canister_id
            )));
        }
    }
    // Where to check: as told, else where the receipt says it came from.
    let network = target
        .network
        .clone()
        .or_else(|| origin.as_ref().map(|o| o.network.clone()))
        .unwrap_or_else(|| "local".into());
    let state = target
        .state
        .clone()
        .or_else(|| origin.as_ref().and_then(|o| o.state.clone()));
    // An embedded receipt whose saved state is gone can still be checked offline: the
    // embedded IC's root key is known in advance.
    let offline = offline || (network == "embedded" && !state.as_deref().is_some_and(Path::exists));
    let mut session = if offline {
        None
    } else {
        Some(connect(target, &network, state, Some(r.canister_id))?)
    };
    let root_key_der = match &session {
        Some(s) => crate::transport::Transport::root_key(s.api.transport()),
        None => offline_root_key(&network)?,
    };
    // The stored certificate may be old: the history it certifies is append-only.
    let trust = Trust {
        root_key_der,
        canister: r.canister_id,
        freshness: Freshness::AnyTime,
    };
    let verified = verify_receipt(&r, &trust)
        .with_context(|| format!("{} does not verify", file.display()))
        .map_err(not_verified)?;
    if let Some(session) = session.as_mut() {
        // Against the canister's current, fresh certified history.
        let page = session
            .api
            .round_history(PageArgs {
                start: r.round,
                limit: 1,
            })
            .context("reading the certified history")?;
        match page.items.first() {
            Some(record) if record.round == r.round && *record == r.round_record => {}
            Some(record) if record.round == r.round => {
                return Err(not_verified(anyhow::anyhow!(
                "round {}'s record in the canister's certified history differs from the receipt's",
                r.round
            )))
            }
            _ => {
                return Err(not_verified(anyhow::anyhow!(
                    "round {} is not in the canister's certified history",
                    r.round
                )))
            }
        }
    }
    printer.out(format!(
        "receipt OK: contribution {} (position {} of round {}) by {} on dataset {}, \
         weight {}, included in round {} which produced model {}{}",
        verified.contribution_index,
        r.index_in_round,
        r.round,
        verified.contributor,
        verified.dataset_id,
        r.weight,
        r.round,
        hex::encode(verified.new_version),
        if offline {
            " (checked offline against the stored certificate)"
        } else {
            " (checked against the canister's current certified history)"
        }
    ))?;
    Ok(())
}

fn parse_hash(text: &str) -> anyhow::Result<[u8; 32]> {
    flic_protocol::hash::parse_hex32(text.trim())
        .with_context(|| format!("`{text}` is not a model version (64 hex digits)"))
}

pub fn lineage(
    printer: &Printer,
    target: &VerifierArgs,
    version: &str,
    json: bool,
) -> anyhow::Result<()> {
    let version = parse_hash(version)?;
    let mut session = connect_to_target(target)?;
    let replayed = crate::lineage::recompute(&mut session.api, version)?.map_err(|e| {
        not_verified(anyhow::Error::new(e).context(format!(
            "model {} does not recompute from its certified history",
            hex::encode(version)
        )))
    })?;
    let (rounds, shapers) = (replayed.rounds, &replayed.shapers);
    let by_dataset = crate::lineage::by_dataset(shapers);
    let mut names = BTreeMap::new();
    for id in by_dataset.keys() {
        let name = session
            .api
            .get_dataset(*id)?
            .map(|d| d.name)
            .unwrap_or_default();
        names.insert(*id, name);
    }
    if json {
        return Ok(printer.json(&serde_json::json!({
            "model_version": hex::encode(version),
            "recomputed": true,
            "rounds": rounds,
            "contributions": shapers.iter().map(|(round, s)| serde_json::json!({
                "round": round, "contribution_index": s.contribution_index,
                "dataset_id": s.dataset_id, "owner": s.contributor.to_text(),
                "sample_count": s.sample_count, "weight": s.weight,
            })).collect::<Vec<_>>(),
            "datasets": by_dataset.iter().map(|(id, d)| serde_json::json!({
                "dataset_id": id, "name": names[id], "owner": d.owner.to_text(),
                "total_weight": d.weight, "contributions": d.contributions,
            })).collect::<Vec<_>>(),
        }))?);
    }
    if rounds == 0 {
        printer.out(format!(
            "{} is the initial model: no contributions shaped it",
            hex::encode(version)
        ))?;
        return Ok(());
    }
    printer.out(format!(
        "recomputed model {} bit for bit from the initial model through {rounds} certified round(s)",
        hex::encode(version)
    ))?;
    let total: u64 = by_dataset.values().map(|d| d.weight).sum();
    let rows = by_dataset.iter().map(|(id, d)| {
        vec![
            id.to_string(),
            names[id].clone(),
            d.owner.to_text(),
            d.contributions.to_string(),
            d.weight.to_string(),
            format!("{:.1}%", d.weight as f64 * 100.0 / total.max(1) as f64),
        ]
    });
    printer.out(format!(
        "{}",
        table(
            &[
                "dataset",
                "name",
                "owner",
                "contributions",
                "weight",
                "share"
            ],
            rows
        )
    ))?;
    let last = replayed.last_round.as_ref().expect("rounds > 0");
    printer.out(format!(
        "last round {}: {} contributions, contributions root {}",
        last.round,
        last.contribution_count,
        short_hex(last.contributions_root.as_slice())
    ))?;
    Ok(())
}

/// `flic verify privacy`: the certified job's DP and every certified round's epsilon,
/// recomputed (the accountant's arithmetic is bit-identical natively and in the canister).
pub fn privacy(printer: &Printer, target: &VerifierArgs, json: bool) -> anyhow::Result<()> {
    use flic_proofs::lineage::LineageSource;
    let mut session = connect_to_target(target)?;
    // Certified: the job configuration (through its hash) and the rounds closed.
    let info = session.api.round_info()?;
    let job = info
        .config
        .clone()
        .context("the canister has no job configured")?;
    let Some(dp) = job.dp else {
        return Err(not_verified(anyhow::anyhow!(
            "job {} has no differential privacy: nothing bounds what its models reveal about a contributor",
            info.job_id
        )));
    };
    dp.check().map_err(|e| {
        not_verified(anyhow::anyhow!(
            "the job's DP configuration is invalid: {e}"
        ))
    })?;
    let rounds = info.round;
    let history = session
        .api
        .certified_history(rounds)
        .context("reading the certified round history")?;
    if history.len() as u64 != rounds {
        bail!(
            "read {} certified rounds, the job has closed {rounds}",
            history.len()
        );
    }
    let mut rows = Vec::new();
    // Adaptive clipping: every round's clip recomputed from the records before it.
    let mut chain = dp
        .adaptive_clip
        .map(|c| flic_protocol::privacy::adaptive_clip::ClipChain::new(c, job.clip_norm));
    for record in &history {
        let clip = match (&mut chain, record.adaptive_clip) {
            (None, None) => None,
            (Some(chain), Some(c)) => {
                chain
                    .step(c.clip_norm, c.noised_count, record.contribution_count)
                    .map_err(|expected| {
                        not_verified(anyhow::anyhow!(
                            "round {} certifies clip {}, but the records before it give {expected}",
                            record.round,
                            c.clip_norm
                        ))
                    })?;
                Some(c.clip_norm)
            }
            (Some(_), None) => {
                return Err(not_verified(anyhow::anyhow!(
                    "round {} of a job with adaptive clipping certifies no clip",
                    record.round
                )))
            }
            (None, Some(_)) => {
                return Err(not_verified(anyhow::anyhow!(
                    "round {} certifies an adaptive clip, but the job clips to a fixed norm",
                    record.round
                )))
            }
        };
        let expected = dp.epsilon_after(record.round + 1);
        match record.epsilon_spent {
            Some(e) if e.to_bits() == expected.to_bits() => {}
            Some(e) => {
                return Err(not_verified(anyhow::anyhow!(
                    "round {} certifies epsilon {e}, but {} rounds at noise multiplier {} and delta {} spend {expected}",
                    record.round,
                    record.round + 1,
                    dp.noise_multiplier,
                    dp.delta
                )))
            }
            None => {
                return Err(not_verified(anyhow::anyhow!(
                    "round {} of a job with DP certifies no epsilon",
                    record.round
                )))
            }
        }
        if expected > dp.target_epsilon {
            return Err(not_verified(anyhow::anyhow!(
                "round {} took the spent epsilon to {expected}, above the budget {}",
                record.round,
                dp.target_epsilon
            )));
        }
        rows.push((record.round, record.contribution_count, expected, clip));
    }
    let spent = dp.epsilon_after(rounds);
    let total = dp.rounds_within_budget();
    if json {
        return Ok(printer.json(&serde_json::json!({
            "verified": true,
            "mode": dp.mode.name(),
            "noise_multiplier": dp.noise_multiplier,
            "delta": dp.delta,
            "target_epsilon": dp.target_epsilon,
            "epsilon_spent": spent,
            "rounds": rounds,
            "rounds_within_budget": total,
            "state": info.state.to_string(),
            "adaptive_clip": dp.adaptive_clip.map(|c| serde_json::json!({
                "target_quantile": c.target_quantile,
                "learning_rate": c.learning_rate,
                "count_noise_std": c.count_noise_std,
                "next_clip": chain.map(|c| c.expected()),
            })),
            "history": rows.iter().map(|(round, count, eps, clip)| serde_json::json!({
                "round": round, "contributions": count, "epsilon_spent": eps, "clip_norm": clip,
            })).collect::<Vec<_>>(),
        }))?);
    }
    printer.out(format!(
        "privacy verified: {rounds} certified round(s) spent epsilon {spent:.4} of {} at delta {} ({} DP, noise multiplier {:.4}); {} of {total} rounds left",
        dp.target_epsilon,
        dp.delta,
        dp.mode.name(),
        dp.noise_multiplier,
        total.saturating_sub(rounds)
    ))?;
    if let (Some(c), Some(chain)) = (dp.adaptive_clip, chain) {
        printer.out(format!(
            "adaptive clip verified: every round's clip follows from the records before it (quantile {}, learning rate {}, count noise {:.4}); the next round clips to {}",
            c.target_quantile,
            c.learning_rate,
            c.count_noise_std,
            chain.expected()
        ))?;
    }
    if !rows.is_empty() {
        let lines = rows.iter().map(|(round, count, eps, clip)| {
            let mut row = vec![round.to_string(), count.to_string(), format!("{eps:.4}")];
            if chain.is_some() {
                row.push(clip.map(|c| c.to_string()).unwrap_or_default());
            }
            row
        });
        let mut headers = vec!["round", "contributions", "epsilon spent"];
        if chain.is_some() {
            headers.push("clip");
        }
        printer.out(format!("{}", table(&headers, lines)))?;
    }
    Ok(())
}

pub fn sample(
    printer: &Printer,
    file: &Path,
    dataset_id: Option<u64>,
    target: &VerifierArgs,
) -> anyhow::Result<()> {
    let proof = crate::data::read_sample_proof(file)?;
    let root = verify_sample(&proof)
        .with_context(|| format!("{} does not verify", file.display()))
        .map_err(not_verified)?;
    match dataset_id {
        None => printer.out(format!(
            "sample proof OK: sample {} of {} is in commitment {}",
            proof.index,
            proof.sample_count,
            hex::encode(root)
        ))?,
        Some(id) => {
            let mut session = connect_to_target(target)?;
            let dataset = session
                .api
                .get_dataset(id)?
                .with_context(|| format!("dataset {id} is not registered"))?;
            verify_sample_in_dataset(
                &proof,
                &dataset.commitment.into_array(),
                dataset.sample_count,
            )
            .with_context(|| format!("the proof is not for dataset {id}"))
            .map_err(not_verified)?;
            printer.out(format!(
                "sample proof OK: sample {} is in dataset {id} (`{}`, owner {}), commitment {}",
                proof.index,
                dataset.name,
                dataset.owner,
                hex::encode(root)
            ))?;
        }
    }
    Ok(())
}
