"""Anchors, IoU, box and landmark coding, and anchor-to-face matching (methods.md §10.1).

Boxes are ``(x0, y0, x1, y1)`` in input pixels, with the coordinate convention of ``awing.geometry`` (pixel centres
on integers); a box's centre is ``((x0 + x1) / 2, (y0 + y1) / 2)`` and its size ``(x1 - x0, y1 - y0)``.

**Anchors.** On a level of stride ``s`` with ``rows x cols`` cells, cell ``(i, j)`` covers input pixels
``[j s, (j + 1) s - 1]`` horizontally, so its centre is ``((j + 0.5) s - 0.5, (i + 0.5) s - 0.5)``; the anchors are
squares of the level's sizes centred there (RetinaFace: 16 and 32 at stride 8, 64 and 128 at 16, 256 and 512 at 32).
Order: level, row, column, size — the order of the network's outputs.

**Coding** (SSD / RetinaFace, variances ``(v0, v1) = (0.1, 0.2)``), for an anchor of centre ``(ax, ay)`` and size
``(aw, ah)``::

    box:       dx = (gx - ax) / (v0 aw),  dy = (gy - ay) / (v0 ah),  dw = ln(gw / aw) / v1,  dh = ln(gh / ah) / v1
    landmark:  lx = (px - ax) / (v0 aw),  ly = (py - ay) / (v0 ah)

**Matching** (:func:`match_anchors`): an anchor is positive when its best IoU with a face is ``>= pos_iou`` (0.35,
RetinaFace's threshold: small faces rarely reach 0.5 with two anchors per location), negative below ``neg_iou``,
ignored in between; each face's best anchor is positive too when its IoU reaches ``low_quality_iou`` (0.2). Boxes
flagged ``ignore`` (tiny, invalid or ``ignore``-marked faces) never make positives: a non-positive anchor with IoU
``>= neg_iou`` with one of them, and each such box's best anchor, is ignored instead of negative. With
``top_n`` (noisy anchors, methods.md §9) the positives are each face's ``top_n`` anchors by IoU plus every anchor at
IoU ``>= pos_iou`` (:func:`awing.losses.noisy_anchor.select_candidates`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from awing.losses.noisy_anchor import select_candidates

__all__ = [
    "MatchResult",
    "box_iou",
    "decode_boxes",
    "decode_landmarks",
    "encode_boxes",
    "encode_landmarks",
    "generate_anchors",
    "match_anchors",
    "paired_box_iou",
]

IGNORE, NEGATIVE, POSITIVE = -1, 0, 1


def generate_anchors(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    sizes: Sequence[Sequence[float]],
    device: torch.device | str | None = None,
) -> Tensor:
    """All anchors, ``(N, 4)`` float32 xyxy, ``N = sum rows * cols * len(sizes[level])`` (order in the docstring).

    >>> generate_anchors([(1, 2)], [8], [[16.0]])
    tensor([[-4.5000, -4.5000, 11.5000, 11.5000],
            [ 3.5000, -4.5000, 19.5000, 11.5000]])
    """
    if not (len(feature_sizes) == len(strides) == len(sizes)):
        raise ValueError(
            f"feature_sizes, strides and sizes need one entry per level, got {len(feature_sizes)}, {len(strides)} "
            f"and {len(sizes)}"
        )
    levels = []
    for (rows, cols), stride, level_sizes in zip(feature_sizes, strides, sizes, strict=True):
        ys = (torch.arange(rows, dtype=torch.float32, device=device) + 0.5) * stride - 0.5
        xs = (torch.arange(cols, dtype=torch.float32, device=device) + 0.5) * stride - 0.5
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        half = torch.as_tensor(level_sizes, dtype=torch.float32, device=device) / 2
        centres = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2)  # (rows*cols, 1, 2)
        half = half.reshape(1, -1, 1)
        levels.append(torch.cat([centres - half, centres + half], dim=-1).reshape(-1, 4))
    return torch.cat(levels)


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` xyxy boxes -> ``(N, M)``; 0 where the union is empty.

    >>> box_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 1, 3, 3], [0.0, 0, 2, 2]]))
    tensor([[0.1429, 1.0000]])
    """
    if boxes1.ndim != 2 or boxes2.ndim != 2 or boxes1.shape[-1] != 4 or boxes2.shape[-1] != 4:
        raise ValueError(f"boxes must be (N, 4) xyxy, got {tuple(boxes1.shape)} and {tuple(boxes2.shape)}")
    return _iou([c[:, None] for c in boxes1.unbind(-1)], [c[None, :] for c in boxes2.unbind(-1)])


