//! Stable memory: sparse 64 KiB pages with a copy-on-first-write journal.
//!
//! A message that writes stable memory saves the original of each page the first
//! time it touches it; a rollback puts those pages back and restores the size. So a
//! rollback costs the pages written, never the size of stable memory, and pages never
//! written take no host memory.

use std::collections::HashMap;

/// Size of a stable-memory page, the same as a wasm page.
pub const PAGE_SIZE: u64 = 64 * 1024;

/// Stable memory pages allowed by a byte cap.
pub(crate) fn pages_for(bytes: u64) -> u64 {
    bytes / PAGE_SIZE
}

type Page = Box<[u8]>;

/// The stable memory of one canister.
#[derive(Debug, Default)]
pub struct StableMemory {
    /// One slot per page of the current size; `None` is a page of zeros.
    pages: Vec<Option<Page>>,
    journal: Option<Journal>,
}

#[derive(Debug)]
struct Journal {
    size_before: usize,
    originals: HashMap<usize, Option<Page>>,
}

/// Accessing bytes past the current size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds;

impl StableMemory {
    /// Size in 64 KiB pages.
    pub fn size_pages(&self) -> u64 {
        self.pages.len() as u64
    }

    /// Size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.size_pages() * PAGE_SIZE
    }

    /// Grows by `new_pages` unless that exceeds `max_pages`; returns the old size.
    pub fn grow(&mut self, new_pages: u64, max_pages: u64) -> Option<u64> {
        let old = self.size_pages();
        let new = old.checked_add(new_pages)?;
        if new > max_pages {
            return None;
        }
        self.pages.resize_with(new as usize, || None);
        Some(old)
    }

    /// Copies `buf.len()` bytes starting at `offset` into `buf`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        self.check(offset, buf.len() as u64)?;
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let (index, within) = ((at / PAGE_SIZE) as usize, (at % PAGE_SIZE) as usize);
            let n = (PAGE_SIZE as usize - within).min(buf.len() - done);
            match &self.pages[index] {
                Some(page) => buf[done..done + n].copy_from_slice(&page[within..within + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
        Ok(())
    }

    /// Writes `data` at `offset`, journalling each page on its first write.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), OutOfBounds> {
        self.check(offset, data.len() as u64)?;
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let (index, within) = ((at / PAGE_SIZE) as usize, (at % PAGE_SIZE) as usize);
            let n = (PAGE_SIZE as usize - within).min(data.len() - done);
            if let Some(journal) = &mut self.journal {
                journal
                    .originals
                    .entry(index)
                    .or_insert_with(|| self.pages[index].clone());
            }
            let page =
                self.pages[index].get_or_insert_with(|| vec![0u8; PAGE_SIZE as usize].into());
            page[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(())
    }

    fn check(&self, offset: u64, len: u64) -> Result<(), OutOfBounds> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size_bytes() => Ok(()),
            _ => Err(OutOfBounds),
        }
    }

    /// Starts recording originals; a journal already open is kept (nested
    /// executions, such as pre- and post-upgrade, share one).
    pub fn begin(&mut self) {
        if self.journal.is_none() {
            self.journal = Some(Journal {
                size_before: self.pages.len(),
                originals: HashMap::new(),
            });
        }
    }

    /// Keeps every write since [`begin`](Self::begin).
    pub fn commit(&mut self) {
        self.journal = None;
    }

    /// Undoes every write and grow since [`begin`](Self::begin).
    pub fn rollback(&mut self) {
        if let Some(journal) = self.journal.take() {
            for (index, original) in journal.originals {
                if index < self.pages.len() {
                    self.pages[index] = original;
                }
            }
            self.pages.truncate(journal.size_before);
        }
    }

    /// Number of pages saved by the open journal (what a rollback would copy).
    #[cfg(test)]
    pub fn journalled_pages(&self) -> usize {
        self.journal.as_ref().map_or(0, |j| j.originals.len())
    }

    /// Pages that hold data, with their index, for persistence.
    pub(crate) fn allocated_pages(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.pages
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_deref().map(|p| (i as u64, p)))
    }

    /// Rebuilds a memory of `size_pages` from saved pages.
    pub(crate) fn from_pages(size_pages: u64, pages: Vec<(u64, Vec<u8>)>) -> Option<Self> {
        let mut memory = StableMemory::default();
        memory.pages.resize_with(size_pages as usize, || None);
        for (index, data) in pages {
            if index >= size_pages || data.len() != PAGE_SIZE as usize {
                return None;
            }
            memory.pages[index as usize] = Some(data.into_boxed_slice());
        }
        Some(memory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_restores_written_pages_and_size() {
        let mut m = StableMemory::default();
        m.grow(2, 10).unwrap();
        m.write(PAGE_SIZE - 2, b"abcd").unwrap();
        m.begin();
        m.write(PAGE_SIZE - 1, b"XY").unwrap();
        m.grow(3, 10).unwrap();
        m.write(4 * PAGE_SIZE, b"new").unwrap();
        assert_eq!(m.journalled_pages(), 3);
        m.rollback();
        assert_eq!(m.size_pages(), 2);
        let mut buf = [0u8; 4];
        m.read(PAGE_SIZE - 2, &mut buf).unwrap();
        assert_eq!(&buf, b"abcd");
    }

    #[test]
    fn bounds_and_growth_limit() {
        let mut m = StableMemory::default();
        assert_eq!(m.write(0, b"x"), Err(OutOfBounds));
        assert_eq!(m.grow(1, 1), Some(0));
        assert_eq!(m.grow(1, 1), None);
        assert_eq!(m.read(PAGE_SIZE - 1, &mut [0u8; 2]), Err(OutOfBounds));
        assert_eq!(m.read(u64::MAX, &mut [0u8; 2]), Err(OutOfBounds));
    }
}
