"""Inference backends: PyTorch eager or onnxruntime, and the CPU thread policy (issue 16).

``backend="onnxruntime"`` exports a network to ONNX in memory (the TorchScript exporter: in eval mode it folds
every BatchNorm that directly follows a convolution into that convolution; the pre-activation BatchNorms of the
hourglass's ``ConvBlock`` sit behind a ReLU and stay as per-channel scale-and-shift), then builds one onnxruntime
``InferenceSession`` with all graph optimisations (Conv + Add / ReLU fusion, constant folding of the CoordConv grids).
The session is built once and reused; :class:`OnnxRunner` maps a float32 batch to the network's outputs.

``backend="auto"`` picks onnxruntime when it is importable and the device is the CPU, else PyTorch: onnxruntime was
2-3 x faster per face on this project's 2-core CPU (``scripts/bench_predict.py``).

**Threads.** ``threads=None`` takes :func:`default_threads` (the CPUs this process may use, at most
:data:`MAX_DEFAULT_THREADS`). onnxruntime's intra-op threads do not spin (``session.intra_op.allow_spinning=0``):
a spinning worker holds its core while it waits for work, and with another CPU-bound process beside it the threads
of one parallel region wait for each other's time slices (with torch's 2 spinning OpenMP threads the bundled model
went from 16 to 65 ms per face; issue 16). Without spinning an idle worker sleeps, so a busy machine costs at most
the share of the CPU it leaves.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "BACKENDS",
    "MAX_DEFAULT_THREADS",
    "HeatmapRunner",
    "LastStack",
    "OnnxRunner",
    "default_threads",
    "export_bytes",
    "make_session",
    "onnxruntime_available",
    "resolve_backend",
    "resolve_threads",
    "torch_threads",
]

BACKENDS = ("auto", "torch", "onnxruntime")
MAX_DEFAULT_THREADS = 4
"""Default thread cap: the small networks here gain little beyond 4 threads at batch 1."""
OPSET = 17


def onnxruntime_available() -> bool:
    """Whether ``onnxruntime`` and ``onnx`` (the exporter needs it) can be imported."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def resolve_backend(backend: str, device: torch.device, exportable: bool = True) -> str:
    """``"auto"`` -> ``"onnxruntime"`` for an ``exportable`` network on a CPU device when onnxruntime is installed,
    else ``"torch"``; the other names are checked. Exportable: awing's own network classes (a subclass's forward,
    e.g. a test stub, may hold Python logic that an ONNX trace would freeze).

    Raises ``ValueError`` for an unknown name, for ``"onnxruntime"`` with a CUDA device (this runner is CPU only)
    and ``ImportError`` when onnxruntime is requested but not installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "onnxruntime" if exportable and device.type == "cpu" and onnxruntime_available() else "torch"
    if backend == "onnxruntime":
        if device.type != "cpu":
            raise ValueError(f"backend 'onnxruntime' runs on the CPU only; got device {device} (use backend='torch')")
        if not onnxruntime_available():
            raise ImportError(
                "backend 'onnxruntime' needs the packages onnxruntime and onnx: pip install onnxruntime onnx"
            )
    return backend


def default_threads() -> int:
    """CPUs this process may run on (its affinity mask), at most :data:`MAX_DEFAULT_THREADS`."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    return max(1, min(count, MAX_DEFAULT_THREADS))


def resolve_threads(threads: int | None) -> int:
    """``None`` -> :func:`default_threads`; otherwise a positive int, checked."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    return threads


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)`` (``None``: unchanged), then restore the count.

    With the onnxruntime backend, the torch work around the network (image batch to float, detector decoding and
    NMS) runs on one thread: these small operations gain nothing from a second OpenMP thread, and beside another
    CPU-bound process each of their parallel regions waits for a time slice (the former torch DARK decoding of 68
    points: 0.8 ms on one thread, a median of 138 ms on two on the loaded 2-core machine).
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def export_bytes(
    module: nn.Module,
    example: Tensor,
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
) -> bytes:
    """The ONNX model (opset :data:`OPSET`) of an eval-mode CPU copy of ``module`` for inputs like ``example``.

    ``dynamic_axes`` names the variable axes of ``"input"`` and the outputs. Traced with one torch thread (the
    trace runs the network once; contended threads only slow it down), restored afterwards.
    """
    net = copy.deepcopy(module).to("cpu").eval()
    buffer = io.BytesIO()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
            torch.onnx.export(
                net,
                (example.to("cpu"),),
                buffer,
                input_names=["input"],
                output_names=list(output_names),
                dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()},
                opset_version=OPSET,
                dynamo=False,
            )
    finally:
        torch.set_num_threads(previous)
    return buffer.getvalue()


def make_session(model_bytes: bytes, threads: int | None = None, profile_prefix: str | None = None) -> Any:
    """An onnxruntime CPU ``InferenceSession``: ``threads`` intra-op threads (``None``: :func:`default_threads`)
    that do not spin, one inter-op thread, all graph optimisations; onnxruntime's profiler on when
    ``profile_prefix`` is given (its JSON file starts with that path)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = resolve_threads(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


class OnnxRunner:
    """A network run by onnxruntime: ``runner(batch) -> [outputs]`` (float32 numpy in and out).

    The network is exported (:func:`export_bytes`, input named ``"input"``) and its session built
    (:func:`make_session`) on the first call, once; so an unused runner costs nothing.

    Args:
        module: the network (copied at export time: later changes to it are not seen after the first call).
        example: an input of the right rank and channels; ``dynamic_axes`` names the axes that may vary.
        output_names: names of the network's outputs, in order.
        threads: intra-op threads (``None``: :func:`default_threads`).
    """

    def __init__(
        self,
        module: nn.Module,
        example: Tensor,
        output_names: Sequence[str],
        dynamic_axes: Mapping[str, Mapping[int, str]],
        threads: int | None = None,
    ) -> None:
        self.threads = resolve_threads(threads)
        self._export = (module, example, list(output_names), dynamic_axes)
        self._session: Any = None

    @property
    def session(self) -> Any:
        if self._session is None:
            self._session = make_session(export_bytes(*self._export), self.threads)
        return self._session

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        """``batch`` (any float array of the input's shape; made float32 and contiguous) -> the outputs."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run(None, {"input": batch})

    def __repr__(self) -> str:
        return f"OnnxRunner(threads={self.threads}, built={self._session is not None})"


class LastStack(nn.Module):
    """``model(x)[-1][:, :num_landmarks]``: the last stack's landmark heatmaps (boundary channel dropped)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.num_landmarks = model.config.num_landmarks

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)[-1][:, : self.num_landmarks]


class HeatmapRunner:
    """onnxruntime session of a stacked-hourglass model's last-stack landmark heatmaps.

    ``runner(batch)``: ``B x 3 x S x S`` float32 RGB in [0, 1] (``S = model.config.input_size``) ->
    ``B x K x S/4 x S/4`` float32 heatmaps, ``K = model.config.num_landmarks``. Built on the first call.
    """

    def __init__(self, model: nn.Module, threads: int | None = None) -> None:
        size = model.config.input_size
        example = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        axes = {"input": {0: "batch"}, "heatmaps": {0: "batch"}}
        self.runner = OnnxRunner(LastStack(model), example, ["heatmaps"], axes, threads)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.runner(batch)[0]

    def __repr__(self) -> str:
        return f"HeatmapRunner({self.runner!r})"
