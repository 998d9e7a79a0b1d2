"""Fit the :class:`~awing.geometry.BoxAdapter` of a face detector on the AFLW-68 training faces.

Run from the repository root::

    python scripts/calibrate_box_adapter.py --detector runs/detector/best.safetensors --json adapter.json
    python scripts/calibrate_box_adapter.py --detector opencv --max-faces 3000   # HAAR_BOX_ADAPTER
    python scripts/bundle_models.py --landmarks runs/aflw68_cpu --detector runs/detector/best.safetensors \
        --adapter adapter.json

Protocol. The faces are those the 68-point model was trained on: the ``train`` split of ``--dataset`` (default
``aflw68-3d``, 120 x 120 AFLW crops with the 3D-aware teacher's 68 points; ``aflw68`` for a dlib-labelled build); never
AFLW2000-3D, a test set. The target box is the training box: the tight box of the 68 points. A crop is tight around the
face, and a detector needs context around it, so each crop is placed at the centre of a canvas ``--canvas`` times its
side (default 3: 360 x 360) whose border repeats the crop's edge pixels (``cv2.BORDER_REPLICATE``; ``--border grey``
fills with mid-grey 128 instead). Replication continues the crop's own colours and brightness without adding face-like
structure (a reflected border would add mirrored faces); grey is a flat, neutral alternative. The detector then runs as
``FaceDetector`` does at inference (its stored ``input_max_side`` and thresholds unless overridden), its boxes are
mapped back to the canvas, and the highest-scoring detection whose IoU with the target is at least ``--min-iou`` (0.3)
is paired with it (:func:`awing.calibration.best_match`); faces without one are skipped. The adapter is the per-term
median of :func:`awing.calibration.adapter_terms` over the pairs (:func:`awing.calibration.fit_box_adapter`).

Printed and written to ``--json``: the adapter, each term's quartiles and IQR, the detection rate (faces with a
matched detection / faces tried), the rate of faces with any detection, and how far the crops of the raw and of
the adapted detector boxes are from the target crops (median :func:`awing.calibration.crop_errors`: centre offset
in target sides, ``|ln|`` of the side ratio). The JSON (``{"box_adapter": {...}, "calibration": {...}}``) is what
``scripts/bundle_models.py --adapter`` reads; ``calibration.detector_sha256`` ties it to the detector file.

``--detector opencv`` calibrates OpenCV's Haar cascade (:class:`awing.detection.haar.HaarFaceDetector`, its
defaults; ``--input-max-side`` overrides ``max_side``, ``--score-threshold`` does not apply); the checksum is the
cascade file's. Its adapter is hard-coded as :data:`awing.detection.haar.HAAR_BOX_ADAPTER`, not bundled.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from awing.calibration import best_match, crop_errors, file_sha256, fit_box_adapter
from awing.data import LandmarkDataset, build_dataset, read_image
from awing.detection import FaceDetector
from awing.detection.haar import HaarFaceDetector

OPENCV = "opencv"
BORDERS = ("replicate", "grey")
GREY = 128


def place_in_canvas(image: np.ndarray, factor: float, border: str) -> tuple[np.ndarray, int, int]:
    """Centre ``image`` (H x W x 3) in a canvas about ``factor`` times its size; returns (canvas, dx, dy).

    A point ``(x, y)`` of the image is at ``(x + dx, y + dy)`` in the canvas.
    """
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    if not factor >= 1:
        raise ValueError(f"canvas factor must be >= 1, got {factor!r}")
    height, width = image.shape[:2]
    dx, dy = round((factor - 1) * width / 2), round((factor - 1) * height / 2)
    mode = cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT
    canvas = cv2.copyMakeBorder(image, dy, dy, dx, dx, mode, value=(GREY, GREY, GREY))
    return canvas, dx, dy


def evenly_spaced(total: int, count: int | None) -> np.ndarray:
    """``count`` indices spread evenly over ``range(total)`` (all of them when ``count`` is None or larger)."""
    if count is None or count >= total:
        return np.arange(total)
    return np.linspace(0, total - 1, count).round().astype(int)


def build_detector(args: argparse.Namespace) -> tuple[FaceDetector | HaarFaceDetector, Path, dict[str, Any]]:
    """The detector of ``--detector`` (a weights file or ``opencv``), the file to checksum, and its settings."""
    if str(args.detector) == OPENCV:
        if args.score_threshold is not None:
            raise SystemExit("--score-threshold does not apply to --detector opencv (its scores are level weights)")
        detector = HaarFaceDetector(**({} if args.input_max_side is None else {"max_side": args.input_max_side}))
        settings = {name: getattr(detector, name) for name in ("max_side", "scale_factor", "min_neighbors", "min_size")}
        return detector, detector.cascade_path, settings
    overrides = {
        k: v
        for k, v in (("score_threshold", args.score_threshold), ("input_max_side", args.input_max_side))
        if v is not None
    }
    detector = FaceDetector.from_weights(args.detector, device=args.device, **overrides)
    settings = {name: getattr(detector.settings, name) for name in ("input_max_side", "score_threshold", "nms_iou")}
    return detector, Path(args.detector), settings


def detect_pairs(
    detector: FaceDetector | HaarFaceDetector,
    dataset: LandmarkDataset,
    indices: Sequence[int],
    *,
    factor: float,
    border: str,
    min_iou: float,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Matched (detector boxes, target boxes), both ``(M, 4)`` in canvas pixels, and the faces with any detection."""
    det_boxes, target_boxes, any_face = [], [], 0
    for start in range(0, len(indices), batch_size):
        records = [dataset.records[i] for i in indices[start : start + batch_size]]
        canvases, targets = [], []
        for record in records:
            canvas, dx, dy = place_in_canvas(read_image(record.image_path), factor, border)
            canvases.append(canvas)
            targets.append(np.asarray(record.box, dtype=np.float64) + (dx, dy, dx, dy))
        for found, target in zip(detector.detect_batch(canvases), targets, strict=True):
            any_face += len(found["boxes"]) > 0
            match = best_match(found["boxes"], found["scores"], target, min_iou)
            if match is not None:
                det_boxes.append(found["boxes"][match].astype(np.float64))
                target_boxes.append(target)
    return np.reshape(det_boxes, (-1, 4)), np.reshape(target_boxes, (-1, 4)), any_face


