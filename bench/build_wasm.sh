#!/bin/sh
# Builds the aggregator canister's release wasm twice, as aggregator-wasm/build.rs does
# (LTO, one codegen unit): without wasm SIMD ("scalar") and with it ("simd128", the
# default of .cargo/config.toml), into $CARGO_TARGET_DIR/bench-wasm-{scalar,simd128}/,
# for `flic bench aggregate --wasm`.
# Usage: bench/build_wasm.sh   (prints the two paths)
set -eu
cd "$(dirname "$0")/.."
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
for build in scalar simd128; do
    flags="-C target-feature=-simd128"
    [ "$build" = simd128 ] && flags="-C target-feature=+simd128"
    CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 RUSTFLAGS="$flags" \
        cargo build --release --target wasm32-unknown-unknown -p flic-aggregator \
        --target-dir "$TARGET_DIR/bench-wasm-$build" >&2
    echo "$TARGET_DIR/bench-wasm-$build/wasm32-unknown-unknown/release/flic_aggregator.wasm"
done
