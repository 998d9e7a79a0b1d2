"""Extend an AFLW-68 build with the turned faces the teacher could not label, supervised by their human points only.

The teacher (dlib) fails beyond about 60 degrees of yaw, so AFLW-68 holds no such face and half of those between 30
and 60. This step adds, from AFLW-21's *training* split (the validation split stays the teacher-checked one), every
face with ``|yaw| >= --min-yaw`` that the build did not keep. Each gets the 16 AFLW points with exactly one 68-point
counterpart (brow ends and centres, eye corners, nose wings and tip, mouth corners, chin:
``awing.data.aflw68.AFLW21_TO_68``) where the annotator marked them visible; its other 68 points are NaN (not
labelled: weight 0 in training; the boundary target is drawn through the labelled points only).

Their box must follow the kept faces' rule, the tight box of the 68 points, which these faces lack. It is predicted
from the tight box of the visible human points without the ears (centre ``c``, ``s = max(w, h)``): centre
``c + (dx sign(yaw), dy) s``, width ``kw s``, height ``kh s``, with the medians over the kept faces whose yaw is in
``[--min-yaw, 60)`` (the poses closest to the added ones). ``build.json`` records them and their median error.

Run from the repository root (a few seconds)::

    python scripts/extend_aflw68_human.py --build data/aflw68 --out data/aflw68_human
    awing train configs/aflw68_cpu.yaml data.root=data/aflw68_human run.init_weights=runs/aflw68_cpu/best.safetensors

The output has the AFLW-68 layout (datasets/aflw68/README.md) plus ``boxes.npy`` (N, 4) float32; the kept faces come
first, unchanged, with their tight boxes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from build_aflw68 import reference_boxes

from awing.data import AFLWDataset
from awing.data.aflw import YAW_BINS, aflw_is_validation, yaw_bin
from awing.data.aflw68 import AFLW21_TO_68, BUILD_FORMAT
from awing.data.sample import tight_box

#: AFLW-21 point -> its single 68-point counterpart (the eye and mouth centres, means of several points, are left out).
SINGLE_COUNTERPART = {aflw: points[0] for aflw, points in AFLW21_TO_68.items() if len(points) == 1}


def reference_box(record) -> np.ndarray:
    """build_aflw68.py's reference box of one AFLW-21 record: the tight box of its visible points without the ears."""
    return reference_boxes(record.landmarks_img[None], record.visible[None])[0]


def box_terms(box68: np.ndarray, ref: np.ndarray, yaw: float) -> np.ndarray:
    """``(dx, dy, kw, kh)`` of a 68-point box relative to a reference box, in units of the reference's longer side;
    ``dx`` is signed by the yaw (the box shifts towards the side the face turns from), so both turns share it."""
    side = max(ref[2] - ref[0], ref[3] - ref[1])
    shift = ((box68[:2] + box68[2:]) / 2 - (ref[:2] + ref[2:]) / 2) / side
    return np.array([shift[0] * np.sign(yaw), shift[1], *((box68[2:] - box68[:2]) / side)])


