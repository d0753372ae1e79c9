//! The state tree a certificate reveals, and the witness of a set of paths.
//!
//! The devnet builds the part of the IC's state tree a request can ask about (`time`,
//! `request_status`, `canister`, `subnet`), then reveals the requested paths. Every label
//! on the way stays visible, with the subtrees off the path pruned to their hashes, so a
//! verifier can prove a label absent as well as present (the IC's lookup rules).

use std::collections::BTreeMap;

use ic_certification::hash_tree::{empty, fork, label, leaf, pruned, HashTree};

/// A labelled tree: inner nodes map labels (sorted as bytes) to children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tree {
    Leaf(Vec<u8>),
    Node(BTreeMap<Vec<u8>, Tree>),
}

impl Default for Tree {
    fn default() -> Self {
        Tree::Node(BTreeMap::new())
    }
}

impl Tree {
    /// Sets the leaf at `path`, creating inner nodes on the way (a leaf in the way is replaced).
    pub fn insert(&mut self, path: &[&[u8]], value: Vec<u8>) {
        let Some((first, rest)) = path.split_first() else {
            *self = Tree::Leaf(value);
            return;
        };
        if let Tree::Leaf(_) = self {
            *self = Tree::default();
        }
        let Tree::Node(children) = self else {
            unreachable!("made a node above")
        };
        children
            .entry(first.to_vec())
            .or_default()
            .insert(rest, value);
    }

    /// The whole tree, nothing pruned.
    pub fn full(&self) -> HashTree<Vec<u8>> {
        self.witness(&[vec![]])
    }

    /// The tree with every value under one of `paths` revealed and all else pruned.
    pub fn witness(&self, paths: &[Vec<Vec<u8>>]) -> HashTree<Vec<u8>> {
        let refs: Vec<&[Vec<u8>]> = paths.iter().map(Vec::as_slice).collect();
        self.reveal(&refs)
    }

    fn reveal(&self, paths: &[&[Vec<u8>]]) -> HashTree<Vec<u8>> {
        if paths.is_empty() {
            return pruned(self.full_digest());
        }
        match self {
            Tree::Leaf(v) => leaf(v.clone()),
            Tree::Node(children) => {
                // A path ending here reveals everything below.
                if paths.iter().any(|p| p.is_empty()) {
                    return balanced(
                        children
                            .iter()
                            .map(|(l, c)| label(l.clone(), c.reveal(&[&[]])))
                            .collect(),
                    );
                }
                balanced(
                    children
                        .iter()
                        .map(|(l, c)| {
                            let below: Vec<&[Vec<u8>]> = paths
                                .iter()
                                .filter(|p| p[0] == *l)
                                .map(|p| &p[1..])
                                .collect();
                            label(l.clone(), c.reveal(&below))
                        })
                        .collect(),
                )
            }
        }
    }

    fn full_digest(&self) -> [u8; 32] {
        self.reveal(&[&[]]).digest()
    }
}

/// Forks over sorted labelled subtrees, balanced as the IC builds them.
fn balanced(mut nodes: Vec<HashTree<Vec<u8>>>) -> HashTree<Vec<u8>> {
    match nodes.len() {
        0 => empty(),
        1 => nodes.pop().expect("one node"),
        n => {
            let right = nodes.split_off(n / 2);
            fork(balanced(nodes), balanced(right))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ic_certification::LookupResult;

    fn sample() -> Tree {
        let mut t = Tree::default();
        t.insert(&[b"time"], vec![1]);
        t.insert(&[b"request_status", b"aa", b"status"], b"replied".to_vec());
        t.insert(&[b"request_status", b"aa", b"reply"], b"r1".to_vec());
        t.insert(&[b"request_status", b"bb", b"status"], b"replied".to_vec());
        t.insert(&[b"request_status", b"bb", b"reply"], b"secret".to_vec());
        t
    }

    #[test]
    fn witnesses_reveal_what_was_asked_prove_absence_and_keep_the_root() {
        let t = sample();
        let full = t.full();
        let w = t.witness(&[
            vec![b"time".to_vec()],
            vec![b"request_status".to_vec(), b"aa".to_vec()],
            vec![b"request_status".to_vec(), b"ab".to_vec()],
        ]);
        assert_eq!(
            w.digest(),
            full.digest(),
            "a witness certifies the same root"
        );
        assert_eq!(
            w.lookup_path([b"time".as_slice()]),
            LookupResult::Found(&[1])
        );
        assert_eq!(
            w.lookup_path([b"request_status".as_slice(), b"aa", b"reply"]),
            LookupResult::Found(b"r1")
        );
        assert_eq!(
            w.lookup_path([b"request_status".as_slice(), b"ab", b"status"]),
            LookupResult::Absent
        );
        assert_eq!(
            w.lookup_path([b"request_status".as_slice(), b"bb", b"reply"]),
            LookupResult::Unknown,
            "what was not asked for stays pruned"
        );
        assert_eq!(
            w.lookup_path([b"canister".as_slice()]),
            LookupResult::Absent
        );
    }
}
