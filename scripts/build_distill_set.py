"""Distillation training set: transformed face-mask and AFLW training images and generated negatives, labelled by
human boxes and by the teacher detectors (ULFD-640 and YuNet), written as a VOC folder for ``data.name=distill``.

Sources (never a validation or test image): the face-mask **train** split (CRC-32 rule), AFLW-21 **training** crops
(their face box: ``build_detection_mosaics.aflw_face_box``) and the generated training negatives
(``awing.detection.negatives``, seed ``TRAIN_SEED``; the test set uses another seed). Per face-mask train image:
the original, a zoom-out to 25-60 % on a negative texture, and a degraded copy (blur, JPEG, grey or colour, drawn in
turn); then 2 x 2 face-mask mosaics (one per two images), AFLW mosaics (2 x 2 and 3 x 3 crops), dense AFLW mosaics
(``--dense-aflw-mosaics``: 640 x 480 grids of 4 x 5 to 10 x 13 crops, so unmasked faces of every pose at 35 to 90 px,
the size of faces in group photos) and negatives, a third of them degraded: ``--negatives`` in kind order, then
``--hard-negatives`` mined from a pool of ``--negative-pool`` more training-seed negatives: those on which
``--mining-detector`` (the bundled detector by default) scores highest (hard-negative mining, never on the test
seed). Everything is drawn from ``--seed``, so the folder is reproducible.

Labels (``awing.detection.distill.fuse_targets``): human boxes are faces; a teacher box not on a human face is a face
when ULFD-640 scores it >= 0.9 or YuNet >= 0.9, an ignore region (VOC ``difficult``) from 0.5 / 0.6; on negatives
no teacher box is kept (they are no-face by construction). Every image's raw teacher boxes and scores are kept in
``teacher_labels.jsonl`` beside the annotations. ``val`` links to the face-mask folder, whose CRC-32 val split is
the validation set of a ``data.name=distill`` run.

The teachers are read from ``--models`` (``../shared/models/face-detectors``); they and this folder are never
committed (``data/`` is ignored).

    PYTHONPATH=. python scripts/build_distill_set.py --out data/distill
    awing train-detector configs/detector_distill.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from build_detection_mosaics import aflw_face_box, voc_xml
from tqdm import tqdm

from awing.aligner import BUNDLED_DETECTOR
from awing.data import AFLWDataset
from awing.data.io import read_image
from awing.detection import FaceDetector, build_detection_dataset
from awing.detection.distill import DEGRADATIONS, degrade, fuse_targets, mosaic, zoom_out
from awing.detection.negatives import TRAIN_SEED, negative_image
from awing.detection.teachers import build_teacher

TEACHERS = {"ulfd640": (0.9, 0.5), "yunet": (0.9, 0.6)}
"""Teacher -> (confident, uncertain) score thresholds."""
DENSE_GRIDS = ((4, 5), (6, 8), (8, 10), (10, 13))
"""(rows, cols) of the dense AFLW mosaics, in turn: 120 px crops fitted into 128 x 96 down to 49 x 48 px tiles."""
POOL_OFFSET = 20_000
"""First training-seed index of the hard-negative pool: after the plain negatives, before the backgrounds (100,000)."""


def face_mask_images(
    root: Path, limit: int, rng: np.random.Generator, negatives: Iterator[np.ndarray]
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image, human boxes) for the face-mask train images (the first ``limit`` when > 0), their zoom-outs,
    degraded copies and mosaics."""
    records = build_detection_dataset("face_mask", root, "train", max_samples=limit).records
    loaded = [(Path(r.image_path).stem, read_image(r.image_path), r.boxes[~r.ignore]) for r in records]
    out = []
    for i, (stem, image, boxes) in enumerate(loaded):
        out.append((f"fm_{stem}", image, boxes))
        out.append((f"fm_{stem}_zoom", *zoom_out(image, boxes, float(rng.uniform(0.25, 0.6)), next(negatives), rng)))
        out.append((f"fm_{stem}_{DEGRADATIONS[i % 4]}", degrade(image, DEGRADATIONS[i % 4], rng), boxes))
    for m in range(len(loaded) // 2):
        picks = [loaded[int(j)] for j in rng.choice(len(loaded), 4, replace=False)]
        image, boxes = mosaic([p[1] for p in picks], [p[2] for p in picks], (640, 480), (2, 2), next(negatives))
        out.append((f"fm_mosaic_{m:04d}", image, boxes))
    return out


def crop_mosaic(
    crops: list, size: tuple[int, int], grid: tuple[int, int], background: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """AFLW 120 px training crops tiled on ``background`` (``distill.mosaic``) -> (image, their face boxes)."""
    boxes = [np.clip(aflw_face_box(c.landmarks_img, c.visible), 0, 119)[None] for c in crops]
    return mosaic([c.image for c in crops], boxes, size, grid, background)


def aflw_images(root: Path, count: int, rng: np.random.Generator, negatives: Iterator[np.ndarray]) -> list:
    """(name, image, boxes) of ``count`` AFLW training-crop mosaics (2 x 2 or 3 x 3, 120 px tiles)."""
    faces = AFLWDataset(root, "train")
    order = iter(rng.permutation(len(faces)))
    out = []
    for m in range(count):
        n = 2 if m % 2 == 0 else 3
        crops = [faces[int(next(order))] for _ in range(n * n)]
        out.append((f"aflw_mosaic_{m:04d}", *crop_mosaic(crops, (120 * n, 120 * n), (n, n), next(negatives))))
    return out


def dense_aflw_images(root: Path, count: int, rng: np.random.Generator, negatives: Iterator[np.ndarray]) -> list:
    """(name, image, boxes) of ``count`` 640 x 480 mosaics of AFLW training crops, grids of :data:`DENSE_GRIDS`."""
    faces = AFLWDataset(root, "train")
    out = []
    for m in range(count):
        rows, cols = DENSE_GRIDS[m % len(DENSE_GRIDS)]
        crops = [faces[int(i)] for i in rng.choice(len(faces), rows * cols, replace=False)]
        out.append((f"aflw_dense_{m:04d}", *crop_mosaic(crops, (640, 480), (rows, cols), next(negatives))))
    return out


def hard_negatives(count: int, pool: int, detector_path: Path, threads: int) -> list[int]:
    """Indices (training seed) of the ``count`` negatives of ``pool`` on which the detector's best score is highest
    (none, and no detector run, for ``count`` 0)."""
    if count == 0:
        return []
    detector = FaceDetector.from_weights(detector_path, score_threshold=0.01, threads=threads)
    best = []
    for i in tqdm(range(POOL_OFFSET, POOL_OFFSET + pool), desc="mining negatives", file=sys.stderr, disable=None):
        scores = detector.detect(negative_image(TRAIN_SEED, i))["scores"]
        best.append(float(scores.max()) if len(scores) else 0.0)
    return [POOL_OFFSET + int(i) for i in np.argsort(best)[::-1][:count]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--face-mask", type=Path, default=Path("../shared/data/face-mask-detection"))
    parser.add_argument("--aflw", type=Path, default=Path("../shared/data/aflw-21"))
    parser.add_argument("--models", type=Path, default=Path("../shared/models/face-detectors"))
    parser.add_argument("--out", type=Path, required=True, help="output VOC folder")
    parser.add_argument("--max-face-mask", type=int, default=0, help="first N face-mask train images (0 = all)")
    parser.add_argument("--aflw-mosaics", type=int, default=600)
    parser.add_argument("--dense-aflw-mosaics", type=int, default=0)
    parser.add_argument("--negatives", type=int, default=400, help="generated no-face training images")
    parser.add_argument("--hard-negatives", type=int, default=0, help="mined no-face images (see the docstring)")
    parser.add_argument("--negative-pool", type=int, default=4000)
    parser.add_argument("--mining-detector", type=Path, default=BUNDLED_DETECTOR)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cv2.setNumThreads(args.threads)
    rng = np.random.default_rng(args.seed)
    backgrounds = (negative_image(TRAIN_SEED, 100_000 + i) for i in range(10**9))
    items = face_mask_images(args.face_mask, args.max_face_mask, rng, backgrounds)
    items += aflw_images(args.aflw, args.aflw_mosaics, rng, backgrounds)
    items += dense_aflw_images(args.aflw, args.dense_aflw_mosaics, rng, backgrounds)
    mined = hard_negatives(args.hard_negatives, args.negative_pool, args.mining_detector, args.threads)
    for i in [*range(args.negatives), *mined]:
        image = negative_image(TRAIN_SEED, i)
        items.append((f"neg_{i:05d}", degrade(image, DEGRADATIONS[i % 4], rng) if i % 3 == 0 else image, None))
    teachers = {name: build_teacher(name, args.models, min(TEACHERS[name]), args.threads) for name in TEACHERS}
    for sub in ("images", "annotations"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    if not (args.out / "val").exists():
        os.symlink(args.face_mask.resolve(), args.out / "val")
    counts = {"human": 0, "teacher": 0, "ignore": 0}
    with (args.out / "teacher_labels.jsonl").open("w", encoding="utf-8") as log:
        for name, image, human in tqdm(items, file=sys.stderr, disable=None):
            found = {t: teacher.detect_batch([image])[0] for t, teacher in teachers.items()}
            entry = {"image": f"{name}.jpg", "human": None if human is None else human.round(1).tolist()}
            entry.update({t: {k: v.round(3).tolist() for k, v in d.items()} for t, d in found.items()})
            log.write(json.dumps(entry) + "\n")
            if human is None:  # a generated negative: every teacher box is false
                boxes, ignore, extra = np.zeros((0, 4), np.float32), np.zeros(0, bool), np.zeros(0, bool)
            else:
                per_teacher = [(found[t]["boxes"], found[t]["scores"], *TEACHERS[t]) for t in TEACHERS]
                boxes, ignore, extra = fuse_targets(human, per_teacher)
            counts["human"] += int((~extra).sum())
            counts["teacher"] += int((extra & ~ignore).sum())
            counts["ignore"] += int(ignore.sum())
            height, width = image.shape[:2]
            boxes = np.clip(boxes, 0, [width - 1, height - 1] * 2)
            cv2.imwrite(str(args.out / "images" / f"{name}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])  # fmt: skip
            xml = voc_xml(f"{name}.jpg", (width, height), list(boxes), ignore)
            (args.out / "annotations" / f"{name}.xml").write_text(xml, encoding="utf-8")
    print(f"{args.out}: {len(items)} images; faces: {counts['human']} human, {counts['teacher']} from the teachers; "
          f"{counts['ignore']} ignore regions")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
