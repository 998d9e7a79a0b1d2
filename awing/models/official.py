"""Official AWing checkpoints (``WFLW_4HG.pth`` of protossw512/AdaptiveWingLoss) in awing (methods.md §3.8).

awing's module names equal the official ones, so the key mapping is the identity after stripping ``module.``: loading
is a strict ``load_state_dict`` into a :class:`StackedHourglass` whose config is read off the tensors. The forward
pass reproduces the official one, coordinate-channel orientation included (methods.md §3.5), and also runs on CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from awing.models.hourglass import PRESETS, StackedHourglass, infer_config
from awing.models.weights import (
    extract_state_dict,
    load_checkpoint,
    model_from_state_dict,
    save_weights,
    strip_prefixes,
)

OFFICIAL_INPUT_SIZE = 256


def from_official(checkpoint: Mapping[str, Any], *, input_size: int = OFFICIAL_INPUT_SIZE) -> StackedHourglass:
    """Build a :class:`StackedHourglass` (eval mode) holding exactly the official checkpoint's parameters.

    Args:
        checkpoint: the official state dict, or a dict with a ``state_dict`` entry; ``module.`` prefixes are
            stripped. Stacks and landmarks are inferred from the tensors (4 stacks, 98 points for ``WFLW_4HG.pth``:
            1,137 entries, 24,153,036 parameters).
        input_size: crop side the model is meant for (official 256).

    Raises:
        ValueError: not the official layout (features, depth, CoordConv), or missing/unexpected/mis-shaped keys.
    """
    state_dict = strip_prefixes(extract_state_dict(checkpoint))
    config = infer_config(state_dict, input_size=input_size)
    official = PRESETS["official"]
    differs = {
        name: (getattr(config, name), getattr(official, name))
        for name in ("features", "depth", "coordconv", "with_boundary")
        if getattr(config, name) != getattr(official, name)
    }
    if differs:
        found = ", ".join(f"{k}={got} (official {want})" for k, (got, want) in differs.items())
        raise ValueError(f"not an official AWing checkpoint: {found}; use awing.models.load_weights instead")
    return model_from_state_dict(state_dict, config)


def convert_official(
    src: str | Path, dst: str | Path, *, scheme: str | None = None, input_size: int = OFFICIAL_INPUT_SIZE
) -> Path:
    """Read an official ``.pth`` (``torch.load(weights_only=True)``) and write awing ``.safetensors`` weights.

    ``scheme`` defaults to the scheme of the checkpoint's point count (98 -> WFLW). Returns ``dst``.
    """
    checkpoint = load_checkpoint(src)
    return save_weights(from_official(checkpoint, input_size=input_size), dst, scheme=scheme)
