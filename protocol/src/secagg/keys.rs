//! The keys of secure aggregation (Bonawitz et al. 2017, SecAgg+ of Bell et al. 2020):
//! every participant of a round advertises two X25519 public keys signed by its identity,
//! one (`c`) to encrypt the Shamir shares it sends its peers, one (`s`) from which each
//! pair of participants agrees on the seed of their pairwise mask.
//!
//! - [`AdvertisedKeys`]: the two public keys and the commitment to the self-mask seed,
//!   signed with the participant's Ed25519 key over
//!   `"flic/secagg-keys/v1" || round context || c_pk || s_pk || commitment`, so that the
//!   canister, as the bulletin board, cannot substitute keys (a man in the middle). The
//!   canister gives each participant its index (its Shamir point is `index + 1`) in the
//!   order the keys arrive, and binds it to the participant's principal.
//! - [`AgreementSecret::agree`]: X25519, then `sha256("flic/secagg-agree/v1" || round
//!   context || the two public keys in ascending order || shared point)`: both sides get
//!   the same 32 bytes, bound to the round. A low-order peer key (an all-zero shared
//!   point) is refused.
//! - [`ShareEnvelope`]: participant `from`'s shares of its self-mask seed and of its mask
//!   secret for participant `to`, sealed with ChaCha20-Poly1305 under the key the two
//!   agree on from their `c` keys, with the round context and both indices as associated
//!   data. Only `to` can open it; any change to it, or to where it claims to go, fails.
//!
//! The round context is the canister, the job and the round: keys and envelopes of one
//! round are useless in any other.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use curve25519_dalek::montgomery::MontgomeryPoint;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::{SeedShare, SEED_LIMBS};
use crate::hash::sha256_concat;

pub const KEYS_TAG: &[u8] = b"flic/secagg-keys/v1";
pub const AGREE_TAG: &[u8] = b"flic/secagg-agree/v1";
pub const ENVELOPE_TAG: &[u8] = b"flic/secagg-envelope/v1";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the peer's public key is of low order: the shared secret would be known to anyone")]
    LowOrderKey,
    #[error("the advertised keys' signature does not verify with the participant's identity key")]
    BadSignature,
    #[error("the share envelope from {from} to {to} does not open: it was altered, misaddressed or sealed under another key")]
    Unopenable { from: u32, to: u32 },
}

/// Where a secure-aggregation round runs: everything is bound to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundContext {
    pub canister_id: Vec<u8>,
    pub job_id: u64,
    pub round: u64,
}

impl RoundContext {
    /// `len(canister) as u8 || canister || job (u64 LE) || round (u64 LE)`.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.canister_id.len() + 16);
        out.push(self.canister_id.len() as u8);
        out.extend_from_slice(&self.canister_id);
        out.extend_from_slice(&self.job_id.to_le_bytes());
        out.extend_from_slice(&self.round.to_le_bytes());
        out
    }
}

/// An X25519 secret (32 random bytes from the participant's own randomness).
#[derive(Clone)]
pub struct AgreementSecret([u8; 32]);

impl AgreementSecret {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    pub fn public(&self) -> [u8; 32] {
        MontgomeryPoint::mul_base_clamped(self.0).to_bytes()
    }

    /// The 32 bytes this secret and `their_public` agree on in `ctx` (the same from both
    /// sides).
    pub fn agree(&self, their_public: &[u8; 32], ctx: &RoundContext) -> Result<[u8; 32], KeyError> {
        let shared = MontgomeryPoint(*their_public)
            .mul_clamped(self.0)
            .to_bytes();
        if shared == [0; 32] {
            return Err(KeyError::LowOrderKey);
        }
        let mine = self.public();
        let (lo, hi) = if mine <= *their_public {
            (mine, *their_public)
        } else {
            (*their_public, mine)
        };
        Ok(sha256_concat(&[AGREE_TAG, &ctx.bytes(), &lo, &hi, &shared]))
    }
}

