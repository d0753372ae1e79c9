#!/usr/bin/env bash
# Packs what bench/gpu/run.sh needs on a GPU machine that has no network and no Rust
# toolchain: a flic built beforehand with the GPU features (stripped and gzipped), run.sh,
# the PyTorch side, and the Vulkan loader as Debian packages (for machines without one).
#
# Usage: bench/gpu/pack.sh [--flic PATH] [--no-loader] OUT_DIR
#   --flic PATH   the flic to pack [default: $CARGO_TARGET_DIR/release/flic, else
#                 target/release/flic]; build it with `cargo build --release -p flic-client`
#                 (wgpu is in the default build) or add `--features cuda` (docs/gpu.md)
#   --no-loader   do not download libvulkan1 (apt-get download needs the Debian mirror)
# Then copy OUT_DIR to the GPU machine and run `OUT_DIR/run.sh REPORT_DIR` there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
flic="" loader=1 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --flic) flic="$2"; shift 2 ;;
    --no-loader) loader=0; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) out="$1"; shift ;;
  esac
done
[ -n "$out" ] || { echo "pack.sh: name the output folder (--help)" >&2; exit 2; }
if [ -z "$flic" ]; then
  flic="${CARGO_TARGET_DIR:-$here/../../target}/release/flic"
fi
[ -x "$flic" ] || { echo "pack.sh: no flic at $flic (build it first, or pass --flic)" >&2; exit 2; }

mkdir -p "$out"
cp "$here/run.sh" "$here/../pytorch/train_throughput.py" "$out/"
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
cp "$flic" "$tmp"
strip "$tmp" 2>/dev/null || true
gzip -6 -c "$tmp" >"$out/flic.gz"
if [ "$loader" = 1 ]; then
  mkdir -p "$out/loader"
  (cd "$out/loader" && apt-get download libvulkan1 >/dev/null 2>&1) ||
    echo "pack.sh: could not download libvulkan1; the GPU machine must have a Vulkan loader" >&2
fi
du -sh "$out" | awk '{print "pack.sh: " $2 " holds " $1 " (keep it under 60 MB)"}' >&2
