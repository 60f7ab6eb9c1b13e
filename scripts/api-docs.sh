#!/usr/bin/env bash
# Build the HTML API reference of the mxfp4 package and its subpackages from the docstrings with
# pdoc (a test extra). Offline and CPU only: importing triton needs no GPU.
# Usage: bash scripts/api-docs.sh [OUT_DIR]   (default build/api; PYTHON=... picks the interpreter)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build/api}
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    if [ -x "$root/.venv/bin/python" ]; then PYTHON=$root/.venv/bin/python; fi
fi
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's sources, installed or not
unset TRITON_INTERPRET  # the pages then show a kernel as JITFunction(name), not an interpreter object

"$PYTHON" - "$out" <<'PY'
import importlib
import pkgutil
import sys
from pathlib import Path

import pdoc

import mxfp4

# pdoc walks into, and lists, only the submodules in a package's __all__ (mxfp4's and mxfp4.nn's
# list none), and sees a lazy export (a module __getattr__, which keeps `import mxfp4` light) only
# once it is loaded. So in this process: load those, then add the public submodules to __all__.
packages = [mxfp4] + [importlib.import_module(m.name)
                      for m in pkgutil.walk_packages(mxfp4.__path__, "mxfp4.")
                      if m.ispkg and "._" not in m.name]
for package in packages:
    if hasattr(package, "__all__"):
        for name in package.__all__:
            setattr(package, name, getattr(package, name))
        package.__all__ += [m.name for m in pkgutil.iter_modules(package.__path__)
                            if not m.name.startswith("_") and m.name not in package.__all__]
pdoc.pdoc("mxfp4", output_directory=Path(sys.argv[1]))
print(f"api-docs: {sys.argv[1]}/index.html")
PY
