#!/usr/bin/env bash
# Set up .venv on a fresh machine: a CPU build of torch (no CUDA download) and mxfp4 with
# its test extras. Safe to run again: it only installs what is missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
py=.venv/bin/python

cpu_wheel_from_find_links() {  # offline mirrors: a torch-*+cpu wheel for this Python
    local tag dirs
    tag=$($py -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    dirs="${PIP_FIND_LINKS:-} $($py -m pip config list 2>/dev/null | sed -n "s/.*find-links='\(.*\)'/\1/p")"
    for d in $dirs; do ls "${d#file://}"/torch-*+cpu-"$tag"-*.whl 2>/dev/null || true; done | sort -V | tail -n 1
}

if ! $py -c 'import torch' 2>/dev/null; then
    echo "setup: installing a CPU build of torch" >&2
    if ! $py -m pip --isolated install -q --retries 0 --timeout 30 torch \
            --index-url https://download.pytorch.org/whl/cpu 2>/dev/null; then
        wheel=$(cpu_wheel_from_find_links)
        if [ -n "$wheel" ]; then
            $py -m pip install -q "$wheel"
        else
            echo "setup: no CPU torch index or wheel reachable; installing the default torch" >&2
            $py -m pip install -q torch
        fi
    fi
fi
stamp=.venv/.mxfp4-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    $py -m pip install -q -e ".[test]"
    touch "$stamp"
fi
