"""Optional native kernel of the Adaptive Wing loss: one C pass computes the loss, its gradient and the weight map.

``awing_kernel.c`` (beside this module) is compiled on first use with the system C compiler (``$CC``, else ``cc``,
``gcc`` or ``clang``) into ``$AWING_CACHE_DIR`` (default ``$XDG_CACHE_HOME/awing`` or ``~/.cache/awing``; a private
temporary folder when that is not writable), keyed by the source, compiler, flags and CPU, and loaded with ctypes.
It vectorises the transcendental functions (glibc's libmvec) and splits the planes over OpenMP threads
(``torch.get_num_threads()``). Without a working compiler, or with ``AWING_NATIVE=0``, :mod:`awing.losses.awing`
uses its eager torch implementation, the reference that the tests compare this kernel with; nothing else changes.
It serves float32 CPU tensors with no weight or one weight per heatmap (``(..., 1, 1)``, e.g. per-point visibility).

The object file is compiled without ``-ffast-math`` (NaN and rounding stay IEEE; loading it does not switch the
process to flush-to-zero), only ``-fno-math-errno``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("awing_kernel.c")
_BASE_FLAGS = ("-O3", "-fPIC", "-fno-math-errno")
# Tried in order: the first set that compiles and links is used.
_FLAG_SETS = (("-march=native", "-fopenmp"), ("-fopenmp",), ("-march=native",), ())
_COMPILE_TIMEOUT_S = 120

_log = logging.getLogger(__name__)
_state = threading.local()


def cache_dir() -> Path:
    """Where built kernels are kept: ``$AWING_CACHE_DIR``, else ``$XDG_CACHE_HOME/awing``, else ``~/.cache/awing``."""
    if os.environ.get("AWING_CACHE_DIR"):
        return Path(os.environ["AWING_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "awing"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_signature() -> str:
    """The CPU's feature flags (Linux) or processor name, so a cache shared between machines never mixes builds."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def _run(command: list[str]) -> bool:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_COMPILE_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as err:
        _log.debug("%s failed: %s", command[0], err)
        return False
    if done.returncode != 0:
        _log.debug("%s failed (%d): %s", " ".join(command), done.returncode, done.stderr[-2000:])
    return done.returncode == 0


def _build(compiler: str, flags: tuple[str, ...], target: Path) -> bool:
    """Compile and link ``SOURCE`` into ``target`` (written atomically: a temporary file, then a rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        obj, lib = Path(tmp) / "awing_kernel.o", Path(tmp) / target.name
        link_flags = [f for f in flags if f == "-fopenmp"]
        if not _run([compiler, *_BASE_FLAGS, *flags, "-c", str(SOURCE), "-o", str(obj)]):
            return False
        if not _run([compiler, "-shared", *link_flags, str(obj), "-o", str(lib), "-lm"]):
            return False
        os.replace(lib, target)
    return True


def _bind(path: Path):
    lib = ctypes.CDLL(str(path))
    fn = lib.awing_forward_f32
    ptr, f32, i64, i32 = ctypes.c_void_p, ctypes.c_float, ctypes.c_int64, ctypes.c_int
    fn.argtypes = [ptr, ptr, ptr, i64, i64, i64, *[f32] * 5, i32, f32, f32, i64, *[ptr] * 5, i32]
    fn.restype = i32
    return fn


def _load_or_build(compiler: str, flags: tuple[str, ...], path: Path):
    """The kernel function from the cached library ``path``, rebuilt when it is absent or unloadable (a corrupt or
    truncated file); None when it does not compile with ``flags``."""
    if path.exists():
        try:
            return _bind(path)
        except (OSError, AttributeError) as err:
            _log.info("cached AWing kernel %s cannot be loaded (%s): rebuilding it", path, err)
            path.unlink(missing_ok=True)
    return _bind(path) if _build(compiler, flags, path) else None


@functools.lru_cache(maxsize=1)
def _kernel():
    """The bound C function, built on first call; None when no compiler or flag set works."""
    if os.environ.get("AWING_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        _log.info("AWING_NATIVE=0: the AWing loss uses its eager torch implementation")
        return None
    compiler = _compiler()
    if compiler is None:
        _log.info("no C compiler found: the AWing loss uses its eager torch implementation")
        return None
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    stamp = [SOURCE.read_bytes(), compiler.encode(), version.encode(), _cpu_signature().encode()]
    for private in (False, True):  # the private temporary folder only when the cache is not writable
        directory = None
        try:
            directory = Path(tempfile.mkdtemp(prefix="awing-kernel-")) if private else cache_dir() / "kernels"
            for flags in _FLAG_SETS:
                key = hashlib.sha256(b"\0".join([*stamp, " ".join(_BASE_FLAGS + flags).encode()])).hexdigest()[:16]
                kernel = _load_or_build(compiler, flags, directory / f"awing_kernel-{key}.so")
                if kernel is not None:
                    return kernel
            break  # no flag set compiles: this compiler does not work here
        except OSError as err:
            _log.debug("native AWing kernel: %s", err)
        finally:  # a loaded library stays mapped after its file is removed (POSIX)
            if private and directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
    _log.info("the native AWing kernel could not be built: the AWing loss uses its eager torch implementation")
    return None


def available() -> bool:
    """Whether the native kernel is built and enabled (builds it on the first call)."""
    return not getattr(_state, "disabled", False) and _kernel() is not None


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Use the eager implementation inside this block (this thread only), e.g. for comparisons."""
    before = getattr(_state, "disabled", False)
    _state.disabled = True
    try:
        yield
    finally:
        _state.disabled = before


