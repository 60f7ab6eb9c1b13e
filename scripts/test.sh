#!/usr/bin/env bash
# Run the test suite (sets up .venv first). Without a GPU, Triton kernels run in the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-browser.sh  # Chromium for tests/test_viz_browser.py
.venv/bin/python -m pytest -q "$@"
