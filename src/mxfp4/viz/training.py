"""Training runs for the Training view: their loss curves, from recorded results and run folders.

Two sources:
- recorded results: the training-*.json files among the benchmark results (docs/benchmarks of a
  checkout, then the copy in the package, as benchmarks.py finds them). A file may hold several
  loss logs anywhere in it; a loss log is an object with a "train" and/or "val" list of
  {"step", "loss"} (the loss.json of mxfp4.train.loop). Each log is one run, named by its
  "label" or by the key it sits under.
- run folders given with `mxfp4 viz --runs DIR`: an `mxfp4 train` output folder (loss.json and
  run.json, or checkpoint/ while the run is under way), or a folder of such folders.

Files are read again on every request, so a run under way shows its latest checkpoint. The page
names a run by an id from the listing; the server turns it back into a path inside a --runs
folder or a training-*.json file it found itself, never into a path the client chose.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from . import benchmarks
from .validate import ApiError, plain

MAX_FILE_BYTES = 32 << 20  # a loss.json of 100k steps is about 10 MB
MAX_POINTS = 2000  # training-loss points sent per run; longer logs are averaged in buckets
MAX_RUNS = 200  # run folders listed per --runs folder
MAX_DEPTH = 3  # how deep a --runs folder is searched for run folders
LAST = 10  # the "final" training loss is the mean of the last LAST steps, as `mxfp4 train` prints
LABEL_KEYS = ("label", "name", "arm")
STRUCTURAL = {"run", "runs", "arms", "log", "logs", "loss", "curve", "curves", "results"}
HOW_TO = ("Train with `mxfp4 train lm ... -o runs/NAME` (or `mxfp4 train qat`), then start the "
          "visualizer with `mxfp4 viz --runs runs/` to see those runs here. Recorded results are "
          "the training-*.json files of docs/benchmarks, copied into the package by "
          "`mxfp4 viz --sync-benchmarks`.")


def check_dirs(dirs) -> list[str]:
    """The --runs folders as absolute paths; a missing folder is a clear error at start-up."""
    out = []
    for d in dirs or []:
        path = Path(d)
        if path.is_file() and path.name == "loss.json":  # a loss.json given directly: its run folder
            path = path.parent
        if not path.is_dir():
            raise FileNotFoundError(f"--runs {str(d)!r} is not a folder; give `mxfp4 train` output "
                                    "folders or a folder of them")
        out.append(str(path.resolve()))
    return out


def _inside(path: str, root: str) -> bool:
    real, root = os.path.realpath(path), os.path.realpath(root)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _log_file(folder: str) -> tuple[str, bool] | None:
    """(loss.json path, under way) of a run folder: the finished log, else the checkpoint's."""
    for path, running in ((os.path.join(folder, "loss.json"), False),
                          (os.path.join(folder, "checkpoint", "loss.json"), True)):
        if os.path.isfile(path):
            return path, running
    return None


def run_folders(root: str) -> list[str]:
    """Run folders in `root` (itself, or below it to MAX_DEPTH), in name order; links not followed."""
    if _log_file(root):
        return [root]
    found = []
    for dirpath, dirnames, _ in os.walk(root, followlinks=False):
        depth = os.path.relpath(dirpath, root).count(os.sep) + (dirpath != root)
        keep = []
        for name in sorted(dirnames):
            full = os.path.join(dirpath, name)
            if name.startswith(".") or name == "checkpoint":
                continue
            if _log_file(full):
                found.append(full)
            elif depth + 1 < MAX_DEPTH:
                keep.append(name)
        dirnames[:] = keep
        if len(found) >= MAX_RUNS:
            break
    return sorted(found)[:MAX_RUNS]


def read_json(path: str, what: str):
    """The JSON of `path`; a ValueError says in words why it cannot be read."""
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise ValueError(f"{what} is {plain(size)} bytes, over the limit of {plain(MAX_FILE_BYTES)}")
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise ValueError(f"{what} cannot be read: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{what} is not UTF-8 text") from None
    if not text.strip():
        raise ValueError(f"{what} is empty")
    try:
        return json.loads(text)
    except ValueError as err:
        raise ValueError(f"{what} is not valid JSON (cut short while written?): {err}") from None


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def is_log(obj) -> bool:
    """Whether obj looks like a loss log: a "train" or "val" list of {"step", "loss"} objects."""
    return isinstance(obj, dict) and any(
        isinstance(obj.get(k), list) and obj[k] and isinstance(obj[k][0], dict)
        and "step" in obj[k][0] and "loss" in obj[k][0] for k in ("train", "val"))


