//! Seeds every client derives the same way, so that a contributor's local training is
//! reproducible by anyone who knows the job, the round and the contributor: a simulated
//! contributor trains exactly as a real one would, and a verifier could retrain it.

use candid::Principal;

use crate::hash::sha256_concat;

/// Domain tag of [`shuffle_seed`].
pub const SHUFFLE_SEED_TAG: &[u8] = b"flic/shuffle/v1";

/// The seed that orders a contributor's batches in one round:
/// the first 8 bytes (little-endian `u64`) of
/// `sha256("flic/shuffle/v1" || job_seed (u64 LE) || round (u64 LE) || len(contributor) (u8) || contributor)`,
/// where `job_seed` is the job's `ClientHyperparameters::seed` and `contributor` the
/// caller principal's bytes. Distinct per contributor and per round, the same on every
/// machine.
pub fn shuffle_seed(job_seed: u64, round: u64, contributor: &Principal) -> u64 {
    tagged_seed(SHUFFLE_SEED_TAG, job_seed, round, contributor)
}

/// Domain tag of [`quantize_seed`].
pub const QUANTIZE_SEED_TAG: &[u8] = b"flic/quantize/v1";

/// The seed of a contributor's stochastic rounding in one round (`int4`, `int2`): as
/// [`shuffle_seed`] with the tag `flic/quantize/v1`, so that anyone who knows the job, the
/// round and the contributor can re-encode a delta to the same bytes.
pub fn quantize_seed(job_seed: u64, round: u64, contributor: &Principal) -> u64 {
    tagged_seed(QUANTIZE_SEED_TAG, job_seed, round, contributor)
}

/// `sha256(tag || job_seed || round || len(contributor) || contributor)`, first 8 bytes LE.
fn tagged_seed(tag: &[u8], job_seed: u64, round: u64, contributor: &Principal) -> u64 {
    let p = contributor.as_slice();
    let digest = sha256_concat(&[
        tag,
        &job_seed.to_le_bytes(),
        &round.to_le_bytes(),
        &[p.len() as u8],
        p,
    ]);
    u64::from_le_bytes(
        digest[..8]
            .try_into()
            .expect("a SHA-256 digest has 32 bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_seed_test_vector_and_separation() {
        let anonymous = Principal::anonymous();
        let other = Principal::management_canister();
        let s = shuffle_seed(0, 0, &anonymous);
        // Fixed bytes: a client in another language must reproduce this value.
        assert_eq!(
            s,
            shuffle_seed(0, 0, &Principal::from_text("2vxsx-fae").unwrap())
        );
        assert_eq!(s, SHUFFLE_VECTOR);
        assert_ne!(s, shuffle_seed(1, 0, &anonymous), "job seed matters");
        assert_ne!(s, shuffle_seed(0, 1, &anonymous), "round matters");
        assert_ne!(s, shuffle_seed(0, 0, &other), "contributor matters");
        assert_ne!(
            s,
            quantize_seed(0, 0, &anonymous),
            "the tags separate the seeds"
        );
    }

    /// `shuffle_seed(0, 0, anonymous)`; see docs/protocol.md.
    const SHUFFLE_VECTOR: u64 = 3_777_131_229_942_026_375;
}
