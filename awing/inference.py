"""The one inference routine: crops -> normalise -> network -> optional flip test -> decode -> image pixels.

:class:`~awing.aligner.FaceAligner` (``awing predict``), evaluation (``awing eval``, validation during training)
and the benchmarks all call :func:`predict_crops`, so a model predicts exactly as it is evaluated:

``S x S x 3`` uint8 RGB crops (warped from the original image by one image -> crop matrix each,
:func:`awing.geometry.box_to_crop_matrix`) -> :func:`model_input` (float32 ``x / 255``, no mean/std,
methods.md §3.1) -> the network -> the last stack's landmark heatmaps (boundary channel dropped) -> with the flip
test, the mirrored crops' heatmaps flipped back and channel-permuted (:func:`awing.codecs.flip_heatmaps_back`) and
averaged in -> :func:`awing.codecs.heatmaps_to_landmarks` (decode, crop pixels, inverse crop matrix).

:class:`InferenceSettings` says how a model's crops and heatmaps were made in training (crop scale, codec, sigma,
box adapter); every weights file the trainer writes carries them in its metadata, and :func:`resolve_device` is
the one ``"auto"`` / ``"cpu"`` / ``"cuda[:N]"`` rule.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from awing.codecs import MODES, HeatmapCodec, flip_heatmaps_back, heatmaps_to_landmarks
from awing.config import ConfigError, DataConfig
from awing.geometry import BoxAdapter, _check_keys, _finite
from awing.landmarks import LandmarkScheme
from awing.models.hourglass import ModelConfig

__all__ = ["InferenceSettings", "model_input", "predict_crops", "resolve_device"]


def resolve_device(device: str | torch.device, key: str = "device") -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` as given (CUDA must exist).

    The one device rule of awing (prediction, evaluation, training, the detector). ``key`` names the setting in
    the :class:`~awing.config.ConfigError` (a ``ValueError``) raised for a bad name or a missing GPU, e.g.
    ``run.device``.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"{key} must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}={str(device)!r} but CUDA is not available; use {key}=auto or cpu")
    return resolved


def model_input(
    images: torch.Tensor,
    device: torch.device | str | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """Items' ``image`` -> network input: uint8 (..., S, S, 3) RGB -> float32 (..., 3, S, S) ``x / 255`` on ``device``.

    The uint8 tensor is moved first (a quarter of the float32 bytes; ``non_blocking`` from pinned memory), then
    converted there into a contiguous tensor (the values equal ``torch.from_numpy(crop).permute(2, 0, 1) / 255``).
    ``device`` None keeps the tensor where it is. ``memory_format=torch.channels_last`` keeps the crops' own NHWC
    memory order (for a channels-last model); the values are the same.
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim < 3 or images.shape[-1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else None
        dtype = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(f"images must be a uint8 (..., S, S, 3) tensor (items' 'image'), got {dtype} {shape}")
    images = images.to(device, non_blocking=True).movedim(-1, -3)
    return images.to(torch.float32, memory_format=memory_format).div_(255.0)


def _json_object(text: str, key: str) -> dict[str, Any]:
    """The JSON object stored under weights metadata ``key``; ``ValueError`` naming the key otherwise."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"weights metadata {key!r} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"weights metadata {key!r} must be a JSON object, got {text!r}")
    return data


@dataclass(frozen=True)
class InferenceSettings:
    """How a landmark model's crops and heatmaps were made in training (stored in its weights' metadata).

    Attributes:
        crop_scale: crop side = ``crop_scale * max(w, h)`` of the (adapted) face box (``DataConfig.crop_scale``).
        codec: heatmap decoder, ``"subpixel"`` (DARK) or ``"awing_official"`` (``DataConfig.codec``).
        sigma: Gaussian std in heatmap pixels of the subpixel codec (its DARK modulation uses it).
        box_adapter: detector box -> training box convention.

    Metadata (str -> str, :meth:`to_metadata`): ``data`` = JSON ``{"crop_scale", "codec", "sigma"}`` (optional
    ``input_size`` / ``heatmap_size`` entries are checked against the model), ``box_adapter`` = JSON
    ``{"shift_x", "shift_y", "scale"}``. A missing key or entry takes the default.
    """

    crop_scale: float = 1.25
    codec: str = "subpixel"
    sigma: float = 1.5
    box_adapter: BoxAdapter = field(default_factory=BoxAdapter)

    def __post_init__(self) -> None:
        object.__setattr__(self, "crop_scale", _finite(self.crop_scale, "crop_scale", positive=True))
        object.__setattr__(self, "sigma", _finite(self.sigma, "sigma", positive=True))
        if self.codec not in MODES:
            raise ValueError(f"codec must be one of {MODES}, got {self.codec!r}")
        if not isinstance(self.box_adapter, BoxAdapter):
            raise TypeError(f"box_adapter must be a BoxAdapter, got {type(self.box_adapter).__name__}")

    @classmethod
    def from_data_config(cls, data: DataConfig, box_adapter: BoxAdapter | None = None) -> InferenceSettings:
        """The settings of a training config's ``data`` section (an :class:`awing.config.DataConfig`)."""
        adapter = BoxAdapter() if box_adapter is None else box_adapter
        return cls(crop_scale=data.crop_scale, codec=data.codec, sigma=data.sigma, box_adapter=adapter)

    def to_metadata(self, config: ModelConfig | None = None) -> dict[str, str]:
        """The ``data`` and ``box_adapter`` metadata entries (for ``save_weights(..., extra_metadata=...)``);
        ``config`` adds the model's ``input_size`` and ``heatmap_size`` to ``data`` (checked on reading)."""
        data: dict[str, Any] = {"crop_scale": self.crop_scale, "codec": self.codec, "sigma": self.sigma}
        if config is not None:
            data.update(input_size=config.input_size, heatmap_size=config.heatmap_size)
        return {"data": json.dumps(data), "box_adapter": json.dumps(self.box_adapter.to_dict())}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], config: ModelConfig | None = None) -> InferenceSettings:
        """Parse the ``data`` / ``box_adapter`` entries of weights metadata; ``config`` checks stored sizes."""
        data = _json_object(metadata["data"], "data") if "data" in metadata else {}
        _check_keys(cls, data, extra=("input_size", "heatmap_size"))
        if "box_adapter" in data:
            raise ValueError("weights metadata 'data' must not hold box_adapter; it is its own metadata key")
        if config is not None:
            for name in ("input_size", "heatmap_size"):
                if name in data and data[name] != getattr(config, name):
                    raise ValueError(
                        f"weights metadata 'data' says {name}={data[name]!r} but the model has {getattr(config, name)}"
                    )
        settings = {k: v for k, v in data.items() if k not in ("input_size", "heatmap_size")}
        if "box_adapter" in metadata:
            settings["box_adapter"] = BoxAdapter.from_dict(_json_object(metadata["box_adapter"], "box_adapter"))
        return cls(**settings)

    def make_codec(self, config: ModelConfig) -> HeatmapCodec:
        """The decoder for a model of ``config`` (its input and heatmap sizes)."""
        sigma = None if self.codec == "awing_official" else self.sigma
        return HeatmapCodec(config.input_size, config.heatmap_size, sigma=sigma, mode=self.codec)


