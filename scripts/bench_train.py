"""Training throughput on this CPU for a recipe (default: the small AFLW one) and where the time goes.

Three measurements on the recipe's data set (``../shared/data/aflw-21`` for ``configs/aflw_cpu.yaml``):

1. data: ``LandmarkTrainingSet[i]`` (read, crop, augment, point weights + boundary) and collation of whole batches
   in this thread with one OpenCV and one torch thread, i.e. one DataLoader worker's work: wall and CPU time per
   image;
2. model step: the uint8 crops to float and the landmark heatmaps encoded (the trainer does both on its device,
   here the CPU), forward, loss on every stack, backward and optimiser step on a fixed batch with torch's threads:
   wall and process CPU time per image;
3. end to end: :func:`awing.engine.train.train` for ``--epochs`` epochs over the first ``--faces`` faces, without
   validation, once per ``--workers`` value (``data.num_workers``): the last epoch's images/s and the share of its
   wall time the loop waited for data. CPU time: this process plus the finished workers (``RUSAGE_CHILDREN``).

The machine may be shared with other jobs: CPU times are the robust figures, wall times depend on the load (the
load average before and after is printed). Prints one JSON object on stdout.

    python scripts/bench_train.py [--config configs/aflw_cpu.yaml] [--batches 8] [--faces 320] [--epochs 2]
                                  [--workers 0 1 2] [--threads N] [key=value ...]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch
from torch.utils.data import default_collate

from awing.config import load_config
from awing.data import LandmarkTrainingSet
from awing.engine.evaluate import open_dataset
from awing.engine.train import StackedHeatmapLoss, build_model_from_config, build_optimizer, train
from awing.inference import model_input

ROOT = Path(__file__).resolve().parents[1]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_data(data: LandmarkTrainingSet, batches: int, batch_size: int) -> dict[str, float]:
    """One DataLoader worker's work: one OpenCV and one torch thread (PyTorch sets the latter in workers)."""
    threads = torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    data[0]  # warm-up: albumentations is imported on first use
    count = batches * batch_size
    wall, cpu = time.perf_counter(), time.thread_time()
    for b in range(batches):
        default_collate([data[(b * batch_size + i) % len(data)] for i in range(batch_size)])
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    torch.set_num_threads(threads)
    return {"ms_per_image_wall": 1e3 * wall / count, "ms_per_image_cpu": 1e3 * cpu / count}


def bench_step(cfg, data: LandmarkTrainingSet, steps: int) -> dict[str, float]:
    model = build_model_from_config(cfg)
    criterion = StackedHeatmapLoss(cfg.loss)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    batch = default_collate([data[i % len(data)] for i in range(cfg.data.batch_size)])

    def step() -> None:
        loss, _ = criterion(model(model_input(batch["image"])), data.targets(batch), batch["point_weight"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    count = steps * cfg.data.batch_size
    return {
        "ms_per_image_wall": 1e3 * wall / count,
        "ms_per_image_cpu": 1e3 * cpu / count,
        "images_per_s": count / wall,
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }


def bench_loop(config: str, overrides: list[str], workers: int, faces: int, epochs: int, run_dir: Path) -> dict:
    cfg = load_config(
        config,
        [
            *overrides,
            f"data.num_workers={workers}",
            f"data.max_samples={faces}",
            "data.val_split=''",
            f"schedule.epochs={epochs}",
            f"run.out_dir={run_dir}",
            "logging.console=false",
            "logging.jsonl=false",
        ],
    )
    cpu, child = time.process_time(), children_cpu()
    result = train(cfg, progress=False)
    gc.collect()  # shut the DataLoader workers down so that RUSAGE_CHILDREN counts them
    cpu, child = time.process_time() - cpu, children_cpu() - child
    images = epochs * (faces // cfg.data.batch_size) * cfg.data.batch_size
    last = result.history[-1]
    return {
        "images_per_s": last["images_per_s"],
        "data_wait_share": last["data_time_share"],
        "cpu_ms_per_image_main": 1e3 * cpu / images,
        "cpu_ms_per_image_workers": 1e3 * child / images,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "aflw_cpu.yaml"))
    parser.add_argument("--batches", type=int, default=8, help="batches for the data and model-step timings")
    parser.add_argument("--faces", type=int, default=320, help="faces per end-to-end epoch")
    parser.add_argument("--epochs", type=int, default=2, help="end-to-end epochs (the last one is reported)")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader workers per end-to-end run"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    data = LandmarkTrainingSet.from_config(
        open_dataset(cfg.data, cfg.data.train_split), cfg.data, train=True, seed=cfg.run.seed
    )
    load_before = os.getloadavg()
    data_cost = bench_data(data, args.batches, cfg.data.batch_size)
    step_cost = bench_step(cfg, data, args.batches)
    serial = data_cost["ms_per_image_cpu"] + step_cost["ms_per_image_cpu"]
    with tempfile.TemporaryDirectory() as tmp:
        loops = {
            f"workers={w}": bench_loop(args.config, args.overrides, w, args.faces, args.epochs, Path(tmp) / f"w{w}")
            for w in args.workers
        }
    report = {
        "config": args.config,
        "overrides": args.overrides,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "batch_size": cfg.data.batch_size,
        "input_size": cfg.data.input_size,
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "data": data_cost,
        "model_step": step_cost,
        "data_share_of_cpu": data_cost["ms_per_image_cpu"] / serial,
        "end_to_end": loops,
    }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
