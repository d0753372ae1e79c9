//! `flic verify receipt | lineage | sample`: check proofs from public data. No identity
//! is needed: the verifier only queries, as an ephemeral key.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use candid::Principal;
use flic_proofs::lineage::{recompute_round, RetainedContribution, RoundInputs, Shaper};
use flic_proofs::receipt::verify_receipt;
use flic_proofs::sample::{verify_sample, verify_sample_against, SampleProof};
use flic_proofs::{Freshness, Trust};
use flic_protocol::api::{LineageArgs, PageArgs, RoundRecord};
use flic_protocol::certified::IC_MAINNET_ROOT_KEY_DER;
use flic_protocol::chunking::chunk_count;
use flic_protocol::{model_version, Hash};

use super::Session;
use crate::cli::{IdentityArgs, TargetArgs, VerifierArgs};
use crate::identity::Identity;
use crate::output::{short_hex, table};

/// Connects as an ephemeral identity (verifiers only query).
fn connect(target: &VerifierArgs, canister: Option<Principal>) -> anyhow::Result<Session> {
    let target = TargetArgs {
        identity: IdentityArgs { identity: None },
        network: target.network.clone(),
        canister: target
            .canister
            .clone()
            .or_else(|| canister.map(|c| c.to_text())),
        state: target.state.clone(),
    };
    super::connect_as(&target, Identity::generate())
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

pub fn receipt(file: &Path, target: &VerifierArgs, offline: bool) -> anyhow::Result<()> {
    let r = crate::receipts::read_receipt(file)?;
    if let Some(text) = &target.canister {
        let asked = Principal::from_text(text)
            .with_context(|| format!("--canister {text} is not a principal"))?;
        if asked != r.canister_id {
            bail!("the receipt is for canister {}, not {asked}", r.canister_id);
        }
    }
    let mut session = if offline {
        None
    } else {
        Some(connect(target, Some(r.canister_id))?)
    };
    let root_key_der = match &session {
        Some(s) => crate::transport::Transport::root_key(s.api.transport()),
        None => offline_root_key(&target.network)?,
    };
    // The stored certificate may be old: the history it certifies is append-only.
    let trust = Trust {
        root_key_der,
        canister: r.canister_id,
        freshness: Freshness::AnyTime,
    };
    let verified = verify_receipt(&r, &trust)
        .with_context(|| format!("{} does not verify", file.display()))?;
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
            Some(record) if record.round == r.round => bail!(
                "round {}'s record in the canister's certified history differs from the receipt's",
                r.round
            ),
            _ => bail!(
                "round {} is not in the canister's certified history",
                r.round
            ),
        }
    }
    println!(
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
    );
    Ok(())
}

