#!/usr/bin/env bash
# The GPU benchmark: `flic backends`, then `flic bench train` on every zoo model on each GPU
# backend that starts and on flex, and PyTorch on CUDA beside them where `import torch`
# works with a GPU. Needs no network and no Rust toolchain: it runs a `flic` built elsewhere
# (bench/gpu/pack.sh makes the bundle this script is part of).
#
# Usage: run.sh REPORT_DIR
#
# Environment:
#   FLIC                  the flic to run [default: ./flic or ./flic.gz beside this script,
#                         else `flic` on PATH]
#   FLIC_BENCH_SAMPLES_SCALE  multiplies the samples per model (default 1; the tests use 0,
#                         one batch of 64 per model)
#   FLIC_BENCH_EPOCHS     timed epochs after one warm-up epoch (default 2)
#   FLIC_BENCH_MODELS     comma-separated models (default linear,mlp,lenet,cifar-cnn)
#   PYTHON                the Python with torch for the PyTorch side (default python3)
#
# Writes to REPORT_DIR: report.md (the tables), backends.txt and backends.json,
# train.json (every figure), probe-<backend>.log (why a backend was left out), run.log.
# Exit codes: 0 the report is written (even if no GPU backend started: it says so),
# 1 flic failed on flex, 2 usage.
set -euo pipefail

if [ $# -ne 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
  [ $# -eq 1 ] && exit 0 || exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
report="$1"
mkdir -p "$report"
report="$(cd "$report" && pwd)"
log="$report/run.log"
: >"$log"
say() { echo "$*" | tee -a "$log" >&2; }

# The flic to run.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ -z "${FLIC:-}" ]; then
  if [ -x "$here/flic" ]; then
    FLIC="$here/flic"
  elif [ -f "$here/flic.gz" ]; then
    gzip -dc "$here/flic.gz" >"$work/flic"
    chmod +x "$work/flic"
    FLIC="$work/flic"
  else
    FLIC="$(command -v flic || true)"
  fi
fi
if [ -z "$FLIC" ] || [ ! -x "$FLIC" ]; then
  echo "run.sh: no flic to run: set FLIC, or put flic (or flic.gz) beside this script" >&2
  exit 2
fi

# The Vulkan loader, where the machine has none and the bundle brought one (pack.sh).
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
  for deb in "$here"/loader/*.deb; do
    [ -f "$deb" ] || continue
    dpkg -x "$deb" "$work/loader"
  done
  if [ -d "$work/loader" ]; then
    lib="$(dirname "$(find "$work/loader" -name 'libvulkan.so.1' | head -n 1)")"
    export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    say "using the Vulkan loader the bundle brought ($lib)"
  fi
fi
# NVIDIA's ICD where a container mounts the driver outside the standard paths.
if [ -z "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ]; then
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; do
    [ -f "$icd" ] && export VK_DRIVER_FILES="$icd" && say "Vulkan driver: $icd"
  done
fi

scale="${FLIC_BENCH_SAMPLES_SCALE:-1}"
epochs="${FLIC_BENCH_EPOCHS:-2}"
models="${FLIC_BENCH_MODELS:-linear,mlp,lenet,cifar-cnn}"
python="${PYTHON:-python3}"
script="$here/train_throughput.py"
[ -f "$script" ] || script="$here/../pytorch/train_throughput.py"

say "flic: $("$FLIC" --version)"
"$FLIC" backends | tee "$report/backends.txt" | tee -a "$log" >&2
"$FLIC" backends --json >"$report/backends.json"

# Each GPU backend compiled in is kept if it trains one batch on its adapter.
backends=()
for b in cuda wgpu; do
  if "$FLIC" --quiet bench train --models linear --samples-scale 0 --epochs 1 \
      --backends "$b" >"$report/probe-$b.log" 2>&1; then
    backends+=("$b")
    rm -f "$report/probe-$b.log"
  else
    say "backend $b left out: $(tail -n 1 "$report/probe-$b.log")"
  fi
done
if [ "${#backends[@]}" -eq 0 ]; then
  say "no GPU backend started on this machine (see probe-*.log); timing flex alone"
fi
backends+=(flex)

torch_args=()
if "$python" -c 'import torch, numpy, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
    >/dev/null 2>&1; then
  torch_args=(--pytorch "$python" --pytorch-device cuda --script "$script")
  say "PyTorch on CUDA: $("$python" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))')"
else
  say "PyTorch on CUDA left out: \`$python -c 'import torch'\` fails here or sees no GPU"
fi

list="$(IFS=,; echo "${backends[*]}")"
say "timing $models on $list (samples scale $scale, $epochs epoch(s))"
rm -f "$report/report.md"
"$FLIC" bench train --models "$models" --backends "$list" --samples-scale "$scale" \
  --epochs "$epochs" "${torch_args[@]}" --doc "$report/report.md" --json \
  >"$report/train.json" 2>>"$log" || { say "flic bench train failed (see run.log)"; exit 1; }
{
  echo
  echo "## flic backends"
  echo
  echo '```'
  cat "$report/backends.txt"
  echo '```'
} >>"$report/report.md"
say "report: $report/report.md"
