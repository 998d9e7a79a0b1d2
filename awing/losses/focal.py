"""Sigmoid focal loss with soft targets (Lin et al., ICCV 2017, arXiv 1708.02002; methods.md §7).

With ``p = sigmoid(x)`` per element and a target ``t`` in ``[0, 1]``::

    FL(x, t) = -[ α · t · (1 - p)^γ · ln p  +  (1 - α) · (1 - t) · p^γ · ln(1 - p) ]

For ``t`` in ``{0, 1}`` this is the usual ``-α_t (1 - p_t)^γ ln p_t``; soft targets are used by noisy-anchor
learning (methods.md §9). Defaults ``α = 0.25, γ = 2``. The logarithms are computed as ``ln p = -softplus(-x)`` and
``ln(1 - p) = -softplus(x)``, so large logits do not overflow.

Normalisation (methods.md §7): a detector sums the loss over all non-ignored anchors and divides by the number of
positive anchors, clamped to >= 1: pass ``reduction="sum", normalizer=num_pos``. The classifier's bias starts at
:func:`focal_prior_bias` (``π = 0.01``) so that the first iterations are not swamped by the easy negatives.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from awing.losses.awing import reduce_loss, validate_loss_inputs

__all__ = ["SigmoidFocalLoss", "focal_prior_bias", "sigmoid_focal_loss"]


def focal_prior_bias(prior: float = 0.01) -> float:
    """Classifier bias ``b = -ln((1 - π) / π)`` so that ``sigmoid(b) = π`` (methods.md §7; π = 0.01 -> -4.595).

    >>> round(focal_prior_bias(0.01), 4)
    -4.5951
    """
    if not (isinstance(prior, (int, float)) and 0 < prior < 1):
        raise ValueError(f"prior must be a probability in (0, 1), got {prior!r}")
    return -math.log((1 - prior) / prior)


def _check_focal_options(alpha: float, gamma: float) -> None:
    if not (isinstance(alpha, (int, float)) and 0 <= alpha <= 1):
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if not (isinstance(gamma, (int, float)) and gamma >= 0):
        raise ValueError(f"gamma must be >= 0, got {gamma!r}")


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
    weight: Tensor | None = None,
    normalizer: float | Tensor | None = None,
) -> Tensor:
    """Sigmoid focal loss (formula in the module docstring), one independent sigmoid per element.

    Args:
        logits: raw scores ``x``, any shape.
        targets: ``t`` in ``[0, 1]`` (hard or soft), the shape of ``logits``.
        alpha: weight of the positive term, in ``[0, 1]``.
        gamma: focusing exponent, ``>= 0`` (``γ = 0`` gives ``α``-weighted binary cross-entropy).
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
        weight: optional per-element factor broadcastable to ``logits`` (0 drops ignored anchors).
        normalizer: with ``reduction="sum"``, divide the sum by ``max(normalizer, 1)`` (the positive-anchor count).

    Returns:
        The per-element loss (``"none"``) or a scalar.

    Shape:
        - logits, targets: ``(*)``; weight: broadcastable to ``(*)``.
        - output: ``(*)`` for ``"none"``, else ``()``.

    >>> logits = torch.tensor([2.0, -1.0, 0.0], requires_grad=True)
    >>> targets = torch.tensor([1.0, 0.0, 0.6])
    >>> loss = sigmoid_focal_loss(logits, targets, reduction="sum", normalizer=2)
    >>> loss.backward()
    >>> round(loss.item(), 4), logits.grad.shape
    (0.0477, torch.Size([3]))
    """
    validate_loss_inputs(logits, targets, weight, reduction)
    _check_focal_options(alpha, gamma)
    if targets.dtype != logits.dtype:
        raise TypeError(f"targets must have the dtype of logits ({logits.dtype}), got {targets.dtype}")
    if targets.numel() and (targets.min() < 0 or targets.max() > 1):
        raise ValueError(
            f"targets must lie in [0, 1], got values in [{targets.min().item():g}, {targets.max().item():g}]"
        )
    if normalizer is not None and reduction != "sum":
        raise ValueError(f"normalizer divides a summed loss: use reduction='sum', got reduction={reduction!r}")
    p = torch.sigmoid(logits)
    positive = alpha * targets * (1 - p).pow(gamma) * F.softplus(-logits)
    negative = (1 - alpha) * (1 - targets) * p.pow(gamma) * F.softplus(logits)
    loss = positive + negative
    if weight is not None:
        loss = loss * weight
    loss = reduce_loss(loss, reduction)
    if normalizer is not None:
        loss = loss / torch.as_tensor(normalizer, dtype=loss.dtype, device=loss.device).clamp(min=1)
    return loss


class SigmoidFocalLoss(nn.Module):
    """Module form of :func:`sigmoid_focal_loss` (same arguments; ``weight`` and ``normalizer`` per call).

    >>> criterion = SigmoidFocalLoss(reduction="sum")
    >>> logits = torch.zeros(4, 10, requires_grad=True)
    >>> criterion(logits, torch.zeros(4, 10), normalizer=1).backward()
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "mean") -> None:
        super().__init__()
        _check_focal_options(alpha, gamma)
        self.alpha = alpha
        self.gamma = gamma
        self.reduction = reduction

    def forward(
        self,
        logits: Tensor,
        targets: Tensor,
        weight: Tensor | None = None,
        normalizer: float | Tensor | None = None,
    ) -> Tensor:
        return sigmoid_focal_loss(
            logits, targets, self.alpha, self.gamma, self.reduction, weight=weight, normalizer=normalizer
        )

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}, reduction={self.reduction!r}"
