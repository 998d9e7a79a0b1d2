"""Build AFLW-68: label the AFLW-21 training crops with 68 points from dlib's shape predictor, keep the faces where
the teacher agrees with the human AFLW points. Format and statistics: datasets/aflw68/README.md.

Run from the repository root (about two minutes on 2 cores)::

    pip install dlib-bin face-recognition-models "setuptools<81"
    python scripts/build_aflw68.py --out data/aflw68 [--aflw-root ../shared/data/aflw-21]

Only the crops of AFLW-21 are labelled (none of them is an AFLW2000-3D face). Steps:

1. Human points: ``AFLWDataset(aflw_root, split="all")`` (crop pixels, invisible points flagged).
2. Face box for the teacher, from the human points: reference box = tight box of the visible AFLW points without the
   ears, ``s = max(w, h)``; the teacher's box is the square of side ``k s`` centred at the reference centre plus
   ``(ox, oy) s``. ``k, ox, oy`` are calibrated as the medians over the crops (every n-th, ``--calibration-faces``)
   where dlib's HOG detector (one 2x upsampling) finds exactly one face containing the reference centre, so the box
   imitates the detector box the predictor was trained with; the mapping then serves every face.
3. Teacher: the crop upscaled ``--upscale`` times (bilinear), dlib's 68-point predictor in the mapped box, points back
   to crop pixels by ``x = (x_up + 0.5) / U - 0.5`` (dlib returns integer pixels: +-0.5 / U crop px).
4. Keep rule, in this order (a face is counted under the first rule it fails):
   a. ``|yaw| < --max-yaw`` (default 60: beyond it the predictor puts the self-occluded eye and brow off the face
      even when the visible points agree; see the README);
   b. agreement (``awing.data.aflw68.teacher_agreement``: mean distance of the 19 shared points, visible ones only,
      over sqrt(w h) of the tight box of the teacher's 68 points) <= ``--tolerance``;
   c. silhouette, for ``|yaw| >= --silhouette-min-yaw``: on the side the face turns to (the side of the human nose
      tip relative to the reference box's centre), no teacher point of the brows, eyes, nose or mouth (17-67) lies
      more than ``--silhouette-margin`` box sizes beyond the outermost visible human point (without the ears).
      Faces with an invisible nose tip fail it.

No mirrored copies are written: training flips at random (``FaceAugmenter``), with the 68-point flip permutation.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from awing.data import AFLWDataset, read_image
from awing.data.aflw import YAW_BINS, aflw_is_validation, yaw_bin
from awing.data.aflw68 import AFLW21_SHARED, BUILD_FORMAT, shared_point_errors, teacher_agreement

#: AFLW-21 points of the reference box: all but the ears (12, 16), whose visibility depends on the pose.
REFERENCE_POINTS = tuple(i for i in range(21) if i not in (12, 16))
#: Brows, nose, eyes and mouth of the 68 points: the points the silhouette rule checks.
INNER_68 = slice(17, 68)
NOSE_TIP_21 = 14
TEACHER_MODEL = "shape_predictor_68_face_landmarks.dat (face-recognition-models)"

_WORKER: dict[str, Any] = {}


# ----------------------------------------------------------------------------------------------------- boxes


def reference_boxes(points: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Tight boxes (N, 4) ``(x0, y0, x1, y1)`` of the visible :data:`REFERENCE_POINTS` of (N, 21, 2) points."""
    keep = list(REFERENCE_POINTS)
    pts, mask = points[:, keep], visible[:, keep][..., None]
    lo = np.where(mask, pts, np.inf).min(axis=1)
    hi = np.where(mask, pts, -np.inf).max(axis=1)
    return np.concatenate([lo, hi], axis=1)


def teacher_boxes(reference: np.ndarray, scale: float, offset: tuple[float, float]) -> np.ndarray:
    """Squares (N, 4) of side ``scale * s`` centred at ``centre + offset * s``, ``s = max(w, h)`` of ``reference``."""
    size = (reference[:, 2:] - reference[:, :2]).max(axis=1, keepdims=True)
    centre = (reference[:, :2] + reference[:, 2:]) / 2 + np.asarray(offset) * size
    return np.concatenate([centre - scale * size / 2, centre + scale * size / 2], axis=1)


