"""One writer per run folder, and a ``metrics.jsonl`` that matches the checkpoint a run continues from.

:func:`run_lock` holds ``<run folder>/.lock`` (the owner's host and pid) while a training writes there: a second
training in the same folder stops with a :class:`~awing.config.ConfigError` naming the owner; the lock of a
process that no longer exists (killed, machine rebooted) is taken over.

:func:`prepare_metrics` makes the metrics log fit the run about to start: a fresh run starts an empty file (it never
appends to an old run's lines); a resumed run keeps the lines up to the checkpoint's step and drops those of the
steps it will run again (and a half-written last line).

:class:`StopRequest` turns the first Ctrl-C of a training into a request the loop honours after the current
optimiser step (so the checkpoint it writes is consistent and resumes exactly); a second Ctrl-C stops at once.
DataLoader workers are started with SIGINT ignored, so a Ctrl-C never prints their tracebacks.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as folder, run_lock(folder) as lock:
...     lock.read_text().split()[1] == str(os.getpid())
True
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from awing.config import ConfigError

__all__ = ["LOCK_NAME", "StopRequest", "prepare_metrics", "run_lock"]

LOCK_NAME = ".lock"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (``kill(pid, 0)``: no signal is sent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _owner(path: Path) -> tuple[str, int] | None:
    """``(host, pid)`` written in a lock file; ``None`` when it is unreadable or malformed (a crash mid-write)."""
    try:
        host, pid = path.read_text(encoding="utf-8").split()
        return host, int(pid)
    except (OSError, ValueError):
        return None


def _create(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` only if it does not exist; False when it does."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return True


@contextmanager
def run_lock(run_dir: str | os.PathLike, enabled: bool = True) -> Iterator[Path]:
    """Hold ``run_dir/.lock`` for the ``with`` block (the folder is created); ``enabled=False`` does nothing
    (ranks > 0 of a distributed run, which write no files).

    Raises ``ConfigError`` when a live process on this host, or any process on another host, holds the lock.
    A lock from this host whose pid is gone is stale and taken over.
    """
    path = Path(run_dir) / LOCK_NAME
    if not enabled:
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    host, mine = socket.gethostname(), f"{socket.gethostname()} {os.getpid()}\n"
    for _ in range(3):  # a stale lock removed by us or by a competitor: try again
        if _create(path, mine):
            break
        owner = _owner(path)
        if owner is not None and (owner[0] != host or _alive(owner[1])):
            raise ConfigError(
                f"run folder {path.parent} is in use by training process {owner[1]} on {owner[0]} (lock file {path}); "
                "wait for it to finish or choose another run.name / run.out_dir"
            )
        path.unlink(missing_ok=True)  # stale (dead pid) or unreadable
    else:
        raise ConfigError(f"cannot take the lock {path}: another process keeps creating it")
    try:
        yield path
    finally:
        if path.is_file() and _owner(path) == (host, os.getpid()):
            path.unlink(missing_ok=True)


def prepare_metrics(path: str | os.PathLike, resume_step: int | None) -> None:
    """Make the JSON-lines metrics log at ``path`` fit the run about to start.

    ``resume_step=None`` (a fresh run): remove the file. Otherwise keep the complete lines whose ``"step"`` is at
    most ``resume_step`` (the resumed checkpoint's optimiser step), through a temporary file and a rename.
    """
    path = Path(path)
    if resume_step is None:
        path.unlink(missing_ok=True)
        return
    if not path.is_file():
        return
    kept = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # half-written by a killed run
            try:
                step = json.loads(line).get("step")
            except (json.JSONDecodeError, AttributeError):
                continue
            if isinstance(step, int) and step <= resume_step:
                kept.append(line)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class StopRequest:
    """``with StopRequest() as stop:`` the first SIGINT sets ``stop.requested`` (a note on stderr) instead of
    raising; a second one raises ``KeyboardInterrupt``. Outside the main thread it does nothing (signals cannot be
    handled there), and the default behaviour stays."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("interrupt: stopping after this step and saving last.pt (Ctrl-C again to stop now)", file=sys.stderr)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def start(self, loader: Iterable) -> Iterator:
        """``iter(loader)`` with SIGINT ignored, so that the worker processes it starts inherit the ignoring (the
        parent handles Ctrl-C and shuts them down)."""
        if threading.current_thread() is not threading.main_thread():
            return iter(loader)
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return iter(loader)
        finally:
            signal.signal(signal.SIGINT, handler)
