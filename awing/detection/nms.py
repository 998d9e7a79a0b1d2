"""Non-maximum suppression in pure PyTorch (no torchvision), vectorised.

Greedy NMS keeps box ``j`` (in decreasing score order) when no kept box ``i`` ahead of it overlaps it with IoU above
the threshold. With ``S[i, j] = IoU(i, j) > threshold`` for ``i < j``, the kept set is the unique fixed point of
``keep[j] = not any_i (keep[i] and S[i, j])``. Iterating that map from "keep everything" makes the first ``t`` entries
exact after ``t`` rounds and usually converges in a handful (Cluster-NMS, Zheng et al., 2020, arXiv 2005.03572); each
round is one matrix-vector operation, so there is no Python loop over boxes.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["batched_nms", "nms"]


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, containment: float = 1.0) -> Tensor:
    """Indices of the boxes kept by greedy NMS, in decreasing score order (ties: lower index first).

    Args:
        boxes: ``(N, 4)`` xyxy.
        scores: ``(N,)``.
        iou_threshold: a box is suppressed by a higher-scoring kept box when their IoU exceeds this.
        containment: ... or when their intersection exceeds this share of the smaller box's area (a box nested in
            another: a 60 px box inside a 100 px one has IoU 0.36 but is all inside). 1.0: off.

    Returns:
        ``(K,)`` long indices into ``boxes``.

    >>> boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]])
    >>> nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    tensor([0, 2])
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"expected boxes (N, 4) and scores (N,), got {tuple(boxes.shape)} and {tuple(scores.shape)}")
    order = torch.sort(scores, descending=True, stable=True).indices
    if order.numel() <= 1:
        return order
    suppressor = _suppression_matrix(boxes[order], iou_threshold, containment)
    keep = torch.ones(order.numel(), dtype=suppressor.dtype, device=boxes.device)
    for _ in range(order.numel()):
        new_keep = (keep @ suppressor == 0).to(keep.dtype)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep.bool()]


def _suppression_matrix(boxes: Tensor, iou_threshold: float, containment: float = 1.0, block: int = 256) -> Tensor:
    """``S[i, j] = 1.0`` where ``i < j`` and ``IoU(i, j) > iou_threshold`` or (``containment < 1``) the
    intersection exceeds ``containment`` times the smaller area, else 0 -> ``(N, N)`` float.

    Tested as ``inter > t * (area_i + area_j - inter)`` (no division), one block of rows at a time and only right of
    the diagonal, so that the ``N x N`` temporaries stay in the CPU cache (this is the cost of NMS).
    """
    n = boxes.shape[0]
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    area = (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)
    out = torch.zeros(n, n, dtype=boxes.dtype, device=boxes.device)
    for r0 in range(0, n, block):
        rows, cols = slice(r0, min(r0 + block, n)), slice(r0, n)
        inter = torch.minimum(x1[rows, None], x1[None, cols]).sub_(torch.maximum(x0[rows, None], x0[None, cols]))
        height = torch.minimum(y1[rows, None], y1[None, cols]).sub_(torch.maximum(y0[rows, None], y0[None, cols]))
        inter.clamp_(min=0).mul_(height.clamp_(min=0))
        union = (area[rows, None] + area[None, cols]).sub_(inter).mul_(iou_threshold)
        suppress = inter > union
        if containment < 1:
            suppress |= inter > torch.minimum(area[rows, None], area[None, cols]).mul_(containment)
        out[rows, cols] = suppress
    return out.triu_(diagonal=1)


def batched_nms(
    boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float, containment: float = 1.0
) -> Tensor:
    """NMS within each group (image index, class) at once: boxes of different groups never suppress each other.

    Shifts each group's boxes (in float64) by ``group * (extent + 1)`` so that groups cannot overlap, then runs
    :func:`nms` (``containment`` as there).
    Shapes: ``(N, 4)``, ``(N,)``, ``(N,)`` integer -> ``(K,)`` long indices in decreasing score order.
    """
    if groups.shape != scores.shape:
        raise ValueError(f"groups must have the shape of scores {tuple(scores.shape)}, got {tuple(groups.shape)}")
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    boxes = boxes.double()  # the shifted coordinates grow with the group count: keep their precision
    extent = boxes.max() - boxes.min() + 1
    shifted = boxes - boxes.min() + (groups.double() * extent)[:, None]
    return nms(shifted, scores, iou_threshold, containment)
