"""Large-face detection training images: AFLW-21 training crops, alone and in 2 x 2 mosaics, merged with Face Mask
Detection.

Face Mask Detection (datasets/face-mask-detection/README.md) has mostly small faces in scenes (median box side
25 px), so a detector trained on it alone misses the large faces of portraits. This script writes a VOC folder that
holds both: symbolic links to every face-mask image and annotation (same names, so the fixed CRC-32 train/val split
of `awing.detection.data.is_validation` keeps each face-mask image on its side), plus ``--count`` mosaics of four
AFLW-21 **training-split** crops (120 x 120 each, a 240 x 240 image, four faces) and ``--singles`` single crops (a
120 x 120 image, one face filling about two thirds of it). The singles are the portraits: after the random square
crop and the resize to 320 (``configs/detector_face_mask.yaml``) their faces are 190 to 600 pixels, which neither
face-mask nor the mosaics supply, and a detector trained without them scatters false boxes around large faces.
Singles and mosaics use different faces. AFLW2000-3D is never used.

Face box of an AFLW crop: the box rule calibrated against dlib's HOG detector in datasets/aflw68/README.md: a
square of side 1.156 s centred at c + (-0.006, -0.116) s, with c and s the centre and the longer side of the tight
box of the visible AFLW points without the ears (12, 16). Boxes are clipped to their tile. The names start
with ``aflw_mosaic_`` and ``aflw_single_`` and the split rule sends about 1 in 7 of them to validation, so
validation AP on this folder mixes the sources: evaluate on the face-mask folder alone for face-mask figures.

    python scripts/build_detection_mosaics.py --out data/detection_mix            # 1,500 mosaics (6,000 faces)
    python scripts/build_detection_mosaics.py --out data/detection_mix3 --singles 3000   # + 3,000 single crops
    awing train-detector configs/detector_face_mask.yaml data.root=data/detection_mix ...
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np
from build_aflw68 import reference_boxes, teacher_boxes

from awing.data import AFLWDataset

BOX_SCALE, BOX_OFFSET = 1.156, (-0.006, -0.116)
TILE = 120


def aflw_face_box(points: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """(21, 2) crop points and (21,) visibility -> the dlib-like square face box (4,) ``x0, y0, x1, y1``.

    The rule and its constants are build_aflw68.py's (:func:`reference_boxes`, :func:`teacher_boxes`).

    >>> pts = np.zeros((21, 2), np.float32); pts[:, 0] = np.linspace(20, 100, 21); pts[:, 1] = np.linspace(30, 90, 21)
    >>> [round(float(v), 2) for v in aflw_face_box(pts, np.ones(21, bool))]
    [13.28, 4.48, 105.76, 96.96]
    """
    reference = reference_boxes(points[None], np.asarray(visible, bool)[None])
    return teacher_boxes(reference, BOX_SCALE, BOX_OFFSET)[0].astype(np.float32)


def voc_xml(
    filename: str, size: int | tuple[int, int], boxes: list[np.ndarray], difficult: np.ndarray | None = None
) -> str:
    """A PASCAL VOC annotation with 1-based integer-rounded boxes (VOC's convention), every object a face;
    ``size`` is the side of a square image or ``(width, height)``; ``difficult`` (one bool per box) marks ignore
    regions."""
    keys = ("xmin", "ymin", "xmax", "ymax")
    width, height = (size, size) if isinstance(size, int) else size
    flags = np.zeros(len(boxes), bool) if difficult is None else np.asarray(difficult, bool)
    objects = "".join(
        f"<object><name>face</name><difficult>{int(flag)}</difficult><bndbox>"
        + "".join(f"<{k}>{round(float(v)) + 1}</{k}>" for k, v in zip(keys, box, strict=True))
        + "</bndbox></object>"
        for box, flag in zip(boxes, flags, strict=True)
    )
    return (
        f"<annotation><filename>{filename}</filename><size><width>{width}</width><height>{height}</height>"
        f"<depth>3</depth></size>{objects}</annotation>\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--aflw", default="../shared/data/aflw-21", help="AFLW-21 root")
    parser.add_argument("--face-mask", default="../shared/data/face-mask-detection", help="Face Mask Detection root")
    parser.add_argument("--out", required=True, help="output VOC folder (images/, annotations/)")
    parser.add_argument("--count", type=int, default=1500, help="number of 2 x 2 mosaics (default 1500)")
    parser.add_argument("--singles", type=int, default=0, help="number of single-crop images (default 0)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    mask_root = Path(args.face_mask).resolve()
    for sub in ("images", "annotations"):
        for src in sorted((mask_root / sub).iterdir()):
            link = out / sub / src.name
            if not link.exists():
                os.symlink(src, link)

    faces = AFLWDataset(args.aflw, "train")
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(faces))
    faces_in = iter(int(i) for i in np.resize(order, 4 * args.count + args.singles))
    images = [(f"aflw_mosaic_{m:05d}", 2) for m in range(args.count)]
    images += [(f"aflw_single_{m:05d}", 1) for m in range(args.singles)]
    for name, tiles in images:
        canvas = np.zeros((tiles * TILE, tiles * TILE, 3), np.uint8)
        boxes = []
        for t in range(tiles * tiles):
            face = faces[next(faces_in)]
            if face.image.shape[:2] != (TILE, TILE):
                raise ValueError(f"{face.image_path}: expected a {TILE} x {TILE} AFLW crop, got {face.image.shape[:2]}")
            dy, dx = TILE * (t // 2), TILE * (t % 2)
            canvas[dy : dy + TILE, dx : dx + TILE] = face.image
            box = np.clip(aflw_face_box(face.landmarks_img, face.visible), 0, TILE - 1)
            boxes.append(box + np.array([dx, dy, dx, dy], np.float32))
        cv2.imwrite(str(out / "images" / f"{name}.jpg"), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        (out / "annotations" / f"{name}.xml").write_text(voc_xml(f"{name}.jpg", tiles * TILE, boxes))
    print(f"{out}: {args.count} mosaics, {args.singles} single crops + links to {mask_root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
