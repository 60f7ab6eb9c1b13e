"""Write benchmark results as JSON + a markdown table, with the machine and versions."""

from __future__ import annotations

import datetime
import json
import os
import platform

import torch

from ..tensor import atomic_write


def environment(device: str) -> dict:
    """What a reader needs to compare numbers: device, versions, date."""
    env = {"date": datetime.date.today().isoformat(), "python": platform.python_version(),
           "torch": torch.__version__}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    if str(device).startswith("cuda"):
        env["device"] = torch.cuda.get_device_name(torch.device(device))
    else:
        env["device"] = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads, {os.cpu_count()} cores)"
    return env


def markdown_table(columns: list[str], rows: list[dict]) -> str:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def check_out_dir(path: str) -> None:
    """Fail now, naming `path`, if results could not be written to that folder later.

    Nothing is created: the nearest part of the path that exists must be a writable folder.
    """
    p = os.path.abspath(path)
    while not os.path.lexists(p):
        p = os.path.dirname(p)
    where = f"--out {path}" + ("" if p == os.path.abspath(path) else f": {p}")
    if not os.path.isdir(p):
        raise ValueError(f"{where} is not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ValueError(f"{where} is not writable")


def write_results(out_dir: str, name: str, title: str, env: dict, columns: list[str],
                  rows: list[dict], notes: str = "") -> tuple[str, str]:
    """Write out_dir/name.json and out_dir/name.md atomically; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    json_path, md_path = os.path.join(out_dir, f"{name}.json"), os.path.join(out_dir, f"{name}.md")
    payload = {"title": title, "environment": env, "columns": columns, "rows": rows, "notes": notes}
    text = json.dumps(payload, indent=2)
    atomic_write(json_path, lambda tmp: open(tmp, "w").write(text + "\n"))
    env_line = ", ".join(f"{k} {v}" for k, v in env.items())
    md = f"# {title}\n\n{env_line}\n\n{markdown_table(columns, rows)}\n"
    if notes:
        md += f"\n{notes}\n"
    atomic_write(md_path, lambda tmp: open(tmp, "w").write(md))
    return json_path, md_path
