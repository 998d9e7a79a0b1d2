"""Training-data throughput per core: decode, warp, photometric, point weights + boundary at 64 x 64, collation.

Images: the real AFLW-21 crops (120 x 120 JPEGs) of ``../shared/data/aflw-21`` when present, else synthetic
120 x 120 JPEGs written to a temporary folder. Points: the 98-point WFLW face of the mmpose fixture
(``tests/data/mmpose/wflw``), stretched into each face's box, so the targets are WFLW-sized (98 heatmaps + boundary).

The in-process timings run with ``torch.set_num_threads(1)`` and ``cv2.setNumThreads(1)``: samples/s is per core,
which is what one DataLoader worker delivers. Printed:

1. the per-stage breakdown of a worker's work (each stage timed alone on the same samples), then what the trainer
   does per sample on its device (uint8 crops to float, the 98 landmark heatmaps encoded, the boundary appended),
   timed here on this CPU in batches of 16 (on a GPU these cost microseconds);
2. end to end, in process: ``LandmarkTrainingSet[i]``, and as a reference the former item layout (the float32
   image and 99 float32 maps built in the worker: the item, then the device's conversion and encoding on the CPU);
3. with ``--workers N``: a DataLoader (N persistent spawned workers, batch 16; the start-up epoch is not timed) over
   both layouts in the same run: the workers' CPU time per sample (collation into shared memory included; from
   ``/proc``, so Linux only), hence samples/s per worker, and the wall time, hence samples/s in total; and the
   bytes of one shipped sample.

CPU time is robust to other processes on the machine; wall time includes waiting for the CPU (the load average is
printed). The reference row of the old layout makes the gain readable under any load.

    python scripts/bench_data.py [--samples 400] [--repeats 3] [--workers 0]   (awing installed: pip install -e .)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from awing.config import AugmentConfig
from awing.data import AFLWDataset, LandmarkDataset, LandmarkRecord
from awing.data.augment import FaceAugmenter, sample_rng, warp_face
from awing.data.targets import face_targets
from awing.data.training import LandmarkTrainingSet, seed_worker, worker_context
from awing.inference import model_input
from awing.landmarks import get_scheme

ROOT = Path(__file__).resolve().parents[1]
AFLW_ROOT = ROOT.parent / "shared" / "data" / "aflw-21"
WFLW_FIXTURE = ROOT / "tests" / "data" / "mmpose" / "wflw" / "test_wflw.json"
PHOTOMETRIC = ("colour_prob", "occlusion_prob", "blur_prob", "noise_prob", "jpeg_prob")
BATCH = 16
BAR = 300.0


class FloatItems(Dataset):
    """Reference: the former item layout, float32 (3, S, S) image and (K + 1, H, W) float32 maps made in the worker.

    Built as the current item followed by the trainer's device steps on the CPU: the former worker's work and
    bytes, plus about 0.3 ms per sample (the copy that appends the boundary, a slower float conversion).
    """

    def __init__(self, data: LandmarkTrainingSet) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.data[index]
        reference = {key: value for key, value in item.items() if key not in ("image", "boundary")}
        return {**reference, "image": model_input(item["image"]), "heatmaps": self.data.targets(item)}


def item_bytes(item: dict[str, Any]) -> int:
    """Bytes of the tensors of one item (what a worker copies into shared memory for it)."""
    return sum(v.numel() * v.element_size() for v in item.values() if isinstance(v, torch.Tensor))


def unit_face() -> np.ndarray:
    """The fixture's first 98-point face, normalised to its tight box: (98, 2) in [0, 1]."""
    annotation = json.loads(WFLW_FIXTURE.read_text(encoding="utf-8"))["annotations"][0]
    points = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
    lo, hi = points.min(axis=0), points.max(axis=0)
    return (points - lo) / (hi - lo)


