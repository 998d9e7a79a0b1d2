"""Head-pose benchmark on AFLW2000-3D: yaw mean absolute error of ``awing.pose`` by |yaw| bin.

Run from the repository root::

    python scripts/bench_pose.py [--data ../shared/data/aflw2000-3d] [--weights W] [--json out.json]

Protocol (the GT-box protocol of ``scripts/bench_aflw2000.py``): every one of the 2,000 faces gets the tight box of
its 68 re-annotated ground-truth points (``pts68_reannotated.npy``) as its box,
``FaceAligner.predict(image, boxes=[box])`` predicts the 68 points, and ``Face.pose`` (a weak-perspective fit of
the mean 3D face, ``awing/pose.py``) gives the yaw. Reference: ``yaw_deg.npy``. The error is the angular difference
``|((est - ref + 180) mod 360) - 180|`` (two labels lie outside [-180, 180]: -351.2 and 187.8 degrees). Rows:

- ``predicted``: pose from awing's predicted points (the bar: <= 6 degrees over all 2,000 faces);
- ``ground-truth points``: pose from the ground-truth 68 points themselves (the method's upper bound: what the mean
  face and the fit cost without any landmark error).

Columns: all 2,000 faces, the |yaw| bins [0, 30), [30, 60), [60, 90] (``awing.data.aflw.yaw_bin``: the faces
beyond 90 degrees go to the last bin), and the 1,994 faces with |yaw| <= 99 degrees (most head-pose papers drop
the faces with any angle beyond 99 degrees; only the yaw labels are at hand here).
AFLW2000-3D is a test set: nothing in awing's pose was fitted on it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from awing.aligner import FaceAligner
from awing.data import read_image
from awing.data.aflw import YAW_BINS, yaw_bin
from awing.geometry import points_box
from awing.pose import head_pose


def angular_error(estimate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``|estimate - reference|`` in degrees on the circle (in [0, 180])."""
    return np.abs((np.asarray(estimate) - np.asarray(reference) + 180.0) % 360.0 - 180.0)


def summarise(errors: np.ndarray, yaws: np.ndarray) -> dict[str, float]:
    """MAE over all faces, per |yaw| bin and over the faces with |yaw| <= 99 degrees."""
    bins = np.array([yaw_bin(y) for y in yaws])
    out = {"all": float(errors.mean())}
    for name in YAW_BINS:
        out[name] = float(errors[bins == name].mean())
    out["abs_yaw_le_99"] = float(errors[np.abs(yaws) <= 99].mean())
    out["count"] = int(len(errors))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/aflw2000-3d"))
    parser.add_argument("--weights", type=Path, default=None, help="landmark weights (default: bundled)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    names = (args.data / "names.txt").read_text().split()
    truth = np.load(args.data / "pts68_reannotated.npy").transpose(0, 2, 1).astype(np.float64)  # (N, 68, 2)
    yaws = np.load(args.data / "yaw_deg.npy").astype(np.float64)
    aligner = FaceAligner.from_pretrained(args.weights, "cpu", detector=None)
    predicted, from_truth = [], []
    for i, name in enumerate(names):
        image = read_image(args.data / "images" / name)
        (face,) = aligner.predict(image, boxes=[points_box(truth[i])])
        predicted.append(face.pose.yaw)
        from_truth.append(head_pose(truth[i]).yaw)
        if (i + 1) % 100 == 0:
            print(f"{i + 1} / {len(names)}", file=sys.stderr)
    rows = {
        "predicted": summarise(angular_error(predicted, yaws), yaws),
        "ground-truth points": summarise(angular_error(from_truth, yaws), yaws),
    }
    print("| yaw from | all 2,000 | [0, 30) | [30, 60) | [60, 90] | abs yaw <= 99 |")
    print("|---|---|---|---|---|---|")
    for label, row in rows.items():
        cells = " | ".join(f"{row[k]:.2f}" for k in ("all", *YAW_BINS, "abs_yaw_le_99"))
        print(f"| {label} | {cells} |")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
