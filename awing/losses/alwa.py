"""ALWA: Adaptive Loss Weight Adjustment (Yu, Shen, Hu, Yin, arXiv 2103.09488; methods.md §8).

A stateful training-loop hook, not part of any ``nn.Module.forward``. Every iteration the trainer passes the scalar
classification and regression losses to :meth:`ALWA.step`; the hook records them (multiplied by the current
weights when ``weighted``, as the reference code does) and, every ``interval`` (C) iterations, compares a statistic
of the two histories::

    T = stdev(history)                       statistic "std"      (ALWA_2, the default)
    T = mean(history) + stdev(history)       statistic "mean_std" (ALWA_1)

with the sample standard deviation (ddof = 1). When ``T_cls > T_reg`` the classification weight is **assigned**
``w_cls = 1 - (T_cls - T_reg) / T_cls = T_reg / T_cls``; otherwise it is left unchanged. Both histories are then
cleared. ``w_reg`` stays at its initial value. Because the histories hold weighted losses, a reduced ``w_cls`` shows
in the next window's ``T_cls``: the rule acts as a damped fixed-point iteration, not a cumulative product.

>>> alwa = ALWA(interval=2)
>>> alwa.step(4.0, 1.0), alwa.step(2.0, 2.0)  # T_cls = stdev(4, 2) = 1.414, T_reg = stdev(1, 2) = 0.707
(False, True)
>>> alwa.cls_weight
0.5
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from torch import Tensor

__all__ = ["ALWA", "STATISTICS"]

STATISTICS = ("std", "mean_std")


def _statistic(values: list[float], kind: str) -> float:
    std = statistics.stdev(values)
    return statistics.fmean(values) + std if kind == "mean_std" else std


def _scalar(value: float | Tensor, name: str) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar loss, got a tensor of shape {tuple(value.shape)}")
        value = value.detach().item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or a one-element tensor, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


class ALWA:
    """Adaptive classification-loss weight (see the module docstring).

    Args:
        interval: C, the number of iterations between two updates (>= 2).
        statistic: ``"std"`` (ALWA_2) or ``"mean_std"`` (ALWA_1).
        weighted: record the losses multiplied by the current weights (the reference behaviour) or the raw ones.
        cls_weight: initial classification weight.
        reg_weight: regression weight (constant).

    Usage in a training loop::

        loss = alwa.cls_weight * cls_loss + alwa.reg_weight * reg_loss + other_losses
        loss.backward(); optimizer.step()
        alwa.step(cls_loss, reg_loss)                  # raw losses; detached here
        logger.log(alwa.log_values())                  # {"alwa/cls_weight": ...}
        checkpoint["alwa"] = alwa.state_dict()
    """

    def __init__(
        self,
        interval: int = 100,
        statistic: str = "std",
        weighted: bool = True,
        cls_weight: float = 1.0,
        reg_weight: float = 1.0,
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 2:
            raise ValueError(
                f"interval must be an int >= 2 (a sample standard deviation needs 2 values), got {interval!r}"
            )
        if statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
        for name, value in (("cls_weight", cls_weight), ("reg_weight", reg_weight)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        self.interval = interval
        self.statistic = statistic
        self.weighted = bool(weighted)
        self.cls_weight = float(cls_weight)
        self.reg_weight = float(reg_weight)
        self.iteration = 0
        self.cls_history: list[float] = []
        self.reg_history: list[float] = []

    def step(self, cls_loss: float | Tensor, reg_loss: float | Tensor) -> bool:
        """Record one iteration's (unweighted) losses; return True when a window closed and the rule ran."""
        cls_value, reg_value = _scalar(cls_loss, "cls_loss"), _scalar(reg_loss, "reg_loss")
        if self.weighted:
            cls_value, reg_value = cls_value * self.cls_weight, reg_value * self.reg_weight
        self.cls_history.append(cls_value)
        self.reg_history.append(reg_value)
        self.iteration += 1
        if len(self.cls_history) < self.interval:
            return False
        t_cls = _statistic(self.cls_history, self.statistic)
        t_reg = _statistic(self.reg_history, self.statistic)
        if t_cls > t_reg:
            self.cls_weight = t_reg / t_cls
        self.cls_history.clear()
        self.reg_history.clear()
        return True

    def log_values(self) -> dict[str, float]:
        """The weights for a metrics logger."""
        return {"alwa/cls_weight": self.cls_weight, "alwa/reg_weight": self.reg_weight}

    def state_dict(self) -> dict[str, Any]:
        """Plain Python types only (loads with ``torch.load(..., weights_only=True)``)."""
        return {
            "interval": self.interval,
            "statistic": self.statistic,
            "weighted": self.weighted,
            "cls_weight": self.cls_weight,
            "reg_weight": self.reg_weight,
            "iteration": self.iteration,
            "cls_history": list(self.cls_history),
            "reg_history": list(self.reg_history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; a different ``interval``/``statistic``/``weighted`` raises."""
        expected = set(self.state_dict())
        if not isinstance(state, dict) or set(state) != expected:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"ALWA state must be a dict with keys {sorted(expected)}, got {got}")
        for key in ("interval", "statistic", "weighted"):
            if state[key] != getattr(self, key):
                raise ValueError(f"ALWA state has {key}={state[key]!r} but this hook has {key}={getattr(self, key)!r}")
        if len(state["cls_history"]) != len(state["reg_history"]) or len(state["cls_history"]) >= self.interval:
            raise ValueError(
                f"ALWA state histories must have equal lengths below interval={self.interval}, got "
                f"{len(state['cls_history'])} and {len(state['reg_history'])}"
            )
        self.cls_weight = float(state["cls_weight"])
        self.reg_weight = float(state["reg_weight"])
        self.iteration = int(state["iteration"])
        self.cls_history = [float(v) for v in state["cls_history"]]
        self.reg_history = [float(v) for v in state["reg_history"]]

    def __repr__(self) -> str:
        return (
            f"ALWA(interval={self.interval}, statistic={self.statistic!r}, weighted={self.weighted}, "
            f"cls_weight={self.cls_weight:.6g}, reg_weight={self.reg_weight:.6g}, iteration={self.iteration})"
        )