def dlib_rect_to_box(rect: tuple[int, int, int, int]) -> np.ndarray:
    """dlib's inclusive pixel rectangle (left, top, right, bottom) -> the box (x0, y0, x1, y1) it covers."""
    left, top, right, bottom = rect
    return np.array([left - 0.5, top - 0.5, right + 0.5, bottom + 0.5])


def box_to_dlib_rect(box: np.ndarray) -> tuple[int, int, int, int]:
    """Inverse of :func:`dlib_rect_to_box` to the nearest pixel (halves round up)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return tuple(math.floor(v + 0.5) for v in (x0 + 0.5, y0 + 0.5, x1 - 0.5, y1 - 0.5))


def calibrate(reference: np.ndarray, detections: list[list[tuple[int, int, int, int]]]) -> dict[str, Any]:
    """Median side ratio and centre offset of the detector boxes against the reference boxes (one face each).

    Uses the faces with exactly one detection that contains the reference box's centre.
    """
    refs, dets = [], []
    for box, found in zip(reference, detections, strict=True):
        centre = (box[:2] + box[2:]) / 2
        inside = [d for d in map(dlib_rect_to_box, found) if (d[:2] < centre).all() and (centre < d[2:]).all()]
        if len(found) == 1 and len(inside) == 1:
            refs.append(box)
            dets.append(inside[0])
    if len(refs) < 20:
        raise RuntimeError(f"the HOG detector matched only {len(refs)} calibration faces; at least 20 are needed")
    refs_a, dets_a = np.array(refs), np.array(dets)
    size = (refs_a[:, 2:] - refs_a[:, :2]).max(axis=1)
    side = dets_a[:, 2] - dets_a[:, 0]
    shift = ((dets_a[:, :2] + dets_a[:, 2:]) - (refs_a[:, :2] + refs_a[:, 2:])) / 2 / size[:, None]
    scale, offset = float(np.median(side / size)), np.median(shift, axis=0)
    mapped = teacher_boxes(refs_a, scale, (float(offset[0]), float(offset[1])))
    centre_error = np.linalg.norm((mapped[:, :2] + mapped[:, 2:]) / 2 - (dets_a[:, :2] + dets_a[:, 2:]) / 2, axis=1)
    return {
        "faces_used": len(refs),
        "scale": round(scale, 4),
        "offset": [round(float(v), 4) for v in offset],
        "median_centre_error_over_side": round(float(np.median(centre_error / side)), 4),
        "median_abs_log_side_ratio": round(
            float(np.median(np.abs(np.log(mapped[:, 2] - mapped[:, 0]) - np.log(side)))), 4
        ),
    }


# ---------------------------------------------------------------------------------------------------- dlib


def _init_worker(model_path: str) -> None:
    import dlib

    cv2.setNumThreads(1)
    _WORKER["detector"] = dlib.get_frontal_face_detector()
    _WORKER["predictor"] = dlib.shape_predictor(model_path)
    _WORKER["rectangle"] = dlib.rectangle


def _detect(path: str) -> list[tuple[int, int, int, int]]:
    """dlib HOG detections (one 2x upsampling) in the crop at ``path``."""
    return [(r.left(), r.top(), r.right(), r.bottom()) for r in _WORKER["detector"](read_image(path), 1)]


def _predict(task: tuple[str, np.ndarray, int]) -> np.ndarray:
    """The predictor's 68 points (68, 2) float32 in crop pixels for (crop path, box in crop pixels, upscale)."""
    path, box, upscale = task
    image = read_image(path)
    if upscale > 1:
        image = cv2.resize(image, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_LINEAR)
    rect = _WORKER["rectangle"](*box_to_dlib_rect((box + 0.5) * upscale - 0.5))
    shape = _WORKER["predictor"](image, rect)
    points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    return ((points + 0.5) / upscale - 0.5).astype(np.float32)


# -------------------------------------------------------------------------------------------------- keep rule


