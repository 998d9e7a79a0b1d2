"""ONNX export of the landmark network (crop -> heatmaps) with an onnxruntime parity check.

The exported graph takes ``input``: ``B x 3 x S x S`` RGB float in [0, 1] (``S = config.input_size``, dynamic batch)
and returns the last stack's ``heatmaps`` (``B x N x S/4 x S/4``) and, for models with a boundary channel,
``boundary`` (``B x 1 x S/4 x S/4``). The model config and landmark scheme are stored in the ONNX metadata
(``awing.model_config``, ``awing.scheme``). Needs the ``export`` extra (``pip install 'awing[export]'``).
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from awing.models import StackedHourglass
from awing.models.weights import default_scheme
from awing.version import __version__

DEFAULT_OPSET = 17
PARITY_TOLERANCE = 1e-4


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"ONNX export needs {module!r}, which is not installed: pip install 'awing[export]'") from err


class HeatmapNetwork(nn.Module):
    """The deployable part of a :class:`StackedHourglass`: the last stack's landmark heatmaps (and boundary).

    Shape: ``B x 3 x H x W`` -> ``(B x N x H/4 x W/4, B x 1 x H/4 x W/4)`` (the second only with a boundary).
    """

    def __init__(self, model: StackedHourglass) -> None:
        super().__init__()
        self.model = model
        self.num_landmarks = model.config.num_landmarks

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        last = self.model(x)[-1]
        if self.model.config.with_boundary:
            return last[:, : self.num_landmarks], last[:, self.num_landmarks :]
        return (last,)


def _cpu_network(model: StackedHourglass) -> HeatmapNetwork:
    """An eval-mode CPU copy (the caller's model keeps its device and mode)."""
    return HeatmapNetwork(copy.deepcopy(model)).to("cpu").eval()


def output_names(model: StackedHourglass) -> list[str]:
    return ["heatmaps", "boundary"] if model.config.with_boundary else ["heatmaps"]


def export_onnx(
    model: StackedHourglass,
    path: str | Path,
    *,
    scheme: str | None = None,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    tolerance: float = PARITY_TOLERANCE,
) -> float | None:
    """Export ``model`` (crop -> heatmaps, dynamic batch) to ``path`` and optionally check it with onnxruntime.

    Uses the TorchScript exporter (``dynamo=False``; the dynamo exporter needs ``onnxscript``).

    Returns:
        The max absolute difference between onnxruntime and PyTorch over batches 1 and 3 when ``check``, else
        ``None``. Raises ``RuntimeError`` when it exceeds ``tolerance``.
    """
    if not isinstance(model, StackedHourglass):
        raise TypeError(f"export_onnx expects a StackedHourglass, got {type(model).__name__}")
    onnx = _require("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = model.config
    net = _cpu_network(model)
    dummy = torch.rand(1, 3, config.input_size, config.input_size)
    names = output_names(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            net,
            (dummy,),
            str(path),
            input_names=["input"],
            output_names=names,
            dynamic_axes={name: {0: "batch"} for name in ["input", *names]},
            opset_version=opset,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    metadata = {
        "awing.model_config": json.dumps(config.to_dict()),
        "awing.scheme": scheme or default_scheme(config.num_landmarks) or "",
        "awing.input_size": str(config.input_size),
        "awing.version": __version__,
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    if not check:
        return None
    return check_onnx(model, path, tolerance=tolerance)


def check_onnx(
    model: StackedHourglass,
    path: str | Path,
    *,
    batch_sizes: tuple[int, ...] = (1, 3),
    tolerance: float = PARITY_TOLERANCE,
    seed: int = 0,
) -> float:
    """Run the ONNX file with onnxruntime (CPU) on random crops and compare with PyTorch.

    Returns the max absolute difference over all outputs and ``batch_sizes``; raises ``RuntimeError`` when it
    exceeds ``tolerance``.
    """
    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    net = _cpu_network(model)
    generator = torch.Generator().manual_seed(seed)
    size = model.config.input_size
    worst = 0.0
    for batch in batch_sizes:
        x = torch.rand(batch, 3, size, size, generator=generator)
        with torch.inference_mode():
            expected = net(x)
        got = session.run(output_names(model), {"input": x.numpy()})
        for name, want, have in zip(output_names(model), expected, got, strict=True):
            if tuple(have.shape) != tuple(want.shape):
                raise RuntimeError(f"onnxruntime output {name} has shape {have.shape}, PyTorch {tuple(want.shape)}")
            worst = max(worst, float((torch.from_numpy(have) - want).abs().max()))
    if worst > tolerance:
        raise RuntimeError(f"onnxruntime differs from PyTorch by {worst:.3g} > {tolerance:g} ({path})")
    return worst
