#!/usr/bin/env bash
# Install a CPU build of torch into a venv: bash scripts/torch-cpu.sh PYTHON [VERSION]
# VERSION pins it (the lock's); without one, the newest CPU build that can be reached.
# Tried in order: PyTorch's CPU index, a torch-*+cpu wheel in pip's find-links (offline mirrors),
# then PyPI's default torch (a CUDA build on Linux: several GB, but it runs on the CPU too).
set -euo pipefail
py=$1
version=${2:-}
spec=torch${version:+==$version}

cpu_wheel_from_find_links() {
    local tag dirs
    tag=$($py -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    dirs="${PIP_FIND_LINKS:-} $($py -m pip config list 2>/dev/null | sed -n "s/.*find-links='\(.*\)'/\1/p")"
    for d in $dirs; do  # the version is a glob when none is given
        ls "${d#file://}"/torch-${version:-*}+cpu-"$tag"-*.whl 2>/dev/null || true
    done | sort -V | tail -n 1
}

if $py -m pip --isolated install -q --retries 0 --timeout 30 "$spec" \
        --index-url https://download.pytorch.org/whl/cpu 2>/dev/null; then
    exit 0
fi
wheel=$(cpu_wheel_from_find_links)
if [ -n "$wheel" ]; then
    $py -m pip install -q "$wheel"
else
    echo "torch-cpu: no CPU torch index or wheel reachable; installing PyPI's $spec" >&2
    $py -m pip install -q "$spec"
fi