def silhouette_overshoot(teacher: np.ndarray, human: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """How far (in teacher box sizes) the teacher's inner points pass the human face outline on the facing side.

    Shapes: teacher (N, 68, 2), human (N, 21, 2), visible (N, 21) -> (N,) float64; +inf where the nose tip is not
    visible (the facing side is unknown).
    """
    reference = reference_boxes(human, visible)
    facing_left = human[:, NOSE_TIP_21, 0] < (reference[:, 0] + reference[:, 2]) / 2
    inner = teacher[:, INNER_68, 0]
    beyond = np.where(facing_left, reference[:, 0] - inner.min(axis=1), inner.max(axis=1) - reference[:, 2])
    extent = teacher.max(axis=1) - teacher.min(axis=1)
    overshoot = beyond / np.sqrt(extent[:, 0] * extent[:, 1])
    return np.where(visible[:, NOSE_TIP_21], overshoot, np.inf)


def keep_reasons(yaw: np.ndarray, agreement: np.ndarray, overshoot: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    """Per face: "" (kept) or the first rule it fails: "yaw", "agreement" or "silhouette"."""
    magnitude = np.abs(yaw)
    reasons = np.full(len(yaw), "", dtype=object)
    silhouette = (magnitude >= args.silhouette_min_yaw) & ~(overshoot <= args.silhouette_margin)
    reasons[silhouette] = "silhouette"
    reasons[agreement > args.tolerance] = "agreement"
    reasons[magnitude >= args.max_yaw] = "yaw"
    return reasons


def bin_statistics(
    yaw: np.ndarray, agreement: np.ndarray, reasons: np.ndarray, errors: np.ndarray, visible: np.ndarray
) -> dict[str, Any]:
    """Counts, kept fraction, agreement quantiles and per-point median errors, per yaw bin and overall."""
    bins = np.array([yaw_bin(y) for y in yaw])
    kept = reasons == ""
    out: dict[str, Any] = {}
    for name in (*YAW_BINS, "all"):
        m = np.ones(len(yaw), bool) if name == "all" else bins == name
        stats: dict[str, Any] = {"faces": int(m.sum()), "kept": int((m & kept).sum())}
        if m.any():
            a = agreement[m]
            stats["kept_fraction"] = round(stats["kept"] / stats["faces"], 4)
            stats["rejected"] = {r: int((m & (reasons == r)).sum()) for r in ("yaw", "agreement", "silhouette")}
            stats["agreement_all"] = {
                "median": round(float(np.median(a)), 4),
                "p90": round(float(np.percentile(a, 90)), 4),
                "fraction_within": {f"{t:.2f}": round(float((a <= t).mean()), 4) for t in (0.04, 0.05, 0.06, 0.08)},
            }
        if (m & kept).any():
            a = agreement[m & kept]
            stats["agreement_kept"] = {"median": round(float(np.median(a)), 4), "mean": round(float(a.mean()), 4)}
            sel = m & kept
            stats["point_median_error_kept"] = {
                str(k): round(float(np.median(errors[sel, j][visible[sel, j]])), 4)
                for j, k in enumerate(AFLW21_SHARED)
                if visible[sel, j].any()
            }
        out[name] = stats
    return out


# ---------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--aflw-root", default="../shared/data/aflw-21", help="AFLW-21 folder (crops/, pts21.npy, ...)")
    p.add_argument("--out", default="data/aflw68", help="output folder (git-ignored; default data/aflw68)")
    p.add_argument("--tolerance", type=float, default=0.06, help="keep agreement <= this (box-normalised)")
    p.add_argument("--max-yaw", type=float, default=60.0, help="keep |yaw| < this, degrees (180: no limit)")
    p.add_argument("--silhouette-margin", type=float, default=0.05, help="silhouette rule margin (box sizes)")
    p.add_argument("--silhouette-min-yaw", type=float, default=30.0, help="apply the silhouette rule from this |yaw|")
    p.add_argument("--upscale", type=int, default=4, help="upscale the 120 px crops this many times for dlib")
    p.add_argument("--calibration-faces", type=int, default=3000, help="crops the HOG detector calibrates the box on")
    p.add_argument("--workers", type=int, default=2, choices=(1, 2), help="dlib processes (at most 2)")
    args = p.parse_args(argv)
    if not 0 < args.tolerance < 1 or args.upscale < 1 or args.calibration_faces < 20:
        p.error("need 0 < --tolerance < 1, --upscale >= 1 and --calibration-faces >= 20")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import dlib
        import face_recognition_models
    except ImportError as err:
        sys.exit(f"{err}: install the teacher with: pip install dlib-bin face-recognition-models 'setuptools<81'")
    start = time.perf_counter()
    aflw_root, out = Path(args.aflw_root), Path(args.out)
    dataset = AFLWDataset(aflw_root, split="all")
    names = [Path(r.image_path).relative_to(aflw_root / "crops").as_posix() for r in dataset.records]
    paths = [r.image_path for r in dataset.records]
    human = np.stack([r.landmarks_img for r in dataset.records]).astype(np.float64)
    visible = np.stack([r.visible for r in dataset.records])
    yaw = np.array([r.attributes["yaw_deg"] for r in dataset.records])
    reference = reference_boxes(human, visible)
    print(f"{len(names)} AFLW-21 crops from {aflw_root}", file=sys.stderr)

    model_path = face_recognition_models.pose_predictor_model_location()
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.workers, initializer=_init_worker, initargs=(model_path,)) as pool:
        subset = np.unique(np.linspace(0, len(names) - 1, min(args.calibration_faces, len(names))).round().astype(int))
        detections = pool.map(_detect, [paths[i] for i in subset], chunksize=32)
        calibration = {"faces_tried": len(subset), **calibrate(reference[subset], detections)}
        print(f"box calibration: {calibration}", file=sys.stderr)
        boxes = teacher_boxes(reference, calibration["scale"], tuple(calibration["offset"]))
        tasks = [(path, box, args.upscale) for path, box in zip(paths, boxes, strict=True)]
        teacher = np.stack(pool.map(_predict, tasks, chunksize=64)).astype(np.float64)

    agreement = teacher_agreement(teacher, human, visible)
    errors = shared_point_errors(teacher, human)
    overshoot = silhouette_overshoot(teacher, human, visible)
    reasons = keep_reasons(yaw, agreement, overshoot, args)
    kept = np.flatnonzero(reasons == "")

    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "pts68.npy", teacher[kept].astype(np.float32))
    np.save(out / "yaw_deg.npy", yaw[kept].astype(np.float32))
    np.save(out / "agreement.npy", agreement[kept].astype(np.float32))
    (out / "names.txt").write_text("".join(f"{names[i]}\n" for i in kept), encoding="utf-8")
    kept_names = [names[i] for i in kept]
    info = {
        "format": BUILD_FORMAT,
        "aflw_root": os.path.relpath(aflw_root.resolve(), out.resolve()),
        "teacher": {"model": TEACHER_MODEL, "dlib_version": dlib.__version__, "upscale": args.upscale},
        "box": {
            "rule": "square of side scale * s centred at c + offset * s; c, s = centre and max(w, h) of the tight "
            "box of the visible AFLW points without the ears (12, 16)",
            "calibration": calibration,
        },
        "keep_rule": {
            "max_yaw_deg": args.max_yaw,
            "tolerance": args.tolerance,
            "agreement": "mean over the visible shared AFLW points of ||teacher counterpart - human point|| / "
            "sqrt(w h) of the tight box of the teacher's 68 points",
            "silhouette_margin": args.silhouette_margin,
            "silhouette_min_yaw_deg": args.silhouette_min_yaw,
        },
        "mirrored_copies": False,
        "counts": {
            "aflw_faces": len(names),
            "kept": len(kept),
            "kept_fraction": round(len(kept) / len(names), 4),
            "train": sum(not aflw_is_validation(n) for n in kept_names),
            "val": sum(aflw_is_validation(n) for n in kept_names),
        },
        "by_yaw": bin_statistics(yaw, agreement, reasons, errors, visible[:, list(AFLW21_SHARED)]),
        "seconds": round(time.perf_counter() - start, 1),
    }
    (out / "build.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"counts": info["counts"], "by_yaw": info["by_yaw"]}, indent=2))
    print(f"wrote {out} in {info['seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
