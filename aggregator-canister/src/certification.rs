//! The certified state tree (layout in `flic_protocol::certified`): the canister's
//! certified data is its root hash, and certified queries return a witness of it.
//!
//! The per-round record hashes under `/history` form the IC's `RbTree` (a left-leaning
//! red-black tree whose shape fixes the root hash). That tree used to live on the heap and
//! be rebuilt on every load by re-hashing every closed round's record: O(rounds) in
//! post_upgrade, so a long enough history would have put the canister past the upgrade
//! limit for good. [`HistoryTree`] is the same tree, node for node, kept in stable memory
//! (MemoryId 24): opening it reads one header, an insert touches O(log rounds) nodes, the
//! root hash is one read, and a witness of `k` consecutive rounds reads O(k + log rounds)
//! nodes. Its hashes and witnesses are byte-identical to `ic_certification::RbTree`'s
//! (`tests::history_tree_is_the_rb_tree`).
//!
//! Stable layout (little-endian): a 32-byte header (`FCT1`, 4 bytes padding, node count
//! u64, root slot u64 or `u64::MAX`, 8 reserved), then node slots of 96 bytes in insertion
//! order: key (round) u64, left slot u64, right slot u64 (`u64::MAX` = none), red u8,
//! 7 bytes padding, value (the record hash) 32 bytes, subtree hash 32 bytes. Nodes are
//! never removed (the history is append-only).

use std::cmp::Ordering::{Equal, Greater, Less};

use flic_protocol::api::{CertifiedState, RoundRecord};
use flic_protocol::certified::{
    round_key, round_record_hash, u64_leaf, LABEL_HISTORY, LABEL_HISTORY_ROOT, LABEL_JOB,
    LABEL_JOB_CONFIG, LABEL_MODEL_VERSION, LABEL_ROUND,
};
use ic_certification::hash_tree::{fork_hash, labeled_hash, leaf_hash};
use ic_certification::{empty, fork, labeled, leaf, pruned, HashTree};
use ic_stable_structures::{Memory, VectorMemory};

use crate::storage::Mem;

/// Which part of `/history` a witness reveals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryWitness {
    /// None: `/history` is pruned.
    Pruned,
    /// The records of rounds `first..=last` (`RbTree::value_range`). Nothing between them
    /// is pruned, and a bound that is not a round is replaced by its nearest round (shown
    /// as a key, its value pruned). So when `last` is the last closed round nothing after it
    /// is pruned and the witness proves that round `last + 1` does not exist; and a range
    /// that holds no round (`first = last =` the number of closed rounds) proves that no
    /// round from `first` on exists.
    Range { first: u64, last: u64 },
}

// ------------------------------------------------------------------ the stable RbTree

const MAGIC: &[u8; 4] = b"FCT1";
const HEADER_LEN: u64 = 32;
const NODE_LEN: u64 = 96;
const NONE: u64 = u64::MAX;
const WASM_PAGE: u64 = 65_536;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Node {
    key: u64,
    left: Option<u64>,
    right: Option<u64>,
    red: bool,
    value: [u8; 32],
    subtree: [u8; 32],
}

fn slot_bytes(slot: Option<u64>) -> [u8; 8] {
    slot.unwrap_or(NONE).to_le_bytes()
}

fn slot_from(bytes: &[u8]) -> Option<u64> {
    let v = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
    (v != NONE).then_some(v)
}

impl Node {
    fn encode(&self) -> [u8; NODE_LEN as usize] {
        let mut b = [0u8; NODE_LEN as usize];
        b[0..8].copy_from_slice(&self.key.to_le_bytes());
        b[8..16].copy_from_slice(&slot_bytes(self.left));
        b[16..24].copy_from_slice(&slot_bytes(self.right));
        b[24] = u8::from(self.red);
        b[32..64].copy_from_slice(&self.value);
        b[64..96].copy_from_slice(&self.subtree);
        b
    }

    fn decode(b: &[u8; NODE_LEN as usize]) -> Self {
        Self {
            key: u64::from_le_bytes(b[0..8].try_into().expect("8 bytes")),
            left: slot_from(&b[8..16]),
            right: slot_from(&b[16..24]),
            red: b[24] == 1,
            value: b[32..64].try_into().expect("32 bytes"),
            subtree: b[64..96].try_into().expect("32 bytes"),
        }
    }