def synthetic_images(folder: Path, count: int) -> list[tuple[str, np.ndarray]]:
    """``count`` smooth random 120 x 120 JPEGs in ``folder`` with the box (15, 15, 105, 105)."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(count):
        image = cv2.GaussianBlur(rng.integers(0, 256, (120, 120, 3), dtype=np.uint8), (0, 0), 3)
        path = folder / f"face_{i:05d}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        items.append((str(path), np.array([15, 15, 105, 105], dtype=np.float32)))
    return items


def build_dataset(count: int, tmp: Path) -> tuple[LandmarkDataset, str]:
    """A 98-point dataset over ``count`` images (real AFLW crops when available)."""
    if AFLW_ROOT.is_dir():
        aflw = AFLWDataset(AFLW_ROOT, split="all")
        items = [(r.image_path, r.box) for r in aflw.records[:count]]
        source = f"AFLW-21 crops ({AFLW_ROOT})"
    else:
        items = synthetic_images(tmp, count)
        source = f"synthetic 120x120 JPEGs ({tmp})"
    unit = unit_face()
    records = []
    for path, box in items:
        x0, y0, x1, y1 = (float(v) for v in box)
        points = (unit * [x1 - x0, y1 - y0] + [x0, y0]).astype(np.float32)
        records.append(LandmarkRecord(path, points, np.ones(98, dtype=bool), np.asarray(box, np.float32)))
    return LandmarkDataset(records, "98"), source


def rate(fn: Callable[[int], object], count: int, repeats: int) -> tuple[float, float]:
    """Milliseconds per call of ``fn(i)``, ``i`` in ``range(count)``: (CPU time, wall time), best of ``repeats``.

    CPU time is this thread's (``time.thread_time``; torch and OpenCV run single-threaded here), so it measures one
    core's work even when other processes share the machine; wall time includes waiting for the CPU.
    """
    for i in range(min(count, 20)):
        fn(i)
    cpu = wall = float("inf")
    for _ in range(repeats):
        start_cpu, start_wall = time.thread_time(), time.perf_counter()
        for i in range(count):
            fn(i)
        cpu = min(cpu, time.thread_time() - start_cpu)
        wall = min(wall, time.perf_counter() - start_wall)
    return 1e3 * cpu / count, 1e3 * wall / count


def children_cpu(workers: int) -> float:
    """CPU seconds (user + system) of this process's live children, which must be the DataLoader's ``workers``."""
    children = multiprocessing.active_children()
    if len(children) != workers:
        raise RuntimeError(f"expected {workers} DataLoader workers as child processes, found {len(children)}")
    total = 0
    for child in children:
        fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / os.sysconf("SC_CLK_TCK")


def loader_rate(data: Dataset, train: LandmarkTrainingSet, workers: int, repeats: int) -> tuple[float, float]:
    """(workers' CPU ms, wall ms) per sample through a DataLoader with persistent spawned ``workers``, best of
    ``repeats`` epochs after the start-up epoch. The workers are shut down on return."""
    loader = DataLoader(
        data,
        batch_size=BATCH,
        num_workers=workers,
        multiprocessing_context=worker_context(workers),
        worker_init_fn=seed_worker,
        persistent_workers=True,
    )
    cpu = wall = float("inf")
    for epoch in range(repeats + 1):
        train.set_epoch(epoch)
        start_cpu, start_wall = children_cpu(workers) if epoch else 0.0, time.perf_counter()
        seen = sum(len(batch["index"]) for batch in loader)
        if epoch > 0:
            cpu = min(cpu, (children_cpu(workers) - start_cpu) / seen)
            wall = min(wall, (time.perf_counter() - start_wall) / seen)
    del loader  # the persistent workers exit with the loader's iterator
    deadline = time.monotonic() + 30
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    return 1e3 * cpu, 1e3 * wall


def row(name: str, cpu: float, wall: float, note: str = "") -> str:
    return f"{name:<44} {cpu:>8.3f} {1e3 / cpu:>10.0f} {wall:>8.3f} {1e3 / wall:>10.0f}{note}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=400, help="distinct faces per pass")
    parser.add_argument("--repeats", type=int, default=3, help="passes per measurement (the best is kept)")
    parser.add_argument("--workers", type=int, default=0, help="also time a DataLoader with this many workers")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    with tempfile.TemporaryDirectory() as tmp:
        dataset, source = build_dataset(args.samples, Path(tmp))
        count = len(dataset)
        scheme = get_scheme(98)
        train = LandmarkTrainingSet(dataset, augment=AugmentConfig(), seed=0)
        codec, augmenter = train.codec, train.augmenter
        all_on = LandmarkTrainingSet(dataset, augment=AugmentConfig(**dict.fromkeys(PHOTOMETRIC, 1.0)))
        evaluation = LandmarkTrainingSet(dataset)
        reference = FloatItems(train)

        samples = [dataset[i] for i in range(count)]
        faces = []
        for i, s in enumerate(samples):
            params = augmenter.sample_geometry(sample_rng(0, 0, i))
            faces.append(warp_face(s.image, s.landmarks_img, s.visible, s.box, scheme, 256, params=params))
        items = [train[i] for i in range(count)]
        batches = [default_collate(items[i : i + BATCH]) for i in range(0, count - BATCH + 1, BATCH)]

        def geometry(i: int) -> object:
            s = samples[i]
            params = augmenter.sample_geometry(sample_rng(0, 0, i))
            return warp_face(s.image, s.landmarks_img, s.visible, s.box, scheme, 256, params=params)

        def photometric(config: AugmentConfig) -> Callable[[int], object]:
            aug = FaceAugmenter(256, **dataclasses.asdict(config))
            return lambda i: aug.photometric(faces[i].image, sample_rng(0, 0, i))

        off = dict.fromkeys(PHOTOMETRIC, 0.0)
        stages = [
            ("decode (read + JPEG decode)", lambda i: dataset[i]),
            ("rng + geometry + warp to 256", geometry),
            ("photometric, default probabilities", photometric(AugmentConfig())),
            ("  colour jitter (p=1)", photometric(AugmentConfig(**{**off, "colour_prob": 1.0}))),
            ("  occlusion (p=1)", photometric(AugmentConfig(**{**off, "occlusion_prob": 1.0}))),
            ("  blur (p=1)", photometric(AugmentConfig(**{**off, "blur_prob": 1.0}))),
            ("  noise (p=1)", photometric(AugmentConfig(**{**off, "noise_prob": 1.0}))),
            ("  JPEG (p=1)", photometric(AugmentConfig(**{**off, "jpeg_prob": 1.0}))),
            (
                "point weights + boundary 64x64",
                lambda i: face_targets(faces[i].landmarks_crop, faces[i].visible, codec, 98),
            ),
        ]
        device_stages = [
            ("image uint8 -> float (3, 256, 256)", lambda j: model_input(batches[j]["image"])),
            ("98 heatmaps 64x64 + boundary channel", lambda j: train.targets(batches[j])),
        ]
        print(f"images: {source}; {count} faces, 98 points; torch/cv2 threads: 1; best of {args.repeats} passes")
        print(f"load average before the run: {', '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
        print(f"{'worker stage':<44} {'CPU ms':>8} {'samples/s':>10} {'wall ms':>8} {'samples/s':>10}")
        for name, fn in stages:
            print(row(name, *rate(fn, count, args.repeats)))
        print(f"trainer's device, here this CPU, per sample in batches of {BATCH}:")
        for name, fn in device_stages:
            cpu, wall = rate(fn, len(batches), args.repeats)
            print(row(f"  {name}", cpu / BATCH, wall / BATCH))
        print()
        print(f"{'end to end, one core':<44} {'CPU ms':>8} {'samples/s':>10} {'wall ms':>8} {'samples/s':>10}")
        totals = [
            ("training sample", train),
            ("training sample, every photometric op on", all_on),
            ("evaluation sample (crop only)", evaluation),
            ("reference: former float32 item", reference),
        ]
        for name, ds in totals:
            cpu, wall = rate(ds.__getitem__, count, args.repeats)
            verdict = f"  bar {BAR:.0f}/s per core: {'met' if 1e3 / cpu >= BAR else 'MISSED'}" if ds is train else ""
            print(row(name, cpu, wall, verdict))
        new_bytes, old_bytes = item_bytes(train[0]), item_bytes(reference[0])
        print(f"\nbytes shipped per sample: {new_bytes:,} (uint8 image + boundary), former float32 item {old_bytes:,}")

        if args.workers > 0:
            print(
                f"\nDataLoader, {args.workers} persistent spawned workers, batch {BATCH}; CPU: the workers' CPU time "
                "per sample (collation included), its samples/s per worker; wall: samples/s in total"
            )
            print(f"{'':<44} {'CPU ms':>8} {'/s/worker':>10} {'wall ms':>8} {'/s total':>10}")
            new = loader_rate(train, train, args.workers, args.repeats)
            old = loader_rate(reference, train, args.workers, args.repeats)
            verdict = f"  bar {BAR:.0f}/s per worker: {'met' if 1e3 / new[0] >= BAR else 'MISSED'}"
            print(row("training items", *new, verdict))
            print(row("reference: former float32 items", *old))
            print(f"per worker, training items / former items: {old[0] / new[0]:.2f}x")
        print(f"load average after the run: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
