//! The certified state tree (layout in `flic_protocol::certified`): the canister's
//! certified data is its root hash, and certified queries return a witness of it.
//!
//! The per-round record hashes live in an `RbTree` on the heap: a cache of the round
//! history in stable memory, rebuilt from it on every load (init and post_upgrade).

use flic_protocol::api::{CertifiedState, RoundRecord};
use flic_protocol::certified::{
    round_key, round_record_hash, u64_leaf, LABEL_HISTORY, LABEL_HISTORY_ROOT, LABEL_JOB,
    LABEL_MODEL_VERSION, LABEL_ROUND,
};
use ic_certification::{fork, labeled, leaf, pruned, AsHashTree, HashTree, RbTree};

/// Which part of `/history` a witness reveals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryWitness {
    /// None: `/history` is pruned.
    Pruned,
    /// The records of rounds `first..=last` (and the neighbours that prove nothing is
    /// between them).
    Range { first: u64, last: u64 },
}

#[derive(Default)]
pub struct CertifiedTree {
    history: RbTree<[u8; 8], [u8; 32]>,
    /// Entries in `history` (the `RbTree` does not count them).
    rounds: u64,
}

impl CertifiedTree {
    pub fn from_history(records: impl Iterator<Item = RoundRecord>) -> Self {
        let mut tree = Self::default();
        for r in records {
            tree.push_round(&r);
        }
        tree
    }

    pub fn push_round(&mut self, record: &RoundRecord) {
        let key = round_key(record.round);
        if self.history.get(&key).is_none() {
            self.rounds += 1;
        }
        self.history.insert(key, round_record_hash(record));
    }

    /// Round records in the tree, in O(1).
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// The tree with the scalars revealed and `/history` as asked.
    pub fn witness(&self, scalars: &CertifiedState, history: HistoryWitness) -> HashTree {
        let history = match history {
            HistoryWitness::Pruned => pruned(self.history.root_hash()),
            HistoryWitness::Range { first, last } => self
                .history
                .value_range(&round_key(first), &round_key(last)),
        };
        // In-order traversal is label order: history < history_root < job < model_version < round.
        fork(
            fork(
                labeled(LABEL_HISTORY, history),
                labeled(LABEL_HISTORY_ROOT, leaf(scalars.history_root.to_vec())),
            ),
            fork(
                labeled(LABEL_JOB, leaf(u64_leaf(scalars.job_id).to_vec())),
                fork(
                    labeled(
                        LABEL_MODEL_VERSION,
                        leaf(model_version_leaf(scalars).to_vec()),
                    ),
                    labeled(LABEL_ROUND, leaf(u64_leaf(scalars.round).to_vec())),
                ),
            ),
        )
    }

    /// The certified data: the root hash of the whole tree.
    pub fn root_hash(&self, scalars: &CertifiedState) -> [u8; 32] {
        self.witness(scalars, HistoryWitness::Pruned).digest()
    }
}

/// The model version leaf: empty before a model exists (the all-zero placeholder of
/// `CertifiedState` is never certified as a version).
fn model_version_leaf(scalars: &CertifiedState) -> &[u8] {
    if scalars.model_version.iter().all(|&b| b == 0) {
        &[]
    } else {
        scalars.model_version.as_slice()
    }
}

/// CBOR encoding of a witness, as IC certificates encode trees.
pub fn encode_tree(tree: &HashTree) -> Vec<u8> {
    serde_cbor::to_vec(tree).expect("CBOR encoding of a hash tree")
}
