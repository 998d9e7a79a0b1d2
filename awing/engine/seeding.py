"""Seeding, and capture / restore of every global random generator so that ``--resume`` continues exactly.

:func:`rng_state` returns only tensors and plain Python types, so it can go inside a checkpoint loaded with
``weights_only=True`` (numpy's key array becomes an int64 tensor).

DataLoader workers are seeded by PyTorch from the torch generator (python ``random``, torch and numpy in each
worker), so restoring the torch state also restores the workers' augmentation streams.

>>> import random
>>> state = rng_state()
>>> a = random.random(), torch.rand(1).item()
>>> set_rng_state(state)
>>> a == (random.random(), torch.rand(1).item())
True
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

_KEYS = ("python", "numpy", "torch")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python ``random``, numpy's global generator and torch (CPU and every CUDA device).

    Args:
        seed: a non-negative integer below 2**32.
        deterministic: also ask for deterministic algorithms (``torch.use_deterministic_algorithms`` with
            warnings for ops that have none, cuDNN deterministic, no cuDNN benchmark, and the cuBLAS workspace
            setting it needs). Otherwise cuDNN benchmark is turned on (fixed input sizes train faster).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (the legacy global generator is what we seed and checkpoint)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def rng_state() -> dict[str, Any]:
    """The states of python ``random``, numpy's global generator, torch CPU and (when present) every CUDA device.

    Returns:
        ``{"python": {...}, "numpy": {...}, "torch": uint8 tensor, "cuda": [uint8 tensor per device]}``;
        ``"cuda"`` only when CUDA is available.
    """
    version, mt, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)  # noqa: NPY002
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generators from :func:`rng_state`'s output (also after a ``weights_only`` checkpoint load).

    CUDA states are restored for the devices present; a checkpoint written with CUDA resumes on a CPU-only machine
    without them.
    """
    if not isinstance(state, Mapping) or any(k not in state for k in _KEYS):
        got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise ValueError(f"RNG state must be a mapping with keys {list(_KEYS)} (from rng_state()), got {got}")
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss_next"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))  # noqa: NPY002
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), device)
