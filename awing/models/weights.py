"""Model weights on disk: ``.safetensors`` with metadata (release format) and ``.pth``/``.pt`` state dicts.

A ``.safetensors`` file written by :func:`save_weights` rebuilds its model alone: its metadata (str -> str) holds

- ``format``: :data:`WEIGHTS_FORMAT`;
- ``model_config``: JSON of :meth:`ModelConfig.to_dict`;
- ``scheme``: landmark scheme name (absent when the point count has no scheme);
- ``input_size``: side of the input crop;
- ``awing_version``: the writing version;
- any ``extra_metadata`` given to :func:`save_weights` (e.g. the inference settings of :mod:`awing.aligner`: keys
  ``data`` and ``box_adapter``). :func:`read_metadata` reads them back.

A ``.pth``/``.pt`` file is read with ``torch.load(..., weights_only=True)`` (:func:`load_checkpoint`, also the
reader of the trainer's checkpoints). It holds
either a bare state dict (the official checkpoint; the config is inferred from the tensors, methods.md §3.8) or a dict
with a ``state_dict`` or ``model`` entry and optionally ``model_config`` (a :class:`ModelConfig` dict) and ``scheme``.
``module.`` and ``_orig_mod.`` prefixes (DataParallel, torch.compile) are stripped; missing, unexpected or mis-shaped
keys raise.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor, nn

from awing.landmarks import get_scheme
from awing.models.hourglass import ModelConfig, StackedHourglass, infer_config
from awing.version import __version__

WEIGHTS_FORMAT = "awing.weights.v1"
STRIPPED_PREFIXES = ("module.", "_orig_mod.")
SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pth", ".pt")


@dataclass(frozen=True)
class WeightsInfo:
    """What a weights file says about its model. ``awing_version`` is ``None`` for files awing did not write."""

    config: ModelConfig
    scheme: str | None
    awing_version: str | None

    @property
    def input_size(self) -> int:
        return self.config.input_size


def strip_prefixes(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Remove leading ``module.`` / ``_orig_mod.`` (in any order and number) from every key."""
    out = {}
    for key, value in state_dict.items():
        stripped = key
        while stripped.startswith(STRIPPED_PREFIXES):
            stripped = stripped.split(".", 1)[1]
        if stripped in out:
            raise ValueError(f"two state-dict keys map to {stripped!r} after stripping {STRIPPED_PREFIXES}")
        out[stripped] = value
    return out


def _names(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > limit else ''})"


def check_fits(build: Callable[[], nn.Module], state_dict: Mapping[str, Tensor], source: str | Path) -> None:
    """Raise ``ValueError`` naming ``source`` unless ``state_dict`` fits the model ``build()`` makes, checked on
    torch's ``meta`` device (no memory): a file whose metadata claims a huge model fails before it is built.
    Also refuses non-finite (NaN, inf) weights."""
    try:
        with torch.device("meta"):
            skeleton = build()
        _check_keys_and_shapes(skeleton, strip_prefixes(state_dict))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: {err}") from None
    for key, value in state_dict.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{source}: tensor {key!r} holds NaN or infinite values; the weights are unusable")


