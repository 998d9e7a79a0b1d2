"""Box-adapter calibration: fit :class:`~awing.geometry.BoxAdapter` from detector boxes paired with target boxes.

The adapter maps a detector box ``d`` (centre ``(cx_d, cy_d)``, size ``(w_d, h_d)``) to a box with centre
``(cx_d + shift_x w_d, cy_d + shift_y h_d)`` and size ``scale (w_d, h_d)``; the landmark crop is the square of side
``crop_scale * max`` of that size around that centre (:func:`awing.geometry.box_to_crop_matrix`). So the crop of
the adapted box equals the crop of a target box ``t`` (the box convention the model was trained with) exactly when

    shift_x = (cx_t - cx_d) / w_d,    shift_y = (cy_t - cy_d) / h_d,    scale = max(w_t, h_t) / max(w_d, h_d).

:func:`adapter_terms` computes these three per face; :func:`fit_box_adapter` takes the median of each over the
faces (robust to the odd misplaced detection) and reports their quartiles; :func:`crop_errors` says how far a
box's crop is from its target's. ``scripts/calibrate_box_adapter.py`` runs them on the landmark model's training
faces.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from awing.geometry import BoxAdapter

__all__ = ["TERMS", "AdapterFit", "adapter_terms", "best_match", "crop_errors", "file_sha256", "fit_box_adapter"]

TERMS = ("shift_x", "shift_y", "scale")
"""The per-face quantities of :func:`adapter_terms`, in column order (the :class:`BoxAdapter` fields)."""


def _boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    """``(N, 4)`` xyxy -> float64, checked finite with positive width and height."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} must be (N, 4) xyxy boxes, got shape {array.shape}")
    bad = ~np.isfinite(array).all(axis=1) | (array[:, 2] <= array[:, 0]) | (array[:, 3] <= array[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] must be finite with x1 > x0 and y1 > y0, got {array[i].tolist()}")
    return array


def adapter_terms(detector_boxes: np.ndarray, target_boxes: np.ndarray) -> np.ndarray:
    """Per-face adapter that maps each detector box onto its target box's crop (module docstring formulas).

    Args:
        detector_boxes: ``(N, 4)`` xyxy detector boxes.
        target_boxes: ``(N, 4)`` xyxy boxes of the training convention, in the same pixels, paired by row.

    Returns:
        float64 ``(N, 3)``: columns :data:`TERMS` = ``shift_x``, ``shift_y``, ``scale``.
    """
    det = _boxes(detector_boxes, "detector_boxes")
    target = _boxes(target_boxes, "target_boxes")
    if len(det) != len(target):
        raise ValueError(f"detector_boxes and target_boxes must pair up, got {len(det)} and {len(target)} boxes")
    size_d, size_t = det[:, 2:] - det[:, :2], target[:, 2:] - target[:, :2]
    shift = (0.5 * (target[:, :2] + target[:, 2:]) - 0.5 * (det[:, :2] + det[:, 2:])) / size_d
    scale = size_t.max(axis=1) / size_d.max(axis=1)
    return np.column_stack([shift, scale])


def crop_errors(boxes: np.ndarray, target_boxes: np.ndarray) -> np.ndarray:
    """How far the crop of each box is from the crop of its target box (what the landmark model sees).

    With ``s = max(w, h)`` (the crop side over ``crop_scale``): ``centre = ||c - c_t|| / s_t`` and
    ``size = |ln(s / s_t)|``. Both are 0 exactly when the two crops coincide.

    Shapes: ``(N, 4)`` and ``(N, 4)`` xyxy -> float64 ``(N, 2)``, columns ``centre``, ``size``.
    """
    terms = adapter_terms(boxes, target_boxes)  # shift in box sizes, side ratio s_t / s
    boxes = np.asarray(boxes, dtype=np.float64)
    size = boxes[:, 2:] - boxes[:, :2]
    offset = terms[:, :2] * size / (terms[:, 2:] * size.max(axis=1, keepdims=True))
    return np.column_stack([np.linalg.norm(offset, axis=1), np.abs(np.log(terms[:, 2]))])


@dataclass(frozen=True)
class AdapterFit:
    """A fitted adapter and the spread of its per-face terms.

    Attributes:
        adapter: the medians of :func:`adapter_terms` as a :class:`BoxAdapter`.
        count: faces used.
        quartiles: per term of :data:`TERMS`, ``(q25, median, q75)`` (linear interpolation, ``np.percentile``).
    """

    adapter: BoxAdapter
    count: int
    quartiles: dict[str, tuple[float, float, float]]

    def iqr(self, term: str) -> float:
        """Interquartile range ``q75 - q25`` of ``term``."""
        q25, _, q75 = self.quartiles[term]
        return q75 - q25

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: ``box_adapter``, ``count`` and per term ``{"q25", "median", "q75", "iqr"}``."""
        spread = {
            term: {"q25": q25, "median": median, "q75": q75, "iqr": q75 - q25}
            for term, (q25, median, q75) in self.quartiles.items()
        }
        return {"box_adapter": self.adapter.to_dict(), "count": self.count, "terms": spread}


def fit_box_adapter(detector_boxes: np.ndarray, target_boxes: np.ndarray) -> AdapterFit:
    """Median per-face adapter terms (:func:`adapter_terms`) of ``N >= 1`` paired ``(N, 4)`` xyxy boxes.

    >>> det = np.array([[0.0, 0, 100, 100], [10, 20, 60, 70]])
    >>> fit_box_adapter(det, BoxAdapter(shift_y=0.1, scale=0.8)(det)).adapter
    BoxAdapter(shift_x=0.0, shift_y=0.1, scale=0.8)
    """
    terms = adapter_terms(detector_boxes, target_boxes)
    if len(terms) == 0:
        raise ValueError("fit_box_adapter needs at least one pair of boxes, got 0")
    q25, median, q75 = np.percentile(terms, [25, 50, 75], axis=0)
    quartiles = {name: (float(q25[j]), float(median[j]), float(q75[j])) for j, name in enumerate(TERMS)}
    adapter = BoxAdapter(**{name: quartiles[name][1] for name in TERMS})
    return AdapterFit(adapter, len(terms), quartiles)


def best_match(boxes: np.ndarray, scores: np.ndarray, target: np.ndarray, min_iou: float = 0.3) -> int | None:
    """Index of the highest-scoring box whose IoU with ``target`` is at least ``min_iou``; ``None`` when none is.

    Args:
        boxes: ``(N, 4)`` xyxy detections (``N`` may be 0).
        scores: ``(N,)`` their scores.
        target: ``(4,)`` xyxy box.
        min_iou: in ``(0, 1]``.
    """
    if not 0 < min_iou <= 1:
        raise ValueError(f"min_iou must be in (0, 1], got {min_iou!r}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(boxes):
        raise ValueError(f"scores must have one value per box: {len(boxes)} boxes, {len(scores)} scores")
    (t,) = _boxes(np.reshape(target, (1, 4)), "target")
    inter = np.clip(np.minimum(boxes[:, 2:], t[2:]) - np.maximum(boxes[:, :2], t[:2]), 0, None).prod(axis=1)
    union = (boxes[:, 2:] - boxes[:, :2]).prod(axis=1) + (t[2:] - t[:2]).prod() - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    candidates = np.flatnonzero(iou >= min_iou)
    return None if candidates.size == 0 else int(candidates[np.argmax(scores[candidates])])


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes: ties an adapter to the exact detector file it was calibrated for."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
