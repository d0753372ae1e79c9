//! Stable-memory layout: one `MemoryManager`, one named `MemoryId` per structure.
//!
//! Everything that must survive an upgrade lives here; the one exception, the open round's
//! accumulator, is kept on the heap and spilled to its region by `pre_upgrade`.
//! Weights, the accumulator and staged uploads are flat little-endian arrays in dedicated
//! virtual memories, read and written in large contiguous ranges (never one map entry per
//! parameter). The same code runs on real stable memory in wasm and on a `VectorMemory`
//! in native tests.
//!
//! Every other value is one of the canister's own record types ([`records`]), written with
//! a version tag ([`versioned`]). [`legacy`] reads what the release before versioned
//! records wrote.

use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
use ic_stable_structures::{DefaultMemoryImpl, Memory};

pub mod legacy;
pub mod records;
pub mod versioned;

pub use versioned::{Stored, StoredRecord};

#[cfg(not(target_endian = "little"))]
compile_error!("flat arrays are stored as the host's in-memory representation: little-endian only");

pub type Mem = VirtualMemory<DefaultMemoryImpl>;

// A `MemoryId` keeps its meaning forever: a structure that goes away leaves its id unused.

/// The release before versioned records kept one `Meta` cell here (job, round scalars,
/// counters, history frontier). Since then a tombstone: [`legacy`] moves a `Meta` it finds
/// to memories 18 to 21, and the tombstone makes that older release trap if it were
/// reinstalled over this state (a downgrade), instead of starting from a default `Meta`.
pub const MEMORY_LEGACY_META: MemoryId = MemoryId::new(0);
/// Flat `f32` LE: the current model weights.
pub const MEMORY_WEIGHTS: MemoryId = MemoryId::new(1);
/// Flat `i64` LE: the round's FedAvg accumulator while an upgrade runs (it lives on the heap).
pub const MEMORY_ACCUMULATOR: MemoryId = MemoryId::new(2);
/// Append-only byte arena of retained committed deltas (and, in the release before staging
/// slots, of uploads in progress).
pub const MEMORY_STAGING: MemoryId = MemoryId::new(3);
/// `dataset id -> DatasetRecord`.
pub const MEMORY_DATASETS: MemoryId = MemoryId::new(4);
/// `(owner, dataset id) -> ()`.
pub const MEMORY_DATASETS_BY_OWNER: MemoryId = MemoryId::new(5);
/// `submission id -> SubmissionRecord` (the open round's uploads only).
pub const MEMORY_SUBMISSIONS: MemoryId = MemoryId::new(6);
/// `contributor -> submission id` (the open round only).
pub const MEMORY_SUBMITTERS: MemoryId = MemoryId::new(7);
/// `contribution index -> ContributionRecord` (append-only).
pub const MEMORY_CONTRIBUTIONS: MemoryId = MemoryId::new(8);
/// `(contributor, contribution index) -> ()`.
pub const MEMORY_BY_CONTRIBUTOR: MemoryId = MemoryId::new(9);
/// `(dataset id, contribution index) -> ()`.
pub const MEMORY_BY_DATASET: MemoryId = MemoryId::new(10);
/// `round -> ClosedRoundRecord` (append-only history).
pub const MEMORY_ROUNDS: MemoryId = MemoryId::new(11);
/// `model version -> round whose base it is`.
pub const MEMORY_VERSIONS: MemoryId = MemoryId::new(12);
/// Flat `f32` LE: the initial model, kept when contributions are retained (lineage).
pub const MEMORY_INITIAL_WEIGHTS: MemoryId = MemoryId::new(13);
// 14, 15: never used by a release (once reserved for a feature branch).
/// `(round, reporter) -> EvaluationRecord` of closed rounds' models.
pub const MEMORY_EVALUATIONS: MemoryId = MemoryId::new(16);
/// `StableCell<Metrics>`: call, rejection, byte and instruction counters (see `metrics`).
pub const MEMORY_METRICS: MemoryId = MemoryId::new(17);
/// `StableCell<JobRecord>`: the job's configuration and what is derived from it.
pub const MEMORY_JOB: MemoryId = MemoryId::new(18);
/// `StableCell<OpenRoundRecord>`: the open round's scalars.
pub const MEMORY_OPEN_ROUND: MemoryId = MemoryId::new(19);
/// `StableCell<AllocatorsRecord>`: the next ids and the staging arena's bump pointer.
pub const MEMORY_ALLOCATORS: MemoryId = MemoryId::new(20);
/// `StableCell<HistoryRecord>`: the frontier of the round history's Merkle tree.
pub const MEMORY_HISTORY: MemoryId = MemoryId::new(21);
/// Uploads in progress, one fixed-size slot each (the largest delta the job's encodings
/// make), reused round after round: staging never holds more than the slots' bytes.
pub const MEMORY_STAGING_SLOTS: MemoryId = MemoryId::new(22);
/// `slot -> ()`: staging slots below `AllocatorsRecord::next_slot` that are free.
pub const MEMORY_FREE_SLOTS: MemoryId = MemoryId::new(23);
/// The certified tree's `/history`: an `RbTree` of round record hashes, node by node in a
/// flat array (see `certification::HistoryTree`), so that loading it is O(1).
pub const MEMORY_CERTIFIED_HISTORY: MemoryId = MemoryId::new(24);
// 25 to 29: never used by a release.
/// `(last progress ns, submission id) -> ()` over the uploads not yet committed: the most
/// stalled upload is the first key.
pub const MEMORY_UPLOADS_BY_PROGRESS: MemoryId = MemoryId::new(30);
/// `principal -> ()`: who an `Admission::AllowList` job admits.
pub const MEMORY_ALLOW_LIST: MemoryId = MemoryId::new(31);
/// `dataset commitment -> dataset id`: a commitment is registered once.
pub const MEMORY_COMMITMENTS: MemoryId = MemoryId::new(32);
/// Flat `f32` LE: the server optimizer's first state vector (momentum `m`, or Adagrad's
/// `v`), zeroed when the job starts.
pub const MEMORY_OPTIMIZER_M: MemoryId = MemoryId::new(33);
/// Flat `f32` LE: Adam's and Yogi's second moment `v`.
pub const MEMORY_OPTIMIZER_V: MemoryId = MemoryId::new(34);
/// `(kind, a, b) -> bytes`: the open round's secure aggregation (see `rounds/secagg.rs`):
/// participants' keys, sealed envelopes and revealed shares; cleared when it closes.
pub const MEMORY_SECAGG: MemoryId = MemoryId::new(35);

