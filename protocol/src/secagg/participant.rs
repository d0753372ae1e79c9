//! A participant's side of a secure-aggregation round, as pure logic over what the
//! canister shows (its `secagg_round` view): the client calls it between its calls, and
//! tests drive the canister's core with it.
//!
//! The participant's secrets (its two X25519 secrets, its self-mask seed and the
//! randomness of its Shamir polynomials) are drawn from 32 bytes of its own randomness
//! and never leave it, except as the shares it seals to its peers and, at the end, the
//! one share per peer that the unmasking needs.

use candid::Principal;
use ed25519_dalek::SigningKey;

use super::keys::{
    AdvertisedKeys, AgreementSecret, KeyError, RoundContext, ShareEnvelope, SharePair,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha12Rng;

use super::{commit_self_seed, masked, share_seed, weighted_fixed, ShareError};
use crate::hash::sha256_concat;
use crate::privacy::discrete_gaussian::{self, Variance};
use crate::submission::principal_of_ed25519;

/// A peer as the canister lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub index: u32,
    pub principal: Principal,
    pub identity: [u8; 32],
    pub keys: AdvertisedKeys,
    pub signature: Vec<u8>,
    pub shared: bool,
    pub masked: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParticipantError {
    #[error("participant {index}'s keys are not signed by its identity, or its identity is not its principal's: the list of participants cannot be trusted")]
    BadPeer { index: u32 },
    #[error("the canister lists participant {index} at position {position}: indices must be 0, 1, 2, ...")]
    BadIndex { index: u32, position: usize },
    #[error("this participant is not index {0} of the round (or is not in it)")]
    NotMe(u32),
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("{0}")]
    Share(#[from] ShareError),
    #[error("no envelope from participant {0}, which posted its shares")]
    MissingEnvelope(u32),
    #[error("the shares were not dealt yet (post them first)")]
    NotDealt,
    #[error("only {survivors} participants committed masked inputs, the threshold is {threshold}: revealing would not unmask anything")]
    TooFewSurvivors { survivors: u32, threshold: u32 },
}

/// One participant's secrets for one round.
pub struct Session {
    ctx: RoundContext,
    c: AgreementSecret,
    s: AgreementSecret,
    self_seed: [u8; 32],
    dealer: [u8; 32],
    /// Key of distributed DP's noise: secret like the masks, or the sum's noise is
    /// removable by whoever knows it.
    noise: [u8; 32],
    own: Option<SharePair>,
}

impl Drop for Session {
    fn drop(&mut self) {
        super::unmask::erase(&mut self.self_seed);
        super::unmask::erase(&mut self.dealer);
        super::unmask::erase(&mut self.noise);
    }
}

fn derive(randomness: &[u8; 32], what: &[u8]) -> [u8; 32] {
    sha256_concat(&[b"flic/secagg-session/v1", what, randomness])
}

impl Session {
    /// A session for the round `ctx` from 32 bytes of the participant's randomness (fresh
    /// for every round: a session's secrets are worthless outside its round, and must never
    /// be used in two).
    pub fn new(ctx: RoundContext, randomness: [u8; 32]) -> Self {
        Self {
            c: AgreementSecret::from_bytes(derive(&randomness, b"c")),
            s: AgreementSecret::from_bytes(derive(&randomness, b"s")),
            self_seed: derive(&randomness, b"b"),
            dealer: derive(&randomness, b"dealer"),
            noise: derive(&randomness, b"noise"),
            ctx,
            own: None,
        }
    }

    pub fn context(&self) -> &RoundContext {
        &self.ctx
    }

    /// The keys to advertise.
    pub fn keys(&self) -> AdvertisedKeys {
        AdvertisedKeys {
            c_public: self.c.public(),
            s_public: self.s.public(),
            self_seed_commitment: commit_self_seed(&self.self_seed),
        }
    }

    /// The signature over [`Session::keys`] with the participant's identity.
    pub fn sign(&self, identity: &SigningKey) -> [u8; 64] {
        self.keys().sign(&self.ctx, identity)
    }

    /// Checks the canister's list: every key signed by its participant's identity, every
    /// identity its principal's, indices in order, and `me` is this session.
    pub fn check_peers(&self, me: u32, peers: &[Peer]) -> Result<(), ParticipantError> {
        for (position, p) in peers.iter().enumerate() {
            if p.index as usize != position {
                return Err(ParticipantError::BadIndex {
                    index: p.index,
                    position,
                });
            }
            if principal_of_ed25519(&p.identity) != p.principal
                || p.keys.verify(&self.ctx, &p.identity, &p.signature).is_err()
            {
                return Err(ParticipantError::BadPeer { index: p.index });
            }
        }
        match peers.get(me as usize) {
            Some(p) if p.keys == self.keys() => Ok(()),
            _ => Err(ParticipantError::NotMe(me)),
        }
    }

    /// Phase 2: shares of the self-mask seed and of the mask secret, `threshold` of
    /// `peers.len()`, sealed to every other peer in index order (its own share it keeps).
    pub fn envelopes(
        &mut self,
        me: u32,
        peers: &[Peer],
        threshold: u32,
    ) -> Result<Vec<Vec<u8>>, ParticipantError> {
        self.check_peers(me, peers)?;
        let n = peers.len();
        let t = threshold as usize;
        let bs = share_seed(&self.self_seed, t, n, &derive(&self.dealer, b"b"))?;
        let ss = share_seed(&self.s.to_bytes(), t, n, &derive(&self.dealer, b"s"))?;
        let mut out = Vec::with_capacity(n.saturating_sub(1));
        for p in peers {
            let pair = SharePair {
                self_seed: bs[p.index as usize].clone(),
                mask_secret: ss[p.index as usize].clone(),
            };
            if p.index == me {
                self.own = Some(pair);
                continue;
            }
            let key = self.c.agree(&p.keys.c_public, &self.ctx)?;
            out.push(ShareEnvelope::seal(&self.ctx, me, p.index, &key, &pair).ciphertext);
        }
        Ok(out)
    }

    /// Phase 3: the masked input of a clipped delta at `weight`: pairwise masks with every
    /// peer that posted its shares.
    pub fn masked_input(
        &self,
        me: u32,
        peers: &[Peer],
        delta: &[f32],
        weight: u64,
        frac_bits: u32,
        noise: Option<Variance>,
    ) -> Result<Vec<i64>, ParticipantError> {
        self.check_peers(me, peers)?;
        let pairwise = peers
            .iter()
            .filter(|p| p.shared && p.index != me)
            .map(|p| Ok((p.index, self.s.agree(&p.keys.s_public, &self.ctx)?)))
            .collect::<Result<Vec<_>, KeyError>>()?;
        let mut x = weighted_fixed(delta, weight, frac_bits);
        if let Some(variance) = noise {
            // Distributed DP: this participant's share of the round's noise, inside the
            // mask, so nobody ever sees the input without it.
            let mut rng = ChaCha12Rng::from_seed(self.noise);
            discrete_gaussian::add_noise(&mut x, variance, &mut rng);
        }
        Ok(masked(&x, me, &self.self_seed, &pairwise))
    }

    /// Phase 4: one share per peer that posted its shares, in index order: of its
    /// self-mask seed if it committed a masked input, else of its mask secret. `inbox` is
    /// `(from, ciphertext)` as the canister relays them.
    pub fn reveal(
        &self,
        me: u32,
        peers: &[Peer],
        inbox: &[(u32, Vec<u8>)],
        threshold: u32,
    ) -> Result<Vec<Vec<u8>>, ParticipantError> {
        self.check_peers(me, peers)?;
        let survivors = peers.iter().filter(|p| p.masked).count() as u32;
        if survivors < threshold {
            return Err(ParticipantError::TooFewSurvivors {
                survivors,
                threshold,
            });
        }
        let own = self.own.as_ref().ok_or(ParticipantError::NotDealt)?;
        peers
            .iter()
            .filter(|p| p.shared)
            .map(|p| {
                let pair = if p.index == me {
                    own.clone()
                } else {
                    let (_, ciphertext) = inbox
                        .iter()
                        .find(|(from, _)| *from == p.index)
                        .ok_or(ParticipantError::MissingEnvelope(p.index))?;
                    let key = self.c.agree(&p.keys.c_public, &self.ctx)?;
                    ShareEnvelope {
                        from: p.index,
                        to: me,
                        ciphertext: ciphertext.clone(),
                    }
                    .open(&self.ctx, &key)?
                };
                let share = if p.masked {
                    pair.self_seed
                } else {
                    pair.mask_secret
                };
                Ok(share.to_bytes().to_vec())
            })
            .collect()
    }
}
