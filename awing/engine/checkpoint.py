"""Training checkpoints that lose nothing: atomic writes, ``weights_only`` loading, ``last.pt`` + ``best.pt``.

A checkpoint is a plain dict of tensors and plain Python types (model, optimiser, scheduler and RNG states, epoch,
resolved config), so it loads with ``torch.load(..., weights_only=True)`` (:func:`awing.models.weights.load_checkpoint`,
the model layer's reader): no code runs at load time. The state is
checked before writing, so a value that such loading would refuse (a numpy array, say) fails at save time with its
key path, not at resume time.

>>> import tempfile, torch
>>> with tempfile.TemporaryDirectory() as run_dir:
...     manager = CheckpointManager(run_dir)
...     manager.save({"epoch": 1, "w": torch.ones(2)}, metric=5.0), manager.save({"epoch": 2}, metric=6.0)
...     load_checkpoint(manager.best_path)["epoch"], load_checkpoint(manager.last_path)["epoch"]
(True, False)
(1, 2)
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections import Counter, OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from awing.models.weights import load_checkpoint

__all__ = ["CheckpointManager", "save_checkpoint"]

_CONTAINERS = (dict, OrderedDict, Counter, list, tuple, set)
_SCALARS = (bool, int, float, complex, str, bytes, bytearray, type(None), torch.dtype, torch.device, torch.Size)


def _check_loadable(obj: Any, path: str) -> None:
    """Raise TypeError naming the first value under ``obj`` that ``weights_only`` loading would refuse."""
    if isinstance(obj, (torch.Tensor, *_SCALARS)):
        return
    if type(obj) not in _CONTAINERS:
        raise TypeError(
            f"checkpoint value {path} is a {type(obj).__module__}.{type(obj).__qualname__}; a checkpoint holds only "
            "tensors and plain Python types (dict, list, tuple, int, float, str, bool, None) so that it loads with "
            "weights_only=True: convert it (numpy: torch.from_numpy or .tolist())"
        )
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for key, value in items:
        if isinstance(obj, dict):
            _check_loadable(key, f"{path} key {key!r}")
        _check_loadable(value, f"{path}[{key!r}]")


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically and return the path.

    The bytes go to a temporary file in the same folder, are flushed and fsynced, then renamed over ``path``
    (``os.replace``). If anything fails the temporary file is removed and a previous file at ``path`` is untouched.

    Raises:
        TypeError: ``state`` is not a mapping, or holds a value that ``weights_only`` loading would refuse.
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"checkpoint state must be a mapping of names to values, got {type(state).__name__}")
    state = dict(state)
    _check_loadable(state, "state")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch reports a full disk as "unexpected pos ..."
        Path(tmp).unlink(missing_ok=True)
        raise OSError(f"cannot write checkpoint {path}: {err}{_free_space(path.parent)}") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _free_space(folder: Path) -> str:
    """``" (N MiB free on that disk)"`` for an error message; empty when unknown."""
    try:
        return f" ({shutil.disk_usage(folder).free / 2**20:.0f} MiB free on that disk)"
    except OSError:
        return ""


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class CheckpointManager:
    """Keeps ``last.pt`` (every save) and ``best.pt`` (lowest metric so far, e.g. validation NME) in ``run_dir``.

    The best metric so far is stored in every checkpoint under ``"best_metric"``, so :meth:`resume` restores the
    best tracking as well as the training state.

    Args:
        run_dir: folder of the run (created on the first save).
        last_name: file name of the latest checkpoint.
        best_name: file name of the best checkpoint.
    """

    def __init__(self, run_dir: str | os.PathLike, last_name: str = "last.pt", best_name: str = "best.pt") -> None:
        self.run_dir = Path(run_dir)
        self.last_path = self.run_dir / last_name
        self.best_path = self.run_dir / best_name
        self.best_metric = math.inf

    def save(self, state: Mapping[str, Any], metric: float | None = None) -> bool:
        """Save ``state`` as the last checkpoint, and as the best when ``metric`` is lower than every earlier one.

        Returns:
            True when this save became ``best.pt``. A NaN metric is never best. A ``"best_metric"`` key of
            ``state`` is replaced by the manager's.
        """
        if metric is not None:
            try:
                metric = float(metric)
            except (TypeError, ValueError):
                raise TypeError(f"metric must be a number or None, got {metric!r}") from None
        is_best = metric is not None and metric < self.best_metric
        if is_best:
            self.best_metric = metric
        full = {**state, "best_metric": self.best_metric}
        if is_best:  # best first: a crash between the two writes leaves last.pt one save behind, never best.pt
            save_checkpoint(self.best_path, full)
        save_checkpoint(self.last_path, full)
        return is_best

    def resume(self, path: str | os.PathLike | None = None, map_location: str | torch.device | None = "cpu") -> dict:
        """Load ``path`` (default: ``last.pt``) and restore the best metric recorded in it."""
        state = load_checkpoint(self.last_path if path is None else path, map_location)
        self.best_metric = float(state.get("best_metric", math.inf))
        return state
