#!/usr/bin/env bash
# The main job: set up .venv and run `mxfp4 demo` (extra arguments go to the mxfp4 command).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/mxfp4 "${@:-demo}"
