"""Face detectors against OpenCV's Haar cascade on three references, in one table.

Run from the repository root: ``PYTHONPATH=. python scripts/eval_detector_refs.py [--weights runs/X/best.safetensors
...] [--json out.json]`` (or with awing installed). Without ``--weights`` only the Haar row is measured. A markdown
table goes to stdout, progress to stderr. Data come from ``--data`` (default ``../shared/data`` beside the
repository):

- **face-mask val**: the fixed validation split of ``face-mask-detection`` (CRC-32 rule, 15 %;
  datasets/face-mask-detection/README.md). AP at IoU 0.5 (all-point interpolated, detections down to score 0.02)
  and recall / precision at the operating point. Background faces are often not boxed there, so precision reads
  low; recall is the reliable figure.
- **dlib**: the 43 human-drawn boxes of dlib's example faces (``training.xml`` + ``testing.xml``, 9 photos); AP and
  recall at IoU 0.5. dlib's boxes are tight squares (brows to chin), smaller than WIDER-style boxes, so IoU 0.5 is
  strict for every detector here.
- **AFLW2000-3D**: recall of the one labelled face per image (2,000 images of 450 x 450; ``--max-aflw`` keeps the
  first N). Its box is the tight box of the 68 re-annotated points, which is smaller than a detector's face box
  (no forehead). **Matching rule**: a detection finds the face when it contains the centre of that box **and** its
  IoU with it is >= 0.3 (column ``AFLW rule``); the strict IoU >= 0.5 recall is shown beside it.

Operating points: a trained detector at the ``score_threshold`` stored in its weights (and its stored input size,
NMS); the Haar cascade (``cv2.data.haarcascades + "haarcascade_frontalface_default.xml"``, grey image,
``scaleFactor=1.1``, ``minNeighbors=3``, default minimum size, on the original image) keeps everything it returns,
ranked for AP by ``detectMultiScale3``'s level weights. ``ms/img`` is the mean wall time per face-mask val image
(``torch.set_num_threads(--threads)``; Haar runs with OpenCV's own threads).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from awing.data import AFLW2000Dataset
from awing.data.io import read_image
from awing.detection import build_detection_dataset, load_detector, read_dlib_xml
from awing.detection.evaluate import build_eval_detector, evaluate_detections

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HAAR = "haarcascade_frontalface_default.xml"
AFLW_RULE = {"iou_threshold": 0.3, "require_centre": True}

Detect = Callable[[Sequence[np.ndarray]], list[dict[str, np.ndarray]]]


def haar_detector() -> Detect:
    """OpenCV's frontal-face Haar cascade as a batch detector (boxes ``x y w h`` -> ``(x, y, x + w, y + h)``)."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + HAAR)
    if cascade.empty():
        raise RuntimeError(f"cannot load {cv2.data.haarcascades + HAAR} (opencv-python-headless 4.x ships it)")

    def detect(images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        results = []
        for image in images:
            grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            rects, _, weights = cascade.detectMultiScale3(
                grey, scaleFactor=1.1, minNeighbors=3, outputRejectLevels=True
            )
            xywh = np.asarray(rects, np.float32).reshape(-1, 4)
            boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            results.append({"boxes": boxes, "scores": np.asarray(weights, np.float32).reshape(-1)})
        return results

    return detect


def run(detect: Detect, image_paths: Sequence[str], name: str) -> tuple[list[dict[str, np.ndarray]], float]:
    """Detections per image and the mean milliseconds per image (image decoding excluded)."""
    results, seconds = [], 0.0
    for path in tqdm(image_paths, desc=name, leave=False, file=sys.stderr, disable=None):  # off without a terminal
        image = read_image(path)
        started = time.perf_counter()
        results.extend(detect([image]))
        seconds += time.perf_counter() - started
    return results, 1000 * seconds / max(len(image_paths), 1)


def measure(name: str, detect: Detect, threshold: float | None, refs: dict[str, tuple]) -> dict[str, object]:
    """One table row: every reference through ``detect``."""
    row: dict[str, object] = {"detector": name, "threshold": threshold}
    for ref, (paths, truth) in refs.items():
        detections, ms = run(detect, paths, f"{name} {ref}")
        if ref == "aflw":
            rule = evaluate_detections(detections, truth, score_threshold=threshold, **AFLW_RULE)
            strict = evaluate_detections(detections, truth, score_threshold=threshold)
            row.update(aflw_recall_rule=rule.recall, aflw_recall_iou50=strict.recall, aflw_faces=rule.num_faces)
            continue
        metrics = evaluate_detections(detections, truth, score_threshold=threshold)
        row.update({f"{ref}_ap": metrics.ap, f"{ref}_recall": metrics.recall, f"{ref}_faces": metrics.num_faces})
        if ref == "face_mask":
            row.update(face_mask_precision=metrics.precision, ms_per_image=ms)
    return row


def load_references(data: Path, max_aflw: int) -> dict[str, tuple[list[str], list[tuple]]]:
    """``{ref: (image paths, [(boxes, ignore), ...])}`` for face-mask val, dlib and AFLW2000-3D."""
    face_mask = build_detection_dataset("face_mask", data / "face-mask-detection", "val")
    dlib_dir = data / "fixtures" / "dlib-faces" / "examples" / "faces"
    dlib = [r for xml in ("training.xml", "testing.xml") for r in read_dlib_xml(dlib_dir / xml)]
    aflw = AFLW2000Dataset(data / "aflw2000-3d", "test").records
    aflw = aflw[:max_aflw] if max_aflw > 0 else aflw
    return {
        "face_mask": ([r.image_path for r in face_mask.records], [(r.boxes, r.ignore) for r in face_mask.records]),
        "dlib": ([r.image_path for r in dlib], [(r.boxes, r.ignore) for r in dlib]),
        "aflw": ([r.image_path for r in aflw], [(r.box[None], None) for r in aflw]),
    }


def markdown(rows: list[dict[str, object]]) -> str:
    """The rows as a markdown table ("-": undefined, e.g. precision without detections)."""
    columns = [
        ("detector", "detector", "{}"),
        ("threshold", "score thr", "{}"),
        ("face_mask_ap", "face-mask val AP", "{:.3f}"),
        ("face_mask_recall", "recall", "{:.3f}"),
        ("face_mask_precision", "precision", "{:.3f}"),
        ("dlib_ap", "dlib AP", "{:.3f}"),
        ("dlib_recall", "dlib recall", "{:.3f}"),
        ("aflw_recall_rule", "AFLW2000-3D recall (rule)", "{:.3f}"),
        ("aflw_recall_iou50", "AFLW2000-3D recall (IoU 0.5)", "{:.3f}"),
        ("ms_per_image", "ms/img", "{:.1f}"),
    ]
    lines = ["| " + " | ".join(c[1] for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            missing = value is None or (isinstance(value, float) and not math.isfinite(value))
            cells.append("-" if missing else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    first = rows[0] if rows else {}
    counts = (first.get("face_mask_faces"), first.get("dlib_faces"), first.get("aflw_faces"))
    lines.append(
        f"\nFaces: face-mask val {counts[0]}, dlib {counts[1]}, AFLW2000-3D {counts[2]}. AP at IoU 0.5 (all-point). "
        "AFLW rule: the detection contains the centre of the 68-point box and IoU >= 0.3."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", nargs="*", type=Path, default=[], help="awing detector .safetensors files")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder")
    parser.add_argument("--max-aflw", type=int, default=0, help="first N AFLW2000-3D images (0 = all 2,000)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--device", default="cpu", help="torch device of the awing detectors")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    refs = load_references(args.data, args.max_aflw)
    rows = []
    for weights in args.weights:
        model, settings = load_detector(weights)
        detector = build_eval_detector(model, settings, args.device)
        name = f"awing {weights.parent.name}/{weights.name}"
        rows.append(measure(name, detector.detect_batch, settings.score_threshold, refs))
    rows.append(measure("OpenCV Haar (frontalface_default)", haar_detector(), None, refs))
    print(markdown(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