def check_log(log) -> str | None:
    """Why `log` is not a usable loss log, or None."""
    if not isinstance(log, dict):
        return "the loss log is not a JSON object"
    for key in ("train", "val"):
        rows = log.get(key, [])
        if not isinstance(rows, list):
            return f"'{key}' is not a list"
        for i, r in enumerate(rows):
            if not (isinstance(r, dict) and _number(r.get("step"))
                    and (_number(r.get("loss")) or r.get("loss") is None)):
                return f"'{key}' entry {i} is not a {{step, loss}} pair of numbers"
    if not log.get("train") and not log.get("val"):
        return "no loss recorded yet (the 'train' and 'val' lists are empty)"
    return None


def _finite(x):
    return float(x) if _number(x) and math.isfinite(x) else None  # JSON has no NaN or inf


def _tokens_per_step(log) -> int | None:
    if _number(log.get("tokens_per_step")):
        return int(log["tokens_per_step"])
    s = log.get("settings")
    if isinstance(s, dict) and _number(s.get("batch")) and _number(s.get("seq")):
        return int(s["batch"] * s["seq"])
    return None


def summary(log) -> dict:
    """Steps, tokens and final losses of a checked loss log."""
    train, val = log.get("train", []), log.get("val", [])
    last = [x for x in (_finite(r["loss"]) for r in train[-LAST:]) if x is not None]
    steps = max([int(r["step"]) for r in train + val], default=0)
    per_step = _tokens_per_step(log)
    diverged = log.get("diverged_at")
    return {"steps": steps, "tokens_per_step": per_step,
            "tokens": None if per_step is None else steps * per_step,
            "final_train": sum(last) / len(last) if last else _finite(log.get("train_loss_last10_mean")),
            "final_train_steps": len(last),
            "final_val": _finite(val[-1]["loss"]) if val else None,
            "final_val_step": int(val[-1]["step"]) if val else None,
            "diverged_at": int(diverged) if _number(diverged) else None}


def curve(log) -> dict:
    """The points to draw: training loss (averaged over `averaged` steps when long) and validation loss."""
    train = [(int(r["step"]), _finite(r["loss"])) for r in log.get("train", [])]
    k = max(1, math.ceil(len(train) / MAX_POINTS))
    if k > 1:
        buckets = [train[i:i + k] for i in range(0, len(train), k)]
        means = [[v for _, v in b if v is not None] for b in buckets]
        train = [(b[-1][0], sum(m) / len(m) if m else None) for b, m in zip(buckets, means)]
    val = [(int(r["step"]), _finite(r["loss"])) for r in log.get("val", [])]
    return {"train": {"step": [s for s, _ in train], "loss": [v for _, v in train]},
            "val": {"step": [s for s, _ in val], "loss": [v for _, v in val]},
            "averaged": k, "tokens_per_step": _tokens_per_step(log)}


# -- recorded results (training-*.json) ----------------------------------------------------------

def recorded_files(bench_dirs) -> list[tuple[Path, str]]:
    """(path, "checkout" or "package") of each training-*.json; a name in an earlier folder wins."""
    dirs = benchmarks.default_dirs() if bench_dirs is None else [Path(d) for d in bench_dirs]
    seen, out = set(), []
    for d in dirs:
        if not d.is_dir():
            continue
        for path in sorted(d.glob(f"{benchmarks.TRAINING_PREFIX}*.json")):
            if path.name not in seen and path.is_file():
                seen.add(path.name)
                out.append((path, "package" if d == benchmarks.PACKAGE_DIR else "checkout"))
    return out


def _label(obj, keys: list[str]) -> str | None:
    for k in LABEL_KEYS:
        if isinstance(obj.get(k), str) and obj[k].strip():
            return obj[k].strip()
    named = [k for k in keys if not k.isdigit() and k not in STRUCTURAL]
    return named[-1] if named else None


def logs_in(data, keys=(), depth: int = 0):
    """(key path, log) of every loss log in a recorded file, in file order."""
    if is_log(data):
        yield list(keys), data
        return
    if depth >= 8:
        return
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for k, v in items:
        if isinstance(v, (dict, list)):
            yield from logs_in(v, (*keys, str(k)), depth + 1)


def _file_info(path: Path, source: str, data) -> dict:
    title = next((data[k] for k in ("title", "model") if isinstance(data.get(k), str)), path.stem)
    notes = data.get("notes", "")
    if isinstance(notes, list):
        notes = "; ".join(str(n) for n in notes)
    env = data.get("environment") if isinstance(data.get("environment"), dict) else {}
    return {"name": path.name, "source": source, "title": title,
            "notes": notes if isinstance(notes, str) else "",
            "environment": {k: str(v) for k, v in env.items() if isinstance(v, (str, int, float))}}


