//! The canister's side of a secure-aggregation round's end: checking what each survivor
//! reveals, and removing from the round's sum the masks that do not cancel.
//!
//! The participants of a round are, in index order, those whose keys were taken (`U0`);
//! those that also sent their shares (`U1`) mask with each other; those that also
//! committed a masked input (`U2`) are the survivors. Each survivor reveals one share per
//! member of `U1`: of its self-mask seed if it is a survivor, of its mask secret if it
//! dropped, never both, so the canister never holds both secrets of one participant.

use super::keys::{AdvertisedKeys, AgreementSecret, KeyError, RoundContext, SHARE_BYTES};
use super::{commit_self_seed, reconstruct_seed, SeedShare, ShareError};

/// One participant of a round, as the canister holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Participant {
    pub keys: AdvertisedKeys,
    /// Sent its share envelopes (in `U1`).
    pub shared: bool,
    /// Committed its masked input (in `U2`).
    pub masked: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RevealError {
    #[error("participant {0} did not commit a masked input this round: only survivors reveal")]
    NotASurvivor(u32),
    #[error("{got} shares revealed, the round has {expected} participants that sent shares: one share each, in index order")]
    WrongCount { got: usize, expected: usize },
    #[error("share {position} is {got} bytes, a share is {SHARE_BYTES}")]
    WrongLength { position: usize, got: usize },
    #[error("share {position} is at point {got}, participant {revealer} holds the shares at point {expected}")]
    WrongPoint {
        position: usize,
        revealer: u32,
        got: u64,
        expected: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnmaskError {
    #[error("{got} survivors revealed their shares, {threshold} are needed")]
    TooFewReveals { got: usize, threshold: u32 },
    #[error("the shares of participant {0}'s self-mask seed do not rebuild the seed it committed to: a revealer sent a wrong share")]
    SelfSeed(u32),
    #[error("the shares of participant {0}'s mask secret do not rebuild the key it advertised: a revealer sent a wrong share")]
    MaskSecret(u32),
    #[error("participant {participant}: {source}")]
    Share {
        participant: u32,
        source: ShareError,
    },
    #[error("participant {participant}'s pairwise seed: {source}")]
    Agreement { participant: u32, source: KeyError },
}

/// The indices of `U1`, ascending: the order of the shares a survivor reveals.
pub fn sharers(participants: &[Participant]) -> Vec<u32> {
    (0..participants.len() as u32)
        .filter(|&i| participants[i as usize].shared)
        .collect()
}

/// Checks survivor `revealer`'s shares (one per member of `U1`, in index order, each at
/// the revealer's own point) and parses them.
pub fn check_reveal(
    participants: &[Participant],
    revealer: u32,
    shares: &[Vec<u8>],
) -> Result<Vec<SeedShare>, RevealError> {
    if !participants
        .get(revealer as usize)
        .is_some_and(|p| p.masked)
    {
        return Err(RevealError::NotASurvivor(revealer));
    }
    let expected = sharers(participants).len();
    if shares.len() != expected {
        return Err(RevealError::WrongCount {
            got: shares.len(),
            expected,
        });
    }
    shares
        .iter()
        .enumerate()
        .map(|(position, bytes)| {
            let share = SeedShare::from_bytes(bytes).ok_or(RevealError::WrongLength {
                position,
                got: bytes.len(),
            })?;
            let point = revealer as u64 + 1;
            if share.x != point {
                return Err(RevealError::WrongPoint {
                    position,
                    revealer,
                    got: share.x,
                    expected: point,
                });
            }
            Ok(share)
        })
        .collect()
}

/// What the unmasking expanded: the self masks and dropped pairs it removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unmasked {
    pub survivors: u32,
    pub dropped: u32,
    /// Mask streams expanded over every parameter (survivors + survivors x dropped).
    pub seeds: u64,
}

/// Removes from `sum` (the wrapping sum of the survivors' masked inputs) every mask that
/// does not cancel, from the reveals of at least `threshold` survivors (`(revealer,
/// shares)`, shares as [`check_reveal`] returns them; the first `threshold` in revealer
/// order are used). Every seed is rebuilt and checked before `sum` changes: on error it is
/// unchanged.
pub fn unmask(
    sum: &mut [i64],
    ctx: &RoundContext,
    participants: &[Participant],
    reveals: &[(u32, Vec<SeedShare>)],
    threshold: u32,
) -> Result<Unmasked, UnmaskError> {
    if reveals.len() < threshold as usize {
        return Err(UnmaskError::TooFewReveals {
            got: reveals.len(),
            threshold,
        });
    }
    let mut used: Vec<&(u32, Vec<SeedShare>)> = reveals.iter().collect();
    used.sort_by_key(|r| r.0);
    used.truncate(threshold as usize);
    let u1 = sharers(participants);
    let shares_of = |position: usize| -> Vec<SeedShare> {
        used.iter().map(|(_, s)| s[position].clone()).collect()
    };
    let survivors: Vec<u32> = u1
        .iter()
        .copied()
        .filter(|&i| participants[i as usize].masked)
        .collect();
    let mut self_seeds = Vec::new();
    let mut pairs: Vec<(u32, u32, [u8; 32])> = Vec::new();
    for (position, &j) in u1.iter().enumerate() {
        let p = &participants[j as usize];
        let secret =
            reconstruct_seed(&shares_of(position), threshold as usize).map_err(|source| {
                UnmaskError::Share {
                    participant: j,
                    source,
                }
            })?;
        if p.masked {
            if commit_self_seed(&secret) != p.keys.self_seed_commitment {
                return Err(UnmaskError::SelfSeed(j));
            }
            self_seeds.push(secret);
        } else {
            let s = AgreementSecret::from_bytes(secret);
            if s.public() != p.keys.s_public {
                return Err(UnmaskError::MaskSecret(j));
            }
            for &i in &survivors {
                let seed = s
                    .agree(&participants[i as usize].keys.s_public, ctx)
                    .map_err(|source| UnmaskError::Agreement {
                        participant: i,
                        source,
                    })?;
                pairs.push((i, j, seed));
            }
        }
    }
    super::remove_masks(sum, &self_seeds, &pairs);
    let dropped = (u1.len() - survivors.len()) as u32;
    Ok(Unmasked {
        survivors: survivors.len() as u32,
        dropped,
        seeds: (self_seeds.len() + pairs.len()) as u64,
    })
}

/// Erases a secret's bytes with volatile writes (the compiler may not drop them).
pub fn erase(bytes: &mut [u8; 32]) {
    for b in bytes.iter_mut() {
        // SAFETY: a valid, aligned, exclusive reference.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::{ShareEnvelope, SharePair};
    use super::super::{masked_input, share_seed};
    use super::*;
    use crate::hash::sha256_concat;
    use proptest::prelude::*;

    fn random(tag: &str, i: u64, seed: u64) -> [u8; 32] {
        sha256_concat(&[tag.as_bytes(), &i.to_le_bytes(), &seed.to_le_bytes()])
    }

    /// A round of `n` where `no_shares` never send shares and `no_input` send shares but
    /// no masked input; returns the unmasked sum and the plain sum of the survivors.
    fn round(
        n: usize,
        no_shares: &[usize],
        no_input: &[usize],
        seed: u64,
        corrupt: bool,
    ) -> (Result<Vec<i64>, UnmaskError>, Vec<i64>) {
        let ctx = RoundContext {
            canister_id: vec![1, 2, 3],
            job_id: 4,
            round: seed % 7,
        };
        let len = 33;
        let c: Vec<AgreementSecret> = (0..n)
            .map(|i| AgreementSecret::from_bytes(random("c", i as u64, seed)))
            .collect();
        let s: Vec<AgreementSecret> = (0..n)
            .map(|i| AgreementSecret::from_bytes(random("s", i as u64, seed)))
            .collect();
        let b: Vec<[u8; 32]> = (0..n).map(|i| random("b", i as u64, seed)).collect();
        let mut parts: Vec<Participant> = (0..n)
            .map(|i| Participant {
                keys: AdvertisedKeys {
                    c_public: c[i].public(),
                    s_public: s[i].public(),
                    self_seed_commitment: commit_self_seed(&b[i]),
                },
                shared: !no_shares.contains(&i),
                masked: false,
            })
            .collect();
        let u1 = sharers(&parts);
        let t = threshold(n as u32, 0.3);
        // Shares of the sharers, sealed to every other sharer.
        let mut held: Vec<Vec<SharePair>> = vec![Vec::new(); n];
        for &i in &u1 {
            let bs =
                share_seed(&b[i as usize], t as usize, n, &random("rb", i as u64, seed)).unwrap();
            let ss = share_seed(
                &s[i as usize].to_bytes(),
                t as usize,
                n,
                &random("rs", i as u64, seed),
            )
            .unwrap();
            for &j in &u1 {
                let pair = SharePair {
                    self_seed: bs[j as usize].clone(),
                    mask_secret: ss[j as usize].clone(),
                };
                let key = c[i as usize]
                    .agree(&parts[j as usize].keys.c_public, &ctx)
                    .unwrap();
                let env = ShareEnvelope::seal(&ctx, i, j, &key, &pair);
                let back = c[j as usize]
                    .agree(&parts[i as usize].keys.c_public, &ctx)
                    .unwrap();
                held[j as usize].push(env.open(&ctx, &back).unwrap());
            }
        }
        let mut sum = vec![0i64; len];
        let mut plain = vec![0i64; len];
        for &i in u1.iter().filter(|i| !no_input.contains(&(**i as usize))) {
            let delta: Vec<f32> = (0..len)
                .map(|k| {
                    (random("d", (i as usize * 100 + k) as u64, seed)[0] as f32 - 128.0) / 64.0
                })
                .collect();
            let pairwise: Vec<(u32, [u8; 32])> = u1
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| {
                    (
                        j,
                        s[i as usize]
                            .agree(&parts[j as usize].keys.s_public, &ctx)
                            .unwrap(),
                    )
                })
                .collect();
            let y = masked_input(&delta, 3, 20, i, &b[i as usize], &pairwise);
            let x = masked_input(&delta, 3, 20, i, &b[i as usize], &[]);
            let own = super::super::mask(&b[i as usize], len);
            for k in 0..len {
                sum[k] = sum[k].wrapping_add(y[k]);
                plain[k] = plain[k].wrapping_add(x[k].wrapping_sub(own[k] as i64));
            }
            parts[i as usize].masked = true;
        }
        let mut reveals = Vec::new();
        for &r in u1.iter().filter(|&&r| parts[r as usize].masked) {
            let bytes: Vec<Vec<u8>> = held[r as usize]
                .iter()
                .zip(&u1)
                .map(|(pair, &j)| {
                    let share = if parts[j as usize].masked {
                        &pair.self_seed
                    } else {
                        &pair.mask_secret
                    };
                    share.to_bytes().to_vec()
                })
                .collect();
            let mut shares = check_reveal(&parts, r, &bytes).unwrap();
            if corrupt && reveals.is_empty() {
                shares[0].y[0] ^= 1;
            }
            reveals.push((r, shares));
        }
        let before = sum.clone();
        let got = unmask(&mut sum, &ctx, &parts, &reveals, t);
        if got.is_err() {
            assert_eq!(sum, before, "a failed unmasking leaves the sum unchanged");
        }
        (got.map(|_| sum), plain)
    }

    use super::super::threshold;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// Dropouts before the shares and before the inputs, up to 30 % in all: the
        /// unmasked sum is the plain sum of the survivors' weighted fixed-point deltas.
        #[test]
        fn dropped_masks_are_removed(n in 3usize..11, seed in any::<u64>(), a in any::<u16>(), b in any::<u16>()) {
            let tolerated = (n as f64 * 0.3) as usize;
            let no_shares: Vec<usize> = (0..n).filter(|i| a >> i & 1 == 1).take(tolerated / 2).collect();
            let no_input: Vec<usize> = (0..n).filter(|i| b >> i & 1 == 1 && !no_shares.contains(i)).take(tolerated - no_shares.len()).collect();
            let (got, plain) = round(n, &no_shares, &no_input, seed, false);
            prop_assert_eq!(got.unwrap(), plain);
        }
    }

    #[test]
    fn a_wrong_share_is_caught_and_changes_nothing() {
        let (got, _) = round(7, &[], &[2], 5, true);
        assert!(
            matches!(
                got,
                Err(UnmaskError::SelfSeed(_)
                    | UnmaskError::MaskSecret(_)
                    | UnmaskError::Share { .. })
            ),
            "{got:?}"
        );
    }

    #[test]
    fn reveals_are_checked() {
        let k = AdvertisedKeys {
            c_public: [9; 32],
            s_public: [9; 32],
            self_seed_commitment: [0; 32],
        };
        let parts = vec![
            Participant {
                keys: k,
                shared: true,
                masked: true,
            },
            Participant {
                keys: k,
                shared: true,
                masked: false,
            },
            Participant {
                keys: k,
                shared: false,
                masked: false,
            },
        ];
        let share = |x: u64| SeedShare { x, y: [1; 5] }.to_bytes().to_vec();
        assert_eq!(
            check_reveal(&parts, 1, &[]),
            Err(RevealError::NotASurvivor(1))
        );
        assert_eq!(
            check_reveal(&parts, 7, &[]),
            Err(RevealError::NotASurvivor(7))
        );
        assert_eq!(
            check_reveal(&parts, 0, &[share(1)]),
            Err(RevealError::WrongCount {
                got: 1,
                expected: 2
            })
        );
        assert_eq!(
            check_reveal(&parts, 0, &[share(1), vec![0; 5]]),
            Err(RevealError::WrongLength {
                position: 1,
                got: 5
            })
        );
        assert!(matches!(
            check_reveal(&parts, 0, &[share(1), share(2)]),
            Err(RevealError::WrongPoint { position: 1, .. })
        ));
        assert_eq!(
            check_reveal(&parts, 0, &[share(1), share(1)])
                .unwrap()
                .len(),
            2
        );
        let mut sum = vec![0i64; 4];
        assert_eq!(
            unmask(
                &mut sum,
                &RoundContext {
                    canister_id: vec![],
                    job_id: 0,
                    round: 0
                },
                &parts,
                &[],
                2
            ),
            Err(UnmaskError::TooFewReveals {
                got: 0,
                threshold: 2
            })
        );
    }

    #[test]
    fn thresholds() {
        assert_eq!(threshold(10, 0.0), 10);
        assert_eq!(threshold(10, 0.1), 9);
        assert_eq!(threshold(10, 0.3), 7);
        assert_eq!(threshold(10, 0.49), 6);
        assert_eq!(threshold(3, 0.3), 3);
        assert_eq!(threshold(4, 0.3), 3);
        assert_eq!(threshold(1, 0.3), 1);
    }
}
