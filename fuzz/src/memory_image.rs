//! Exact, cheap snapshots of the canister's stable memory.
//!
//! The canister's `MemoryManager` reserves 128 pages (8 MiB) per virtual memory, so the
//! native `VectorMemory` of a fresh state is about 100 MiB, almost all zeroes; cloning it
//! around every operation would make fuzzing a thousand times slower. Yet every byte of it
//! is in one of three places:
//! - the manager's header (page 0: layout, memory sizes, bucket table);
//! - the first `size()` pages of some virtual memory (`VirtualMemory::write` panics on
//!   anything past `size()`, so nothing else inside a bucket is ever written);
//! - pages never handed out, which stay zero.
//!
//! A [`MemImage`] holds the total length, page 0 and the in-use pages of every virtual
//! memory: two memories have equal images exactly when they are byte-identical.
//! [`MemImage::restore`] puts a memory back to an image (the fuzz target starts every
//! input from one prepared state without rebuilding it).

use ic_stable_structures::memory_manager::{MemoryId, MemoryManager};
use ic_stable_structures::{DefaultMemoryImpl, Memory};

const PAGE: usize = 65536;
/// `MemoryId`s are `0..255`.
const MEMORY_IDS: u8 = 255;

#[derive(Clone, PartialEq, Eq)]
pub struct MemImage {
    len: usize,
    header: Vec<u8>,
    /// `(id, bytes of its first size() pages)` of every non-empty virtual memory.
    memories: Vec<(u8, Vec<u8>)>,
}

impl std::fmt::Debug for MemImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: Vec<_> = self
            .memories
            .iter()
            .map(|(id, b)| (*id, b.len() / PAGE))
            .collect();
        write!(
            f,
            "MemImage {{ len: {}, pages per memory: {sizes:?} }}",
            self.len
        )
    }
}

impl MemImage {
    pub fn of(mem: &DefaultMemoryImpl) -> Self {
        let len = mem.borrow().len();
        let header = mem.borrow()[..PAGE.min(len)].to_vec();
        let mut memories = Vec::new();
        if len > 0 {
            // Loading an existing manager only reads.
            let manager = MemoryManager::init(mem.clone());
            for id in 0..MEMORY_IDS {
                let vm = manager.get(MemoryId::new(id));
                let bytes = vm.size() as usize * PAGE;
                if bytes > 0 {
                    let mut buf = vec![0u8; bytes];
                    vm.read(0, &mut buf);
                    memories.push((id, buf));
                }
            }
        }
        Self {
            len,
            header,
            memories,
        }
    }

    /// Total bytes held by the image (what a snapshot costs).
    pub fn byte_len(&self) -> usize {
        self.header.len() + self.memories.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    /// Makes `mem` (any memory under a `MemoryManager`) byte-identical to the memory this
    /// image was taken of.
    pub fn restore(&self, mem: &DefaultMemoryImpl) {
        {
            // Zero every page in use now: this covers every byte written since the image.
            let manager = MemoryManager::init(mem.clone());
            for id in 0..MEMORY_IDS {
                let vm = manager.get(MemoryId::new(id));
                let bytes = vm.size() as usize * PAGE;
                if bytes > 0 {
                    vm.write(0, &vec![0u8; bytes]);
                }
            }
        }
        {
            // Now every byte past page 0 is zero: resize, then rewrite page 0.
            let mut raw = mem.borrow_mut();
            raw.resize(self.len, 0);
            raw[..self.header.len()].copy_from_slice(&self.header);
        }
        if self.len == 0 {
            return;
        }
        let manager = MemoryManager::init(mem.clone());
        for (id, bytes) in &self.memories {
            let vm = manager.get(MemoryId::new(*id));
            assert_eq!(vm.size() as usize * PAGE, bytes.len());
            vm.write(0, bytes);
        }
    }
}