def _recorded(bench_dirs, problems: list) -> tuple[list, list]:
    runs, groups = [], []
    for path, source in recorded_files(bench_dirs):
        try:
            data = read_json(str(path), path.name)
        except ValueError as err:
            problems.append({"where": path.name, "reason": str(err)[:300]})
            continue
        logs = list(logs_in(data))
        if not logs:
            problems.append({"where": path.name, "reason": "holds no loss log (a 'train' or "
                                                           "'val' list of {step, loss})"})
            continue
        group = _file_info(path, source, data if isinstance(data, dict) else {})
        groups.append(group)
        for n, (keys, log) in enumerate(logs):
            label = _label(log, keys) or (group["title"] if len(logs) == 1 else f"run {n + 1}")
            entry = {"id": f"recorded:{path.name}:{n}", "label": label, "group": path.name,
                     "source": "recorded", "where": f"{path.name} ({source})",
                     "what": _what(log.get("options"), log.get("command")), "in_progress": False}
            problem = check_log(log)
            runs.append({**entry, "problem": problem} if problem else {**entry, **summary(log)})
    return runs, groups


# -- run folders (--runs) ------------------------------------------------------------------------

def _what(options, command) -> str | None:
    """A run's recipe in a few words, from run.json's command and options."""
    if not isinstance(options, dict):
        return None
    if options.get("recipe"):
        return f"recipe {options['recipe']}" + (f", {options['config']} model" if options.get("config") else "")
    if options.get("scale_rule"):
        return f"QAT, scale rule {options['scale_rule']}" + (", Hadamard" if options.get("hadamard") else "")
    return str(command) if isinstance(command, str) else None


def _folder_run(root: str, i: int, folder: str) -> dict:
    rel = os.path.relpath(folder, root)
    label = os.path.basename(root) if rel == "." else rel.replace(os.sep, "/")
    entry = {"id": f"folder:{i}:{rel}", "label": label, "group": root, "source": "folder",
             "where": folder, "what": None, "in_progress": False}
    path, running = _log_file(folder)
    entry["in_progress"] = running
    run_json = os.path.join(os.path.dirname(path), "run.json")
    if os.path.isfile(run_json):
        try:
            run = read_json(run_json, "run.json")
            entry["what"] = _what(run.get("options"), run.get("command")) if isinstance(run, dict) else None
        except ValueError:
            pass  # run.json only adds words; the curve is in loss.json
    try:
        log = read_json(path, os.path.relpath(path, root) if rel != "." else "loss.json")
    except ValueError as err:
        return {**entry, "problem": str(err)[:300]}
    problem = check_log(log)
    return {**entry, "problem": problem} if problem else {**entry, **summary(log)}


def _folders(run_dirs, problems: list) -> list:
    runs = []
    for i, root in enumerate(run_dirs or []):
        if not os.path.isdir(root):
            problems.append({"where": root, "reason": "the folder is gone"})
            continue
        found = run_folders(root)
        if not found:
            problems.append({"where": root, "reason": "no loss.json in it or in its subfolders (an "
                                                      "`mxfp4 train` output folder holds loss.json "
                                                      "and run.json)"})
        runs += [_folder_run(root, i, f) for f in found]
    return runs


def listing(bench_dirs, run_dirs) -> dict:
    """Every run with its final losses (or why it cannot be read), and what was searched."""
    problems = []
    recorded, groups = _recorded(bench_dirs, problems)
    folders = _folders(run_dirs, problems)
    return {"runs": recorded + folders, "files": groups, "problems": problems,
            "run_dirs": list(run_dirs or []), "how_to": HOW_TO}


def run_curve(bench_dirs, run_dirs, run_id) -> dict:
    """The curve of the run `run_id` (an id from listing)."""
    if not isinstance(run_id, str) or run_id.count(":") < 2:
        raise ApiError(400, "id is required: a run id from /api/training")
    kind, first, rest = run_id.split(":", 2)
    if kind == "recorded":
        match = [p for p, _ in recorded_files(bench_dirs) if p.name == first]
        if not match or not rest.isdigit():
            raise ApiError(404, f"no recorded run {run_id[:120]!r}; reload the run list")
        try:
            logs = list(logs_in(read_json(str(match[0]), first)))
        except ValueError as err:
            raise ApiError(422, str(err)[:300]) from None
        if int(rest) >= len(logs):
            raise ApiError(404, f"no recorded run {run_id[:120]!r}; reload the run list")
        log = logs[int(rest)][1]
    elif kind == "folder" and first.isdigit() and int(first) < len(run_dirs or []):
        root = run_dirs[int(first)]
        folder = os.path.normpath(os.path.join(root, rest))
        found = _log_file(folder) if _inside(folder, root) and os.path.isdir(folder) else None
        if found is None:
            raise ApiError(404, f"no run folder {run_id[:120]!r}; reload the run list")
        try:
            log = read_json(found[0], "loss.json")
        except ValueError as err:
            raise ApiError(422, str(err)[:300]) from None
    else:
        raise ApiError(404, f"no run {run_id[:120]!r}; ids come from /api/training")
    problem = check_log(log)
    if problem:
        raise ApiError(422, f"the run's loss log cannot be drawn: {problem}")
    return {"id": run_id, **curve(log), **summary(log)}
