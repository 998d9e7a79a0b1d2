"""Training-data throughput on one core: decode, warp, photometric, 98 heatmaps + boundary at 64 x 64, tensors.

Images: the real AFLW-21 crops (120 x 120 JPEGs) of ``../shared/data/aflw-21`` when present, else synthetic
120 x 120 JPEGs written to a temporary folder. Points: the 98-point WFLW face of the mmpose fixture
(``tests/data/mmpose/wflw``), stretched into each face's box, so the targets are WFLW-sized (98 heatmaps + boundary).

The script runs in one process with ``torch.set_num_threads(1)`` and ``cv2.setNumThreads(1)``: samples/s is per
core, which is what one DataLoader worker delivers. It prints the per-stage breakdown (each stage timed alone on the
same samples) and the end-to-end rate of ``LandmarkTrainingSet[i]``, from this thread's CPU time (one core's work,
robust to other processes on the machine) and from wall time; ``--workers N`` adds a DataLoader run (the workers'
CPU time per sample, collation into shared memory included, and the wall time).

    python scripts/bench_data.py [--samples 400] [--repeats 3] [--workers 0]   (awing installed: pip install -e .)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from awing.boundary import boundary_heatmap
from awing.config import AugmentConfig
from awing.data import AFLWDataset, LandmarkDataset, LandmarkRecord
from awing.data.augment import FaceAugmenter, sample_rng, warp_face
from awing.data.targets import point_weights
from awing.data.training import LandmarkTrainingSet, seed_worker, worker_context
from awing.landmarks import get_scheme

ROOT = Path(__file__).resolve().parents[1]
AFLW_ROOT = ROOT.parent / "shared" / "data" / "aflw-21"
WFLW_FIXTURE = ROOT / "tests" / "data" / "mmpose" / "wflw" / "test_wflw.json"
PHOTOMETRIC = ("colour_prob", "occlusion_prob", "blur_prob", "noise_prob", "jpeg_prob")
BAR = 300.0


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


def row(name: str, cpu: float, wall: float) -> str:
    return f"{name:<40} {cpu:>8.3f} {1e3 / cpu:>10.0f} {wall:>8.3f} {1e3 / wall:>10.0f}"


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

        samples = [dataset[i] for i in range(count)]
        faces, crops = [], []
        for i, s in enumerate(samples):
            rng = sample_rng(0, 0, i)
            face = warp_face(
                s.image, s.landmarks_img, s.visible, s.box, scheme, 256, params=augmenter.sample_geometry(rng)
            )
            faces.append(face)
            crops.append(augmenter.photometric(face.image, rng))
        points_hm = [codec.to_heatmap(f.landmarks_crop) for f in faces]

        def geometry(i: int) -> object:
            s = samples[i]
            params = augmenter.sample_geometry(sample_rng(0, 0, i))
            return warp_face(s.image, s.landmarks_img, s.visible, s.box, scheme, 256, params=params)

        def photometric(config: AugmentConfig) -> Callable[[int], object]:
            aug = FaceAugmenter(256, **dataclasses.asdict(config))
            return lambda i: aug.photometric(faces[i].image, sample_rng(0, 0, i))

        def heatmaps(i: int) -> object:
            weight = point_weights(points_hm[i], faces[i].visible, codec.heatmap_size)
            return codec.encode(points_hm[i], visible=weight > 0)

        def tensors(i: int) -> object:
            return torch.from_numpy(crops[i]).permute(2, 0, 1).float().div_(255.0)

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
            ("98 heatmaps 64x64 + weights", heatmaps),
            ("boundary 64x64", lambda i: boundary_heatmap(points_hm[i], scheme, 64, 1.0, faces[i].visible)),
            ("image to float CHW tensor", tensors),
        ]
        print(f"images: {source}; {count} faces, 98 points; torch/cv2 threads: 1; best of {args.repeats} passes")
        print(f"load average before the run: {', '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
        header = f"{'stage':<40} {'CPU ms':>8} {'samples/s':>10} {'wall ms':>8} {'samples/s':>10}"
        print(header)
        for name, fn in stages:
            print(row(name, *rate(fn, count, args.repeats)))
        print()
        totals = [
            ("end to end: training sample", train),
            ("end to end: every photometric op on", all_on),
            ("end to end: evaluation (crop only)", evaluation),
        ]
        for name, ds in totals:
            cpu, wall = rate(ds.__getitem__, count, args.repeats)
            verdict = f"  bar {BAR:.0f}/s per core: {'met' if 1e3 / cpu >= BAR else 'MISSED'}" if ds is train else ""
            print(row(name, cpu, wall) + verdict)

        if args.workers > 0:
            # Persistent spawned workers; the first epoch (worker start-up) is not timed. Workers run on their own
            # cores, so a worker's cost per sample is the wall time per sample times the number of workers.
            loader = torch.utils.data.DataLoader(
                train,
                batch_size=16,
                num_workers=args.workers,
                multiprocessing_context=worker_context(args.workers),
                worker_init_fn=seed_worker,
                persistent_workers=True,
            )
            wall = float("inf")
            for epoch in range(args.repeats + 1):
                train.set_epoch(epoch)
                start = time.perf_counter()
                seen = sum(len(batch["index"]) for batch in loader)
                if epoch > 0:
                    wall = min(wall, (time.perf_counter() - start) / seen)
            per_worker = wall * args.workers
            label = f"DataLoader, {args.workers} workers, batch 16"
            print(row(label, 1e3 * per_worker, 1e3 * wall) + "  (CPU column: wall x workers, collation included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
