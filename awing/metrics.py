"""Landmark metrics: NME with inter-ocular / inter-pupil / box normalisation, failure rate, CED and AUC.

Conventions follow methods.md §5: per-image NME = (1/K) sum_k ||p_k - g_k|| / d_norm (§5.1); FR@t = fraction of
images with NME > t; CED(x) = fraction with NME <= x on the grid 0..t with step 1e-4; AUC@t = Simpson integral of
the CED over [0, t] divided by t (§5.2; ``scipy.integrate.simpson``). Arrays are numpy; landmarks are (N, K, 2).
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import simpson

from awing.landmarks import SCHEMES, LandmarkScheme, get_scheme

__all__ = ["NORMS", "auc", "ced_curve", "failure_rate", "nme", "norm_distance"]

#: Valid ``norm`` values: a scheme's two index groups ("inter_ocular", "inter_pupil") or the ground-truth box.
NORMS = ("inter_ocular", "inter_pupil", "box")


def _check_landmarks(gt: np.ndarray, visible: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``gt`` (N, K, 2) and ``visible`` (N, K); return float64 ``gt`` and a bool mask."""
    gt = np.asarray(gt, dtype=np.float64)
    if gt.ndim != 3 or gt.shape[2] != 2:
        raise ValueError(f"landmarks must have shape (N, K, 2), got {gt.shape}")
    if visible is None:
        return gt, np.ones(gt.shape[:2], dtype=bool)
    mask = np.asarray(visible)
    if mask.shape != gt.shape[:2]:
        raise ValueError(f"visible must have shape (N, K) = {gt.shape[:2]}, got {mask.shape}")
    if mask.dtype != bool:
        raise TypeError(f"visible must be a bool array, got dtype {mask.dtype}")
    return gt, mask


def _resolve_scheme(scheme: str | int | LandmarkScheme | None, num_points: int) -> LandmarkScheme:
    if scheme is None:
        if str(num_points) not in SCHEMES:
            valid = ", ".join(sorted(SCHEMES, key=int))
            raise ValueError(
                f"cannot infer the landmark scheme from K = {num_points} points (valid K: {valid}); pass scheme="
            )
        return SCHEMES[str(num_points)]
    resolved = get_scheme(scheme)
    if resolved.num_points != num_points:
        raise ValueError(f"scheme {resolved.name!r} has {resolved.num_points} points, landmarks have {num_points}")
    return resolved


def norm_distance(
    gt: np.ndarray,
    norm: str = "inter_ocular",
    scheme: str | int | LandmarkScheme | None = None,
    visible: np.ndarray | None = None,
) -> np.ndarray:
    """Per-image normalisation distance d_norm (N,) of ground truth ``gt`` (N, K, 2) (methods.md §5.1).

    - ``"inter_ocular"`` / ``"inter_pupil"``: distance between the means of the scheme's two index groups
      (``scheme.norm_groups[norm]``; e.g. points 36/45 or the centroids of 36-41/42-47 for 68 points, 60/72 or 96/97
      for 98, 8/9 or 16/17 for 29). All of these points are used whatever ``visible`` says.
    - ``"box"``: ``sqrt(w * h)`` of the tight box of the visible ground-truth points.

    ``scheme`` (name, K or :class:`~awing.landmarks.LandmarkScheme`) is inferred from K when None. Raises ValueError
    when a distance is zero or not finite, naming the image.
    """
    gt, mask = _check_landmarks(gt, visible)
    if norm == "box":
        d = np.empty(gt.shape[0])
        for i, (points, keep) in enumerate(zip(gt, mask, strict=True)):
            pts = points[keep]
            if not np.isfinite(pts).all():
                raise ValueError(f"image {i}: ground truth has non-finite visible points")
            d[i] = np.sqrt(np.prod(pts.max(axis=0) - pts.min(axis=0))) if len(pts) else 0.0
    elif norm in NORMS:
        resolved = _resolve_scheme(scheme, gt.shape[1])
        if norm not in resolved.norm_groups:
            raise ValueError(f"scheme {resolved.name!r} has no {norm!r} groups; it has {sorted(resolved.norm_groups)}")
        left, right = resolved.norm_groups[norm]
        d = np.linalg.norm(gt[:, list(left)].mean(axis=1) - gt[:, list(right)].mean(axis=1), axis=-1)
    else:
        raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    bad = np.flatnonzero(~(np.isfinite(d) & (d > 0)))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"image {i}: {norm} normalisation distance is {d[i]:g} (must be finite and > 0); "
            f"{bad.size} image(s) affected: {bad[:10].tolist()}"
        )
    return d


