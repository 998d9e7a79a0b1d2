"""Learning from noisy anchors (Li, Wu, Zhu, Xiong, Socher, Davis, CVPR 2020, arXiv 1912.05086; methods.md §9).

Instead of a hard IoU split, each object keeps its **top-N anchors by IoU** as candidate positives
(:func:`select_candidates`). For a candidate ``a`` matched to object ``g``:

- ``loc_a`` = IoU between the box **regressed** from ``a`` (the decoded prediction) and ``g``;
- ``cls_a`` = the predicted probability of ``g``'s class at ``a``;
- **cleanliness** ``c_a = α · loc_a + (1 - α) · cls_a`` (:func:`cleanliness`) is the soft classification target
  (soft-target focal loss, methods.md §7);
- **re-weighting** ``r_a = (α · f(loc_a) + (1 - α) · f(cls_a))^γ`` with ``f(x) = 1 / (1 - x)`` and ``x`` clamped to
  ``<= 1 - 1e-6`` (:func:`noisy_anchor_weights`), normalised so that the total positive loss is unchanged:
  ``r̃_a = r_a · Σ_b L_b / Σ_b r_b L_b`` (:func:`normalize_weights`), separately for classification and regression.

Cleanliness and weights are constants (no gradient flows through them). Defaults ``α = 0.75, γ = 1`` come from a
reimplementation; the paper's values are unverified (methods.md §9 [U]).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["F_CLAMP", "cleanliness", "noisy_anchor_weights", "normalize_weights", "select_candidates"]

F_CLAMP = 1.0 - 1e-6
"""Upper clamp of ``x`` in ``f(x) = 1 / (1 - x)`` (so that ``f <= 1e6``)."""


def _check_pair(loc_iou: Tensor, cls_score: Tensor, alpha: float) -> None:
    for name, value in (("loc_iou", loc_iou), ("cls_score", cls_score)):
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {getattr(value, 'dtype', type(value))}")
    if loc_iou.shape != cls_score.shape:
        raise ValueError(
            f"loc_iou and cls_score must have the same shape, got {tuple(loc_iou.shape)} and {tuple(cls_score.shape)}"
        )
    if not (isinstance(alpha, (int, float)) and 0 <= alpha <= 1):
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")


def cleanliness(loc_iou: Tensor, cls_score: Tensor, alpha: float = 0.75) -> Tensor:
    """``c = α · loc_iou + (1 - α) · cls_score`` (detached), the soft target of each candidate.

    Shape: ``loc_iou``, ``cls_score``: ``(*)`` in ``[0, 1]``; output ``(*)``.

    >>> cleanliness(torch.tensor([0.8, 0.2]), torch.tensor([0.4, 0.6]))
    tensor([0.7000, 0.3000])
    """
    _check_pair(loc_iou, cls_score, alpha)
    return (alpha * loc_iou.detach() + (1 - alpha) * cls_score.detach()).clamp(0.0, 1.0)


def noisy_anchor_weights(loc_iou: Tensor, cls_score: Tensor, alpha: float = 0.75, gamma: float = 1.0) -> Tensor:
    """Unnormalised weights ``r = (α f(loc_iou) + (1 - α) f(cls_score))^γ``, ``f(x) = 1 / (1 - min(x, 1 - 1e-6))``.

    Detached; ``r >= 1`` for inputs in ``[0, 1]``. Shape: ``(*)`` -> ``(*)``.

    >>> noisy_anchor_weights(torch.tensor([0.5]), torch.tensor([0.0]))  # 0.75 * 2 + 0.25 * 1
    tensor([1.7500])
    """
    _check_pair(loc_iou, cls_score, alpha)
    if not (isinstance(gamma, (int, float)) and gamma >= 0):
        raise ValueError(f"gamma must be >= 0, got {gamma!r}")

    def f(x: Tensor) -> Tensor:
        return 1.0 / (1.0 - x.detach().clamp(max=F_CLAMP))

    return (alpha * f(loc_iou) + (1 - alpha) * f(cls_score)).pow(gamma)


def normalize_weights(weights: Tensor, losses: Tensor) -> Tensor:
    """``r̃ = r · Σ L / Σ r L`` (detached), so that ``Σ r̃ L = Σ L``: the re-weighting keeps the total loss.

    When ``Σ r L = 0`` (all losses zero) the weights are returned unchanged. Shape: ``(N,)``, ``(N,)`` -> ``(N,)``.

    >>> normalize_weights(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0]))
    tensor([0.5000, 1.5000])
    """
    if weights.shape != losses.shape:
        raise ValueError(
            f"weights and losses must have the same shape, got {tuple(weights.shape)} and {tuple(losses.shape)}"
        )
    weights, losses = weights.detach(), losses.detach()
    weighted = (weights * losses).sum()
    scale = torch.where(weighted > 0, losses.sum() / weighted.clamp(min=torch.finfo(weighted.dtype).tiny), 1.0)
    return weights * scale


def select_candidates(iou: Tensor, top_n: int, always_iou: float | None = None) -> tuple[Tensor, Tensor]:
    """Candidate positives: for each object (column) its ``top_n`` anchors (rows) by IoU, among those with IoU > 0.

    With ``always_iou``, every anchor whose IoU with an object reaches it is a candidate too. An anchor chosen by
    several objects goes to the one it overlaps most.

    Args:
        iou: ``(A, G)`` IoU of ``A`` anchors with ``G`` objects.
        top_n: candidates per object (>= 1).
        always_iou: optional IoU above which an anchor is always a candidate.

    Returns:
        ``assigned`` ``(A,)`` long: the object of each anchor, ``-1`` when it is not a candidate; ``overlap``
        ``(A,)``: the IoU with the assigned object (0 for non-candidates).

    >>> iou = torch.tensor([[0.5, 0.0], [0.3, 0.1], [0.0, 0.6], [0.2, 0.0]])
    >>> select_candidates(iou, top_n=2)[0]
    tensor([ 0,  0,  1, -1])
    """
    if not isinstance(iou, Tensor) or iou.ndim != 2:
        raise ValueError(f"iou must be an (A, G) tensor, got {getattr(iou, 'shape', type(iou))}")
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
        raise ValueError(f"top_n must be an int >= 1, got {top_n!r}")
    num_anchors, num_objects = iou.shape
    assigned = torch.full((num_anchors,), -1, dtype=torch.long, device=iou.device)
    if num_objects == 0 or num_anchors == 0:
        return assigned, torch.zeros(num_anchors, dtype=iou.dtype, device=iou.device)
    top_iou, top_idx = iou.topk(min(top_n, num_anchors), dim=0)  # (k, G)
    candidate = torch.zeros_like(iou, dtype=torch.bool)
    candidate[top_idx, torch.arange(num_objects, device=iou.device).expand_as(top_idx)] = top_iou > 0
    if always_iou is not None:
        candidate |= iou >= always_iou
    overlap, best = torch.where(candidate, iou, torch.zeros_like(iou)).max(dim=1)
    chosen = candidate.any(dim=1)
    assigned[chosen] = best[chosen]
    return assigned, torch.where(chosen, overlap, torch.zeros_like(overlap))