def _check_keys_and_shapes(model: nn.Module, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``model.state_dict()`` after checking that ``state_dict`` (prefixes stripped) has its keys and shapes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} {list(v.shape)} (model {list(expected[k].shape)})"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_names(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches: {_names(shapes, 3)}")
    if problems:
        config = getattr(model, "config", None)
        raise ValueError(f"weights do not fit {type(model).__name__}({config}): " + "; ".join(problems))
    return expected


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Load ``state_dict`` into ``model`` after stripping prefixes; raise ``ValueError`` naming missing, unexpected
    and mis-shaped keys. BatchNorm ``num_batches_tracked`` entries may be absent (old checkpoints)."""
    state_dict = strip_prefixes(state_dict)
    expected = _check_keys_and_shapes(model, state_dict)
    full = {k: state_dict.get(k, v) for k, v in expected.items()}
    model.load_state_dict(full, strict=True)


def default_scheme(num_landmarks: int) -> str | None:
    """Scheme name for a point count (``awing.landmarks.get_scheme``), ``None`` when there is none."""
    try:
        return get_scheme(num_landmarks).name
    except ValueError:
        return None


def _check_scheme(scheme: str | None, config: ModelConfig) -> str | None:
    if scheme is None:
        return default_scheme(config.num_landmarks)
    found = get_scheme(scheme)
    if found.num_points != config.num_landmarks:
        raise ValueError(
            f"scheme {scheme!r} has {found.num_points} points but the model predicts {config.num_landmarks}"
        )
    return found.name


RESERVED_METADATA = ("format", "model_config", "input_size", "awing_version", "scheme")
"""Metadata keys written by :func:`save_weights` itself; ``extra_metadata`` may not use them."""


def _check_extra_metadata(extra: Mapping[str, str] | None) -> dict[str, str]:
    if extra is None:
        return {}
    if not isinstance(extra, Mapping):
        raise TypeError(f"extra_metadata must be a mapping of str to str, got {type(extra).__name__}")
    bad = [f"{k!r}: {type(v).__name__}" for k, v in extra.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise TypeError(f"extra_metadata must map str to str (JSON-encode other values), got {', '.join(bad)}")
    clash = sorted(set(extra) & set(RESERVED_METADATA))
    if clash:
        raise ValueError(f"extra_metadata may not set the reserved keys {clash} (reserved: {list(RESERVED_METADATA)})")
    return dict(extra)


def save_weights(
    model: StackedHourglass,
    path: str | Path,
    *,
    scheme: str | None = None,
    extra_metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model``'s state dict and metadata to a ``.safetensors`` file (see the module docstring).

    Args:
        model: the network (unwrap DataParallel / torch.compile first, or pass ``.module`` / ``._orig_mod``).
        path: output file, ending in ``.safetensors``; parent folders are created.
        scheme: landmark scheme name; default ``get_scheme(num_landmarks).name`` when it exists.
        extra_metadata: further str -> str entries stored beside the standard ones (not the keys in
            :data:`RESERVED_METADATA`).
    """
    if not isinstance(model, StackedHourglass):
        raise TypeError(f"save_weights expects a StackedHourglass, got {type(model).__name__}")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"weights are saved as .safetensors, got {path.name!r}")
    extra = _check_extra_metadata(extra_metadata)
    config = model.config
    metadata = {
        **extra,
        "format": WEIGHTS_FORMAT,
        "model_config": json.dumps(config.to_dict()),
        "input_size": str(config.input_size),
        "awing_version": __version__,
    }
    scheme = _check_scheme(scheme, config)
    if scheme is not None:
        metadata["scheme"] = scheme
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and string metadata of a ``.safetensors`` file; ``ValueError`` naming the file when unreadable."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable .safetensors file: {err}") from err
    return tensors, metadata


def read_metadata(path: str | Path) -> dict[str, str]:
    """The str -> str metadata of a weights file without loading its tensors.

    ``.safetensors``: the header's metadata (empty when there is none); ``.pth`` / ``.pt`` have none: ``{}``.
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for an unreadable one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        return {}
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable .safetensors file: {err}") from err


MAX_MODEL = {"num_stacks": 16, "num_landmarks": 1000, "features": 2048, "depth": 8, "input_size": 2048}
"""Upper bounds on a weights file's model config (far above any real model): metadata beyond them is refused."""


