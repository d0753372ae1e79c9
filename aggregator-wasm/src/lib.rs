//! The aggregator canister's release wasm, built by `build.rs` from `aggregator-canister/`.

use flic_protocol::hash::{sha256, to_hex};

/// The module bytes, ready to install into `flic-embedded-ic`, PocketIC or a replica.
pub const AGGREGATOR_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/aggregator.wasm"));

/// `sha256` of [`AGGREGATOR_WASM`], hex: what `dfx canister info` calls the module hash.
pub fn module_hash_hex() -> String {
    to_hex(&sha256(AGGREGATOR_WASM))
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_module_is_wasm() {
        assert_eq!(&super::AGGREGATOR_WASM[..4], b"\0asm", "not a wasm module");
        assert_eq!(super::module_hash_hex().len(), 64);
    }
}
