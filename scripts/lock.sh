#!/usr/bin/env bash
# Write requirements.lock: resolve the newest versions within pyproject.toml's ranges in a scratch
# venv, then record every installed package at its exact version (pip and setuptools included).
# Run it on the CI kind of machine (its Python is the one the lock is for); review, then commit.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
bash scripts/newest-env.sh "$venv"
py=$venv/bin/python
{
    echo "# The exact versions that scripts/setup.sh installs (pip constraints). Made by scripts/lock.sh;"
    echo "# do not edit by hand. torch is installed as its CPU build (scripts/torch-cpu.sh)."
    echo "# python: $($py -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    echo "# platform: $($py -c 'import platform; print(platform.system(), platform.machine())')"
    echo "# resolved: $(date -u +%Y-%m-%d)"
    # Local labels (torch's +cpu) go: the same version's CPU or CUDA build both satisfy the pin.
    $py -m pip list --format=freeze --exclude-editable 2>/dev/null | sed 's/+[a-z0-9.]*$//' | sort -f
} > requirements.lock.tmp
mv requirements.lock.tmp requirements.lock
rm -rf "$(dirname "$venv")"
echo "lock: wrote requirements.lock ($(grep -c '==' requirements.lock) packages)" >&2
