"""Stacked hourglass with CoordConv and boundary prediction (methods.md §3.1-§3.5), its config and presets.

``PRESETS["official"]`` is the official AWing layout (4 stacks, 256 features, 256 x 256 input, 98 points);
``PRESETS["cpu_small"]`` is the default CPU model (see ``scripts/bench_models.py`` for the measurements).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from awing.models.layers import ConvBlock, CoordConv, Hourglass


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a :class:`StackedHourglass`.

    Attributes:
        num_stacks: hourglasses in sequence; every one emits heatmaps (intermediate supervision).
        num_landmarks: landmark heatmaps per stack (N); the boundary channel comes on top.
        features: width of the hourglasses (official 256); the stem uses ``features/4`` and ``features/2``.
            A multiple of 8.
        depth: 2x downsamplings inside each hourglass (official 4: 64 -> 4 px).
        input_size: side of the square input crop the model is meant for (the heatmaps are ``input_size/4``);
            a multiple of ``4 * 2**depth``.
        with_boundary: predict a boundary channel (last) and, with ``coordconv``, feed it to the next stack as
            boundary-masked coordinates.
        coordconv: append coordinate channels in the stem and at the start of every hourglass.
    """

    num_stacks: int = 4
    num_landmarks: int = 98
    features: int = 256
    depth: int = 4
    input_size: int = 256
    with_boundary: bool = True
    coordconv: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            expected = bool if f.type in (bool, "bool") else int
            if type(value) is not expected:
                raise TypeError(f"ModelConfig.{f.name} must be {expected.__name__}, got {value!r}")
        for name in ("num_stacks", "num_landmarks", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.features < 8 or self.features % 8:
            raise ValueError(f"ModelConfig.features must be a positive multiple of 8, got {self.features}")
        if self.input_size < 1 or self.input_size % self.stride_multiple:
            raise ValueError(
                f"ModelConfig.input_size must be a positive multiple of 4 * 2**depth = {self.stride_multiple}, "
                f"got {self.input_size}"
            )

    @property
    def stride_multiple(self) -> int:
        """Input sides must be multiples of this: stride 4 of the stem times ``2**depth`` of the hourglass."""
        return 4 * 2**self.depth

    @property
    def heatmap_size(self) -> int:
        """Side of the output heatmaps: ``input_size / 4``."""
        return self.input_size // 4

    @property
    def out_channels(self) -> int:
        """Channels per stack output: landmarks, then the boundary when ``with_boundary``."""
        return self.num_landmarks + int(self.with_boundary)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build from a mapping; unknown keys raise (missing keys take the defaults)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys {unknown}; valid keys: {sorted(known)}")
        return cls(**dict(data))


PRESETS: dict[str, ModelConfig] = {
    "official": ModelConfig(),
    # Default CPU model: 128 x 128 crop -> 32 x 32 heatmaps, 1.76 M parameters, 1.1 GFLOPs; on 2 threads about 19 ms
    # per face at batch 1 (14 ms in channels_last, 9 ms/face at batch 16), against about 300 ms for "official"
    # (scripts/bench_models.py). 2 stacks x 128 features (23 ms) is stronger but leaves little margin under 25 ms.
    "cpu_small": ModelConfig(num_stacks=2, features=96, depth=4, input_size=128),
    # Fast preset of issue 16: 1 stack x 64 features at the same 128 px crop and 32 px heatmaps, 0.41 M parameters,
    # 0.31 GFLOPs; through onnxruntime 0.34 x cpu_small's time per face at batch 1 (scripts/bench_presets.py). Trained
    # by configs/aflw68_fast_cpu.yaml from the default's first stack (awing.models.shrink).
    "cpu_fast": ModelConfig(num_stacks=1, features=64, depth=4, input_size=128),
}


def get_config(config: ModelConfig | str | Mapping[str, Any], **overrides: Any) -> ModelConfig:
    """Resolve a preset name, a mapping or a :class:`ModelConfig`, then apply ``overrides`` (field=value)."""
    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(f"unknown model preset {config!r}; valid presets: {sorted(PRESETS)}")
        config = PRESETS[config]
    elif isinstance(config, Mapping):
        config = ModelConfig.from_dict(config)
    elif not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, a preset name or a mapping, got {type(config).__name__}")
    unknown = sorted(set(overrides) - {f.name for f in fields(ModelConfig)})
    if unknown:
        raise ValueError(f"unknown ModelConfig fields {unknown}")
    return replace(config, **overrides)


def build_model(config: ModelConfig | str | Mapping[str, Any] = "official", **overrides: Any) -> StackedHourglass:
    """Build a :class:`StackedHourglass` from a preset name, a mapping or a config, e.g.
    ``build_model("cpu_small", num_landmarks=68)``."""
    return StackedHourglass(**get_config(config, **overrides).to_dict())


class StackedHourglass(nn.Module):
    """Stacked hourglass network of AWing (methods.md §3.1-§3.5); arguments are the :class:`ModelConfig` fields.

    Stem: CoordConv 7x7 stride 2 (``3 -> features/4``), BN, ReLU, ConvBlock, 2x2 average pool, two ConvBlocks
    (``-> features``). Stack ``i``: Hourglass (its CoordConv gets the boundary-masked coordinates from stack
    ``i-1``'s boundary channel), ConvBlock ``top_m_i``, 1x1 ``conv_last_i`` + BN + ReLU, 1x1 head ``l_i`` with
    ``num_landmarks (+1 boundary)`` channels; the next stack receives
    ``previous + bl_i(features) + al_i(heatmaps)``.

    Input: RGB float in [0, 1] (no mean/std, methods.md §3.1).

    Shape:
        - input: ``B x 3 x H x W``, H and W multiples of ``4 * 2**depth``.
        - output: list of ``num_stacks`` tensors ``B x (num_landmarks + with_boundary) x H/4 x W/4``; inference
          uses ``outputs[-1][:, :num_landmarks]``, the boundary is ``outputs[i][:, -1]``.
    """

    def __init__(
        self,
        num_stacks: int = 4,
        num_landmarks: int = 98,
        features: int = 256,
        depth: int = 4,
        input_size: int = 256,
        with_boundary: bool = True,
        coordconv: bool = True,
    ) -> None:
        super().__init__()
        cfg = ModelConfig(num_stacks, num_landmarks, features, depth, input_size, with_boundary, coordconv)
        self.config = cfg
        stem, half = features // 4, features // 2
        self.conv1 = CoordConv(3, stem, 7, stride=2, padding=3, with_coords=coordconv)
        self.bn1 = nn.BatchNorm2d(stem)
        self.conv2 = ConvBlock(stem, half)
        self.conv3 = ConvBlock(half, half)
        self.conv4 = ConvBlock(half, features)
        for i in range(num_stacks):
            masked = coordconv and with_boundary and i > 0
            self.add_module(f"m{i}", Hourglass(features, depth, with_coords=coordconv, with_boundary=masked))
            self.add_module(f"top_m_{i}", ConvBlock(features, features))
            self.add_module(f"conv_last{i}", nn.Conv2d(features, features, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(features))
            self.add_module(f"l{i}", nn.Conv2d(features, cfg.out_channels, 1))
            if i < num_stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(features, features, 1))
                self.add_module(f"al{i}", nn.Conv2d(cfg.out_channels, features, 1))

    def _check_input(self, x: Tensor) -> None:
        if not x.is_floating_point():
            raise TypeError(f"input must be a float tensor (RGB in [0, 1]), got dtype {x.dtype}")
        m = self.config.stride_multiple
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % m or x.shape[3] % m:
            raise ValueError(f"input must be B x 3 x H x W with H and W multiples of {m}, got shape {tuple(x.shape)}")

    def forward(self, x: Tensor) -> list[Tensor]:
        self._check_input(x)
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)
        previous = self.conv4(self.conv3(x))
        outputs: list[Tensor] = []
        boundary = None
        last = self.config.num_stacks - 1
        for i in range(self.config.num_stacks):
            hg = getattr(self, f"m{i}")(previous, boundary)
            ll = getattr(self, f"conv_last{i}")(getattr(self, f"top_m_{i}")(hg))
            ll = F.relu(getattr(self, f"bn_end{i}")(ll), inplace=True)
            out = getattr(self, f"l{i}")(ll)
            outputs.append(out)
            if i < last:
                previous = previous + getattr(self, f"bl{i}")(ll) + getattr(self, f"al{i}")(out)
                if self.config.with_boundary:
                    boundary = out[:, -1:]
        return outputs

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.to_dict().items())