/// A participant's two public keys for a round, and the commitment to its self-mask seed
/// ([`super::commit_self_seed`]), as it posts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdvertisedKeys {
    pub c_public: [u8; 32],
    pub s_public: [u8; 32],
    pub self_seed_commitment: [u8; 32],
}

impl AdvertisedKeys {
    pub fn signing_bytes(&self, ctx: &RoundContext) -> Vec<u8> {
        [
            KEYS_TAG,
            &ctx.bytes(),
            &self.c_public,
            &self.s_public,
            &self.self_seed_commitment,
        ]
        .concat()
    }

    pub fn sign(&self, ctx: &RoundContext, identity: &SigningKey) -> [u8; 64] {
        identity.sign(&self.signing_bytes(ctx)).to_bytes()
    }

    /// Checks the signature with the participant's Ed25519 public key (strictly: no
    /// malleable or small-order signatures).
    pub fn verify(
        &self,
        ctx: &RoundContext,
        identity: &[u8; 32],
        signature: &[u8],
    ) -> Result<(), KeyError> {
        let key = VerifyingKey::from_bytes(identity).map_err(|_| KeyError::BadSignature)?;
        let signature = Signature::from_slice(signature).map_err(|_| KeyError::BadSignature)?;
        key.verify_strict(&self.signing_bytes(ctx), &signature)
            .map_err(|_| KeyError::BadSignature)
    }
}

/// What `from` sends `to`: its shares (at `to`'s point) of its self-mask seed and of its
/// mask secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharePair {
    pub self_seed: SeedShare,
    pub mask_secret: SeedShare,
}

/// A sealed [`SharePair`], as the canister relays it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareEnvelope {
    pub from: u32,
    pub to: u32,
    pub ciphertext: Vec<u8>,
}

fn envelope_aad(ctx: &RoundContext, from: u32, to: u32) -> Vec<u8> {
    [
        ENVELOPE_TAG,
        &ctx.bytes(),
        &from.to_le_bytes(),
        &to.to_le_bytes(),
    ]
    .concat()
}

fn share_bytes(s: &SeedShare, out: &mut Vec<u8>) {
    out.extend_from_slice(&s.to_bytes());
}

fn share_from(bytes: &[u8]) -> SeedShare {
    SeedShare::from_bytes(bytes).expect("a share's length is checked before")
}

/// Bytes of a [`SeedShare`] on the wire: `x`, then the limbs, `u64` LE each.
pub const SHARE_BYTES: usize = 8 * (1 + SEED_LIMBS);

/// Bytes of a sealed [`SharePair`]: two shares and the 16-byte tag.
pub const ENVELOPE_BYTES: usize = 2 * SHARE_BYTES + 16;

impl SeedShare {
    pub fn to_bytes(&self) -> [u8; SHARE_BYTES] {
        let mut out = [0u8; SHARE_BYTES];
        out[..8].copy_from_slice(&self.x.to_le_bytes());
        for (l, y) in self.y.iter().enumerate() {
            out[8 + 8 * l..16 + 8 * l].copy_from_slice(&y.to_le_bytes());
        }
        out
    }

    /// `None` unless `bytes` is exactly [`SHARE_BYTES`] long.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != SHARE_BYTES {
            return None;
        }
        let word =
            |k: usize| u64::from_le_bytes(bytes[8 * k..8 * k + 8].try_into().expect("8 bytes"));
        let mut y = [0u64; SEED_LIMBS];
        for (l, v) in y.iter_mut().enumerate() {
            *v = word(1 + l);
        }
        Some(SeedShare { x: word(0), y })
    }
}

/// The key `from` and `to` agree on from their `c` keys, as an AEAD key. Each pair seals
/// one envelope per round under it, so a fixed nonce is never reused.
fn seal_key(agreed: &[u8; 32]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(Key::from_slice(&sha256_concat(&[ENVELOPE_TAG, agreed])))
}

