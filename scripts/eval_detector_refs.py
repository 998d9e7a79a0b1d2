"""Face detectors against the reference detectors on four references, in one table (issue 18's benchmark).

Run from the repository root: ``PYTHONPATH=. python scripts/eval_detector_refs.py --threads 2 [--weights
runs/X/best.safetensors ...] [--json out.json]`` (or with awing installed). Rows: each ``--weights`` file (awing's
detector), ULFD-320, ULFD-640 and YuNet (from ``--models``, default ``../shared/models/face-detectors``; rows whose
file is missing are left out with a message) and OpenCV's Haar cascade. A markdown table goes to stdout, progress to
stderr. Data come from ``--data`` (default ``../shared/data`` beside the repository):

- **face-mask val**: the fixed validation split of ``face-mask-detection`` (CRC-32 rule, 15 %;
  datasets/face-mask-detection/README.md). AP at IoU 0.5 (all-point interpolated, detections down to score 0.02),
  recall and precision at the operating point, and recall of the faces at least 24, 32 and 64 pixels tall (box
  height in the original image; smaller faces become ignore regions, WIDER-style, so a detection on them counts
  neither way). Background faces are often not boxed there, so precision reads low; recall is the reliable figure.
- **dlib**: the 43 human-drawn boxes of dlib's example faces (``training.xml`` + ``testing.xml``, 9 photos): AP at IoU
  0.5 and the faces found at the operating point at IoU 0.5 and 0.4. dlib's boxes are tight squares (brows to chin),
  smaller than WIDER-style boxes, so IoU 0.5 is strict for every detector here.
- **AFLW2000-3D**: boxes per image at the operating point (one labelled face per image; some photos show other
  people, unlabelled) and the recall of the labelled face (``--max-aflw`` keeps the first N of 2,000 images). Its box
  is the tight box of the 68 re-annotated points (no forehead), so the **matching rule** is: a detection finds the
  face when it contains the centre of that box **and** its IoU with it is >= 0.3.
- **negatives**: the held-out generated no-face set (:func:`awing.detection.negatives.negative_set`, 60 images): the
  faces found there at the operating point (the bar is 0).

Operating points: awing's detector at the ``score_threshold`` stored in its weights (its input size and NMS too), or
``--det-threshold``; ULFD at 0.7 and YuNet at 0.9 (their authors' demos); OpenCV's Haar cascade
(``haarcascade_frontalface_default.xml``, grey image, ``scaleFactor=1.1``, ``minNeighbors=3``) keeps everything it
returns, ranked for AP by ``detectMultiScale3``'s level weights. ``ms`` is the median over 3 rounds of the mean wall
time per image on ``--timing-images`` face-mask val images resized to 640 x 480, each detector at its operating point
(decoding and NMS included, image reading excluded), with ``--threads`` threads for torch, OpenCV and onnxruntime.
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
from awing.detection import FaceDetector, build_detection_dataset, load_detector, read_dlib_xml
from awing.detection.evaluate import AP_SCORE_THRESHOLD, build_eval_detector, evaluate_detections
from awing.detection.negatives import negative_set
from awing.detection.teachers import TEACHER_FILES, build_teacher

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT / "shared" / "data"
DEFAULT_MODELS = ROOT / "shared" / "models" / "face-detectors"
HAAR = "haarcascade_frontalface_default.xml"
AFLW_RULE = {"iou_threshold": 0.3, "require_centre": True}
FACE_SIZES = (24, 32, 64)
REFERENCES = {"ulfd320": ("ULFD-320", 0.7), "ulfd640": ("ULFD-640", 0.7), "yunet": ("YuNet", 0.9)}
"""Reference name -> (row name, operating threshold)."""

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


def run(detect: Detect, images: Sequence[str | np.ndarray], name: str) -> list[dict[str, np.ndarray]]:
    """Detections per image (paths are read first)."""
    bar = tqdm(images, desc=name, leave=False, file=sys.stderr, disable=None)  # off without a terminal
    return [detect([read_image(i) if isinstance(i, str) else i])[0] for i in bar]


def time_detector(detect: Detect, images: Sequence[np.ndarray], rounds: int = 3) -> float:
    """Median over ``rounds`` of the mean milliseconds per image (one warm-up pass first)."""
    for image in images[:2]:
        detect([image])
    means = []
    for _ in range(rounds):
        started = time.perf_counter()
        for image in images:
            detect([image])
        means.append(1000 * (time.perf_counter() - started) / len(images))
    return float(np.median(means))


def size_recall(detections: list, truth: list, threshold: float | None, min_height: float) -> float:
    """Recall at ``threshold`` of the faces at least ``min_height`` pixels tall (smaller faces ignored)."""
    gated = [(b, (np.zeros(len(b), bool) if i is None else i) | (b[:, 3] - b[:, 1] < min_height)) for b, i in truth]
    return evaluate_detections(detections, gated, score_threshold=threshold).recall


def measure(
    name: str, detect: Detect, operate: Detect, threshold: float | None, refs: dict[str, tuple], timing: list
) -> dict[str, object]:
    """One table row: face-mask and dlib through ``detect`` (kept down to score 0.02 for AP), AFLW2000-3D and the
    negatives through ``operate`` (at ``threshold``), and the speed of ``operate``."""
    row: dict[str, object] = {"detector": name, "threshold": threshold}
    floor = -np.inf if threshold is None else threshold

    def kept(d: dict[str, np.ndarray]) -> np.ndarray:
        return d["scores"] >= floor

    for ref, (images, truth) in refs.items():
        at_threshold = ref in ("aflw", "negatives")  # no AP there: the faster operating detector will do
        detections = run(operate if at_threshold else detect, images, f"{name} {ref}")
        if ref == "negatives":
            counts = [int(kept(d).sum()) for d in detections]
            row.update(negative_faces=sum(counts), negative_images_hit=sum(c > 0 for c in counts))
            continue
        if ref == "aflw":
            rule = evaluate_detections(detections, truth, score_threshold=threshold, **AFLW_RULE)
            boxes = float(np.mean([kept(d).sum() for d in detections]))
            row.update(aflw_boxes_per_image=boxes, aflw_recall_rule=rule.recall, aflw_faces=rule.num_faces)
            continue
        metrics = evaluate_detections(detections, truth, score_threshold=threshold)
        row.update({f"{ref}_ap": metrics.ap, f"{ref}_recall": metrics.recall, f"{ref}_faces": metrics.num_faces})
        if ref == "face_mask":
            row["face_mask_precision"] = metrics.precision
            for size in FACE_SIZES:
                row[f"face_mask_recall_{size}"] = size_recall(detections, truth, threshold, size)
        if ref == "dlib":
            loose = evaluate_detections(detections, truth, iou_threshold=0.4, score_threshold=threshold)
            row.update(dlib_found=round(metrics.recall * metrics.num_faces), dlib_found_iou40=round(loose.recall *
                       loose.num_faces))  # fmt: skip
    row["ms_640x480"] = time_detector(operate, timing)
    return row


def load_references(data: Path, max_aflw: int) -> dict[str, tuple[list, list[tuple]]]:
    """``{ref: (image paths or arrays, [(boxes, ignore), ...])}`` for face-mask val, dlib, AFLW2000-3D, negatives."""
    face_mask = build_detection_dataset("face_mask", data / "face-mask-detection", "val")
    dlib_dir = data / "fixtures" / "dlib-faces" / "examples" / "faces"
    dlib = [r for xml in ("training.xml", "testing.xml") for r in read_dlib_xml(dlib_dir / xml)]
    aflw = AFLW2000Dataset(data / "aflw2000-3d", "test").records
    aflw = aflw[:max_aflw] if max_aflw > 0 else aflw
    negatives = negative_set()
    return {
        "face_mask": ([r.image_path for r in face_mask.records], [(r.boxes, r.ignore) for r in face_mask.records]),
        "dlib": ([r.image_path for r in dlib], [(r.boxes, r.ignore) for r in dlib]),
        "aflw": ([r.image_path for r in aflw], [(r.box[None], None) for r in aflw]),
        "negatives": (negatives, [(np.zeros((0, 4), np.float32), None)] * len(negatives)),
    }


COLUMNS = [
    ("detector", "detector", "{}"),
    ("threshold", "thr", "{}"),
    ("face_mask_ap", "face-mask AP", "{:.3f}"),
    ("face_mask_recall", "recall", "{:.3f}"),
    *((f"face_mask_recall_{s}", f"R >= {s}", "{:.3f}") for s in FACE_SIZES),
    ("face_mask_precision", "precision", "{:.3f}"),
    ("dlib_ap", "dlib AP", "{:.3f}"),
    ("dlib_found", "dlib found IoU .5", "{}"),
    ("dlib_found_iou40", "IoU .4", "{}"),
    ("aflw_boxes_per_image", "AFLW2000 boxes/img", "{:.2f}"),
    ("aflw_recall_rule", "AFLW2000 recall (rule)", "{:.3f}"),
    ("negative_faces", "faces on negatives", "{}"),
    ("ms_640x480", "ms / 640x480", "{:.1f}"),
]


def markdown(rows: list[dict[str, object]]) -> str:
    """The rows as a markdown table ("-": undefined, e.g. precision without detections)."""
    lines = ["| " + " | ".join(c[1] for c in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = []
        for key, _, fmt in COLUMNS:
            value = row.get(key)
            missing = value is None or (isinstance(value, float) and not math.isfinite(value))
            cells.append("-" if missing else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    first = rows[0] if rows else {}
    counts = (first.get("face_mask_faces"), first.get("dlib_faces"), first.get("aflw_faces"))
    lines.append(
        f"\nFaces: face-mask val {counts[0]}, dlib {counts[1]}, AFLW2000-3D {counts[2]} (one per image); 60 negative "
        "images. AP at IoU 0.5 (all-point). R >= s: recall of the faces at least s px tall. AFLW rule: the detection "
        "contains the centre of the 68-point box and IoU >= 0.3."
    )
    return "\n".join(lines)


def awing_rows(weights: Path, threshold: float | None, device: str) -> tuple[str, Detect, Detect, float]:
    """(row name, AP detector, operating detector, threshold) of awing weights."""
    model, settings = load_detector(weights)
    if threshold is not None:
        settings.score_threshold = threshold
    operate = FaceDetector(model, **vars(settings), device=device).detect_batch
    detect = build_eval_detector(model, settings, device).detect_batch
    return f"awing {weights.parent.name}/{weights.name}", detect, operate, settings.score_threshold


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", nargs="*", type=Path, default=[], help="awing detector .safetensors files")
    parser.add_argument("--det-threshold", type=float, default=None, help="awing's threshold (default: stored)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder")
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS, help="reference detectors folder")
    parser.add_argument("--max-aflw", type=int, default=0, help="first N AFLW2000-3D images (0 = all 2,000)")
    parser.add_argument("--timing-images", type=int, default=20, help="640 x 480 images timed per detector")
    parser.add_argument("--threads", type=int, default=2, help="torch, OpenCV and onnxruntime threads")
    parser.add_argument("--device", default="cpu", help="torch device of the awing detectors")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    refs = load_references(args.data, args.max_aflw)
    timing = [cv2.resize(read_image(p), (640, 480)) for p in refs["face_mask"][0][: args.timing_images]]
    rows = []
    for weights in args.weights:
        name, detect, operate, threshold = awing_rows(weights, args.det_threshold, args.device)
        rows.append(measure(name, detect, operate, threshold, refs, timing))
    for key, (name, threshold) in REFERENCES.items():
        if not (args.models / TEACHER_FILES[key]).is_file():
            print(f"{name}: {args.models / TEACHER_FILES[key]} not found, row left out", file=sys.stderr)
            continue
        detect = build_teacher(key, args.models, AP_SCORE_THRESHOLD, args.threads).detect_batch
        operate = build_teacher(key, args.models, threshold, args.threads).detect_batch
        rows.append(measure(name, detect, operate, threshold, refs, timing))
    haar = haar_detector()
    rows.append(measure("OpenCV Haar (frontalface_default)", haar, haar, None, refs, timing))
    print(markdown(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
