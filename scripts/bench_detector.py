"""CPU benchmark of the face detector: milliseconds per 640 x 480 image at batch 1, parameters, GFLOPs.

Run from the repository root: ``PYTHONPATH=. python scripts/bench_detector.py [--threads 2] [--json out.json]``
(or with awing installed). About half a minute. A markdown table goes to stdout, progress to stderr.

- ``network``: the network alone (BatchNorm fused, channels-last, ``torch.inference_mode``) on a 1 x 3 x 480 x 640
  input. ``detect``: ``FaceDetector.detect`` end to end on a 480 x 640 RGB uint8 image (resize, which is a no-op at
  640 x 480, padding, network, decode, NMS, mapping back). The weights are random with BatchNorm statistics taken
  on random images, so scores sit near the 0.01 prior and few boxes pass the 0.5 threshold; the worst case is timed
  too, at ``score_threshold=0.01`` with the classifier biases zeroed (every anchor scores about 0.5:
  ``pre_nms_top_k`` = 2000 boxes through decode and NMS).
- Timing: ``torch.set_num_threads(threads)``; warm-up calls, then calls until ``--budget`` seconds are spent (at
  least ``--min-repeats``); the median (and the minimum) per image. The system load average is printed. On a shared
  machine, run it idle or with ``nice -n -20``: while other processes keep the cores busy, each of torch's parallel
  regions waits for its second thread to be scheduled, and calls that take 10 ms idle were seen to take 1 s.
- MACs: multiply-accumulates of every ``Conv2d`` (forward hooks); GFLOPs = 2 x MACs / 1e9. BatchNorm, ReLU,
  upsampling, additions and the decoding are not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from awing.detection import DetectorModelConfig, FaceDetector, FaceDetectorNet

WIDTH, HEIGHT = 640, 480


def conv_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of all ``Conv2d`` layers for the input ``x``."""
    macs = 0

    def hook(module: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = module.kernel_size
        macs += output[0].numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.inference_mode():
        model(x)
    for handle in handles:
        handle.remove()
    return macs


def time_call(fn: Callable[[], object], args: argparse.Namespace) -> tuple[float, float]:
    """Median and minimum milliseconds per call after ``args.warmup`` warm-up calls."""
    for _ in range(args.warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < args.min_repeats or time.perf_counter() - start < args.budget:
        tic = time.perf_counter()
        fn()
        times.append((time.perf_counter() - tic) * 1000)
    return statistics.median(times), min(times)


def calibrated(config: DetectorModelConfig) -> FaceDetectorNet:
    """A random network whose BatchNorm statistics come from random images, so that its features and scores have
    a trained model's scale (scores near the 0.01 prior: few boxes reach NMS, as with a trained detector)."""
    torch.manual_seed(0)
    model = FaceDetectorNet(config)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(2, 3, HEIGHT, WIDTH) * 255)
    return model.eval()


def bench(name: str, config: DetectorModelConfig, args: argparse.Namespace) -> dict:
    model = calibrated(config)
    params = sum(p.numel() for p in model.parameters())
    x = torch.rand(1, 3, HEIGHT, WIDTH) * 255
    macs = conv_macs(model, x)
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    detector = FaceDetector(model)
    xl = x.contiguous(memory_format=torch.channels_last)

    def network() -> None:
        with torch.inference_mode():
            detector.model(xl)

    row = {"name": name, "params": params, "macs": macs, "gflops": 2 * macs / 1e9}
    print(f"{name}: timing network", file=sys.stderr)
    row["network_ms"], row["network_min_ms"] = time_call(network, args)
    print(f"{name}: timing detect", file=sys.stderr)
    row["detect_ms"], row["detect_min_ms"] = time_call(lambda: detector.detect(image), args)
    worst = FaceDetector(model, score_threshold=0.01)
    with torch.no_grad():  # every anchor scores ~0.5: the most boxes decode and NMS ever see
        for head in worst.model.heads:
            head.bias.zero_()
    row["detections"] = len(detector.detect(image)["boxes"])
    row["detections_worst"] = len(worst.detect(image)["boxes"])
    row["detect_worst_ms"], row["detect_worst_min_ms"] = time_call(lambda: worst.detect(image), args)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timed calls per measurement")
    parser.add_argument("--min-repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    configs = [
        ("default (fpn 64, context)", DetectorModelConfig()),
        ("fpn 32, context", DetectorModelConfig(fpn_channels=32)),
        ("fpn 64, no context", DetectorModelConfig(context=False)),
    ]
    rows = [bench(name, cfg, args) for name, cfg in configs]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} threads, "
        f"{WIDTH}x{HEIGHT}, batch 1, load average {load:.2f} on {os.cpu_count()} CPUs\n"
    )
    print(
        "| model | params | MMACs | GFLOPs | network ms (min) | detect ms (min) | detect, 2000 boxes ms (min) |\n"
        "|---|---:|---:|---:|---:|---:|---:|"
    )
    for r in rows:
        print(
            f"| {r['name']} | {r['params']:,} | {r['macs'] / 1e6:.0f} | {r['gflops']:.3f} | "
            f"{r['network_ms']:.1f} ({r['network_min_ms']:.1f}) | {r['detect_ms']:.1f} ({r['detect_min_ms']:.1f}) | "
            f"{r['detect_worst_ms']:.1f} ({r['detect_worst_min_ms']:.1f}) |"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"threads": args.threads, "load_average": load, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