def model_config_from(data: Any, source: str | Path) -> ModelConfig:
    """A :class:`ModelConfig` from a weights file's stored config; ``ValueError`` naming ``source`` when it is not
    a JSON object of valid fields within :data:`MAX_MODEL`."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}: model_config is not valid JSON: {err}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: model_config must be a JSON object of ModelConfig fields, got {data!r}")
    try:
        config = ModelConfig.from_dict(data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: invalid model_config: {err}") from None
    too_big = [f"{k}={getattr(config, k)} (at most {v})" for k, v in MAX_MODEL.items() if getattr(config, k) > v]
    if too_big:
        raise ValueError(f"{source}: model_config out of range: {', '.join(too_big)}")
    return config


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], WeightsInfo]:
    metadata = read_metadata(path)  # checked before the tensors are read
    if metadata.get("format") != WEIGHTS_FORMAT or "model_config" not in metadata:
        raise ValueError(
            f"{path} has no awing metadata (expected format {WEIGHTS_FORMAT!r} and a model_config; got keys "
            f"{sorted(metadata)}); write it with awing.models.save_weights or awing convert-official"
        )
    config = model_config_from(metadata["model_config"], path)
    scheme = metadata.get("scheme")
    if scheme is not None:
        try:
            scheme = _check_scheme(scheme, config)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    tensors, _ = read_safetensors(path)
    check_fits(lambda: StackedHourglass(**config.to_dict()), tensors, path)
    return tensors, WeightsInfo(config, scheme, metadata.get("awing_version"))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict with ``torch.load(..., weights_only=True)``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is truncated, corrupt, not a checkpoint dict, or holds objects that need code to load.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"cannot load checkpoint {path} with weights_only=True: {err}") from err
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"cannot read checkpoint {path}: the file is truncated or corrupt ({err})") from err
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict of states")
    return state


def extract_state_dict(checkpoint: Any) -> dict[str, Tensor]:
    """The state dict inside a loaded checkpoint: its ``state_dict`` or ``model`` entry, or the mapping itself."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"expected a checkpoint dict, got {type(checkpoint).__name__}")
    for key in ("state_dict", "model"):
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    bad = [k for k, v in checkpoint.items() if not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"checkpoint entries are not all tensors, e.g. {bad[:5]}; expected a state dict")
    return dict(checkpoint)


def _read_torch(path: Path, input_size: int) -> tuple[dict[str, Tensor], WeightsInfo]:
    checkpoint = load_checkpoint(path)
    state_dict = strip_prefixes(extract_state_dict(checkpoint))
    if "model_config" in checkpoint:
        config = model_config_from(checkpoint["model_config"], path)
    else:
        config = infer_config(state_dict, input_size=input_size)
    scheme = checkpoint.get("scheme") if isinstance(checkpoint.get("scheme"), str) else None
    check_fits(lambda: StackedHourglass(**config.to_dict()), state_dict, path)
    return state_dict, WeightsInfo(config, _check_scheme(scheme, config), None)


def read_weights(path: str | Path, *, input_size: int = 256) -> tuple[dict[str, Tensor], WeightsInfo]:
    """Read a weights file (``.safetensors``, ``.pth``, ``.pt``) into a state dict and its :class:`WeightsInfo`.

    ``input_size`` is used only for a ``.pth`` without a stored config (the tensors do not say it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return _read_safetensors(path)
    if suffix in TORCH_SUFFIXES:
        return _read_torch(path, input_size)
    raise ValueError(f"unsupported weights file {path.name!r}: expected one of {SAFETENSORS_SUFFIXES + TORCH_SUFFIXES}")


def model_from_state_dict(state_dict: Mapping[str, Tensor], config: ModelConfig) -> StackedHourglass:
    """Build a :class:`StackedHourglass` for ``config`` and load ``state_dict`` strictly (eval mode)."""
    model = StackedHourglass(**config.to_dict())
    load_state_dict_strict(model, state_dict)
    return model.eval()


def load_weights(path: str | Path, device: torch.device | str = "cpu", *, input_size: int = 256) -> StackedHourglass:
    """Rebuild the model stored in ``path`` (see :func:`read_weights`) on ``device``, in eval mode."""
    state_dict, info = read_weights(path, input_size=input_size)
    return model_from_state_dict(state_dict, info.config).to(device)