const WASM_PAGE: u64 = 65536;

/// Grows `mem` so that `[0, len)` is addressable.
pub fn ensure_capacity(mem: &Mem, len: u64) {
    let pages = len.div_ceil(WASM_PAGE);
    let have = mem.size();
    if pages > have && mem.grow(pages - have) < 0 {
        panic!("out of stable memory: cannot grow to {len} bytes");
    }
}

pub fn read_bytes(mem: &Mem, offset: u64, len: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len as usize];
    mem.read(offset, &mut buf);
    buf
}

/// Reads `len` bytes at `offset` into `buf` (replacing its contents) without first
/// zeroing the buffer: on the IC every byte a message writes is charged, so hot paths
/// reuse one buffer and skip the memset `read_bytes` pays.
pub fn read_bytes_into(mem: &Mem, offset: u64, len: usize, buf: &mut Vec<u8>) {
    buf.clear();
    buf.reserve_exact(len);
    // SAFETY: the buffer has capacity for `len` bytes and does not overlap stable memory;
    // `read_unsafe` initialises all `len` bytes before `set_len` exposes them.
    unsafe {
        mem.read_unsafe(offset, buf.as_mut_ptr(), len);
        buf.set_len(len);
    }
}

/// As [`read_bytes_into`], for `count` `i64` starting at element `first`.
pub fn read_i64s_into(mem: &Mem, first: u64, count: usize, buf: &mut Vec<i64>) {
    buf.clear();
    buf.reserve_exact(count);
    // SAFETY: capacity for `count` i64 = `count * 8` bytes, initialised by `read_unsafe`
    // before `set_len`; any bit pattern is a valid i64; little-endian host (checked above).
    unsafe {
        mem.read_unsafe(first * 8, buf.as_mut_ptr() as *mut u8, count * 8);
        buf.set_len(count);
    }
}