def nme(
    pred: np.ndarray,
    gt: np.ndarray,
    norm: str = "inter_ocular",
    scheme: str | int | LandmarkScheme | None = None,
    visible: np.ndarray | None = None,
) -> np.ndarray:
    """Per-image normalised mean error (N,) (methods.md §5.1).

    ``NME_i = mean_k ||pred_ik - gt_ik|| / d_i`` over the visible points of image ``i``, with ``d_i`` from
    :func:`norm_distance` (``norm`` in ``"inter_ocular"``, ``"inter_pupil"``, ``"box"``).

    Args:
        pred: predicted landmarks (N, K, 2), same frame as ``gt``.
        gt: ground-truth landmarks (N, K, 2).
        norm: normalisation, see :func:`norm_distance`.
        scheme: landmark scheme (name, K or object); inferred from K when None (not needed for ``"box"``).
        visible: optional (N, K) bool mask; errors are averaged over visible points only.

    Returns:
        float64 array of shape (N,). The dataset NME is its mean.
    """
    gt, mask = _check_landmarks(gt, visible)
    pred = np.asarray(pred, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt must have the same shape (N, K, 2), got {pred.shape} and {gt.shape}")
    counts = mask.sum(axis=1)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(f"image {int(empty[0])}: no visible landmark to score")
    d = norm_distance(gt, norm, scheme, mask)
    errors = np.linalg.norm(pred - gt, axis=-1)
    bad = np.flatnonzero(~np.isfinite(errors).all(axis=1, where=mask))
    if bad.size:
        raise ValueError(f"image {int(bad[0])}: non-finite prediction or ground truth at a visible point")
    return np.where(mask, errors, 0.0).sum(axis=1) / counts / d


def _check_nmes(nmes: np.ndarray, threshold: float) -> np.ndarray:
    values = np.asarray(nmes, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"nmes must be a non-empty 1-D array, got shape {values.shape}")
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError("nmes must be finite and non-negative")
    if not (np.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a positive finite number, got {threshold!r}")
    return values


def failure_rate(nmes: np.ndarray, threshold: float = 0.10) -> float:
    """FR@threshold: fraction of images with NME > threshold (methods.md §5.2). ``nmes`` is (N,)."""
    return float((_check_nmes(nmes, threshold) > threshold).mean())


def ced_curve(nmes: np.ndarray, threshold: float = 0.10, step: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution on ``x = 0, step, ..., threshold`` (1,001 points for the defaults).

    Returns ``(x, y)``, both float64 of shape (round(threshold / step) + 1,), with ``y = fraction of NME <= x``;
    ``y[-1] = 1 - FR@threshold``. ``threshold`` must be a whole multiple of ``step``.
    """
    values = np.sort(_check_nmes(nmes, threshold))
    if not (np.isfinite(step) and 0 < step <= threshold):
        raise ValueError(f"step must be in (0, threshold = {threshold}], got {step!r}")
    count = round(threshold / step)
    if abs(count * step - threshold) > 1e-9 * threshold:
        raise ValueError(f"threshold ({threshold}) must be a whole multiple of step ({step})")
    x = np.linspace(0.0, threshold, count + 1)
    y = np.searchsorted(values, x, side="right") / values.size
    return x, y


def auc(nmes: np.ndarray, threshold: float = 0.10, step: float = 1e-4) -> float:
    """AUC@threshold: ``simpson(CED, x) / threshold`` over [0, threshold] (methods.md §5.2), in [0, 1]."""
    x, y = ced_curve(nmes, threshold, step)
    return float(simpson(y, x=x) / threshold)