def predicted_box(ref: np.ndarray, terms: np.ndarray, yaw: float) -> np.ndarray:
    side = max(ref[2] - ref[0], ref[3] - ref[1])
    centre = (ref[:2] + ref[2:]) / 2 + np.array([terms[0] * np.sign(yaw), terms[1]]) * side
    half = terms[2:] * side / 2
    return np.concatenate([centre - half, centre + half]).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=Path, default=Path("data/aflw68"), help="the AFLW-68 build to extend")
    parser.add_argument("--out", type=Path, default=Path("data/aflw68_human"))
    parser.add_argument("--min-yaw", type=float, default=30.0, help="add faces with |yaw| >= this (degrees)")
    parser.add_argument("--min-points", type=int, default=6, help="visible single-counterpart points a face needs")
    args = parser.parse_args(argv)

    info = json.loads((args.build / "build.json").read_text(encoding="utf-8"))
    if info.get("format") != BUILD_FORMAT:
        raise SystemExit(f"{args.build / 'build.json'}: format {info.get('format')!r}, expected {BUILD_FORMAT!r}")
    aflw_root = Path(info["aflw_root"])
    aflw_root = aflw_root if aflw_root.is_absolute() else (args.build / aflw_root)
    names = (args.build / "names.txt").read_text(encoding="utf-8").split()
    pts68 = np.load(args.build / "pts68.npy")
    yaw = np.load(args.build / "yaw_deg.npy")
    agreement = np.load(args.build / "agreement.npy")

    human = {
        Path(r.image_path).relative_to(aflw_root / "crops").as_posix(): r for r in AFLWDataset(aflw_root, "all").records
    }
    kept = set(names)

    # Box terms on the kept faces at the poses closest to the added ones.
    fit_rows = [i for i, name in enumerate(names) if args.min_yaw <= abs(yaw[i]) < 60]
    terms = np.array(
        [box_terms(tight_box(pts68[i]), reference_box(human[n]), yaw[i]) for i, n in ((i, names[i]) for i in fit_rows)]
    )
    median_terms = np.median(terms, axis=0)
    fit_error = np.median(np.abs(terms - median_terms), axis=0)

    added_names, added_pts, added_yaw, added_boxes = [], [], [], []
    for name, record in sorted(human.items()):
        if name in kept or aflw_is_validation(name) or abs(record.attributes["yaw_deg"]) < args.min_yaw:
            continue
        points = np.full((68, 2), np.nan, dtype=np.float32)
        for aflw, index in SINGLE_COUNTERPART.items():
            if record.visible[aflw]:
                points[index] = record.landmarks_img[aflw]
        if np.isfinite(points[:, 0]).sum() < args.min_points:
            continue
        added_names.append(name)
        added_pts.append(points)
        added_yaw.append(record.attributes["yaw_deg"])
        added_boxes.append(predicted_box(reference_box(record), median_terms, record.attributes["yaw_deg"]))

    args.out.mkdir(parents=True, exist_ok=True)
    boxes = np.concatenate([np.stack([tight_box(p) for p in pts68]), np.stack(added_boxes)]).astype(np.float32)
    (args.out / "names.txt").write_text("\n".join(names + added_names) + "\n", encoding="utf-8")
    np.save(args.out / "pts68.npy", np.concatenate([pts68, np.stack(added_pts)]).astype(np.float32))
    np.save(args.out / "yaw_deg.npy", np.concatenate([yaw, np.array(added_yaw)]).astype(np.float32))
    np.save(
        args.out / "agreement.npy", np.concatenate([agreement, np.full(len(added_names), np.nan)]).astype(np.float32)
    )
    np.save(args.out / "boxes.npy", boxes)
    counts = {b: sum(yaw_bin(y) == b for y in added_yaw) for b in YAW_BINS}
    labelled = np.isfinite(np.stack(added_pts)[:, :, 0]).sum(1)
    extension = {
        "source_build": os.path.relpath(args.build.resolve(), args.out.resolve()),
        "min_yaw": args.min_yaw,
        "min_points": args.min_points,
        "added_faces": len(added_names),
        "added_by_yaw_bin": counts,
        "labelled_points_per_added_face": {"median": float(np.median(labelled)), "min": int(labelled.min())},
        "box_terms": dict(zip(("dx", "dy", "kw", "kh"), np.round(median_terms, 4).tolist(), strict=True)),
        "box_terms_median_abs_error": dict(zip(("dx", "dy", "kw", "kh"), np.round(fit_error, 4).tolist(), strict=True)),
        "box_fit_faces": len(fit_rows),
    }
    out_info = dict(info, aflw_root=os.path.relpath(aflw_root.resolve(), args.out.resolve()), human_extension=extension)
    (args.out / "build.json").write_text(json.dumps(out_info, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(extension, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
