"""``awing predict IMG|DIR|GLOB ...``: landmarks of every face in images, as JSON, JSON lines or iBUG ``.pts``.

Inputs: image files, folders (their images, :func:`awing.imread.list_images`; sub-folders with ``--recursive``)
and glob patterns (``*``, ``?``, ``[...]``; ``**`` with ``--recursive``), in the order given. Folder and glob
results are sorted.

Outputs (results to stdout or files, messages to stderr):

- no ``--out``: one JSON object per image and line on stdout (``json`` and ``jsonl`` alike);
- ``--out DIR --format json``: ``DIR/<name>.json`` per image; ``jsonl``: one ``DIR/predictions.jsonl``;
  ``pts``: ``DIR/<name>.pts`` for the first face (highest detector score), ``DIR/<name>_<i>.pts`` for face
  ``i >= 1``, written by :func:`awing.data.io.write_pts` (1-based, as :func:`~awing.data.io.read_pts` reads back;
  6 decimals) and nothing for an image without a face;
- ``--save-vis DIR``: ``DIR/<name>.jpg`` overlays (boxes and points, :func:`awing.viz.draw_landmarks`).

``<name>`` is the image's stem, under the sub-folders it has below a folder input. When two images would get the
same output name (``a.jpg`` and ``a.png``), the later one uses its full file name (``a.png.json``), and a third one
a number (``a_2.png.json``, ``a_3.png.json``, ...): every image keeps its result.

Every output file is written to a temporary file beside it and renamed into place, so a full disk or an interrupt
never leaves a truncated file: the image is reported (exit code 1) and its previous output, if any, is kept. JSON
lines are appended one complete line at a time (a failed write is cut back). Non-finite numbers are written as
``null`` (strict JSON). A ``**`` pattern does not follow symbolic links to folders (a link loop cannot hang it).

The JSON object of an image: ``{"image": path, "width": W, "height": H, "faces": [{"box": [x0, y0, x1, y1],
"box_score": p or null, "landmarks": [[x, y], ...], "scores": [...], "scheme": "68", "pose": {"yaw", "pitch",
"roll"} or null}, ...]}`` (pose in degrees, :mod:`awing.pose`); coordinates are
0-based original-image pixels (pixel centres on integers), the exact float32 values, never rounded
(:class:`awing.aligner.Face`).

``--boxes FILE``: a JSON object mapping images to their face boxes, ``{"photo.jpg": [[x0, y0, x1, y1], ...]}``
(a fifth score column is ignored); keys are matched against the path as listed, its path relative to the folder
input, then its file name. The boxes replace detection and are used as the model's own box convention. An image
without an entry fails.

Video files, webcam indices and (``--video``) folders of frames are tracked, one JSON line per frame:
:mod:`awing.video_cli`. Without ``--model`` or ``--weights`` they use the bundled **fast** landmark model
(:data:`VIDEO_MODEL`), images the default one.

Exit codes: 0 every input done; 1 some inputs failed (each named on stderr; the others are processed); 2 a usage
error (bad options, an unreadable ``--boxes`` file, weights that are missing or invalid, an unavailable device).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import IO, Any

__all__ = ["add_predict_parser", "expand_inputs", "run_predict"]

FORMATS = ("json", "jsonl", "pts")
VIDEO_MODEL = "fast"
"""The bundled landmark model of video inputs when neither ``--model`` nor ``--weights`` is given: tracking runs the
landmark network on every frame and the detector on one in ``--detect-every``, so the landmark stage sets the frame
rate (640 x 480, one face, 2 threads: 65-66 frames/s against 32 with the default model in one session; README,
Video), at 0.18 points of AFLW2000-3D box NME (2.79 % against 2.61 %)."""
JSONL_NAME = "predictions.jsonl"
_GLOB_CHARS = frozenset("*?[")


class UsageError(ValueError):
    """A problem with the command line itself (exit code 2)."""


@dataclass(frozen=True)
class InputFile:
    """An image to process: its path and the output name stem (``PurePath``, sub-folders kept)."""

    path: Path
    name: PurePath
    key: str  # path relative to a folder input (for --boxes look-up), else the path as listed


def expand_inputs(inputs: list[str], recursive: bool) -> tuple[list[InputFile], list[str]]:
    """Command-line inputs -> image files and the messages of the inputs that gave none.

    A file is taken whatever its suffix (reading decides); a folder gives its images; a pattern with glob
    characters gives the files it matches. A missing path, an empty folder and a pattern without a match each
    give one message.
    """
    from awing.imread import list_images

    files: list[InputFile] = []
    errors: list[str] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            try:
                found = list_images(path, recursive)
            except OSError as err:
                errors.append(f"{text}: cannot list this folder: {err.strerror or err}")
                continue
            if not found:
                where = "this folder or its sub-folders" if recursive else "this folder (--recursive: sub-folders too)"
                errors.append(f"{text}: no image files in {where}")
            for p in found:
                rel = p.relative_to(path)
                files.append(InputFile(p, rel.with_suffix(""), rel.as_posix()))
        elif path.is_file():
            files.append(InputFile(path, PurePath(path.stem), text))
        elif _GLOB_CHARS & set(text):
            matches = sorted(m for m in _glob(text, recursive) if m.is_file())
            if not matches:
                errors.append(f"{text}: no file matches this pattern")
            files.extend(InputFile(m, PurePath(m.stem), str(m)) for m in matches)
        else:
            errors.append(f"{text}: no such file or folder")
    return files, errors


def _glob(pattern: str, recursive: bool) -> list[Path]:
    """Paths matching ``pattern``, as :func:`glob.glob` (``**`` is ``*`` unless ``recursive``; hidden names only
    when a pattern part starts with a dot), except that ``**`` never follows a symbolic link to a folder."""
    parts = PurePath(pattern).parts
    first = next(i for i, part in enumerate(parts) if _GLOB_CHARS & set(part))
    root = Path(*parts[:first]) if first else Path()
    rest = [part if recursive else part.replace("**", "*") for part in parts[first:]]
    dotted = any(part.startswith(".") for part in rest)
    matches = root.glob(str(PurePath(*rest)))
    return [m for m in matches if dotted or not any(n.startswith(".") for n in m.relative_to(root).parts)]


def _read_boxes(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--boxes file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--boxes file {path} cannot be read: {err}") from None
    except json.JSONDecodeError as err:
        raise UsageError(f"--boxes file {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--boxes file {path} must hold a JSON object {{image: [[x0, y0, x1, y1], ...]}}")
    return data


def _boxes_for(item: InputFile, table: dict[str, Any]) -> Any:
    keys = list(dict.fromkeys((str(item.path), item.path.as_posix(), item.key, item.path.name)))
    for key in keys:
        if key in table:
            return table[key]
    raise KeyError(f"{item.path}: no entry in the --boxes file (tried {', '.join(map(repr, keys))})")


class _Names:
    """Output files per image without collisions: the stem first, the full file name when the stem is taken."""

    def __init__(self) -> None:
        self.used: set[PurePath] = set()

    def claim(self, item: InputFile, suffixes: list[str]) -> list[PurePath]:
        full = item.name.with_name(item.path.name)
        numbered = (full.with_name(f"{item.name.name}_{k}{item.path.suffix}") for k in itertools.count(2))
        for stem in itertools.chain((item.name, full), numbered):
            names = [stem.with_name(stem.name + suffix) for suffix in suffixes]
            if not self.used & set(names):
                self.used.update(names)
                return names
        raise AssertionError("unreachable")


def _atomic(path: Path, write: Any) -> None:
    """``write(tmp)`` into a temporary file beside ``path``, then rename it to ``path``; ``OSError`` naming
    ``path`` on failure (the temporary file removed, an earlier ``path`` untouched)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise OSError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _write_text(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8", errors="backslashreplace"))


def _json_line(record: dict[str, Any], ascii_only: bool) -> str:
    """Strict JSON (``allow_nan=False``; the records hold ``None`` for non-finite numbers) and a newline."""
    return json.dumps(record, ensure_ascii=ascii_only, allow_nan=False) + "\n"


def _save_vis(path: Path, image: Any, faces: list) -> None:
    import cv2
    import numpy as np

    from awing.viz import draw_faces

    if faces:
        boxes, scores = np.stack([f.box for f in faces]), [f.box_score for f in faces]
        image = draw_faces(image, np.stack([f.landmarks for f in faces]), boxes, scores)
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise OSError(f"cannot encode the overlay {path}")
    _atomic(path, lambda tmp: tmp.write_bytes(buffer.tobytes()))


class _Writer:
    """Writes one image's result in the chosen format (see the module docstring)."""

    def __init__(self, fmt: str, out: Path | None, vis: Path | None, stream: IO[str]) -> None:
        self.fmt, self.out, self.vis = fmt, out, vis
        self.names, self.vis_names = _Names(), _Names()
        self.stream = stream
        self.lines: IO[bytes] | None = None  # --out with jsonl: unbuffered, so a failed line can be cut back
        if out is not None and fmt == "jsonl":
            out.mkdir(parents=True, exist_ok=True)
            self.lines = (out / JSONL_NAME).open("wb", buffering=0)

    def close(self) -> None:
        """Close the JSON-lines file; ``OSError`` naming it when that fails."""
        if self.lines is not None:
            try:
                self.lines.close()
            except OSError as err:
                raise OSError(f"cannot write {self.out / JSONL_NAME}: {err.strerror or err}") from None

    def _append_line(self, line: str) -> None:
        """One whole line at the end of the JSON-lines file, or none: a failed write is truncated away."""
        assert self.lines is not None
        start = self.lines.tell()
        data = line.encode("utf-8", errors="backslashreplace")
        try:
            view = memoryview(data)
            while view:
                view = view[self.lines.write(view) :]
        except OSError as err:
            try:
                self.lines.truncate(start)
                self.lines.seek(start)
            except OSError:
                pass
            raise OSError(f"cannot write {self.out / JSONL_NAME}: {err.strerror or err}") from None

    def write(self, item: InputFile, result: Any) -> None:
        from awing.data.io import write_pts

        record = result.to_dict()
        if self.lines is not None:
            self._append_line(_json_line(record, ascii_only=False))
        elif self.out is None:
            self.stream.write(_json_line(record, ascii_only=True))
            self.stream.flush()
        elif self.fmt == "json":
            (name,) = self.names.claim(item, [".json"])
            _write_text(self.out / name, _json_line(record, ascii_only=False))
        else:
            suffixes = [".pts"] + [f"_{i}.pts" for i in range(1, len(result.faces))]
            names = self.names.claim(item, suffixes) if result.faces else []
            for face, name in zip(result.faces, names, strict=True):
                _atomic(self.out / name, lambda tmp, face=face: write_pts(tmp, face.landmarks))
        if self.vis is not None:
            (name,) = self.vis_names.claim(item, [".jpg"])
            _save_vis(self.vis / name, result.image, result.faces)


def _load_aligner(args: argparse.Namespace, model: str | None) -> Any:
    """The aligner of the options, with the bundled landmark ``model`` when no ``--weights`` are given."""
    from awing.aligner import BUNDLED, OPENCV, FaceAligner

    if args.detector == "none" or args.boxes is not None:  # --boxes: every image has its boxes or fails
        detector = None
    elif args.detector == "opencv":
        detector = OPENCV
    else:
        detector = BUNDLED if args.detector_weights is None else args.detector_weights
    try:
        return FaceAligner.from_pretrained(
            args.weights,
            args.device,
            model=model,
            detector=detector,
            batch_size=args.batch_size,
            flip_test=args.flip_test,
            det_threshold=args.det_threshold,
            backend=args.backend,
            threads=args.threads,
        )
    except (FileNotFoundError, ValueError, ImportError) as err:
        raise UsageError(str(err)) from None


def run_predict(args: argparse.Namespace) -> int:
    """The ``awing predict`` command: returns the exit code (module docstring)."""
    try:
        return _run(args)
    except UsageError as err:
        print(f"awing predict: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("awing predict: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # our messages name the file; not OpenCV's
    if args.format == "pts" and args.out is None:
        raise UsageError("--format pts writes one file per face: give --out DIR")
    if args.detector != "awing" and (args.detector_weights is not None or args.det_threshold is not None):
        raise UsageError(
            f"--{'detector-weights' if args.det_threshold is None else 'det-threshold'} needs --detector awing"
        )
    from awing.video_cli import run_videos, split_video_inputs

    videos, images = split_video_inputs(args.inputs, args.video)
    if videos and args.boxes is not None:
        raise UsageError("--boxes applies to images, not to video inputs (faces are detected and tracked)")
    table = None if args.boxes is None else _read_boxes(args.boxes)
    items, errors = expand_inputs(images, args.recursive)
    for message in errors:
        print(f"awing predict: {message}", file=sys.stderr)
    failures = len(errors)
    boxes = None
    if table is not None:
        kept, boxes = [], []
        for item in items:
            try:
                boxes.append(_boxes_for(item, table))
                kept.append(item)
            except KeyError as err:
                print(f"awing predict: {err.args[0]}", file=sys.stderr)
                failures += 1
        items = kept
    # Loaded before giving up on the inputs: a usage error outranks failed inputs.
    video_model = args.model or (VIDEO_MODEL if args.weights is None else None)
    wanted = ([video_model] if videos else []) + ([args.model] if items or not videos else [])
    aligners = {model: _load_aligner(args, model) for model in dict.fromkeys(wanted)}
    if videos:
        failures += run_videos(aligners[video_model], videos, args)
    if not items:
        return 1 if failures or not videos else 0
    try:
        writer = _Writer(args.format, args.out, args.save_vis, sys.stdout)
    except OSError as err:
        raise UsageError(f"cannot open the output in {args.out}: {err}") from None
    results = aligners[args.model].predict_files(
        [item.path for item in items],
        boxes,
        keep_images=args.save_vis is not None,
        progress=False if args.no_progress else None,
    )
    try:
        for item, result in zip(items, results, strict=True):
            if result.error is not None:
                print(f"awing predict: {result.error}", file=sys.stderr)
                failures += 1
                continue
            try:
                writer.write(item, result)
            except OSError as err:
                print(f"awing predict: {item.path}: {err}", file=sys.stderr)
                failures += 1
    finally:
        try:
            writer.close()
        except OSError as err:
            print(f"awing predict: {err}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0


def add_landmark_model_options(p: argparse.ArgumentParser) -> None:
    """``--weights W`` and ``--model accurate|fast`` (a bundled model), shared by ``awing predict`` and ``align``."""
    p.add_argument("--weights", type=Path, default=None, metavar="W", help="landmark weights (default: bundled)")
    p.add_argument(
        "--model",
        choices=("accurate", "fast"),  # awing.aligner.LANDMARK_MODELS, not imported here (start-up time)
        default=None,
        help="bundled landmark model: accurate (2.61 %% NME on AFLW2000-3D; the default for images) or fast (2.79 %%, "
        "about 2x faster per face; awing predict's default for videos; README, Results); not with --weights",
    )


def int_in_range(low: int, high: int | None = None):
    """An argparse ``type`` for an integer in ``[low, high]`` (no upper bound when ``high`` is None)."""
    wanted = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
        return value

    return parse


_positive_int = int_in_range(1)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def add_predict_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``awing predict``; its ``run`` returns the exit code."""
    p = subparsers.add_parser(
        "predict",
        help="landmarks of every face in images (JSON, JSON lines or .pts; overlays)",
        description="Detect faces and predict their landmarks in original-image pixels. Results go to stdout (one "
        "JSON object per image and line) or to --out; messages and the progress bar go to stderr.",
        epilog="Exit codes: 0 all inputs done; 1 some inputs failed (named on stderr, the rest processed); 2 usage "
        "error. Weights default to the models bundled with awing.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files, folders, glob patterns, videos or webcam indices"
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default: JSON lines on stdout)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="json",
        help="output format with --out (default json). json/jsonl coordinates are 0-based pixels; pts files are "
        "1-based, the iBUG .pts convention (awing.data.io.read_pts reads them back to 0-based)",
    )
    p.add_argument("--save-vis", type=Path, default=None, metavar="DIR", help="write overlay pictures to DIR")
    p.add_argument(
        "--boxes", type=Path, default=None, metavar="FILE", help="JSON of face boxes per image (no detection)"
    )
    p.add_argument(
        "--detector",
        choices=("awing", "opencv", "none"),
        default="awing",
        help="face detector: awing (awing's bundled network, the default), opencv (OpenCV's Haar cascade, frontal "
        "faces; box_score is then a cascade level weight, not a probability), none (each image is one face) "
        "(default awing)",
    )
    p.add_argument("--detector-weights", type=Path, default=None, metavar="FILE", help="awing detector .safetensors")
    p.add_argument(
        "--det-threshold",
        type=_probability,
        default=None,
        metavar="T",
        help="awing detector's face-score threshold in [0, 1] (default: the one stored with its weights, chosen on "
        "validation)",
    )
    add_landmark_model_options(p)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--batch-size", type=_positive_int, default=8, metavar="N", help="images per batch (default 8)")
    p.add_argument("--flip-test", action="store_true", help="average with the mirrored face's prediction")
    p.add_argument(
        "--backend",
        choices=("auto", "torch", "onnxruntime"),
        default="auto",
        help="network runtime: auto (onnxruntime on the CPU when installed, else torch), torch or onnxruntime "
        "(default auto)",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="CPU threads of the networks (default: the CPUs available, at most 4)",
    )
    p.add_argument("--recursive", action="store_true", help="include sub-folders of folder inputs (and ** in globs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    v = p.add_argument_group(
        "video",
        "video files (.mp4, .avi, .mov, ...), webcam indices (0 = the first webcam) and, with --video, folders of "
        "frames are tracked: one JSON line per frame (to --out DIR/<name>.jsonl or stdout), --save-vis DIR writes "
        "the overlay video",
    )
    v.add_argument("--video", action="store_true", help="treat folder inputs as the frames of one video each")
    v.add_argument("--every", type=_positive_int, default=1, metavar="N", help="process every N-th frame (default 1)")
    v.add_argument("--max-frames", type=_positive_int, default=None, metavar="N", help="stop after N frames")
    v.add_argument(
        "--detect-every",
        type=_positive_int,
        default=10,
        metavar="K",
        help="run the detector at least every K processed frames; between, boxes come from the landmarks (default 10)",
    )
    v.add_argument("--no-smooth", action="store_true", help="no One-Euro smoothing of the tracked landmarks")
    p.set_defaults(run=run_predict)
    return p
