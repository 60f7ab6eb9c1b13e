#!/usr/bin/env bash
# Build a scratch venv with the newest releases that pyproject.toml's ranges allow (no lock):
# bash scripts/newest-env.sh VENV_DIR. Used by lock.sh (to write the lock) and check-latest.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$1
rm -rf "$venv"
"${PYTHON:-python3}" -m venv "$venv"
py=$venv/bin/python
$py -m pip install -q --upgrade pip setuptools
bash scripts/torch-cpu.sh "$py"
# Keep that CPU build: an eager upgrade would otherwise swap in PyPI's (CUDA) torch.
echo "torch==$($py -c 'import torch; print(torch.__version__)' 2>/dev/null)" > "$venv/torch-pin.txt"
$py -m pip install -q --upgrade --upgrade-strategy eager --no-build-isolation -c "$venv/torch-pin.txt" -e ".[test]"
