"""Landmark networks: the stacked hourglass of AWing, its presets, weights I/O and official-checkpoint loading."""

from __future__ import annotations

from awing.models.hourglass import PRESETS, ModelConfig, StackedHourglass, build_model, get_config, infer_config
from awing.models.layers import BOUNDARY_THRESHOLD, ConvBlock, CoordConv, Hourglass, boundary_mask, coordinate_grid
from awing.models.official import convert_official, from_official
from awing.models.weights import (
    WeightsInfo,
    load_checkpoint,
    load_state_dict_strict,
    load_weights,
    read_weights,
    save_weights,
    strip_prefixes,
)

MODELS = {"hourglass": StackedHourglass}

__all__ = [
    "BOUNDARY_THRESHOLD",
    "MODELS",
    "PRESETS",
    "ConvBlock",
    "CoordConv",
    "Hourglass",
    "ModelConfig",
    "StackedHourglass",
    "WeightsInfo",
    "boundary_mask",
    "build_model",
    "convert_official",
    "coordinate_grid",
    "from_official",
    "get_config",
    "infer_config",
    "load_checkpoint",
    "load_state_dict_strict",
    "load_weights",
    "read_weights",
    "save_weights",
    "strip_prefixes",
]