def paired_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of corresponding xyxy boxes: ``(..., 4)`` and ``(..., 4)`` -> ``(...)``; 0 where the union is empty."""
    return _iou(boxes1.unbind(-1), boxes2.unbind(-1))


def _iou(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    """IoU from broadcastable coordinate tensors ``(x0, y0, x1, y1)`` (one tensor per coordinate, so that each
    operation runs on contiguous memory)."""
    width = (torch.minimum(a[2], b[2]) - torch.maximum(a[0], b[0])).clamp_(min=0)
    height = (torch.minimum(a[3], b[3]) - torch.maximum(a[1], b[1])).clamp_(min=0)
    inter = width * height
    area_a = (a[2] - a[0]).clamp(min=0) * (a[3] - a[1]).clamp(min=0)
    area_b = (b[2] - b[0]).clamp(min=0) * (b[3] - b[1]).clamp(min=0)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(union))


def _centre_size(boxes: Tensor) -> tuple[Tensor, Tensor]:
    return (boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]


def encode_boxes(boxes: Tensor, anchors: Tensor, variances: Sequence[float] = (0.1, 0.2)) -> Tensor:
    """xyxy boxes ``(..., 4)`` relative to anchors ``(..., 4)`` -> deltas ``(dx, dy, dw, dh)`` (module docstring)."""
    centre, size = _centre_size(boxes)
    a_centre, a_size = _centre_size(anchors)
    offset = (centre - a_centre) / (variances[0] * a_size)
    scale = torch.log(size / a_size) / variances[1]
    return torch.cat([offset, scale], dim=-1)


def decode_boxes(deltas: Tensor, anchors: Tensor, variances: Sequence[float] = (0.1, 0.2)) -> Tensor:
    """Inverse of :func:`encode_boxes`: deltas ``(..., 4)`` -> xyxy boxes ``(..., 4)``."""
    a_centre, a_size = _centre_size(anchors)
    centre = a_centre + deltas[..., :2] * variances[0] * a_size
    half = a_size * torch.exp(deltas[..., 2:] * variances[1]) / 2
    return torch.cat([centre - half, centre + half], dim=-1)


def encode_landmarks(points: Tensor, anchors: Tensor, variances: Sequence[float] = (0.1, 0.2)) -> Tensor:
    """Points ``(..., K, 2)`` relative to anchors ``(..., 4)`` -> deltas ``(..., 2K)`` (module docstring)."""
    a_centre, a_size = _centre_size(anchors)
    deltas = (points - a_centre[..., None, :]) / (variances[0] * a_size[..., None, :])
    return deltas.flatten(-2)


def decode_landmarks(deltas: Tensor, anchors: Tensor, variances: Sequence[float] = (0.1, 0.2)) -> Tensor:
    """Inverse of :func:`encode_landmarks`: deltas ``(..., 2K)`` -> points ``(..., K, 2)``."""
    a_centre, a_size = _centre_size(anchors)
    points = deltas.unflatten(-1, (-1, 2))
    return a_centre[..., None, :] + points * variances[0] * a_size[..., None, :]


@dataclass
class MatchResult:
    """Per-anchor assignment of one image.

    Attributes:
        labels: ``(A,)`` int8: 1 positive, 0 negative, -1 ignored.
        matched: ``(A,)`` long: index of the matched face (into the image's boxes) where positive, else -1.
        overlap: ``(A,)`` IoU of each positive with its face (0 elsewhere).
    """

    labels: Tensor
    matched: Tensor
    overlap: Tensor


def match_anchors(
    anchors: Tensor,
    boxes: Tensor,
    ignore: Tensor | None = None,
    *,
    pos_iou: float = 0.35,
    neg_iou: float = 0.35,
    low_quality_iou: float = 0.2,
    top_n: int | None = None,
) -> MatchResult:
    """Assign anchors ``(A, 4)`` to the faces among ``boxes`` ``(G, 4)`` (rules in the module docstring).

    Args:
        anchors: ``(A, 4)`` xyxy.
        boxes: ``(G, 4)`` xyxy.
        ignore: ``(G,)`` bool, True for boxes that are regions to ignore rather than faces.
        pos_iou, neg_iou, low_quality_iou: thresholds (``neg_iou <= pos_iou``).
        top_n: noisy-anchor candidates per face instead of the IoU threshold rule.
    """
    num_anchors = anchors.shape[0]
    device = anchors.device
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (G, 4) xyxy, got shape {tuple(boxes.shape)}")
    if ignore is None:
        ignore = torch.zeros(boxes.shape[0], dtype=torch.bool, device=device)
    if ignore.shape != boxes.shape[:1]:
        raise ValueError(f"ignore must have shape ({boxes.shape[0]},), got {tuple(ignore.shape)}")
    labels = torch.zeros(num_anchors, dtype=torch.int8, device=device)
    matched = torch.full((num_anchors,), -1, dtype=torch.long, device=device)
    overlap = torch.zeros(num_anchors, dtype=torch.float32, device=device)
    if boxes.shape[0] == 0:
        return MatchResult(labels, matched, overlap)
    boxes = boxes.to(anchors.dtype)
    face_ids = torch.nonzero(~ignore).flatten()
    if face_ids.numel():
        face_iou = box_iou(boxes[face_ids], anchors)  # (F, A): rows over the anchors are contiguous
        best_iou, best_face = face_iou.max(dim=0)
        labels[(best_iou >= neg_iou) & (best_iou < pos_iou)] = IGNORE
        if top_n is None:
            assigned = torch.where(best_iou >= pos_iou, best_face, torch.full_like(best_face, -1))
            face_best, anchor_of_face = face_iou.max(dim=1)  # (F,)
            good = face_best >= low_quality_iou
            assigned[anchor_of_face[good]] = torch.nonzero(good).flatten()
        else:
            assigned, _ = select_candidates(face_iou.T, top_n, always_iou=pos_iou)
        positive = torch.nonzero(assigned >= 0).flatten()
        labels[positive] = POSITIVE
        matched[positive] = face_ids[assigned[positive]]
        overlap[positive] = face_iou[assigned[positive], positive]
    ignore_ids = torch.nonzero(ignore).flatten()
    if ignore_ids.numel():
        ignore_iou = box_iou(boxes[ignore_ids], anchors)  # (I, A)
        near = ignore_iou.max(dim=0).values >= neg_iou
        best, anchor_of_region = ignore_iou.max(dim=1)
        near[anchor_of_region[best > 0]] = True
        labels[near & (labels != POSITIVE)] = IGNORE
    return MatchResult(labels, matched, overlap)
