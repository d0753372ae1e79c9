//! RFC 6962 Merkle trees over SHA-256 with leaf/node domain separation.
//!
//! - leaf hash: `sha256(0x00 || data)`
//! - node hash: `sha256(0x01 || left || right)`
//! - shape: for `n > 1` leaves, the left subtree holds the largest power of two `k < n`
//!   leaves and the right subtree the remaining `n - k` (RFC 6962 section 2.1).
//! - the root of zero leaves is `sha256("")`.
//!
//! Used for chunk hashes of submissions and model downloads, the per-round contributions
//! root, the history root, and (later) dataset commitments and receipts.

use crate::hash::{sha256, sha256_concat, to_hex};

pub type Digest32 = [u8; 32];

/// Largest inclusion proof accepted: a tree of 2^64 leaves has height 64.
pub const MAX_PROOF_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    #[error("leaf index {index} is outside a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("inclusion proof has {got} hashes, a tree of {size} leaves needs {expected} for leaf {index}")]
    WrongProofLength {
        index: u64,
        size: u64,
        expected: usize,
        got: usize,
    },
    #[error(
        "inclusion proof leads to root {}, expected {}",
        to_hex(computed),
        to_hex(expected)
    )]
    RootMismatch {
        computed: Digest32,
        expected: Digest32,
    },
}

/// `sha256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Digest32 {
    sha256_concat(&[&[0x00], data])
}

/// `sha256(0x01 || left || right)`.
pub fn node_hash(left: &Digest32, right: &Digest32) -> Digest32 {
    sha256_concat(&[&[0x01], left, right])
}

/// Root of the empty tree, `sha256("")`.
pub fn empty_root() -> Digest32 {
    sha256(&[])
}

/// Largest power of two strictly below `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Root over already-hashed leaves (`leaf_hash` of each item).
pub fn root(leaves: &[Digest32]) -> Digest32 {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// Audit path for leaf `index`, ordered from the leaf upwards.
pub fn inclusion_proof(leaves: &[Digest32], index: u64) -> Result<Vec<Digest32>, MerkleError> {
    let size = leaves.len() as u64;
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    path(leaves, index as usize, &mut proof);
    Ok(proof)
}

fn path(leaves: &[Digest32], index: usize, out: &mut Vec<Digest32>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split_point(n as u64) as usize;
    if index < k {
        path(&leaves[..k], index, out);
        out.push(root(&leaves[k..]));
    } else {
        path(&leaves[k..], index - k, out);
        out.push(root(&leaves[..k]));
    }
}

/// Number of hashes in the audit path of leaf `index` in a tree of `size` leaves.
pub fn proof_len(index: u64, size: u64) -> usize {
    let (mut index, mut size, mut len) = (index, size, 0usize);
    while size > 1 {
        let k = split_point(size);
        if index < k {
            size = k;
        } else {
            index -= k;
            size -= k;
        }
        len += 1;
    }
    len
}

/// Recomputes the root from a leaf hash and its audit path. Checks bounds and the proof
/// length before hashing.
pub fn root_from_proof(
    leaf: &Digest32,
    index: u64,
    size: u64,
    proof: &[Digest32],
) -> Result<Digest32, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let expected = proof_len(index, size);
    if proof.len() != expected || proof.len() > MAX_PROOF_LEN {
        return Err(MerkleError::WrongProofLength {
            index,
            size,
            expected,
            got: proof.len(),
        });
    }
    // Walk down to record, at each level, whether the leaf went left or right; then hash up.
    let mut went_left = [false; MAX_PROOF_LEN];
    let (mut i, mut s, mut depth) = (index, size, 0usize);
    while s > 1 {
        let k = split_point(s);
        if i < k {
            went_left[depth] = true;
            s = k;
        } else {
            i -= k;
            s -= k;
        }
        depth += 1;
    }
    let mut acc = *leaf;
    for (level, sibling) in proof.iter().enumerate() {
        // proof[0] is the sibling nearest the leaf, i.e. the deepest split.
        let left = went_left[depth - 1 - level];
        acc = if left {
            node_hash(&acc, sibling)
        } else {
            node_hash(sibling, &acc)
        };
    }
    Ok(acc)
}

/// Verifies that `leaf` sits at `index` in the tree of `size` leaves with root `root`.
pub fn verify_inclusion(
    leaf: &Digest32,
    index: u64,
    size: u64,
    proof: &[Digest32],
    expected_root: &Digest32,
) -> Result<(), MerkleError> {
    let computed = root_from_proof(leaf, index, size, proof)?;
    if &computed != expected_root {
        return Err(MerkleError::RootMismatch {
            computed,
            expected: *expected_root,
        });
    }
    Ok(())
}

