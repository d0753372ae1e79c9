//! A contributor's part in a secure-aggregation round, over the canister's calls: the
//! cryptography is `flic_protocol::secagg::participant`, this module moves its messages.
//!
//! The order a client follows: train first (phases have deadlines), then [`advertise`],
//! [`post_shares`] once the advertise phase is over, upload the masked input
//! ([`Participation::masker`] in `StepOptions`) once the share phase is over, and
//! [`reveal`] once the masked-input phase is over. [`wait_for_phase`] waits between them.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use flic_protocol::api::{
    AdvertiseKeysArgs, JobConfig, PostSharesArgs, RevealSharesArgs, SecAggPhase, SecAggRound,
};
use flic_protocol::secagg::keys::{AdvertisedKeys, RoundContext};
use flic_protocol::secagg::masked_bytes;
use flic_protocol::secagg::participant::{Peer, Session};
use rand::RngCore;
use serde_bytes::ByteBuf;

use crate::api::AggregatorApi;
use crate::identity::Identity;
use crate::transport::Transport;

/// This client in one round: its secrets and its index.
pub struct Participation {
    pub session: Session,
    pub index: u32,
    pub round: u64,
    threshold: u32,
}

fn key32(b: &ByteBuf, what: &str, index: u32) -> anyhow::Result<[u8; 32]> {
    b.as_slice()
        .try_into()
        .with_context(|| format!("participant {index}'s {what} is {} bytes, not 32", b.len()))
}

/// The participants of `view`, as the protocol's participant logic takes them.
pub fn peers(view: &SecAggRound) -> anyhow::Result<Vec<Peer>> {
    view.participants
        .iter()
        .map(|p| {
            Ok(Peer {
                index: p.index,
                principal: p.principal,
                identity: key32(&p.public_key, "identity key", p.index)?,
                keys: AdvertisedKeys {
                    c_public: key32(&p.c_public, "c key", p.index)?,
                    s_public: key32(&p.s_public, "s key", p.index)?,
                    self_seed_commitment: key32(&p.self_seed_commitment, "commitment", p.index)?,
                },
                signature: p.signature.to_vec(),
                shared: p.shared,
                masked: p.masked,
            })
        })
        .collect()
}

/// The open round's secure aggregation; an error for a job without it.
pub fn view<T: Transport>(api: &mut AggregatorApi<T>) -> anyhow::Result<SecAggRound> {
    api.secagg_round()?
        .context("the job has no secure aggregation")
}

/// 32 bytes from the operating system: a real participant's session randomness.
pub fn fresh_randomness() -> [u8; 32] {
    let mut randomness = [0u8; 32];
    rand::rng().fill_bytes(&mut randomness);
    randomness
}

/// Phase 1: the session's secrets from `randomness` (fresh for every attempt at a round:
/// [`fresh_randomness`], or a simulation's seeded bytes), keys signed and posted.
pub fn advertise<T: Transport>(
    api: &mut AggregatorApi<T>,
    identity: &Identity,
    job_id: u64,
    round: u64,
    randomness: [u8; 32],
) -> anyhow::Result<Participation> {
    let ctx = RoundContext {
        canister_id: api.canister_id().as_slice().to_vec(),
        job_id,
        round,
    };
    let session = Session::new(ctx, randomness);
    let keys = session.keys();
    let args = AdvertiseKeysArgs {
        round,
        public_key: ByteBuf::from(identity.verifying_key().to_bytes().to_vec()),
        c_public: ByteBuf::from(keys.c_public.to_vec()),
        s_public: ByteBuf::from(keys.s_public.to_vec()),
        self_seed_commitment: ByteBuf::from(keys.self_seed_commitment.to_vec()),
        signature: ByteBuf::from(session.sign(identity.signing_key()).to_vec()),
    };
    let index = api
        .secagg_advertise(&args)
        .with_context(|| format!("advertising keys for round {round}"))?;
    Ok(Participation {
        session,
        index,
        round,
        threshold: 0,
    })
}

/// Phase 2: every participant's keys checked, then shares sealed to each.
pub fn post_shares<T: Transport>(
    api: &mut AggregatorApi<T>,
    p: &mut Participation,
) -> anyhow::Result<()> {
    let v = view(api)?;
    let list = peers(&v)?;
    p.threshold = v.threshold;
    let envelopes = p.session.envelopes(p.index, &list, v.threshold)?;
    api.secagg_post_shares(&PostSharesArgs {
        round: p.round,
        envelopes: envelopes.into_iter().map(ByteBuf::from).collect(),
    })
    .with_context(|| format!("posting shares for round {}", p.round))?;
    Ok(())
}

impl Participation {
    /// Phase 3's payload maker for `StepOptions::masker`: the clipped delta at its weight,
    /// masked with every participant that posted its shares (read from `view`).
    pub fn masked_payload(
        &self,
        view: &SecAggRound,
        config: &JobConfig,
        delta: &[f32],
        weight: u64,
        frac_bits: u32,
    ) -> anyhow::Result<Vec<u8>> {
        let list = peers(view)?;
        // Distributed DP: this client's share of the round's noise, for the threshold the
        // canister fixed when the advertise phase ended.
        let noise = config
            .client_noise(frac_bits, view.threshold)
            .map_err(|e| anyhow::anyhow!("the job's distributed DP: {e}"))?;
        let words = self
            .session
            .masked_input(self.index, &list, delta, weight, frac_bits, noise)?;
        Ok(masked_bytes(&words))
    }
}

/// Phase 4: the caller's shares for the unmasking.
pub fn reveal<T: Transport>(api: &mut AggregatorApi<T>, p: &Participation) -> anyhow::Result<()> {
    let v = view(api)?;
    if v.round != p.round {
        return Ok(()); // the round closed already: others reached the threshold
    }
    let list = peers(&v)?;
    let inbox: Vec<(u32, Vec<u8>)> = api
        .secagg_inbox(p.round)?
        .into_iter()
        .map(|e| (e.from, e.ciphertext.into_vec()))
        .collect();
    let shares = p
        .session
        .reveal(p.index, &list, &inbox, v.threshold.max(p.threshold))?;
    match api.secagg_reveal(&RevealSharesArgs {
        round: p.round,
        shares: shares.into_iter().map(ByteBuf::from).collect(),
    }) {
        Ok(()) => Ok(()),
        // The threshold was reached by others while this reveal was on its way.
        Err(crate::api::ApiError::SecAgg(flic_protocol::api::SecAggCallError::WrongRound {
            ..
        })) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("revealing shares for round {}", p.round)),
    }
}

/// Waits until round `round` has left `phase` (or closed), polling every `poll`, at most
/// `limit`; `nudge` runs before each poll (an embedded IC moves its clock there).
pub fn wait_for_phase<T: Transport>(
    api: &mut AggregatorApi<T>,
    round: u64,
    phase: SecAggPhase,
    limit: Duration,
    poll: Duration,
    nudge: &mut dyn FnMut(&SecAggRound) -> anyhow::Result<()>,
) -> anyhow::Result<SecAggRound> {
    let started = Instant::now();
    loop {
        let v = view(api)?;
        if v.round != round || v.phase != phase {
            return Ok(v);
        }
        if started.elapsed() > limit {
            bail!(
                "round {round} stayed in its {} phase for {:.0} s",
                phase.name(),
                limit.as_secs_f64()
            );
        }
        nudge(&v)?;
        std::thread::sleep(poll);
    }
}
