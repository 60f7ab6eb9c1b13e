"""Paths from the client, confined to the --models directory.

A client sends relative paths only. Absolute paths, `..`, NUL bytes and anything whose real
path (after symlinks) lies outside the models directory are refused. Only .safetensors files are
ever opened, so no pickle-based format is read.
"""

from __future__ import annotations

import os
from pathlib import Path

from .validate import ApiError

MODEL_SUFFIX = ".safetensors"
MAX_PATH_CHARS = 1024
MAX_LISTED = 500
MAX_DEPTH = 4


def _inside(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def resolve(root: str | os.PathLike | None, rel) -> Path:
    """The real path of `rel` inside `root`; an ApiError says why a path is refused."""
    if root is None:
        raise ApiError(404, "no models directory: start the server with `mxfp4 viz --models DIR`")
    if not isinstance(rel, str) or not rel.strip():
        raise ApiError(400, "path must be a non-empty relative path inside the models directory")
    if len(rel) > MAX_PATH_CHARS or "\x00" in rel:
        raise ApiError(400, "path is too long or contains a NUL byte")
    parts = rel.replace("\\", "/").split("/")
    if rel.startswith(("/", "\\")) or os.path.isabs(rel) or (len(rel) > 1 and rel[1] == ":"):
        raise ApiError(400, f"absolute paths are not accepted ({rel[:60]!r}); send a path relative "
                            "to the models directory")
    if ".." in parts:
        raise ApiError(400, f"'..' is not allowed in paths ({rel[:60]!r})")
    root_real = os.path.realpath(root)
    real = os.path.realpath(os.path.join(root_real, *[p for p in parts if p not in ("", ".")]))
    if not _inside(real, root_real):
        raise ApiError(403, f"{rel[:60]!r} leads outside the models directory (a symlink out?)")
    if not os.path.exists(real):
        raise ApiError(404, f"{rel[:60]!r} does not exist in the models directory")
    return Path(real)


def model_files(root, rel) -> list[Path]:
    """The .safetensors files `rel` names: the file itself, or those directly in a folder."""
    path = resolve(root, rel)
    if path.is_file():
        if path.suffix != MODEL_SUFFIX:
            raise ApiError(400, f"only {MODEL_SUFFIX} files are read; {rel[:60]!r} is not one")
        return [path]
    root_real = os.path.realpath(root)
    files = sorted(p for p in path.iterdir() if p.suffix == MODEL_SUFFIX and p.is_file()
                   and _inside(os.path.realpath(p), root_real))
    if not files:
        raise ApiError(404, f"{rel[:60]!r} holds no {MODEL_SUFFIX} files")
    return [Path(os.path.realpath(p)) for p in files]


def beside(root, files: list[Path], name: str) -> Path | None:
    """The file `name` in the folder of `files` (what model_files gave), if it is there and inside root."""
    path = files[0].parent / name
    if path.is_file() and _inside(os.path.realpath(path), os.path.realpath(root)):
        return path
    return None


def list_models(root) -> list[dict]:
    """Safetensors files and folders of them under root (depth <= 4), links out of root skipped."""
    if root is None:
        return []
    root_real = os.path.realpath(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root_real, followlinks=False):
        depth = os.path.relpath(dirpath, root_real).count(os.sep) + (dirpath != root_real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < MAX_DEPTH else []
        found = []
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if name.endswith(MODEL_SUFFIX) and _inside(os.path.realpath(full), root_real) \
                    and os.path.isfile(full):
                found.append((name, os.path.getsize(full)))
        rel_dir = os.path.relpath(dirpath, root_real)
        if found and rel_dir != "." and (len(found) > 1 or "config.json" in filenames):
            out.append({"path": rel_dir.replace(os.sep, "/"), "kind": "folder", "files": len(found),
                        "bytes": sum(s for _, s in found)})
        for name, size in found:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            out.append({"path": rel, "kind": "file", "files": 1, "bytes": size})
        if len(out) >= MAX_LISTED:
            return out[:MAX_LISTED]
    return out
