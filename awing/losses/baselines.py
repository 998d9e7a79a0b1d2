"""Baseline heatmap losses for ablations (Wing, MSE, L1) and the name -> loss table.

All share the signature of :func:`~awing.losses.awing.adaptive_wing_loss`: ``(pred, target, weight=None, *,
reduction="mean")``, with ``weight`` broadcastable to ``pred`` and multiplied per element before the reduction.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from awing.losses.awing import adaptive_wing_loss, reduce_loss, validate_loss_inputs


def _weighted(loss: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
    return reduce_loss(loss if weight is None else loss * weight, reduction)


def wing_loss(
    pred: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    omega: float = 10.0,
    epsilon: float = 2.0,
    reduction: str = "mean",
) -> Tensor:
    """Wing loss (Feng et al., CVPR 2018), elementwise on ``x = pred - target``::

        wing(x) = w · ln(1 + |x| / ε)   if |x| < w
                  |x| - C                otherwise,   C = w - w · ln(1 + w / ε)

    with ``w = omega`` (10) and ``ε = epsilon`` (2); ``C`` joins the two pieces continuously at ``|x| = w``.

    Shape: ``pred``, ``target`` ``(*)``; ``weight`` broadcastable to them; output scalar, or ``(*)`` for "none".

    >>> pred = torch.tensor([0.0, 3.0, 12.0], requires_grad=True)
    >>> loss = wing_loss(pred, torch.zeros(3), reduction="none")
    >>> loss.sum().backward()
    >>> [round(v, 4) for v in loss.tolist()], [round(g, 4) for g in pred.grad.tolist()]
    ([0.0, 9.1629, 19.9176], [0.0, 2.0, 1.0])
    """
    validate_loss_inputs(pred, target, weight, reduction)
    if not (omega > 0 and epsilon > 0):
        raise ValueError(f"omega and epsilon must be > 0, got {omega} and {epsilon}")
    abs_err = (pred - target).abs()
    join = omega - omega * math.log1p(omega / epsilon)
    loss = torch.where(abs_err < omega, omega * torch.log1p(abs_err / epsilon), abs_err - join)
    return _weighted(loss, weight, reduction)


def mse_loss(pred: Tensor, target: Tensor, weight: Tensor | None = None, *, reduction: str = "mean") -> Tensor:
    """Squared error ``(pred - target)²`` per element, weighted and reduced.

    Shape: ``pred``, ``target`` ``(*)``; ``weight`` broadcastable to them; output scalar, or ``(*)`` for "none".

    >>> pred = torch.tensor([1.0, 3.0], requires_grad=True)
    >>> loss = mse_loss(pred, torch.zeros(2), torch.tensor([1.0, 0.5]))
    >>> loss.backward()
    >>> loss.item(), pred.grad.tolist()
    (2.75, [1.0, 1.5])
    """
    validate_loss_inputs(pred, target, weight, reduction)
    return _weighted((pred - target).square(), weight, reduction)


def l1_loss(pred: Tensor, target: Tensor, weight: Tensor | None = None, *, reduction: str = "mean") -> Tensor:
    """Absolute error ``|pred - target|`` per element, weighted and reduced.

    Shape: ``pred``, ``target`` ``(*)``; ``weight`` broadcastable to them; output scalar, or ``(*)`` for "none".

    >>> pred = torch.tensor([1.0, -3.0], requires_grad=True)
    >>> loss = l1_loss(pred, torch.zeros(2), reduction="sum")
    >>> loss.backward()
    >>> loss.item(), pred.grad.tolist()
    (4.0, [1.0, -1.0])
    """
    validate_loss_inputs(pred, target, weight, reduction)
    return _weighted((pred - target).abs(), weight, reduction)


LOSSES: dict[str, Callable[..., Tensor]] = {
    "awing": adaptive_wing_loss,
    "wing": wing_loss,
    "mse": mse_loss,
    "l1": l1_loss,
}


def get_loss(name: str) -> Callable[..., Tensor]:
    """The loss function called ``name`` in :data:`LOSSES`.

    >>> get_loss("wing") is wing_loss
    True
    """
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; valid names: {sorted(LOSSES)}") from None