    /// `labeled_hash(key, leaf_hash(value))`: the hash of the node's own `labeled` entry.
    fn data_hash(&self) -> [u8; 32] {
        labeled_hash(&round_key(self.key), &leaf_hash(&self.value))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bound {
    Exact(u64),
    Neighbor(u64),
}

impl Bound {
    fn key(self) -> u64 {
        match self {
            Bound::Exact(k) | Bound::Neighbor(k) => k,
        }
    }
}

/// A witness under construction (the `HashTree` shapes `RbTree` builds).
enum W {
    Empty,
    Pruned([u8; 32]),
    Fork(Box<W>, Box<W>),
    /// `labeled(key, leaf(value))`.
    Data(u64, [u8; 32]),
    /// `labeled(key, pruned(leaf_hash(value)))`: a neighbour, present but not revealed.
    Key(u64, [u8; 32]),
}

impl W {
    fn fork(l: W, r: W) -> W {
        W::Fork(Box::new(l), Box::new(r))
    }

    /// `RbTree`'s `three_way_fork`: left subtree, node, right subtree.
    fn three(l: W, m: W, r: W) -> W {
        match (l, m, r) {
            (W::Empty, m, W::Empty) => m,
            (l, m, W::Empty) => W::fork(l, m),
            (W::Empty, m, r) => W::fork(m, r),
            (W::Pruned(lh), W::Pruned(mh), W::Pruned(rh)) => {
                W::Pruned(fork_hash(&lh, &fork_hash(&mh, &rh)))
            }
            (l, W::Pruned(mh), W::Pruned(rh)) => W::fork(l, W::Pruned(fork_hash(&mh, &rh))),
            (l, m, r) => W::fork(l, W::fork(m, r)),
        }
    }

    fn into_tree(self) -> HashTree {
        match self {
            W::Empty => empty(),
            W::Pruned(h) => pruned(h),
            W::Fork(l, r) => fork(l.into_tree(), r.into_tree()),
            W::Data(k, v) => labeled(round_key(k), leaf(v.to_vec())),
            W::Key(k, v) => labeled(round_key(k), pruned(leaf_hash(&v))),
        }
    }
}

/// The `RbTree<[u8; 8], [u8; 32]>` of round record hashes, in a stable memory.
pub struct HistoryTree<M: Memory> {
    mem: M,
    count: u64,
    root: Option<u64>,
}

impl<M: Memory> HistoryTree<M> {
    /// Opens the tree in `mem` (an empty memory is an empty tree; nothing is written until
    /// the first insert). Reads the header only.
    pub fn open(mem: M) -> Self {
        if mem.size() == 0 {
            return Self {
                mem,
                count: 0,
                root: None,
            };
        }
        let mut h = [0u8; HEADER_LEN as usize];
        mem.read(0, &mut h);
        if h[0..4] == [0; 4] {
            // Grown but never written (cannot happen: the header is written with the first
            // node), read as empty.
            return Self {
                mem,
                count: 0,
                root: None,
            };
        }
        assert_eq!(
            &h[0..4],
            MAGIC,
            "certified history tree: unknown header (stable memory is corrupt)"
        );
        Self {
            count: u64::from_le_bytes(h[8..16].try_into().expect("8 bytes")),
            root: slot_from(&h[16..24]),
            mem,
        }
    }

    /// Keys in the tree.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn node(&self, slot: u64) -> Node {
        let mut b = [0u8; NODE_LEN as usize];
        self.mem.read(HEADER_LEN + slot * NODE_LEN, &mut b);
        Node::decode(&b)
    }

    fn grow_to(&self, len: u64) {
        let pages = len.div_ceil(WASM_PAGE);
        let have = self.mem.size();
        if pages > have && self.mem.grow(pages - have) < 0 {
            panic!("out of stable memory: cannot grow the certified history tree to {len} bytes");
        }
    }

    fn put(&self, slot: u64, node: &Node) {
        let offset = HEADER_LEN + slot * NODE_LEN;
        self.grow_to(offset + NODE_LEN);
        self.mem.write(offset, &node.encode());
    }

    fn write_header(&self) {
        let mut h = [0u8; HEADER_LEN as usize];
        h[0..4].copy_from_slice(MAGIC);
        h[8..16].copy_from_slice(&self.count.to_le_bytes());
        h[16..24].copy_from_slice(&slot_bytes(self.root));
        self.grow_to(HEADER_LEN);
        self.mem.write(0, &h);
    }

    fn subtree_of(&self, slot: Option<u64>) -> Option<[u8; 32]> {
        slot.map(|s| self.node(s).subtree)
    }

    fn compute_subtree_hash(&self, n: &Node) -> [u8; 32] {
        let h = n.data_hash();
        match (self.subtree_of(n.left), self.subtree_of(n.right)) {
            (None, None) => h,
            (Some(l), None) => fork_hash(&l, &h),
            (None, Some(r)) => fork_hash(&h, &r),
            (Some(l), Some(r)) => fork_hash(&l, &fork_hash(&h, &r)),
        }
    }

    fn is_red(&self, slot: Option<u64>) -> bool {
        slot.is_some_and(|s| self.node(s).red)
    }

    /// The root hash of the tree (`RbTree::root_hash`): one read.
    pub fn root_hash(&self) -> [u8; 32] {
        match self.root {
            None => empty().digest(),
            Some(r) => self.node(r).subtree,
        }
    }

    pub fn get(&self, key: u64) -> Option<[u8; 32]> {
        let mut at = self.root;
        while let Some(s) = at {
            let n = self.node(s);
            match key.cmp(&n.key) {
                Equal => return Some(n.value),
                Less => at = n.left,
                Greater => at = n.right,
            }
        }
        None
    }

    /// `RbTree::insert`: O(log n) node reads and writes.
    pub fn insert(&mut self, key: u64, value: [u8; 32]) {
        let root = self.insert_at(self.root, key, value);
        let mut r = self.node(root);
        r.red = false;
        self.put(root, &r);
        self.root = Some(root);
        self.write_header();
    }

    fn insert_at(&mut self, at: Option<u64>, key: u64, value: [u8; 32]) -> u64 {
        let Some(h) = at else {
            let slot = self.count;
            self.count += 1;
            let mut n = Node {
                key,
                left: None,
                right: None,
                red: true,
                value,
                subtree: [0; 32],
            };
            n.subtree = n.data_hash();
            self.put(slot, &n);
            return slot;
        };
        let mut n = self.node(h);
        match key.cmp(&n.key) {
            Equal => n.value = value,
            Less => n.left = Some(self.insert_at(n.left, key, value)),
            Greater => n.right = Some(self.insert_at(n.right, key, value)),
        }
        n.subtree = self.compute_subtree_hash(&n);
        self.put(h, &n);
        self.balance(h)
    }

    fn balance(&mut self, mut h: u64) -> u64 {
        let n = self.node(h);
        if self.is_red(n.right) && !self.is_red(n.left) {
            h = self.rotate_left(h);
        }
        let n = self.node(h);
        if self.is_red(n.left) && self.is_red(self.node(n.left.expect("red")).left) {
            h = self.rotate_right(h);
        }
        let n = self.node(h);
        if self.is_red(n.left) && self.is_red(n.right) {
            self.flip_colors(h);
        }
        h
    }

    fn rotate_left(&mut self, h: u64) -> u64 {
        let mut hn = self.node(h);
        let x = hn.right.expect("rotate_left needs a right child");
        let mut xn = self.node(x);
        hn.right = xn.left;
        hn.subtree = self.compute_subtree_hash(&hn);
        xn.red = hn.red;
        hn.red = true;
        self.put(h, &hn);
        xn.left = Some(h);
        xn.subtree = self.compute_subtree_hash(&xn);
        self.put(x, &xn);
        x
    }

    fn rotate_right(&mut self, h: u64) -> u64 {
        let mut hn = self.node(h);
        let x = hn.left.expect("rotate_right needs a left child");
        let mut xn = self.node(x);
        hn.left = xn.right;
        hn.subtree = self.compute_subtree_hash(&hn);
        xn.red = hn.red;
        hn.red = true;
        self.put(h, &hn);
        xn.right = Some(h);
        xn.subtree = self.compute_subtree_hash(&xn);
        self.put(x, &xn);
        x
    }

    fn flip_colors(&mut self, h: u64) {
        let mut n = self.node(h);
        n.red = !n.red;
        self.put(h, &n);
        for child in [n.left, n.right] {
            let s = child.expect("flip_colors needs two children");
            let mut c = self.node(s);
            c.red = !c.red;
            self.put(s, &c);
        }
    }

    // -------------------------------------------------------------- witnesses

    fn lower_bound(&self, at: Option<u64>, key: u64) -> Option<Bound> {
        let n = self.node(at?);
        match n.key.cmp(&key) {
            Less => self
                .lower_bound(n.right, key)
                .or(Some(Bound::Neighbor(n.key))),
            Equal => Some(Bound::Exact(n.key)),
            Greater => self.lower_bound(n.left, key),
        }
    }

    fn upper_bound(&self, at: Option<u64>, key: u64) -> Option<Bound> {
        let n = self.node(at?);
        match n.key.cmp(&key) {
            Less => self.upper_bound(n.right, key),
            Equal => Some(Bound::Exact(n.key)),
            Greater => self
                .upper_bound(n.left, key)
                .or(Some(Bound::Neighbor(n.key))),
        }
    }

    fn pruned_of(&self, slot: Option<u64>) -> W {
        match slot {
            None => W::Empty,
            Some(s) => W::Pruned(self.node(s).subtree),
        }
    }

    fn bound_node(b: Bound, n: &Node) -> W {
        match b {
            Bound::Exact(_) => W::Data(n.key, n.value),
            Bound::Neighbor(_) => W::Key(n.key, n.value),
        }
    }

    fn full(&self, at: Option<u64>) -> W {
        match at {
            None => W::Empty,
            Some(s) => {
                let n = self.node(s);
                W::three(
                    self.full(n.left),
                    W::Data(n.key, n.value),
                    self.full(n.right),
                )
            }
        }
    }

    fn above(&self, at: Option<u64>, lo: Bound) -> W {
        let Some(s) = at else { return W::Empty };
        let n = self.node(s);
        match n.key.cmp(&lo.key()) {
            Equal => W::three(
                self.pruned_of(n.left),
                Self::bound_node(lo, &n),
                self.full(n.right),
            ),
            Less => W::three(
                self.pruned_of(n.left),
                W::Pruned(n.data_hash()),
                self.above(n.right, lo),
            ),
            Greater => W::three(
                self.above(n.left, lo),
                W::Data(n.key, n.value),
                self.full(n.right),
            ),
        }
    }

    fn below(&self, at: Option<u64>, hi: Bound) -> W {
        let Some(s) = at else { return W::Empty };
        let n = self.node(s);
        match n.key.cmp(&hi.key()) {
            Equal => W::three(
                self.full(n.left),
                Self::bound_node(hi, &n),
                self.pruned_of(n.right),
            ),
            Greater => W::three(
                self.below(n.left, hi),
                W::Pruned(n.data_hash()),
                self.pruned_of(n.right),
            ),
            Less => W::three(
                self.full(n.left),
                W::Data(n.key, n.value),
                self.below(n.right, hi),
            ),
        }
    }

    fn between(&self, at: Option<u64>, lo: Bound, hi: Bound) -> W {
        let Some(s) = at else { return W::Empty };
        let n = self.node(s);
        let k = n.key;
        match (lo.key().cmp(&k), k.cmp(&hi.key())) {
            (Less, Less) => W::three(
                self.between(n.left, lo, hi),
                W::Data(n.key, n.value),
                self.between(n.right, lo, hi),
            ),
            (Equal, Equal) => W::three(
                self.pruned_of(n.left),
                match (lo, hi) {
                    (Bound::Exact(_), _) | (_, Bound::Exact(_)) => W::Data(n.key, n.value),
                    _ => W::Key(n.key, n.value),
                },
                self.pruned_of(n.right),
            ),
            (_, Equal) => W::three(
                self.between(n.left, lo, hi),
                Self::bound_node(hi, &n),
                self.pruned_of(n.right),
            ),
            (Equal, _) => W::three(
                self.pruned_of(n.left),
                Self::bound_node(lo, &n),
                self.between(n.right, lo, hi),
            ),
            (Less, Greater) => W::three(
                self.between(n.left, lo, hi),
                W::Pruned(n.data_hash()),
                self.pruned_of(n.right),
            ),
            (Greater, Less) => W::three(
                self.pruned_of(n.left),
                W::Pruned(n.data_hash()),
                self.between(n.right, lo, hi),
            ),
            _ => W::Pruned(n.subtree),
        }
    }

    /// `RbTree::value_range(first, last)`: the values of keys in `first..=last` and the
    /// keys of their neighbours, everything else pruned.
    pub fn value_range(&self, first: u64, last: u64) -> HashTree {
        let lo = self.lower_bound(self.root, first);
        let hi = self.upper_bound(self.root, last);
        let w = match (lo, hi) {
            (None, None) => self.full(self.root),
            (Some(l), None) => self.above(self.root, l),
            (None, Some(h)) => self.below(self.root, h),
            (Some(l), Some(h)) => self.between(self.root, l, h),
        };
        w.into_tree()
    }
}

// ------------------------------------------------------------------ the whole tree

/// The certified state tree: the scalars come from the state at each call, `/history`
/// from the [`HistoryTree`] in stable memory.
pub struct CertifiedTree<M: Memory = Mem> {
    history: HistoryTree<M>,
}

/// A tree on a heap vector, for tests and offline tools.
pub type InMemoryTree = CertifiedTree<VectorMemory>;

impl InMemoryTree {
    pub fn from_history(records: impl Iterator<Item = RoundRecord>) -> Self {
        let mut tree = Self::open(VectorMemory::default());
        for r in records {
            tree.push_round(&r);
        }
        tree
    }
}

impl<M: Memory> CertifiedTree<M> {
    /// Opens the tree kept in `mem` (O(1)).
    pub fn open(mem: M) -> Self {
        Self {
            history: HistoryTree::open(mem),
        }
    }

