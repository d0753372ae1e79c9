//! Reaching the canister's heap from a host function: bounds-checked reads and writes,
//! and the `*_copy(dst, offset, size)` pattern most of the API uses.

use wasmtime::Memory;

use super::{trap, C, R};
use crate::host::MEMORY_EXPORT;

pub(super) fn memory(c: &mut C, api: &str) -> R<Memory> {
    c.get_export(MEMORY_EXPORT)
        .and_then(|e| e.into_memory())
        .ok_or_else(|| trap(format!("ic0.{api}: the module has no memory")))
}

pub(super) fn heap_range(
    len: usize,
    start: u64,
    size: u64,
    api: &str,
) -> R<std::ops::Range<usize>> {
    match start.checked_add(size) {
        Some(end) if end <= len as u64 => Ok(start as usize..end as usize),
        _ => Err(trap(format!(
            "ic0.{api}: heap out of bounds (offset {start}, size {size}, heap {len} bytes)"
        ))),
    }
}

pub(super) fn read_heap(c: &mut C, src: u64, size: u64, api: &str) -> R<Vec<u8>> {
    let mem = memory(c, api)?;
    let data = mem.data(&*c);
    let range = heap_range(data.len(), src, size, api)?;
    Ok(data[range].to_vec())
}

pub(super) fn write_heap(c: &mut C, dst: u64, bytes: &[u8], api: &str) -> R<()> {
    let mem = memory(c, api)?;
    let data = mem.data_mut(&mut *c);
    let range = heap_range(data.len(), dst, bytes.len() as u64, api)?;
    data[range].copy_from_slice(bytes);
    Ok(())
}

/// `ic0.*_copy(dst, offset, size)`: copies `source[offset..offset + size]` to the heap.
pub(super) fn copy_out(
    c: &mut C,
    dst: u32,
    offset: u32,
    size: u32,
    source: &[u8],
    api: &str,
) -> R<()> {
    let (offset, size) = (offset as usize, size as usize);
    match offset.checked_add(size) {
        Some(end) if end <= source.len() => {
            write_heap(c, u64::from(dst), &source[offset..end], api)
        }
        _ => Err(trap(format!(
            "ic0.{api}: offset {offset} + size {size} exceeds the {} bytes available",
            source.len()
        ))),
    }
}

pub(super) fn write_u128(c: &mut C, dst: u32, value: u128, api: &str) -> R<()> {
    write_heap(c, u64::from(dst), &value.to_le_bytes(), api)
}

pub(super) fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