fn parse_hash(text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(text.trim()).with_context(|| format!("`{text}` is not hex"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| anyhow::anyhow!("a model version is 32 bytes, got {}", b.len()))
}

/// Every closed round, each record checked against the certified history.
fn certified_history(session: &mut Session, rounds: u64) -> anyhow::Result<Vec<RoundRecord>> {
    let mut out = Vec::new();
    let mut start = 0;
    while (out.len() as u64) < rounds {
        let page = session.api.round_history(PageArgs { start, limit: 100 })?;
        out.extend(page.items);
        match page.next {
            Some(n) => start = n,
            None => break,
        }
    }
    out.truncate(rounds as usize);
    if out.len() as u64 != rounds {
        bail!(
            "the certified history has {} rounds, {rounds} expected",
            out.len()
        );
    }
    Ok(out)
}

pub fn lineage(target: &VerifierArgs, version: &str, json: bool) -> anyhow::Result<()> {
    let version = parse_hash(version)?;
    let mut session = connect(target, None)?;
    let info = session.api.round_info()?;
    let job = info
        .config
        .clone()
        .context("the canister has no job configured")?;
    if !job.retain_contributions {
        bail!("this job does not retain contributions (retain_contributions is off): lineage cannot be recomputed");
    }
    let spec_id = job.model_spec.spec_id();
    let lineage = session.api.lineage(&LineageArgs {
        model_version: Hash::new(version),
        page: PageArgs { start: 0, limit: 1 },
    })?;
    let rounds = lineage.round;
    let history = certified_history(&mut session, rounds)?;
    let initial_version = history
        .first()
        .map(|r| r.base_version.into_array())
        .unwrap_or(version);
    if let Some(last) = history.last() {
        if *last.new_version != version {
            bail!(
                "round {} certifiably produced {}, not {}",
                last.round,
                hex::encode(last.new_version.as_slice()),
                hex::encode(version)
            );
        }
    }
    // The initial model, checked against round 0's certified base version.
    let byte_len = info.param_count * 4;
    let mut bytes = Vec::with_capacity(byte_len as usize);
    for i in 0..chunk_count(byte_len, job.chunk_size()) as u32 {
        bytes.extend_from_slice(&session.api.initial_model_chunk(i)?.bytes);
    }
    let mut weights = flic_protocol::model::weights_from_le_bytes(&bytes)
        .context("the initial model is not whole f32 values")?;
    if model_version(&spec_id, &weights) != initial_version {
        bail!(
            "the initial model hashes to {}, the certified history starts from {}",
            hex::encode(model_version(&spec_id, &weights)),
            hex::encode(initial_version)
        );
    }
    let mut shapers: Vec<(u64, Shaper)> = Vec::new();
    for record in &history {
        let mut contributions = Vec::new();
        for index in
            record.first_contribution..record.first_contribution + record.contribution_count as u64
        {
            let c = session
                .api
                .get_contribution(index)?
                .with_context(|| format!("contribution {index} is missing"))?;
            let len = c.header.encoding.encoded_len(c.header.param_count);
            let mut payload = Vec::with_capacity(len as usize);
            for chunk in 0..c.header.chunk_count {
                payload.extend_from_slice(&session.api.contribution_chunk(index, chunk)?);
            }
            contributions.push(RetainedContribution {
                contribution: c,
                payload,
            });
        }
        let (next, round_shapers) = recompute_round(&RoundInputs {
            record,
            spec_id,
            base_weights: &weights,
            limits: job.limits(),
            chunk_size: job.chunk_size(),
            contributions: &contributions,
        })
        .with_context(|| format!("recomputing round {}", record.round))?;
        weights = next;
        shapers.extend(round_shapers.into_iter().map(|s| (record.round, s)));
    }
    // By dataset: total weight over the rounds.
    let mut by_dataset: BTreeMap<u64, (Principal, u64, u64)> = BTreeMap::new();
    for (_, s) in &shapers {
        let e = by_dataset
            .entry(s.dataset_id)
            .or_insert((s.contributor, 0, 0));
        e.1 += s.weight;
        e.2 += 1;
    }
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
        return super::print_json(&serde_json::json!({
            "model_version": hex::encode(version),
            "recomputed": true,
            "rounds": rounds,
            "contributions": shapers.iter().map(|(round, s)| serde_json::json!({
                "round": round, "contribution_index": s.contribution_index,
                "dataset_id": s.dataset_id, "owner": s.contributor.to_text(),
                "sample_count": s.sample_count, "weight": s.weight,
            })).collect::<Vec<_>>(),
            "datasets": by_dataset.iter().map(|(id, (owner, w, n))| serde_json::json!({
                "dataset_id": id, "name": names[id], "owner": owner.to_text(),
                "total_weight": w, "contributions": n,
            })).collect::<Vec<_>>(),
        }));
    }
    if rounds == 0 {
        println!(
            "{} is the initial model: no contributions shaped it",
            hex::encode(version)
        );
        return Ok(());
    }
    println!(
        "recomputed model {} bit for bit from the initial model through {rounds} certified round(s)",
        hex::encode(version)
    );
    let total: u64 = by_dataset.values().map(|v| v.1).sum();
    let rows = by_dataset.iter().map(|(id, (owner, w, n))| {
        vec![
            id.to_string(),
            names[id].clone(),
            owner.to_text(),
            n.to_string(),
            w.to_string(),
            format!("{:.1}%", *w as f64 * 100.0 / total.max(1) as f64),
        ]
    });
    println!(
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
    );
    let last = history.last().expect("rounds > 0");
    println!(
        "last round {}: {} contributions, contributions root {}",
        last.round,
        last.contribution_count,
        short_hex(last.contributions_root.as_slice())
    );
    Ok(())
}

pub fn sample(file: &Path, dataset_id: Option<u64>, target: &VerifierArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let proof: SampleProof = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a flic sample proof", file.display()))?;
    let root =
        verify_sample(&proof).with_context(|| format!("{} does not verify", file.display()))?;
    match dataset_id {
        None => println!(
            "sample proof OK: sample {} of {} is in commitment {}",
            proof.index,
            proof.sample_count,
            hex::encode(root)
        ),
        Some(id) => {
            let mut session = connect(target, None)?;
            let dataset = session
                .api
                .get_dataset(id)?
                .with_context(|| format!("dataset {id} is not registered"))?;
            verify_sample_against(&proof, &dataset.commitment.into_array())
                .with_context(|| format!("the proof is not for dataset {id}"))?;
            if dataset.sample_count != proof.sample_count {
                bail!(
                    "dataset {id} registered {} samples, the proof's tree has {}",
                    dataset.sample_count,
                    proof.sample_count
                );
            }
            println!(
                "sample proof OK: sample {} is in dataset {id} (`{}`, owner {}), commitment {}",
                proof.index,
                dataset.name,
                dataset.owner,
                hex::encode(root)
            );
        }
    }
    Ok(())
}
