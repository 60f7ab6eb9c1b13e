"""Benchmark results for the Performance view.

Results are the JSON files mxfp4.bench.record writes (title, environment, columns, rows, notes).
The server reads docs/benchmarks/ of a source checkout when there is one, then the copy shipped in
the package (mxfp4/data/benchmarks/, refreshed by `mxfp4 viz --sync-benchmarks`); a file name
found in both is taken from the checkout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..tensor import atomic_write
from .bench_layout import layout

MAX_FILE_BYTES = 4 << 20
PACKAGE_DIR = Path(__file__).resolve().parents[1] / "data" / "benchmarks"
TRAINING_PREFIX = "training-"
HOW_TO = ("Run a suite on the machine you want numbers for, e.g. `mxfp4 bench quantize --device cuda"
          " --out docs/benchmarks` in a source checkout (without --out it writes ./bench-quantize/);"
          " `mxfp4 viz --sync-benchmarks` copies those files into the package so that an installed"
          " mxfp4 shows them too.")


def source_dir() -> Path | None:
    """docs/benchmarks of the checkout this package runs from (an editable install), if any."""
    repo = Path(__file__).resolve().parents[3]
    if (repo / "pyproject.toml").is_file() and (repo / "docs" / "benchmarks").is_dir():
        return repo / "docs" / "benchmarks"
    return None


def default_dirs() -> list[Path]:
    return [d for d in (source_dir(), PACKAGE_DIR) if d is not None]


def _check(data) -> str | None:
    """Why `data` is not a benchmark record, or None if it is one."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if not isinstance(data.get("title"), str):
        return "no 'title' string"
    columns, rows = data.get("columns"), data.get("rows")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        return "no 'columns' list of names"
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return "no 'rows' list of objects"
    if not isinstance(data.get("environment", {}), dict):
        return "'environment' is not an object"
    return None


def _check_training(data) -> str | None:
    """Why `data` is not a training record (training.py draws its loss logs), or None."""
    from .training import check_log, logs_in

    logs = list(logs_in(data))
    if not logs:
        return "no loss log (a 'train' or 'val' list of {step, loss})"
    return next((p for p in (check_log(log) for _, log in logs) if p), None)


def load(dirs=None) -> dict:
    """All benchmark records of `dirs` (default: checkout, then package) and the files skipped."""
    dirs = default_dirs() if dirs is None else [Path(d) for d in dirs]
    seen, records, skipped = set(), [], []
    for d in dirs:
        if not d.is_dir():
            continue
        for path in sorted(d.glob("*.json")):
            if path.name in seen or not path.is_file() or path.name.startswith(TRAINING_PREFIX):
                continue  # training-*.json: loss curves, drawn by the Training view (training.py)
            seen.add(path.name)
            try:
                if path.stat().st_size > MAX_FILE_BYTES:
                    raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                skipped.append({"file": path.name, "reason": str(err)[:200]})
                continue
            problem = _check(data)
            if problem:
                skipped.append({"file": path.name, "reason": problem})
                continue
            records.append({"file": path.name, "source": "checkout" if d != PACKAGE_DIR else "package",
                            "title": data["title"], "environment": data.get("environment", {}),
                            "columns": data["columns"], "rows": data["rows"],
                            "notes": data.get("notes", ""), "layout": layout(data["columns"], data["rows"])})
    return {"benchmarks": records, "skipped": skipped, "how_to": HOW_TO,
            "searched": [str(d) for d in dirs]}


def sync(src: str | os.PathLike | None = None, dst: str | os.PathLike = PACKAGE_DIR) -> list[str]:
    """Copy the valid benchmark JSON files of src (default: the checkout's) into dst."""
    src = Path(src) if src is not None else source_dir()
    if src is None or not src.is_dir():
        raise FileNotFoundError("no docs/benchmarks folder to copy from; run `mxfp4 bench ...` first")
    Path(dst).mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(src.glob("*.json")):
        text = path.read_text(encoding="utf-8")
        training = path.name.startswith(TRAINING_PREFIX)
        try:
            problem = (_check_training if training else _check)(json.loads(text))
        except ValueError as err:
            problem = str(err)
        if problem:
            raise ValueError(f"{path}: not a {'training' if training else 'benchmark'} record ({problem})")
        target = Path(dst) / path.name
        atomic_write(target, lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))
        copied.append(str(target))
    return copied
