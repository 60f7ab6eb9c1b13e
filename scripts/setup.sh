#!/usr/bin/env bash
# Set up .venv on a fresh machine from requirements.lock: the locked pip and setuptools, a CPU
# build of the locked torch (no CUDA download), then mxfp4 with its test extras at the locked
# versions. Safe to run again: it installs only when the lock or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
LOCK=requirements.lock
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
py=.venv/bin/python

# The lock was resolved on one Python (its header says which); another Python may lack wheels
# for some pins, so it gets the newest versions within pyproject.toml's ranges, with a warning.
locked_for=$(sed -n 's/^# python: //p' "$LOCK")
running=$($py -c 'import sys; print("%d.%d" % sys.version_info[:2])')
constraints=(-c "$LOCK")
if [ "$running" != "$locked_for" ]; then
    echo "setup: WARNING: $LOCK is for Python $locked_for, this is $running;" \
         "installing unlocked versions within pyproject.toml's ranges" >&2
    constraints=()
fi

stamp=.venv/.mxfp4-installed
want=$(cat "$LOCK" pyproject.toml | sha256sum | cut -d' ' -f1)-$running
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
$py -m pip install -q ${constraints[@]+"${constraints[@]}"} pip setuptools
torch_pin=$(sed -n 's/^torch==//p' "$LOCK")
[ ${#constraints[@]} -gt 0 ] || torch_pin=
have=$($py -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
if [ -z "$have" ] || { [ -n "$torch_pin" ] && [ "$have" != "$torch_pin" ]; }; then
    echo "setup: installing a CPU build of torch ${torch_pin}" >&2
    bash scripts/torch-cpu.sh "$py" "$torch_pin"
fi
# No build isolation: the package builds with the locked setuptools installed above.
$py -m pip install -q --no-build-isolation ${constraints[@]+"${constraints[@]}"} -e ".[test]"
echo "$want" > "$stamp"