impl ShareEnvelope {
    /// Seals `shares` from `from` to `to` under `agreed` (the two's `c`-key agreement).
    pub fn seal(
        ctx: &RoundContext,
        from: u32,
        to: u32,
        agreed: &[u8; 32],
        shares: &SharePair,
    ) -> Self {
        let mut plain = Vec::with_capacity(2 * SHARE_BYTES);
        share_bytes(&shares.self_seed, &mut plain);
        share_bytes(&shares.mask_secret, &mut plain);
        let ciphertext = seal_key(agreed)
            .encrypt(
                Nonce::from_slice(&[0; 12]),
                Payload {
                    msg: &plain,
                    aad: &envelope_aad(ctx, from, to),
                },
            )
            .expect("ChaCha20-Poly1305 seals any message this short");
        Self {
            from,
            to,
            ciphertext,
        }
    }

    /// Opens the envelope with `agreed`; any alteration fails.
    pub fn open(&self, ctx: &RoundContext, agreed: &[u8; 32]) -> Result<SharePair, KeyError> {
        let unopenable = KeyError::Unopenable {
            from: self.from,
            to: self.to,
        };
        let plain = seal_key(agreed)
            .decrypt(
                Nonce::from_slice(&[0; 12]),
                Payload {
                    msg: &self.ciphertext,
                    aad: &envelope_aad(ctx, self.from, self.to),
                },
            )
            .map_err(|_| unopenable.clone())?;
        if plain.len() != 2 * SHARE_BYTES {
            return Err(unopenable);
        }
        Ok(SharePair {
            self_seed: share_from(&plain[..SHARE_BYTES]),
            mask_secret: share_from(&plain[SHARE_BYTES..]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{masked, reconstruct_seed, remove_masks, share_seed};
    use super::*;
    use proptest::prelude::*;

    fn ctx(round: u64) -> RoundContext {
        RoundContext {
            canister_id: vec![0, 0, 0, 0, 0, 0, 0, 1, 1, 1],
            job_id: 7,
            round,
        }
    }

    /// 32 bytes of a participant's randomness, from a test seed.
    fn random(tag: &str, i: u64, seed: u64) -> [u8; 32] {
        sha256_concat(&[tag.as_bytes(), &i.to_le_bytes(), &seed.to_le_bytes()])
    }

    #[test]
    fn both_sides_agree_on_a_seed_bound_to_the_round() {
        let a = AgreementSecret::from_bytes([1; 32]);
        let b = AgreementSecret::from_bytes([2; 32]);
        let ab = a.agree(&b.public(), &ctx(3)).unwrap();
        assert_eq!(ab, b.agree(&a.public(), &ctx(3)).unwrap());
        assert_ne!(ab, a.agree(&b.public(), &ctx(4)).unwrap(), "another round");
        let c = AgreementSecret::from_bytes([3; 32]);
        assert_ne!(ab, a.agree(&c.public(), &ctx(3)).unwrap(), "another peer");
        // The all-zero point (and the other low-order points) make a known secret.
        assert_eq!(a.agree(&[0; 32], &ctx(3)), Err(KeyError::LowOrderKey));
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(a.agree(&one, &ctx(3)), Err(KeyError::LowOrderKey));
    }

    #[test]
    fn advertised_keys_are_signed_by_their_participant() {
        let id = crate::submission::signing_key_from_seed([9; 32]);
        let keys = AdvertisedKeys {
            c_public: AgreementSecret::from_bytes([4; 32]).public(),
            s_public: AgreementSecret::from_bytes([5; 32]).public(),
            self_seed_commitment: super::super::commit_self_seed(&[6; 32]),
        };
        let sig = keys.sign(&ctx(1), &id);
        let pk = id.verifying_key().to_bytes();
        keys.verify(&ctx(1), &pk, &sig).unwrap();
        // Another round, another key, another commitment, a flipped bit: refused.
        assert_eq!(keys.verify(&ctx(2), &pk, &sig), Err(KeyError::BadSignature));
        let other = crate::submission::signing_key_from_seed([8; 32]).verifying_key();
        assert_eq!(
            keys.verify(&ctx(1), &other.to_bytes(), &sig),
            Err(KeyError::BadSignature)
        );
        let moved = AdvertisedKeys {
            self_seed_commitment: [0; 32],
            ..keys
        };
        assert_eq!(
            moved.verify(&ctx(1), &pk, &sig),
            Err(KeyError::BadSignature)
        );
        let mut bad = sig;
        bad[10] ^= 1;
        assert_eq!(keys.verify(&ctx(1), &pk, &bad), Err(KeyError::BadSignature));
        assert_eq!(
            keys.verify(&ctx(1), &pk, &sig[..63]),
            Err(KeyError::BadSignature)
        );
    }

    #[test]
    fn an_envelope_opens_only_for_its_recipient_and_unaltered() {
        let (a, b, c) = (
            AgreementSecret::from_bytes([1; 32]),
            AgreementSecret::from_bytes([2; 32]),
            AgreementSecret::from_bytes([3; 32]),
        );
        let shares = share_seed(&[6; 32], 2, 3, &[7; 32]).unwrap();
        let pair = SharePair {
            self_seed: shares[1].clone(),
            mask_secret: shares[2].clone(),
        };
        let key = a.agree(&b.public(), &ctx(0)).unwrap();
        let env = ShareEnvelope::seal(&ctx(0), 0, 1, &key, &pair);
        let by_b = b.agree(&a.public(), &ctx(0)).unwrap();
        assert_eq!(env.open(&ctx(0), &by_b).unwrap(), pair);
        // Not for c; not in another round; not redirected; not altered.
        let by_c = c.agree(&a.public(), &ctx(0)).unwrap();
        assert!(env.open(&ctx(0), &by_c).is_err());
        assert!(env.open(&ctx(1), &by_b).is_err());
        let redirected = ShareEnvelope {
            to: 2,
            ..env.clone()
        };
        assert!(redirected.open(&ctx(0), &by_b).is_err());
        for at in [0, env.ciphertext.len() / 2, env.ciphertext.len() - 1] {
            let mut bad = env.clone();
            bad.ciphertext[at] ^= 0x80;
            assert_eq!(
                bad.open(&ctx(0), &by_b),
                Err(KeyError::Unopenable { from: 0, to: 1 })
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// The whole protocol offline: keys advertised and checked, pairwise seeds agreed,
        /// shares sealed to every peer, masked inputs from the survivors, then the
        /// survivors open what was sent to them, the self-mask seeds of the survivors and
        /// the mask secrets of the dropped are rebuilt from `t` shares, and the sum is the
        /// plain sum of the survivors' inputs, bit for bit.
        #[test]
        fn a_round_with_dropouts_sums_exactly(
            n in 3usize..8,
            drop_mask in any::<u8>(),
            seed in any::<u64>(),
            len in 1usize..40,
        ) {
            let t = n / 2 + 1;
            let ctx = ctx(seed % 5);
            let dropped: Vec<bool> = (0..n).map(|i| drop_mask >> i & 1 == 1).collect();
            // At least t survivors are needed to unmask.
            prop_assume!(dropped.iter().filter(|d| !**d).count() >= t);
            let c: Vec<AgreementSecret> = (0..n).map(|i| AgreementSecret::from_bytes(random("c", i as u64, seed))).collect();
            let s: Vec<AgreementSecret> = (0..n).map(|i| AgreementSecret::from_bytes(random("s", i as u64, seed))).collect();
            let b: Vec<[u8; 32]> = (0..n).map(|i| random("b", i as u64, seed)).collect();
            // 1. Advertise; everyone checks everyone's signature.
            let ids: Vec<SigningKey> = (0..n).map(|i| crate::submission::signing_key_from_seed(random("id", i as u64, seed))).collect();
            let ads: Vec<AdvertisedKeys> = (0..n).map(|i| AdvertisedKeys { c_public: c[i].public(), s_public: s[i].public(), self_seed_commitment: super::super::commit_self_seed(&b[i]) }).collect();
            for i in 0..n {
                let sig = ads[i].sign(&ctx, &ids[i]);
                ads[i].verify(&ctx, &ids[i].verifying_key().to_bytes(), &sig).unwrap();
            }
            // 2. Shares of b_i and of s_sk_i, sealed to every peer (and kept for oneself).
            let mut inbox: Vec<Vec<ShareEnvelope>> = vec![Vec::new(); n];
            let mut own: Vec<SharePair> = Vec::new();
            for i in 0..n {
                let bs = share_seed(&b[i], t, n, &random("rb", i as u64, seed)).unwrap();
                let ss = share_seed(&s[i].to_bytes(), t, n, &random("rs", i as u64, seed)).unwrap();
                for j in 0..n {
                    let pair = SharePair { self_seed: bs[j].clone(), mask_secret: ss[j].clone() };
                    if i == j {
                        own.push(pair);
                        continue;
                    }
                    let key = c[i].agree(&ads[j].c_public, &ctx).unwrap();
                    inbox[j].push(ShareEnvelope::seal(&ctx, i as u32, j as u32, &key, &pair));
                }
            }
            // 3. Masked inputs of those who do not drop.
            let x: Vec<Vec<i64>> = (0..n).map(|i| (0..len).map(|k| (random("x", (i * 100 + k) as u64, seed)[0] as i64 - 128) * 1_000_003).collect()).collect();
            let mut sum = vec![0i64; len];
            let mut expected = vec![0i64; len];
            for i in (0..n).filter(|&i| !dropped[i]) {
                let pairwise: Vec<(u32, [u8; 32])> = (0..n).filter(|&j| j != i).map(|j| (j as u32, s[i].agree(&ads[j].s_public, &ctx).unwrap())).collect();
                let y = masked(&x[i], i as u32, &b[i], &pairwise);
                for k in 0..len {
                    sum[k] = sum[k].wrapping_add(y[k]);
                    expected[k] = expected[k].wrapping_add(x[i][k]);
                }
            }
            // 4. Unmasking: each survivor opens its inbox; shares of survivors' b and of
            // the dropped's s_sk are revealed (never both for one participant).
            let mut b_shares: Vec<Vec<SeedShare>> = vec![Vec::new(); n];
            let mut s_shares: Vec<Vec<SeedShare>> = vec![Vec::new(); n];
            for j in (0..n).filter(|&j| !dropped[j]) {
                let mut pairs: Vec<(usize, SharePair)> = vec![(j, own[j].clone())];
                for env in &inbox[j] {
                    let key = c[j].agree(&ads[env.from as usize].c_public, &ctx).unwrap();
                    pairs.push((env.from as usize, env.open(&ctx, &key).unwrap()));
                }
                for (owner, pair) in pairs {
                    if dropped[owner] {
                        s_shares[owner].push(pair.mask_secret);
                    } else {
                        b_shares[owner].push(pair.self_seed);
                    }
                }
            }
            let survivor_seeds: Vec<[u8; 32]> = (0..n).filter(|&i| !dropped[i]).map(|i| reconstruct_seed(&b_shares[i], t).unwrap()).collect();
            let mut dropped_pairs = Vec::new();
            for d in (0..n).filter(|&d| dropped[d]) {
                let s_d = AgreementSecret::from_bytes(reconstruct_seed(&s_shares[d], t).unwrap());
                prop_assert_eq!(s_d.public(), ads[d].s_public);
                for i in (0..n).filter(|&i| !dropped[i]) {
                    dropped_pairs.push((i as u32, d as u32, s_d.agree(&ads[i].s_public, &ctx).unwrap()));
                }
            }
            remove_masks(&mut sum, &survivor_seeds, &dropped_pairs);
            prop_assert_eq!(sum, expected);
        }
    }
}