def _landmark_heatmaps(model: nn.Module, images: torch.Tensor, num_points: int, amp: bool) -> torch.Tensor:
    """The last stack's ``B x K x H x W`` landmark heatmaps (boundary channel dropped), in float32."""
    with torch.autocast(images.device.type, dtype=torch.float16, enabled=amp):
        outputs = model(images)
    return outputs[-1][:, :num_points].float()


@torch.inference_mode()
def predict_crops(
    model: nn.Module,
    crops: torch.Tensor,
    matrices: Sequence[np.ndarray] | np.ndarray,
    codec: HeatmapCodec,
    scheme: LandmarkScheme,
    *,
    device: torch.device | str | None = None,
    flip: bool = False,
    amp: bool = False,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks in image pixels of a batch of face crops (see the module docstring).

    Args:
        model: landmark network in eval mode; ``model(B x 3 x S x S)`` returns a list of per-stack
            ``B x (K [+ 1]) x H x W`` heatmaps.
        crops: ``B x S x S x 3`` uint8 RGB crops (a tensor on any device).
        matrices: ``B`` image -> crop ``2 x 3`` matrices (the crops were warped with them).
        codec: the model's heatmap decoder.
        scheme: landmark scheme (point count and the flip test's ``flip_index``).
        device: where the network runs (None: where ``crops`` are).
        flip: flip test: also run the mirrored crops (in the same network call) and average the heatmaps.
        amp: float16 autocast (CUDA).
        memory_format: of the network input (:func:`model_input`).

    Returns:
        float32 landmarks ``(B, K, 2)`` in image pixels and float32 per-point heatmap maxima ``(B, K)``.
    """
    num = scheme.num_points
    x = model_input(crops, device, memory_format)
    if flip:
        heatmaps = _landmark_heatmaps(model, torch.cat([x, x.flip(-1)]), num, amp)
        plain, mirrored = heatmaps.chunk(2)
        heatmaps = 0.5 * (plain + flip_heatmaps_back(mirrored, scheme.flip_index))
    else:
        heatmaps = _landmark_heatmaps(model, x, num, amp)
    return heatmaps_to_landmarks(heatmaps, codec, matrices)