/// Append-only tree kept as its frontier: the roots of the perfect subtrees that make up
/// the first `size` leaves, largest first (one per set bit of `size`). Appending is
/// O(log n) hashes, the root is O(log n), and storage is at most 64 digests, so a canister
/// can keep an ever-growing history root without re-reading old leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerkleFrontier {
    size: u64,
    /// Perfect subtree roots, largest (leftmost) first.
    peaks: Vec<Digest32>,
}

impl MerkleFrontier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier from stored parts; `None` if `peaks` does not match `size`.
    pub fn from_parts(size: u64, peaks: Vec<Digest32>) -> Option<Self> {
        (size.count_ones() as usize == peaks.len()).then_some(Self { size, peaks })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn peaks(&self) -> &[Digest32] {
        &self.peaks
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Digest32) {
        let mut carry = leaf;
        // Merge equal-sized perfect subtrees like a binary counter increment.
        let mut merges = self.size.trailing_ones();
        while merges > 0 {
            let left = self.peaks.pop().expect("frontier has one peak per set bit");
            carry = node_hash(&left, &carry);
            merges -= 1;
        }
        self.peaks.push(carry);
        self.size += 1;
    }

    /// RFC 6962 root of all leaves pushed so far.
    pub fn root(&self) -> Digest32 {
        let mut iter = self.peaks.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(last) => iter.fold(*last, |acc, peak| node_hash(peak, &acc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Digest32> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_le_bytes()))
            .collect()
    }

    /// Reference: RFC 6962 MTH written directly from the definition.
    fn mth(data: &[Vec<u8>]) -> Digest32 {
        match data.len() {
            0 => sha256(&[]),
            1 => leaf_hash(&data[0]),
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node_hash(&mth(&data[..k]), &mth(&data[k..]))
            }
        }
    }

    #[test]
    fn root_matches_rfc_definition_and_separates_domains() {
        for n in 0..40 {
            let data: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; i % 5]).collect();
            let hashed: Vec<_> = data.iter().map(|d| leaf_hash(d)).collect();
            assert_eq!(root(&hashed), mth(&data), "n = {n}");
        }
        // A leaf whose data looks like two child hashes is not a node.
        let l = leaves(2);
        let mut fake = l[0].to_vec();
        fake.extend_from_slice(&l[1]);
        assert_ne!(leaf_hash(&fake), root(&l));
    }

    #[test]
    fn proofs_verify_for_every_leaf_and_fail_when_tampered() {
        for n in 1..34u64 {
            let ls = leaves(n as usize);
            let r = root(&ls);
            for i in 0..n {
                let p = inclusion_proof(&ls, i).unwrap();
                assert_eq!(p.len(), proof_len(i, n));
                verify_inclusion(&ls[i as usize], i, n, &p, &r).unwrap();
                if !p.is_empty() {
                    let mut bad = p.clone();
                    bad[0][0] ^= 1;
                    assert!(matches!(
                        verify_inclusion(&ls[i as usize], i, n, &bad, &r),
                        Err(MerkleError::RootMismatch { .. })
                    ));
                    assert!(matches!(
                        verify_inclusion(&ls[i as usize], i, n, &p[1..], &r),
                        Err(MerkleError::WrongProofLength { .. })
                    ));
                }
                if n > 1 {
                    let j = (i + 1) % n;
                    assert!(verify_inclusion(&ls[i as usize], j, n, &p, &r).is_err());
                }
            }
            assert_eq!(
                verify_inclusion(&ls[0], n, n, &[], &r),
                Err(MerkleError::IndexOutOfRange { index: n, size: n })
            );
        }
    }

    proptest! {
        #[test]
        fn frontier_root_equals_batch_root(n in 0usize..300) {
            let ls = leaves(n);
            let mut f = MerkleFrontier::new();
            for (i, l) in ls.iter().enumerate() {
                prop_assert_eq!(f.root(), root(&ls[..i]));
                f.push(*l);
            }
            prop_assert_eq!(f.root(), root(&ls));
            prop_assert_eq!(f.peaks().len(), n.count_ones() as usize);
            let back = MerkleFrontier::from_parts(f.size(), f.peaks().to_vec()).unwrap();
            prop_assert_eq!(back, f);
        }
    }
}
