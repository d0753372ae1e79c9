#!/bin/sh
# Installs PyTorch (CPU use; PyPI's Linux wheel also pulls CUDA libraries, about 4 GB in
# all) and numpy into a virtualenv for `flic bench train --pytorch`. Not run in CI.
# Usage: bench/pytorch/setup.sh [VENV]   (default: $HOME/.cache/flic-torch-venv)
# Prints the venv's python, to pass as `--pytorch`.
set -eu
VENV="${1:-$HOME/.cache/flic-torch-venv}"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip >&2
"$VENV/bin/pip" install --quiet -r "$(dirname "$0")/requirements.txt" >&2
"$VENV/bin/python" -c 'import torch; print("torch", torch.__version__, file=__import__("sys").stderr)'
echo "$VENV/bin/python"