/// As [`read_bytes_into`], for `count` `f32` starting at element `first`.
pub fn read_f32s_into(mem: &Mem, first: u64, count: usize, buf: &mut Vec<f32>) {
    buf.clear();
    buf.reserve_exact(count);
    // SAFETY: as in `read_i64s_into`; any bit pattern is a valid f32.
    unsafe {
        mem.read_unsafe(first * 4, buf.as_mut_ptr() as *mut u8, count * 4);
        buf.set_len(count);
    }
}

/// The little-endian bytes of `values`, without a copy (little-endian host, checked above).
pub fn f32s_as_le_bytes(values: &[f32]) -> &[u8] {
    // SAFETY: u8 has alignment 1 and the slice covers exactly the values' storage.
    unsafe { std::slice::from_raw_parts(values.as_ptr() as *const u8, values.len() * 4) }
}

pub fn write_bytes(mem: &Mem, offset: u64, bytes: &[u8]) {
    ensure_capacity(mem, offset + bytes.len() as u64);
    mem.write(offset, bytes);
}

/// Reads `count` `i64` starting at element `first`, in one contiguous read.
pub fn read_i64s(mem: &Mem, first: u64, count: usize) -> Vec<i64> {
    let mut out = vec![0i64; count];
    // SAFETY: any bit pattern is a valid i64, u8 has alignment 1, and the slice covers
    // exactly the vector's initialised storage. Little-endian host (checked above).
    let bytes = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, count * 8) };
    mem.read(first * 8, bytes);
    out
}

pub fn write_i64s(mem: &Mem, first: u64, values: &[i64]) {
    // SAFETY: as in `read_i64s`.
    let bytes =
        unsafe { std::slice::from_raw_parts(values.as_ptr() as *const u8, values.len() * 8) };
    write_bytes(mem, first * 8, bytes);
}

pub fn read_f32s(mem: &Mem, first: u64, count: usize) -> Vec<f32> {
    let mut out = vec![0f32; count];
    // SAFETY: any bit pattern is a valid f32; see `read_i64s`.
    let bytes = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, count * 4) };
    mem.read(first * 4, bytes);
    out
}

pub fn write_f32s(mem: &Mem, first: u64, values: &[f32]) {
    // SAFETY: as in `read_f32s`.
    let bytes =
        unsafe { std::slice::from_raw_parts(values.as_ptr() as *const u8, values.len() * 4) };
    write_bytes(mem, first * 4, bytes);
}

/// All virtual memories of the canister.
pub struct Memories {
    manager: MemoryManager<DefaultMemoryImpl>,
}

impl Memories {
    pub fn init(memory: DefaultMemoryImpl) -> Self {
        Self {
            manager: MemoryManager::init(memory),
        }
    }
    pub fn get(&self, id: MemoryId) -> Mem {
        self.manager.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_arrays_round_trip_little_endian() {
        let mems = Memories::init(DefaultMemoryImpl::default());
        let m = mems.get(MEMORY_ACCUMULATOR);
        write_i64s(&m, 3, &[-1, 2, i64::MAX]);
        assert_eq!(read_i64s(&m, 3, 3), vec![-1, 2, i64::MAX]);
        assert_eq!(read_bytes(&m, 32, 8), 2i64.to_le_bytes().to_vec());
        let mut buf = vec![7i64; 10];
        read_i64s_into(&m, 3, 3, &mut buf);
        assert_eq!(buf, vec![-1, 2, i64::MAX]);
        let mut bytes = Vec::new();
        read_bytes_into(&m, 32, 8, &mut bytes);
        let mut fs = Vec::new();
        write_f32s(&m, 0, &[1.5, -0.25]);
        read_f32s_into(&m, 0, 2, &mut fs);
        assert_eq!(fs, vec![1.5, -0.25]);
        assert_eq!(
            f32s_as_le_bytes(&fs),
            &[1.5f32.to_le_bytes(), (-0.25f32).to_le_bytes()].concat()[..]
        );
        assert_eq!(bytes, 2i64.to_le_bytes().to_vec());
        let w = mems.get(MEMORY_WEIGHTS);
        write_f32s(&w, 0, &[1.5, -0.25]);
        assert_eq!(read_bytes(&w, 4, 4), (-0.25f32).to_le_bytes().to_vec());
        assert_eq!(read_f32s(&w, 0, 2), vec![1.5, -0.25]);
    }
}
