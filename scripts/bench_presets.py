"""Speed of candidate small landmark presets through onnxruntime and torch (random weights), against ``cpu_small``.

Run from the repository root: ``python scripts/bench_presets.py [--threads 2] [--json out.json]``. A markdown table
goes to stdout, progress to stderr.

Each configuration is exported as :class:`awing.FaceAligner` runs it (:class:`awing.runtime.HeatmapRunner`: last
stack's landmark heatmaps, onnxruntime without spinning, ``--threads`` intra-op threads) and timed on random crops
at batch 1 and 8 (ms per face), with torch eager (channels-last, batch 1) beside it. Rounds: every configuration is
timed ``--rounds`` times in turn and the best round's median kept, so a burst of load from other processes spoils
a round, not the row. Weights are random: speed only (an untrained network's accuracy means nothing). GFLOPs are
``2 x`` the ``Conv2d`` multiply-accumulates (``bench_models.conv_gflops``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
from bench_models import conv_gflops
from profile_inference import timed

from awing.models import PRESETS, ModelConfig, StackedHourglass
from awing.runtime import HeatmapRunner

CANDIDATES: dict[str, ModelConfig] = {
    "cpu_small (2s-96f-128px)": PRESETS["cpu_small"],
    "2s-48f-128px": ModelConfig(num_stacks=2, num_landmarks=68, features=48, depth=4, input_size=128),
    "1s-96f-128px": ModelConfig(num_stacks=1, num_landmarks=68, features=96, depth=4, input_size=128),
    "1s-64f-128px": ModelConfig(num_stacks=1, num_landmarks=68, features=64, depth=4, input_size=128),
    "1s-48f-128px": ModelConfig(num_stacks=1, num_landmarks=68, features=48, depth=4, input_size=128),
    "1s-64f-96px": ModelConfig(num_stacks=1, num_landmarks=68, features=64, depth=3, input_size=96),
    "2s-64f-96px": ModelConfig(num_stacks=2, num_landmarks=68, features=64, depth=3, input_size=96),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=15, help="timed calls per measurement and round")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    nets = {}
    for name, cfg in CANDIDATES.items():
        cfg = ModelConfig.from_dict({**cfg.to_dict(), "num_landmarks": 68})
        model = StackedHourglass(**cfg.to_dict()).eval()
        nets[name] = (cfg, model, HeatmapRunner(model, args.threads), model.to(memory_format=torch.channels_last))
    best: dict[tuple[str, str], float] = {}
    for r in range(args.rounds):
        for name, (cfg, _, runner, eager) in nets.items():
            print(f"round {r + 1}: {name}", file=sys.stderr)
            size = cfg.input_size
            for batch in (1, 8):
                x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
                ms = timed(lambda x=x, runner=runner: runner(x), args.calls, warmup=1)[0] / batch
                best[name, f"ort b{batch}"] = min(best.get((name, f"ort b{batch}"), np.inf), ms)
            xt = torch.rand(1, 3, size, size).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                ms = timed(lambda xt=xt, eager=eager: eager(xt), args.calls, warmup=1)[0]
            best[name, "torch b1"] = min(best.get((name, "torch b1"), np.inf), ms)
    base = next(iter(nets))
    rows = []
    for name, (cfg, model, _, _) in nets.items():
        row = {"config": name, **cfg.to_dict()}
        row["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
        row["gflops"] = conv_gflops(model, cfg.input_size)
        row |= {key: best[name, key] for key in ("ort b1", "ort b8", "torch b1")}
        row["ort_b1_vs_base"] = row["ort b1"] / best[base, "ort b1"]
        rows.append(row)
    load = os.getloadavg()[0]
    print(f"{args.threads} threads, load average {load:.2f}; random weights; best of {args.rounds} rounds")
    print("\n| config | params (M) | GFLOPs | ORT b1 ms/face | ORT b8 ms/face | torch b1 ms | ORT b1 / cpu_small |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['config']} | {r['params_m']:.2f} | {r['gflops']:.2f} | {r['ort b1']:.2f} | {r['ort b8']:.2f} | "
            f"{r['torch b1']:.2f} | {r['ort_b1_vs_base']:.2f} |"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"threads": args.threads, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
