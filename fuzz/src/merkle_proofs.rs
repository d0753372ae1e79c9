//! `merkle_verify`: RFC 6962 inclusion proofs (`merkle::{proof_len, root_from_proof,
//! verify_inclusion}`) on honest and mutated proofs, and the append-only frontier.
//!
//! Input layout:
//!
//! | bytes | field |
//! |---|---|
//! | 2 | tree size `n = 1 + value % 300` |
//! | 8 | claimed index (raw `u64`; taken modulo `n` when mutation bit 0 is clear) |
//! | 8 | claimed size (raw `u64`; `n` when mutation bit 1 is clear) |
//! | 1 | mutations: bit 2 flip one proof bit, bit 3 drop the last hash, bit 4 append a hash, bit 5 swap two hashes, bit 6 verify a different leaf |
//! | 2 | which bit to flip / which hashes to swap |
//! | rest | leaf data: leaf `i` is `leaf_hash(rest[i % len])` (equal leaves happen) |
//!
//! Invariants: nothing panics, for any index and size; an honest proof verifies and
//! `root_from_proof` returns the tree's root; whatever the proof, verification against the
//! true root succeeds only for a leaf hash that is in the tree, and, when the claimed size is
//! the true size, only for the leaf at the claimed index; the frontier's root equals the
//! tree's root after every push.

use flic_protocol::merkle::{
    inclusion_proof, leaf_hash, proof_len, root, root_from_proof, verify_inclusion, Digest32,
    MerkleFrontier, MAX_PROOF_LEN,
};

use crate::Cursor;

pub fn run(data: &[u8]) {
    let mut c = Cursor::new(data);
    let n = 1 + (c.u16() % 300) as u64;
    let raw_index = c.u64();
    let raw_size = c.u64();
    let flags = c.u8();
    let pick = c.u16() as usize;
    let rest = c.rest();
    let leaf_data = |i: usize| -> Vec<u8> {
        if rest.is_empty() {
            (i as u64).to_le_bytes().to_vec()
        } else {
            vec![rest[i % rest.len()]]
        }
    };
    let leaves: Vec<Digest32> = (0..n as usize).map(|i| leaf_hash(&leaf_data(i))).collect();
    let tree_root = root(&leaves);

    // The frontier agrees with the recursive root at every size.
    let mut frontier = MerkleFrontier::new();
    for (i, l) in leaves.iter().enumerate() {
        frontier.push(*l);
        if i % 17 == 0 || i + 1 == leaves.len() {
            assert_eq!(
                frontier.root(),
                root(&leaves[..=i]),
                "frontier root at {}",
                i + 1
            );
        }
    }

    let index = if flags & 1 != 0 {
        raw_index
    } else {
        raw_index % n
    };
    let size = if flags & 2 != 0 { raw_size } else { n };
    // Never panics, for any index and size.
    let len = if index < size {
        proof_len(index, size)
    } else {
        0
    };
    assert!(len <= MAX_PROOF_LEN);

    let honest_index = index % n;
    let mut proof = inclusion_proof(&leaves, honest_index).expect("index < n");
    let honest = proof.clone();
    let leaf = leaves[honest_index as usize];
    assert_eq!(
        root_from_proof(&leaf, honest_index, n, &honest),
        Ok(tree_root)
    );
    assert!(verify_inclusion(&leaf, honest_index, n, &honest, &tree_root).is_ok());

    if flags & 4 != 0 && !proof.is_empty() {
        let bit = pick % (proof.len() * 256);
        proof[bit / 256][(bit % 256) / 8] ^= 1 << (bit % 8);
    }
    if flags & 8 != 0 {
        proof.pop();
    }
    if flags & 16 != 0 {
        proof.push(leaf_hash(&pick.to_le_bytes()));
    }
    if flags & 32 != 0 && proof.len() >= 2 {
        let (a, b) = (pick % proof.len(), (pick / 7) % proof.len());
        proof.swap(a, b);
    }
    let claimed_leaf = if flags & 64 != 0 {
        leaf_hash(&(pick as u64).to_le_bytes())
    } else {
        leaf
    };

    let _ = root_from_proof(&claimed_leaf, index, size, &proof);
    if verify_inclusion(&claimed_leaf, index, size, &proof, &tree_root).is_ok() {
        assert!(
            leaves.contains(&claimed_leaf),
            "a proof verified for a leaf that is not in the tree"
        );
        if size == n {
            assert!(index < n);
            assert_eq!(
                leaves[index as usize], claimed_leaf,
                "a proof verified for the wrong index"
            );
        }
    }
}
