"""CPU benchmark of the landmark networks: parameters, GFLOPs and milliseconds per face.

Run from the repository root: ``PYTHONPATH=. python scripts/bench_models.py [--threads 2] [--json out.json]``
(or with awing installed). About three minutes on 2 threads of an idle machine. A markdown table goes to stdout,
progress to stderr.

- GFLOPs: ``2 x`` the multiply-accumulates of every ``Conv2d`` per face (counted with forward hooks; BatchNorm, ReLU,
  pooling, upsampling and additions are not counted).
- Timing: eval mode, ``torch.inference_mode``, ``torch.set_num_threads(threads)``, random input, one warm-up call.
  All configurations are timed in ``--rounds`` rounds; in each, calls run until ``budget / rounds`` seconds are spent
  (at least ``--min-repeats``, at most ``--max-repeats``) and their median per face is taken. The table keeps the
  best round, so a burst of load from other processes spoils one round, not the result (the JSON keeps every round).
  ``b1 NHWC`` runs the same model in ``torch.channels_last`` memory format (weights and input), which the predictor
  can use on CPU.

Configurations: 1, 2 and 4 stacks at 128 and 256 features, each at 256 x 256 and 128 x 128 input, plus the
``cpu_small`` preset and a narrower 128 x 128 model. ``official`` is the AWing layout (4 stacks, 256 features, 256 px).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace

import torch
from torch import nn

from awing.models import PRESETS, ModelConfig, StackedHourglass


def configurations() -> list[tuple[str, ModelConfig]]:
    official = PRESETS["official"]
    grid = []
    for size in (256, 128):
        for features in (256, 128):
            for stacks in (4, 2, 1):
                cfg = replace(official, num_stacks=stacks, features=features, input_size=size)
                name = "official" if cfg == official else f"{stacks}s-{features}f-{size}px"
                grid.append((name, cfg))
    extra = [("cpu_small", PRESETS["cpu_small"]), ("2s-64f-128px", replace(PRESETS["cpu_small"], features=64))]
    return grid + extra


def conv_gflops(model: nn.Module, size: int) -> float:
    """2 x Conv2d multiply-accumulates for one ``3 x size x size`` input, in units of 1e9."""
    macs = 0

    def hook(module: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = module.kernel_size
        macs += output[0].numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.inference_mode():
        model(torch.rand(1, 3, size, size))
    for handle in handles:
        handle.remove()
    return 2 * macs / 1e9


def time_per_face(model: nn.Module, x: torch.Tensor, budget: float, args: argparse.Namespace) -> float:
    """Median milliseconds per face over calls until ``budget`` seconds are spent (within the repeat limits)."""
    times: list[float] = []
    start = time.perf_counter()
    with torch.inference_mode():
        while len(times) < args.max_repeats and (len(times) < args.min_repeats or time.perf_counter() - start < budget):
            tic = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - tic) * 1000 / x.shape[0])
    return statistics.median(times)


class Case:
    """One configuration: its model (NCHW and channels_last copies), inputs and per-round timings."""

    def __init__(self, name: str, cfg: ModelConfig, batch: int) -> None:
        torch.manual_seed(0)
        model = StackedHourglass(**cfg.to_dict()).eval()
        size = cfg.input_size
        nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
        self.name, self.cfg = name, cfg
        self.runs = {
            "b1": (model, torch.rand(1, 3, size, size)),
            "b1_nhwc": (nhwc, torch.rand(1, 3, size, size).contiguous(memory_format=torch.channels_last)),
            "batch": (model, torch.rand(batch, 3, size, size)),
        }
        self.params_m = sum(p.numel() for p in model.parameters()) / 1e6
        self.gflops = conv_gflops(model, size)
        self.times: dict[str, list[float]] = {key: [] for key in self.runs}

    def measure(self, budget: float, args: argparse.Namespace) -> None:
        for key, (model, x) in self.runs.items():
            if not self.times[key]:
                with torch.inference_mode():
                    model(x)  # warm-up, first round only
            self.times[key].append(time_per_face(model, x, budget, args))

    def row(self) -> dict:
        best = {f"{key}_ms": min(values) for key, values in self.times.items()}
        rounds = {f"{key}_rounds_ms": values for key, values in self.times.items()}
        return {
            "name": self.name,
            **self.cfg.to_dict(),
            "params_m": self.params_m,
            "gflops": self.gflops,
            **best,
            **rounds,
        }


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    head = (
        "| config | stacks | features | depth | input | params (M) | GFLOPs | b1 ms | b1 NHWC ms | "
        f"b{args.batch} ms/face |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['num_stacks']} | {r['features']} | {r['depth']} | {r['input_size']} | "
            f"{r['params_m']:.2f} | {r['gflops']:.2f} | {r['b1_ms']:.1f} | {r['b1_nhwc_ms']:.1f} | "
            f"{r['batch_ms']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--batch", type=int, default=16, help="large batch size (default 16)")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timed calls per measurement, all rounds")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all configurations (best round kept)")
    parser.add_argument("--min-repeats", type=int, default=1)
    parser.add_argument("--max-repeats", type=int, default=50)
    parser.add_argument("--only", nargs="*", default=None, help="config names to run (default all)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    selected = [(n, c) for n, c in configurations() if args.only is None or n in args.only]
    if not selected:
        parser.error(f"no configuration named {args.only}; valid: {[n for n, _ in configurations()]}")
    print(
        f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
        f"load average at start {os.getloadavg()[0]:.2f}",
        file=sys.stderr,
    )
    cases = [Case(name, cfg, args.batch) for name, cfg in selected]
    for round_index in range(args.rounds):
        for case in cases:
            tic = time.perf_counter()
            case.measure(args.budget / args.rounds, args)
            seconds, load = time.perf_counter() - tic, os.getloadavg()[0]
            latest = case.times["b1"][-1]
            print(
                f"round {round_index + 1}/{args.rounds} {case.name}: {latest:.1f} ms/face at batch 1 "
                f"({seconds:.0f} s, load {load:.2f})",
                file=sys.stderr,
            )
    rows = [case.row() for case in cases]
    print(markdown(rows, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "torch": torch.__version__, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