    /// Opens the tree kept in `mem` and adds the closed rounds it lacks: `rounds` closed
    /// rounds exist, and `records(from)` yields the records of rounds `from..`. Once the tree
    /// holds every round this is O(1). A state written by a release that kept the tree on
    /// the heap has an empty `mem`, and this fills it once: one hash and O(log n) node
    /// writes per round, the work that release did on every load.
    pub fn load<I: Iterator<Item = RoundRecord>>(
        mem: M,
        rounds: u64,
        records: impl FnOnce(u64) -> I,
    ) -> Self {
        let mut tree = Self::open(mem);
        let have = tree.rounds();
        if have < rounds {
            for r in records(have) {
                tree.push_round(&r);
            }
        }
        tree
    }

    pub fn push_round(&mut self, record: &RoundRecord) {
        self.history.insert(record.round, round_record_hash(record));
    }

    /// Round records in the tree, in O(1).
    pub fn rounds(&self) -> u64 {
        self.history.len()
    }

    /// The root hash of `/history`'s subtree.
    pub fn history_hash(&self) -> [u8; 32] {
        self.history.root_hash()
    }

    /// The certified hash of round `round`'s record.
    pub fn round_hash(&self, round: u64) -> Option<[u8; 32]> {
        self.history.get(round)
    }

