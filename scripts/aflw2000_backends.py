"""Box-NME on AFLW2000-3D and landmark-stage speed of ``FaceAligner`` per inference backend (issue 16's accuracy bar).

Run from the repository root: ``python scripts/aflw2000_backends.py [--weights W] [--threads 2] [--limit N]``.

Protocol (issue 15's): the bundled landmark model (or ``--weights``), no detector; each face's box is the tight box
of its 68 re-annotated ground-truth points (``pts68_reannotated.npy``), handed to ``FaceAligner.predict(image,
boxes=...)`` (caller boxes are in the model's own convention: no box adapter). NME normalised by sqrt(w h) of that
box, mean over the faces, in percent (``awing.metrics.nme``). Speed: median milliseconds of the ``predict`` call
with the box (crop warp, network at batch 1, decode; the image is decoded beforehand). Every face goes through
every backend in turn, so load from other processes affects them alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from awing.aligner import FaceAligner
from awing.data import AFLW2000Dataset
from awing.data.io import read_image as load_image
from awing.geometry import points_box
from awing.metrics import nme
from awing.runtime import onnxruntime_available


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default="../shared/data/aflw2000-3d")
    parser.add_argument("--weights", default=None, help="landmark weights (default: bundled)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="only the first N faces (0: all 2,000)")
    default_backends = ["torch", "onnxruntime"] if onnxruntime_available() else ["torch"]
    parser.add_argument("--backends", nargs="+", choices=("torch", "onnxruntime"), default=default_backends)
    args = parser.parse_args(argv)
    records = AFLW2000Dataset(args.data_root, split="test").records
    records = records[: args.limit] if args.limit else records
    aligners = {
        b: FaceAligner.from_pretrained(args.weights, "cpu", detector=None, backend=b, threads=args.threads)
        for b in args.backends
    }
    preds = {b: np.empty((len(records), 68, 2), np.float32) for b in aligners}
    times: dict[str, list[float]] = {b: [] for b in aligners}
    for i, record in enumerate(records):
        image = load_image(record.image_path)
        box = np.array([points_box(record.landmarks_img)])
        for backend, aligner in aligners.items():
            tic = time.perf_counter()
            (face,) = aligner.predict(image, boxes=box)
            times[backend].append(1000 * (time.perf_counter() - tic))
            preds[backend][i] = face.landmarks
        if i % 200 == 0:
            print(f"{i} / {len(records)}", file=sys.stderr)
    gt = np.stack([r.landmarks_img for r in records])
    print(f"{len(records)} faces, {args.threads} threads (first call of each backend included in the median)\n")
    print("| backend | box NME % | ms / face (median) | max landmark difference to torch (px) |\n|---|---|---|---|")
    for backend in aligners:
        error = 100 * float(nme(preds[backend], gt, norm="box", scheme="68").mean())
        diff = float(np.abs(preds[backend] - preds["torch"]).max()) if "torch" in preds else float("nan")
        print(f"| {backend} | {error:.3f} | {statistics.median(times[backend]):.1f} | {diff:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
