"""Write a whole output folder in one step, so that no interrupt or error loses a user's data.

`staged_folder(target)` yields a fresh temporary folder beside `target`. Everything is written
there; only when the block finishes does the folder move into place. A SIGINT or SIGTERM that
arrives during that move is noted and raised once the folder is whole. An error, Ctrl-C or SIGTERM before that deletes the temporary
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

    def __init__(self, signum: int, completed: bool = False):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum, self.completed = signum, completed  # completed: it came after the move


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


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _signals(handler):
    """Route SIGINT and SIGTERM to `handler` (main thread only; an ignored signal stays ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    for s, h in previous.items():
        if h is not signal.SIG_IGN:
            signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _raise(signum, frame):
    raise Interrupted(signum)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: str, path: str, overwrite: bool) -> None:
    """Move `tmp` to `path`. Without overwrite only onto nothing or an empty folder (one that
    appeared meanwhile is not ours to delete); with it the old folder goes only after the new one
    is in place, and comes back if that move fails."""
    if not overwrite or not os.path.isdir(path):
        try:
            os.rename(tmp, path)
        except OSError as err:
            raise ValueError(f"output folder {path!r} appeared or filled up while it was being "
                             f"written ({err.strerror}); nothing was replaced") from None
        return
    old = tmp[: -len(".partial")] + ".old"
    os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike, *, overwrite: bool = False, inputs=()):
    """Yield a temporary folder; on success it becomes `target` (see the module docstring)."""
    path = check_output_folder(target, overwrite=overwrite, inputs=inputs)
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=parent)
    try:
        with _signals(_raise):
            yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual permissions
        # A signal during the move is only noted (masking would not do: any of torch's threads
        # may receive it), and raised once the folder is whole again.
        pending = []
        with _signals(lambda signum, frame: pending.append(signum)):
            _commit(tmp, path, overwrite)
            _fsync_dir(parent)
        if pending:
            raise Interrupted(pending[0], completed=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