def calibrate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the protocol of the module docstring; returns the JSON-ready result."""
    detector, detector_file, settings = build_detector(args)
    checksum = file_sha256(detector_file)
    dataset = build_dataset(args.dataset, args.root, split="train")
    indices = evenly_spaced(len(dataset), args.max_faces)
    det, target, any_face = detect_pairs(
        detector,
        dataset,
        indices,
        factor=args.canvas,
        border=args.border,
        min_iou=args.min_iou,
        batch_size=args.batch_size,
    )
    if len(det) == 0:
        raise SystemExit(f"no detection matched any of the {len(indices)} faces (IoU >= {args.min_iou}); no fit")
    if file_sha256(detector_file) != checksum:
        raise SystemExit(f"{detector_file} changed during the calibration (a training run saving it?); copy it first")
    fit = fit_box_adapter(det, target)
    errors = {"raw": crop_errors(det, target), "adapted": crop_errors(fit.adapter(det), target)}
    calibration = {
        "detector": f"{detector_file.resolve().parent.name}/{detector_file.name}",
        "detector_sha256": checksum,
        "faces": "AFLW-68 train split",
        "faces_tried": len(indices),
        "faces_matched": fit.count,
        "detection_rate": fit.count / len(indices),
        "any_detection_rate": any_face / len(indices),
        "terms": fit.to_dict()["terms"],
        "median_crop_error": {
            name: {"centre": float(np.median(e[:, 0])), "size": float(np.median(e[:, 1]))} for name, e in errors.items()
        },
        "canvas": args.canvas,
        "border": args.border,
        "min_iou": args.min_iou,
        "detector_settings": settings,
    }
    return {"box_adapter": fit.adapter.to_dict(), "calibration": calibration}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--detector", type=Path, required=True, help="detector .safetensors (save_detector), or opencv (Haar cascade)"
    )
    parser.add_argument("--dataset", default="aflw68-3d", help="68-point training set (default aflw68-3d)")
    parser.add_argument("--root", type=Path, default=Path("../shared/data/aflw-21"), help="its root folder")
    parser.add_argument("--max-faces", type=int, default=None, help="evenly spaced subset of the train faces")
    parser.add_argument("--json", type=Path, default=None, help="write the result here (for bundle_models.py)")
    parser.add_argument("--canvas", type=float, default=3.0, help="canvas side / crop side (default 3)")
    parser.add_argument("--border", choices=BORDERS, default="replicate", help="canvas fill (default replicate)")
    parser.add_argument("--min-iou", type=float, default=0.3, help="IoU to accept a detection (default 0.3)")
    parser.add_argument("--score-threshold", type=float, default=None, help="override the stored threshold")
    parser.add_argument("--input-max-side", type=int, default=None, help="override the stored input_max_side")
    parser.add_argument("--batch-size", type=int, default=16, help="canvases per detector call")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_faces is not None and args.max_faces < 1:
        raise SystemExit(f"--max-faces must be >= 1, got {args.max_faces}")
    torch.set_num_threads(args.threads)
    result = calibrate(args)
    cal = result["calibration"]
    print(
        f"faces: {cal['faces_tried']} tried, {cal['faces_matched']} matched "
        f"(detection rate {cal['detection_rate']:.1%}; any detection {cal['any_detection_rate']:.1%})"
    )
    for term, q in cal["terms"].items():
        print(f"  {term:8s} median {q['median']:+.4f}  IQR {q['iqr']:.4f}  [{q['q25']:+.4f}, {q['q75']:+.4f}]")
    for name, e in cal["median_crop_error"].items():
        print(f"  {name:8s} crop error vs the target crop: centre {e['centre']:.4f} sides, size |ln| {e['size']:.4f}")
    print(json.dumps(result["box_adapter"]))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
