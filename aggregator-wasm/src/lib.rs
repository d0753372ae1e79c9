//! The aggregator canister's release wasm, built by `build.rs` from `aggregator-canister/`.

/// The module bytes, ready to install into `flic-embedded-ic`, PocketIC or a replica.
pub const AGGREGATOR_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/aggregator.wasm"));

/// `sha256` of [`AGGREGATOR_WASM`], hex: what `dfx canister info` calls the module hash.
pub fn module_hash_hex() -> String {
    use std::fmt::Write;
    let digest = sha256(AGGREGATOR_WASM);
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_module_is_wasm() {
        assert_eq!(&super::AGGREGATOR_WASM[..4], b"\0asm", "not a wasm module");
        assert_eq!(super::module_hash_hex().len(), 64);
    }
}
