"""CPU benchmark of the training-side hot spots: the AWing loss and the target builders.

Run from the repository root: ``PYTHONPATH=. python scripts/bench_losses.py [--threads 2] [--repeats 25]`` (or with
awing installed). About half a minute. A markdown table goes to stdout, progress to stderr.

(a) ``AdaptiveWingLoss()`` (with its weight map) forward + backward against ``F.mse_loss`` forward + backward on
    the same ``--batch x 99 x 64 x 64`` float32 batch, in the same run, calls interleaved; bar: at most 2.0 x MSE.
    The targets are realistic: 98 landmark Gaussians (sigma 1.5) of a synthetic WFLW-like face (random similarity
    jitter per sample) plus a boundary-like 99th channel (a sigma-1 ridge along the scheme's curves); predictions
    are ``0.8 x target + noise``. The plain functional loss (no weight map) is timed too, without a bar, and so is
    the eager torch implementation (``awing.losses.native.disabled()``), which runs where the native kernel cannot
    be built. The table says which implementation the default call used.
(b) ``awing.boundary.boundary_heatmap(landmarks_hm, "98", heatmap_size=64)`` for one face; bar: 1 ms.
(c) ``awing.codecs.HeatmapCodec(input_size=256, heatmap_size=64).encode(landmarks_hm)`` for one face; bar: 1 ms.

Timings are medians after warm-up calls (minimums, the least disturbed by other processes, in brackets).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from awing.landmarks import get_scheme
from awing.losses import AdaptiveWingLoss, adaptive_wing_loss, native


def face_98(size: int = 64) -> np.ndarray:
    """A synthetic frontal face in the WFLW 98-point order (awing.landmarks scheme "98"), heatmap pixels."""
    s = size / 64.0

    def arc(cx: float, cy: float, rx: float, ry: float, angles: np.ndarray) -> np.ndarray:
        return np.stack([cx + rx * np.cos(angles), cy - ry * np.sin(angles)], axis=1)

    def mirror(points: np.ndarray) -> np.ndarray:
        return np.stack([64.0 - points[:, 0], points[:, 1]], axis=1)

    half = np.linspace(0.0, math.pi, 5)
    contour = arc(32, 22, 22, -34, np.linspace(math.pi, 0.0, 33))  # 0..32, image-left ear to chin to right
    brow_upper = np.stack([np.linspace(14, 29, 5), 17 - 2.5 * np.sin(half)], axis=1)  # 33..37, outer to inner
    brow_lower = np.stack([np.linspace(28, 15, 4), 18.5 - np.sin(np.linspace(0, math.pi, 4))], axis=1)  # 38..41
    nose_bridge = np.stack([np.full(4, 32.0), np.linspace(20, 32, 4)], axis=1)  # 51..54
    nose_bottom = np.stack([np.linspace(27, 37, 5), 35 + 1.5 * np.sin(half)], axis=1)  # 55..59

    def eye(cx: float) -> np.ndarray:  # corner, upper lid, corner (left to right), then the lower lid back
        upper = arc(cx, 24, 5, 2, np.linspace(math.pi, 0, 5))
        return np.concatenate([upper, arc(cx, 24, 5, 2, -np.array([1, 2, 3]) * math.pi / 4)])

    left_eye = eye(22)  # 60..67: 60 outer corner, 64 inner corner
    right_eye = eye(42)  # 68..75: 68 inner corner, 72 outer corner
    outer_lip = np.concatenate(
        [arc(32, 45, 8, 4, np.linspace(math.pi, 0, 7)), arc(32, 45, 8, 4, np.linspace(0, -math.pi, 7)[1:6])]
    )  # 76..87
    inner_lip = np.concatenate(
        [arc(32, 45, 5, 1.5, np.linspace(math.pi, 0, 5)), arc(32, 45, 5, 1.5, np.linspace(0, -math.pi, 5)[1:4])]
    )  # 88..95
    pupils = np.array([[22.0, 24.0], [42.0, 24.0]])  # 96, 97
    points = np.concatenate(
        [
            contour,
            brow_upper,
            brow_lower,
            mirror(brow_upper),  # 42..46, inner to outer
            mirror(brow_lower[::-1]),  # 47..50, outer to inner
            nose_bridge,
            nose_bottom,
            left_eye,
            right_eye,
            outer_lip,
            inner_lip,
            pupils,
        ]
    )
    assert points.shape == (98, 2)
    return (points * s).astype(np.float32)


def heatmap_batch(batch: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Realistic ``batch x 99 x size x size`` targets and predictions (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.from_numpy(face_98(size)) - size / 2
    grid = torch.arange(size, dtype=torch.float32)
    curves = [torch.tensor(c) for c in get_scheme("98").curves]
    targets = torch.zeros(batch, 99, size, size)
    for b in range(batch):
        angle = (torch.rand((), generator=gen).item() - 0.5) * math.radians(30)
        scale = 0.9 + 0.2 * torch.rand((), generator=gen).item()
        rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) * scale
        points = base @ rot.T + size / 2 + (torch.rand(2, generator=gen) - 0.5) * 6
        dx2 = (grid[None, None, :] - points[:, 0, None, None]) ** 2
        dy2 = (grid[None, :, None] - points[:, 1, None, None]) ** 2
        gauss = torch.exp(-(dx2 + dy2) / (2 * 1.5**2))
        targets[b, :98] = gauss * (dx2 + dy2 <= (3 * 1.5) ** 2)
        dense = torch.cat(
            [torch.lerp(points[c[:-1]], points[c[1:]], w) for c in curves for w in torch.linspace(0, 1, 5)[:-1]]
        )
        d2 = (grid[None, None, :] - dense[:, 0, None, None]) ** 2 + (grid[None, :, None] - dense[:, 1, None, None]) ** 2
        line = torch.exp(-d2.amin(0) / 2)  # sigma 1 around the polyline through the points, cut at 3 sigma
        targets[b, 98] = line * (line > math.exp(-4.5))
    preds = 0.8 * targets + 0.05 * torch.randn(targets.shape, generator=gen)
    return preds, targets


def interleaved(calls: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Milliseconds of each call, the calls taking turns so that load changes hit all of them alike."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            tic = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - tic) * 1000)
    return times


def bench_losses(args: argparse.Namespace) -> dict[str, list[float]]:
    pred, target = heatmap_batch(args.batch, 64, args.seed)
    leaf = pred.clone().requires_grad_()
    criterion = AdaptiveWingLoss()

    def step(loss_fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            leaf.grad = None
            loss_fn().backward()

        return run

    def eager() -> torch.Tensor:
        with native.disabled():
            return criterion(leaf, target)

    return interleaved(
        {
            "awing": step(lambda: criterion(leaf, target)),
            "mse": step(lambda: F.mse_loss(leaf, target)),
            "awing_nomap": step(lambda: adaptive_wing_loss(leaf, target)),
            "awing_eager": step(eager),
        },
        args.repeats,
    )


def bench_targets(args: argparse.Namespace) -> dict[str, list[float]]:
    from awing.boundary import boundary_heatmap
    from awing.codecs import HeatmapCodec

    landmarks_hm = face_98(64)
    codec = HeatmapCodec(input_size=256, heatmap_size=64)
    return interleaved(
        {
            "boundary": lambda: boundary_heatmap(landmarks_hm, "98", heatmap_size=64),
            "encode": lambda: codec.encode(landmarks_hm),
        },
        args.target_repeats,
        warmup=5,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--batch", type=int, default=16, help="faces per loss batch (default 16)")
    parser.add_argument("--repeats", type=int, default=25, help="timed loss calls of each kind (default 25)")
    parser.add_argument("--target-repeats", type=int, default=300, help="timed target builds (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
        f"load average at start {os.getloadavg()[0]:.2f}",
        file=sys.stderr,
    )
    implementation = "native C kernel" if native.available() else "eager torch: no native kernel"
    times = bench_losses(args)
    print("losses done", file=sys.stderr)
    times |= bench_targets(args)
    med = {name: statistics.median(v) for name, v in times.items()}
    low = {name: min(v) for name, v in times.items()}
    ratio, ratio_min = med["awing"] / med["mse"], low["awing"] / low["mse"]
    shape = f"{args.batch}x99x64x64"
    rows = [
        (
            f"AdaptiveWingLoss() fwd+bwd, {shape} [{implementation}]",
            "awing",
            f"<= 2.0 x MSE: {ratio:.2f} x ({ratio_min:.2f} x)",
            ratio <= 2.0,
        ),
        (f"F.mse_loss fwd+bwd, {shape}", "mse", "reference", None),
        (
            f"adaptive_wing_loss (no map) fwd+bwd, {shape}",
            "awing_nomap",
            f"{med['awing_nomap'] / med['mse']:.2f} x",
            None,
        ),
        (
            f"AdaptiveWingLoss() fwd+bwd, {shape} [eager torch, native.disabled()]",
            "awing_eager",
            f"{med['awing_eager'] / med['mse']:.2f} x",
            None,
        ),
        ("boundary_heatmap, 98 points, 64x64", "boundary", "<= 1 ms", med["boundary"] <= 1.0),
        ("HeatmapCodec.encode, 98 points, 64x64", "encode", "<= 1 ms", med["encode"] <= 1.0),
    ]
    print("| benchmark | median ms (min) | bar | met |\n|---|---|---|---|")
    for label, key, bar, met in rows:
        status = "" if met is None else ("yes" if met else "NO")
        print(f"| {label} | {med[key]:.3f} ({low[key]:.3f}) | {bar} | {status} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
