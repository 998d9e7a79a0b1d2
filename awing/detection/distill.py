"""Distillation data: image transforms that widen a small face set, and the fusion of human and teacher boxes.

The teachers (:mod:`awing.detection.teachers`) label every image the student trains on, including transformed
ones, so the student sees faces the people did not box (crowds in the background) and far more scales and
degradations than the photos hold. The transforms map the human boxes exactly (xyxy, image pixels):

- :func:`zoom_out`: the image shrunk by ``factor`` and pasted at a random place on a canvas of its own size filled
  with ``background`` (small faces in context).
- :func:`mosaic`: up to ``rows x cols`` images, each fitted (aspect kept) into its tile of the output, the rest of
  the tile from ``background``.
- :func:`degrade`: one of Gaussian blur, JPEG re-encoding, grey, or a colour change (channel order, gamma); the
  geometry is unchanged.

:func:`fuse_targets` turns human boxes and teacher detections into the training boxes and ignore regions (its
docstring gives the rule).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from awing.detection.anchors import box_iou
from awing.detection.nms import nms

__all__ = ["DEGRADATIONS", "degrade", "fuse_targets", "mosaic", "zoom_out"]

DEGRADATIONS = ("blur", "jpeg", "grey", "colour")


def _fit(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, float]:
    """``image`` resized (aspect kept) to fit ``width x height``, and its scale."""
    k = min(width / image.shape[1], height / image.shape[0])
    size = (max(1, round(image.shape[1] * k)), max(1, round(image.shape[0] * k)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR), k


def _scale_boxes(boxes: np.ndarray, k: float, dx: float, dy: float) -> np.ndarray:
    """Box edges scaled by ``k`` about the origin then shifted: ``x' = k x + dx`` -> ``(N, 4)`` float32."""
    return (np.asarray(boxes, np.float32).reshape(-1, 4) * k + np.array([dx, dy, dx, dy], np.float32)).astype(
        np.float32
    )


def zoom_out(
    image: np.ndarray, boxes: np.ndarray, factor: float, background: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``image`` ``(H, W, 3)`` shrunk by ``factor`` in (0, 1] onto ``background`` resized to ``H x W``; its boxes
    ``(N, 4)`` follow -> (image, boxes)."""
    if not 0 < factor <= 1:
        raise ValueError(f"factor must be in (0, 1], got {factor}")
    height, width = image.shape[:2]
    canvas = cv2.resize(background, (width, height), interpolation=cv2.INTER_LINEAR)
    small, k = _fit(image, max(1, round(width * factor)), max(1, round(height * factor)))
    x = int(rng.integers(0, width - small.shape[1] + 1))
    y = int(rng.integers(0, height - small.shape[0] + 1))
    canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
    return canvas, _scale_boxes(boxes, k, x, y)


def mosaic(
    images: Sequence[np.ndarray], boxes: Sequence[np.ndarray], size: tuple[int, int], grid: tuple[int, int],
    background: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``images`` (at most ``rows x cols``) fitted into the tiles of a ``size = (width, height)`` canvas, row by row,
    over ``background``; the boxes follow -> (image, boxes ``(N, 4)``)."""
    rows, cols = grid
    if not 0 < len(images) <= rows * cols or len(images) != len(boxes):
        raise ValueError(f"need 1 to {rows * cols} images with one box array each, got {len(images)}, {len(boxes)}")
    width, height = size
    canvas = cv2.resize(background, (width, height), interpolation=cv2.INTER_LINEAR)
    tile_w, tile_h = width // cols, height // rows
    out = []
    for t, (image, face_boxes) in enumerate(zip(images, boxes, strict=True)):
        fitted, k = _fit(image, tile_w, tile_h)
        x = (t % cols) * tile_w + (tile_w - fitted.shape[1]) // 2
        y = (t // cols) * tile_h + (tile_h - fitted.shape[0]) // 2
        canvas[y : y + fitted.shape[0], x : x + fitted.shape[1]] = fitted
        out.append(_scale_boxes(face_boxes, k, x, y))
    return canvas, np.concatenate(out, axis=0) if out else np.zeros((0, 4), np.float32)


def degrade(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``image`` RGB uint8 with one degradation of :data:`DEGRADATIONS` (module docstring); same shape."""
    if kind == "blur":
        return cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.8, 2.5)))
    if kind == "jpeg":
        ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(8, 40))])
        return cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if ok else image
    if kind == "grey":
        return np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    if kind == "colour":
        gamma = float(rng.uniform(0.5, 2.0))
        table = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(cv2.LUT(image, table)[..., rng.permutation(3)])
    raise ValueError(f"unknown degradation {kind!r}; valid: {', '.join(DEGRADATIONS)}")


def fuse_targets(
    human: np.ndarray,
    teachers: Sequence[tuple[np.ndarray, np.ndarray, float, float]],
    same_face_iou: float = 0.3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training boxes from human boxes and teacher detections.

    Args:
        human: ``(H, 4)`` human boxes (always faces, whatever the teachers say).
        teachers: per teacher ``(boxes (T, 4), scores (T,), confident, uncertain)``: its detections and two
            score thresholds of its own scale.
        same_face_iou: a teacher box overlapping a human box at this IoU or more is that face (dropped).

    Rule: the teacher boxes scoring at least their teacher's ``uncertain`` threshold and not on a human face are
    pooled and merged by NMS at IoU 0.5 (the teachers are ranked by score over ``confident``, so a confident
    box wins); a surviving box is a face when its score reaches its teacher's ``confident`` threshold, else an
    ignore region (neither face nor background: a face the teachers doubt must not be taught as background).

    Returns:
        ``boxes`` ``(N, 4)`` float32 (human first), ``ignore`` ``(N,)`` bool, ``from_teacher`` ``(N,)`` bool.
    """
    human = np.asarray(human, np.float32).reshape(-1, 4)
    pooled, ranks = [], []
    for boxes, scores, confident, uncertain in teachers:
        boxes, scores = np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32).reshape(-1)
        keep = scores >= uncertain
        if len(human) and keep.any():
            overlap = box_iou(_tensor(boxes[keep]), _tensor(human)).amax(dim=1).numpy()
            keep[np.flatnonzero(keep)[overlap >= same_face_iou]] = False
        pooled.append(boxes[keep])
        ranks.append(scores[keep] / confident)  # >= 1: confident
    boxes, rank = np.concatenate(pooled), np.concatenate(ranks)
    if len(boxes):
        order = nms(_tensor(boxes), _tensor(rank), 0.5).numpy()
        boxes, rank = boxes[order], rank[order]
    ignore = np.concatenate([np.zeros(len(human), bool), rank < 1])
    from_teacher = np.concatenate([np.zeros(len(human), bool), np.ones(len(boxes), bool)])
    return np.concatenate([human, boxes]).astype(np.float32), ignore, from_teacher


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, np.float32))