def infer_config(
    state_dict: Mapping[str, Any], *, input_size: int = 256, with_boundary: bool | None = None
) -> ModelConfig:
    """Read a :class:`ModelConfig` off a state dict in the official/awing layout (methods.md §3.8).

    Stacks count the heads ``l{i}.weight``; ``features`` comes from ``conv_last0``; ``depth`` from the ``m0.b1_L``
    levels; ``coordconv`` from the stem's input channels (6 or 3); ``with_boundary`` from stack 1's CoordConv input
    (features + 5 or + 3). With one stack, or without CoordConv, the boundary cannot be read off the tensors and
    defaults to True (the official head); pass ``with_boundary`` to decide. ``input_size`` is not stored in the
    tensors (any multiple of ``4 * 2**depth`` works).
    """
    missing = [k for k in ("conv1.conv.weight", "conv_last0.weight", "l0.weight") if k not in state_dict]
    if missing:
        raise ValueError(f"not a stacked-hourglass state dict: missing {missing}; first keys: {list(state_dict)[:5]}")
    num_stacks = 0
    while f"l{num_stacks}.weight" in state_dict:
        num_stacks += 1
    levels = [int(m.group(1)) for k in state_dict if (m := re.match(r"m0\.b1_(\d+)\.", k))]
    depth = max(levels, default=0)
    features = int(state_dict["conv_last0.weight"].shape[0])
    stem_in = int(state_dict["conv1.conv.weight"].shape[1])
    if stem_in not in (3, 6):
        raise ValueError(f"conv1.conv.weight must take 3 (RGB) or 6 (RGB + coordinates) channels, got {stem_in}")
    coordconv = stem_in == 6
    if with_boundary is None:
        key = "m1.coordconv.conv.weight"
        with_boundary = not (coordconv and key in state_dict) or state_dict[key].shape[1] == features + 5
    out_channels = int(state_dict["l0.weight"].shape[0])
    return ModelConfig(
        num_stacks=num_stacks,
        num_landmarks=out_channels - int(with_boundary),
        features=features,
        depth=depth,
        input_size=input_size,
        with_boundary=bool(with_boundary),
        coordconv=coordconv,
    )