def serves(pred: Tensor, weight: Tensor | None) -> bool:
    """Whether the kernel handles these inputs: float32 on the CPU, no weight or one weight per ``(H, W)`` plane."""
    if pred.device.type != "cpu" or pred.dtype != torch.float32:
        return False
    if weight is not None and weight.ndim > 0 and (weight.ndim < 2 or weight.shape[-2:] != (1, 1)):
        return False
    return available()


def awing_forward(
    pred: Tensor,
    target: Tensor,
    plane_weight: Tensor | None,
    constants: tuple[float, float, float, float],
    weight_map: tuple[float, float, int] | None,
    scale: float,
    need_grad: bool,
    elementwise: bool,
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    """One kernel call on ``(P, H, W)`` contiguous float32 ``pred`` and ``target``.

    Args:
        plane_weight: ``(P,)`` contiguous float32 weights, or None.
        constants: ``(omega, theta, epsilon, alpha)``.
        weight_map: ``(threshold, weight, kernel_size)`` of the loss map, or None.
        scale: multiplies the loss and gradient (``1 / numel`` for a mean).
        need_grad: also return the gradient, ``(P, H, W)``.
        elementwise: return the per-element loss ``(P, H, W)`` instead of the scalar sum.

    Returns:
        ``(loss, grad or None, target minimum, target maximum)``; the range is NaN when the target holds a NaN.
    """
    planes, height, width = pred.shape
    grad = torch.empty_like(pred) if need_grad else None
    out = torch.empty_like(pred) if elementwise else None
    plane_loss = torch.empty(planes, dtype=torch.float64)
    plane_min, plane_max = torch.empty(planes), torch.empty(planes)
    threshold, map_weight, kernel_size = weight_map if weight_map is not None else (0.0, 0.0, 1)
    status = _kernel()(
        pred.data_ptr(),
        target.data_ptr(),
        None if plane_weight is None else plane_weight.data_ptr(),
        planes,
        height,
        width,
        *constants,
        scale,
        weight_map is not None,
        threshold,
        map_weight,
        kernel_size // 2,
        None if grad is None else grad.data_ptr(),
        None if out is None else out.data_ptr(),
        plane_loss.data_ptr(),
        plane_min.data_ptr(),
        plane_max.data_ptr(),
        torch.get_num_threads(),
    )
    if status != 0:
        raise MemoryError("the native AWing kernel could not allocate its scratch memory")
    loss = out if out is not None else plane_loss.sum().to(torch.float32)
    return loss, grad, plane_min.min(), plane_max.max()
