"""Write a whole output folder in one step, so that no interrupt or error loses a user's data.

`staged_folder(target)` yields a fresh temporary folder beside `target`. Everything is written
there; only when the block finishes does the folder move into place, with SIGINT and SIGTERM
held back for the two renames. An error, Ctrl-C or SIGTERM before that deletes the temporary
folder and leaves `target` exactly as it was. Its name starts with a dot and ends in
".partial", so no loader pointed at `target` sees a half-written model.

`check_output_folder` and `check_output_file` refuse bad destinations before any work starts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived while an output folder was being written."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def _first_existing(path: str) -> str:
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def _check_parent(path: str, what: str) -> None:
    existing = _first_existing(os.path.dirname(path))
    if not os.path.isdir(existing):
        raise ValueError(f"{what} {path!r} sits under {existing!r}, which is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path!r} is not writable ({existing!r} is not)")


def check_output_folder(target: str | os.PathLike, *, overwrite: bool = False,
                        inputs=()) -> str:
    """The resolved output folder, after refusing a destination that would lose data.

    Refused: a file; a path under a file or in a folder we may not write; a folder that is,
    contains or lies inside one of `inputs` (symbolic links resolved); a non-empty folder
    unless `overwrite`.
    """
    path = os.path.realpath(os.fspath(target))
    for source in inputs:
        source = os.path.realpath(os.fspath(source))
        if path == source or _inside(path, source) or _inside(source, path):
            raise ValueError(f"output folder {os.fspath(target)!r} resolves to {path!r}, which "
                             f"is, lies inside or contains the input {source!r}")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"output folder {os.fspath(target)!r} is a file")
    _check_parent(path, "output folder")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise ValueError(f"output folder {os.fspath(target)!r} is not empty; pass --overwrite "
                         "(overwrite=True) to replace it (the old one stays until the new one "
                         "is complete)")
    return path


def check_output_file(target: str | os.PathLike, what: str = "output file") -> str:
    """Refuse a file destination that is a folder, sits under a file or is not writable."""
    path = os.path.realpath(os.fspath(target))
    if os.path.isdir(path):
        raise ValueError(f"{what} {os.fspath(target)!r} is a folder")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ValueError(f"{what} {os.fspath(target)!r} is not writable")
    _check_parent(path, what)
    return path


@contextlib.contextmanager
def _signals_raise():
    """SIGTERM (and SIGINT) raise Interrupted, so cleanup runs; main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _signals_held():
    held = {signal.SIGINT, signal.SIGTERM}
    main = threading.current_thread() is threading.main_thread()
    if main:
        signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        if main:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike, *, overwrite: bool = False, inputs=()):
    """Yield a temporary folder; on success it becomes `target` (see the module docstring)."""
    path = check_output_folder(target, overwrite=overwrite, inputs=inputs)
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=parent)
    try:
        with _signals_raise():
            yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual permissions
        with _signals_held():
            if os.path.isdir(path):
                old = tmp[: -len(".partial")] + ".old"
                os.rename(path, old)
                os.rename(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, path)
            _fsync_dir(parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
