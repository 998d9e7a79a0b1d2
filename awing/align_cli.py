"""``awing align INPUTS --out DIR``: one aligned crop per face (:mod:`awing.face_crops`), for recognition or data sets.

Inputs as for ``awing predict`` (image files, folders, glob patterns). Every face found gets
``DIR/<name>_<i>.png`` (``<name>``: the image's stem, with its sub-folders below a folder input; ``i``: the face's
rank, 0 = the highest detector score), a ``--size`` x ``--size`` RGB crop made by the least-squares similarity of
five points from the 68 (eye centres, nose tip, mouth corners) onto the ``--template`` (``arcface``: InsightFace's
112 x 112 points; ``ffhq``: facexlib's 512 x 512 FFHQ points; both scaled to ``--size``). PNG, written to a
temporary file and renamed.

Exit codes: 0 every input done; 1 some inputs failed (each named on stderr; the others processed); 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from awing.predict_cli import add_landmark_model_options, int_in_range

__all__ = ["add_align_parser", "run_align"]


def _write_png(path: Path, rgb) -> None:
    import cv2

    ok, buffer = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"cannot encode {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    buffer.tofile(tmp)
    os.replace(tmp, path)


def run_align(args: argparse.Namespace) -> int:
    """The ``awing align`` command: returns the exit code (module docstring)."""
    from awing.aligner import BUNDLED, OPENCV, FaceAligner
    from awing.predict_cli import expand_inputs

    detector = {"awing": BUNDLED, "opencv": OPENCV, "none": None}[args.detector]
    try:
        aligner = FaceAligner.from_pretrained(args.weights, args.device, model=args.model, detector=detector)
    except (FileNotFoundError, ValueError) as err:
        print(f"awing align: error: {err}", file=sys.stderr)
        return 2
    if aligner.scheme.name not in ("68", "5"):
        print(f"awing align: error: the model's scheme {aligner.scheme.name} has no five points", file=sys.stderr)
        return 2
    items, errors = expand_inputs(args.inputs, args.recursive)
    for message in errors:
        print(f"awing align: {message}", file=sys.stderr)
    failures, crops = len(errors), 0
    results = aligner.predict_files([item.path for item in items], keep_images=True, progress=not args.no_progress)
    try:
        for item, result in zip(items, results, strict=True):
            if result.error is not None:
                print(f"awing align: {result.error}", file=sys.stderr)
                failures += 1
                continue
            try:
                for i, face in enumerate(result.faces):
                    crop = face.aligned(result.image, args.size, args.template)
                    _write_png(args.out / item.name.with_name(f"{item.name.name}_{i}.png"), crop)
                    crops += 1
            except OSError as err:
                print(f"awing align: {item.path}: cannot write the crop: {err}", file=sys.stderr)
                failures += 1
    except KeyboardInterrupt:
        print("awing align: interrupted", file=sys.stderr)
        return 130
    print(f"awing align: {crops} crop(s) from {len(items)} image(s) in {args.out}", file=sys.stderr)
    return 1 if failures else 0


def add_align_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``awing align``; its ``run`` returns the exit code."""
    from awing.face_crops import TEMPLATES

    p = subparsers.add_parser(
        "align",
        help="aligned face crops (similarity transform of 5 points onto the ArcFace or FFHQ template)",
        description="Detect faces, predict their 68 points and write one aligned PNG crop per face to --out.",
        epilog="Exit codes: 0 all inputs done; 1 some inputs failed (named on stderr, the rest processed); 2 usage "
        "error.",
    )
    p.add_argument("inputs", nargs="+", metavar="IMG|DIR|GLOB", help="image files, folders or glob patterns")
    p.add_argument("--out", type=Path, required=True, help="output folder: <name>_<i>.png per face")
    p.add_argument("--size", type=int_in_range(8, 4096), default=112, help="crop side in pixels (default 112)")
    p.add_argument(
        "--template", choices=sorted(TEMPLATES), default="arcface", help="5-point template (default arcface)"
    )
    p.add_argument("--detector", choices=("awing", "opencv", "none"), default="awing", help="face detector")
    add_landmark_model_options(p)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--recursive", action="store_true", help="include sub-folders of folder inputs (and ** in globs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run_align)
    return p