    /// The tree with the scalars revealed and `/history` as asked.
    pub fn witness(&self, scalars: &CertifiedState, history: HistoryWitness) -> HashTree {
        let history = match history {
            HistoryWitness::Pruned => pruned(self.history.root_hash()),
            HistoryWitness::Range { first, last } => self.history.value_range(first, last),
        };
        // In-order traversal is label order:
        // history < history_root < job < job_config < model_version < round.
        fork(
            fork(
                labeled(LABEL_HISTORY, history),
                labeled(LABEL_HISTORY_ROOT, leaf(scalars.history_root.to_vec())),
            ),
            fork(
                fork(
                    labeled(LABEL_JOB, leaf(u64_leaf(scalars.job_id).to_vec())),
                    labeled(
                        LABEL_JOB_CONFIG,
                        leaf(scalars.job_config_hash.map_or(Vec::new(), |h| h.to_vec())),
                    ),
                ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use ic_certification::{AsHashTree, RbTree};

    fn value(k: u64, salt: u64) -> [u8; 32] {
        flic_protocol::hash::sha256(&[k.to_le_bytes(), salt.to_le_bytes()].concat())
    }

    fn check_same(rb: &RbTree<[u8; 8], [u8; 32]>, ours: &HistoryTree<VectorMemory>, keys: &[u64]) {
        assert_eq!(rb.root_hash(), ours.root_hash(), "{} keys", keys.len());
        let max = keys.iter().copied().max().unwrap_or(0);
        let mut ranges = vec![(0, 0), (0, max + 2), (max, max), (max + 1, max + 1)];
        for i in (0..=max + 1).step_by((max as usize / 7).max(1)) {
            ranges.push((i, i));
            ranges.push((i, (i + 3).min(max + 1)));
            ranges.push((i, max + 5));
        }
        for (a, b) in ranges {
            let want = rb.value_range(&round_key(a), &round_key(b));
            let got = ours.value_range(a, b);
            assert_eq!(
                encode_tree(&want),
                encode_tree(&got),
                "{} keys, range {a}..={b}",
                keys.len()
            );
        }
        for &k in keys {
            assert_eq!(rb.get(&round_key(k)).copied(), ours.get(k));
        }
    }

    /// The stable tree is `RbTree` node for node: same root hash and same witness bytes
    /// after every insert, for rounds in order (how the canister inserts), for keys in a
    /// scrambled order, and for a value replaced; and it reopens from its memory.
    #[test]
    fn history_tree_is_the_rb_tree() {
        let mut rb = RbTree::<[u8; 8], [u8; 32]>::new();
        let mem = VectorMemory::default();
        let mut ours = HistoryTree::open(mem.clone());
        let mut keys = Vec::new();
        check_same(&rb, &ours, &keys);
        for k in 0..300u64 {
            rb.insert(round_key(k), value(k, 0));
            ours.insert(k, value(k, 0));
            keys.push(k);
            if k < 40 || k % 37 == 0 {
                check_same(&rb, &ours, &keys);
            }
        }
        check_same(&rb, &ours, &keys);
        let reopened = HistoryTree::open(mem);
        assert_eq!(reopened.len(), 300);
        check_same(&rb, &reopened, &keys);

        let mut rb = RbTree::<[u8; 8], [u8; 32]>::new();
        let mut ours = HistoryTree::open(VectorMemory::default());
        let mut keys = Vec::new();
        for i in 0..200u64 {
            let k = (i * 7919) % 211;
            rb.insert(round_key(k), value(k, 1));
            ours.insert(k, value(k, 1));
            keys.push(k);
            check_same(&rb, &ours, &keys);
        }
        rb.insert(round_key(keys[17]), value(0, 99));
        ours.insert(keys[17], value(0, 99));
        assert_eq!(ours.len(), 200, "a replaced value adds no node");
        check_same(&rb, &ours, &keys);
    }

    #[test]
    fn load_fills_an_empty_tree_once_then_reads_only_the_header() {
        let records: Vec<RoundRecord> = (0..5)
            .map(|r| RoundRecord {
                round: r,
                base_version: flic_protocol::Hash::new([r as u8; 32]),
                new_version: flic_protocol::Hash::new([r as u8 + 1; 32]),
                contributions_root: flic_protocol::Hash::new([0; 32]),
                first_contribution: r,
                contribution_count: 1,
                total_weight: 1,
                contributors: vec![],
                frac_bits: 20,
                server_lr: 1.0,
                opened_at_ns: 0,
                closed_at_ns: 1,
                extensions: 0,
                epsilon_spent: None,
                adaptive_clip: None,
            })
            .collect();
        let mem = VectorMemory::default();
        let tree = CertifiedTree::load(mem.clone(), 5, |from| {
            records[from as usize..].iter().cloned()
        });
        assert_eq!(tree.rounds(), 5);
        let heap = InMemoryTree::from_history(records.iter().cloned());
        assert_eq!(tree.history_hash(), heap.history_hash());
        let image = mem.borrow().clone();
        let again = CertifiedTree::load(mem.clone(), 5, |_| -> std::vec::IntoIter<RoundRecord> {
            panic!("a complete tree reads no record")
        });
        assert_eq!(again.history_hash(), heap.history_hash());
        assert!(
            image == *mem.borrow(),
            "loading a complete tree wrote nothing"
        );
    }
}
