//! Recomputing a model version from its certified history, and who shaped it: `flic verify
//! lineage` and the desktop app.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use candid::Principal;
use flic_proofs::lineage::{replay_lineage, ReplayedLineage, Shaper};
use flic_proofs::ProofError;
use flic_protocol::api::{LineageArgs, PageArgs};
use flic_protocol::Hash;

use crate::api::AggregatorApi;
use crate::transport::Transport;

/// Recomputes `version` bit for bit from the job's initial model through every certified
/// round that led to it. The outer error: it cannot be checked (no job, contributions not
/// retained, differential privacy, a failed read); the inner: it does not verify.
pub fn recompute<T: Transport>(
    api: &mut AggregatorApi<T>,
    version: [u8; 32],
) -> anyhow::Result<Result<ReplayedLineage, ProofError>> {
    let info = api.round_info()?;
    let job = info.config.context("the canister has no job configured")?;
    if !job.retain_contributions {
        bail!("this job does not retain contributions (retain_contributions is off): lineage cannot be recomputed");
    }
    if job.dp.is_some() {
        bail!("this job has differential privacy: every round's sum carries noise from secret seeds (the canister's under central DP, the clients' under distributed DP), so no model can be recomputed from its contributions (`flic verify privacy` checks the budget, `flic verify receipt` each contribution)");
    }
    let lineage = api.lineage(&LineageArgs {
        model_version: Hash::new(version),
        page: PageArgs { start: 0, limit: 1 },
    })?;
    match replay_lineage(api, &job, version, lineage.round) {
        Ok(r) => Ok(Ok(r)),
        // Not being able to read is an error; reading data that does not add up is a
        // lineage that does not verify.
        Err(e @ ProofError::Fetch { .. }) => {
            Err(anyhow::Error::new(e).context("recomputing the lineage"))
        }
        Err(e) => Ok(Err(e)),
    }
}

/// One dataset's part in a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetShare {
    pub owner: Principal,
    /// Its contributions' weight, summed over the rounds.
    pub weight: u64,
    pub contributions: u64,
}

/// The shapers of a version by dataset, in dataset order.
pub fn by_dataset<'a>(
    shapers: impl IntoIterator<Item = &'a (u64, Shaper)>,
) -> BTreeMap<u64, DatasetShare> {
    let mut out: BTreeMap<u64, DatasetShare> = BTreeMap::new();
    for (_, s) in shapers {
        let e = out.entry(s.dataset_id).or_insert(DatasetShare {
            owner: s.contributor,
            weight: 0,
            contributions: 0,
        });
        e.weight += s.weight;
        e.contributions += 1;
    }
    out
}
