#!/usr/bin/env bash
# Run the test suite on the newest releases (not the lock), in a scratch venv, and print what
# resolved differently from requirements.lock. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${LATEST_VENV:-.venv-latest}
bash scripts/newest-env.sh "$venv"
bash scripts/setup-browser.sh
echo "check-latest: versions that differ from requirements.lock (lock -> newest):"
$venv/bin/python -m pip list --format=freeze --exclude-editable 2>/dev/null | sed 's/+[a-z0-9.]*$//' \
    | python3 -c '
import sys
lock = dict(l.strip().split("==") for l in open("requirements.lock") if "==" in l)
for line in sys.stdin:
    name, _, version = line.strip().partition("==")
    if lock.get(name) != version:
        print(f"  {name}: {lock.get(name, chr(8212))} -> {version}")
'
$venv/bin/python -m pytest -q "$@"
