"""Drawing with OpenCV only (no matplotlib): CED plots of an evaluation and landmark overlays.

Images are RGB uint8 ``H x W x 3`` (the package convention); :func:`save_ced_png` converts to BGR for ``cv2``.
Landmarks are drawn at their sub-pixel positions (OpenCV's fixed-point ``shift``), never rounded first.

>>> import numpy as np
>>> x = np.linspace(0.0, 0.1, 1001)
>>> canvas = draw_ced({"all": (x, np.clip(x / 0.05, 0, 1))}, title="CED")
>>> canvas.shape, canvas.dtype
((480, 640, 3), dtype('uint8'))
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

__all__ = ["AXIS_COLOURS", "PALETTE", "draw_axes", "draw_ced", "draw_faces", "draw_landmarks", "save_ced_png"]

#: Curve colours (RGB), used in order.
PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)

#: Colours (RGB) of a head pose's x (image right), y (down) and z (away from the camera) axes.
AXIS_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))
_SHIFT = 4  # fixed-point bits of cv2 drawing coordinates: 1/16 px
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _fixed(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates -> int32 fixed point for OpenCV's ``shift`` argument."""
    return np.round(np.asarray(points, dtype=np.float64) * (1 << _SHIFT)).astype(np.int32)


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.45, align: str = "left") -> None:
    (width, height), _ = cv2.getTextSize(text, _FONT, scale, 1)
    x, y = origin
    if align == "center":
        x -= width // 2
    elif align == "right":
        x -= width
    cv2.putText(canvas, text, (x, y + height // 2), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def draw_ced(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    title: str = "",
    size: tuple[int, int] = (640, 480),
) -> np.ndarray:
    """A cumulative error distribution plot: fraction of faces (y, 0..1) with NME <= x, x in percent.

    Args:
        curves: label -> ``(x, y)`` arrays of equal length (``awing.metrics.ced_curve``), x as a fraction; the
            x range is ``[0, max x]`` over all curves.
        title: text above the plot.
        size: canvas ``(width, height)`` in pixels.

    Returns:
        RGB uint8 canvas of shape ``(height, width, 3)``.
    """
    if not curves:
        raise ValueError("draw_ced needs at least one curve, got none")
    for label, (x, y) in curves.items():
        if np.shape(x) != np.shape(y) or np.ndim(x) != 1 or len(x) < 2:
            raise ValueError(f"curve {label!r}: x and y must be 1-D arrays of equal length >= 2")
    width, height = size
    if width < 200 or height < 150:
        raise ValueError(f"size must be at least (200, 150), got {size}")
    canvas = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 60, width - 15, 35, height - 45
    x_max = max(float(np.max(x)) for x, _ in curves.values())
    if not x_max > 0:
        raise ValueError(f"the curves' x range must extend beyond 0, got max {x_max}")

    def to_px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        px = left + np.asarray(x, np.float64) / x_max * (right - left)
        py = bottom - np.clip(np.asarray(y, np.float64), 0.0, 1.0) * (bottom - top)
        return np.stack([px, py], axis=-1)

    grey = (220, 220, 220)
    for i in range(6):  # y ticks 0, 0.2, ..., 1
        y_px = int(round(bottom - i / 5 * (bottom - top)))
        cv2.line(canvas, (left, y_px), (right, y_px), grey, 1)
        _text(canvas, f"{i / 5:.1f}", (left - 8, y_px), align="right")
    for i in range(6):  # x ticks at fifths of the range, in percent
        x_px = int(round(left + i / 5 * (right - left)))
        cv2.line(canvas, (x_px, top), (x_px, bottom), grey, 1)
        _text(canvas, f"{100 * x_max * i / 5:g}", (x_px, bottom + 14), align="center")
    cv2.rectangle(canvas, (left, top), (right, bottom), (0, 0, 0), 1)
    _text(canvas, "NME (%)", ((left + right) // 2, height - 12), align="center")
    _text(canvas, "fraction", (8, top - 18))
    if title:
        _text(canvas, title, ((left + right) // 2, 14), scale=0.5, align="center")
    for i, (label, (x, y)) in enumerate(curves.items()):
        colour = PALETTE[i % len(PALETTE)]
        cv2.polylines(canvas, [_fixed(to_px(x, y))], False, colour, 2, cv2.LINE_AA, _SHIFT)
        y_px = bottom - 14 - 18 * (len(curves) - 1 - i)  # legend, bottom right, above the x axis
        cv2.line(canvas, (right - 150, y_px), (right - 125, y_px), colour, 2, cv2.LINE_AA)
        _text(canvas, label, (right - 118, y_px))
    return canvas


def save_ced_png(
    path: str | os.PathLike,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    title: str = "",
    size: tuple[int, int] = (640, 480),
) -> Path:
    """Write :func:`draw_ced` as a PNG file (parent folders are created) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas = draw_ced(curves, title=title, size=size)
    if not cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write PNG {path}")
    return path


def draw_landmarks(
    image: np.ndarray,
    landmarks: np.ndarray,
    boxes: np.ndarray | None = None,
    *,
    colour: tuple[int, int, int] = (0, 255, 0),
    box_colour: tuple[int, int, int] = (255, 0, 0),
    radius: float | None = None,
) -> np.ndarray:
    """A copy of ``image`` with landmarks as filled dots and optional face boxes.

    Args:
        image: ``H x W x 3`` RGB uint8 (or ``H x W`` grey, drawn on an RGB copy).
        landmarks: ``(K, 2)`` points of one face or ``(F, K, 2)`` of several, in image pixels; NaN points skipped.
        boxes: optional ``(4,)`` or ``(F, 4)`` boxes ``(x0, y0, x1, y1)``.
        colour, box_colour: RGB colours.
        radius: dot radius in pixels; default scales with the image (``max(1, min(H, W) / 200)``).

    Returns:
        RGB uint8 ``H x W x 3``.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise TypeError(
            f"image must be an H x W (x 3) uint8 array, got {type(image).__name__} {getattr(image, 'shape', '')}"
        )
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image.copy()
    if canvas.shape[2] != 3:
        raise ValueError(f"image must have 3 channels (RGB), got shape {image.shape}")
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim == 2:
        points = points[None]
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"landmarks must have shape (K, 2) or (F, K, 2), got {np.shape(landmarks)}")
    radius = max(1.0, min(canvas.shape[:2]) / 200) if radius is None else float(radius)
    r_fixed = int(round(radius * (1 << _SHIFT)))
    for point in points.reshape(-1, 2):
        if np.isfinite(point).all():
            centre = tuple(int(v) for v in _fixed(point))
            cv2.circle(canvas, centre, r_fixed, colour, -1, cv2.LINE_AA, _SHIFT)
    if boxes is not None:
        rects = np.asarray(boxes, dtype=np.float64)
        if rects.shape[-1:] != (4,) or rects.ndim > 2:
            raise ValueError(f"boxes must have shape (4,) or (F, 4), got {rects.shape}")
        rects = rects.reshape(-1, 4)
        for x0, y0, x1, y1 in _fixed(rects):
            cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1), int(y1)), box_colour, 1, cv2.LINE_AA, _SHIFT)
    return canvas


def draw_axes(image: np.ndarray, axes: np.ndarray, labels: list[str] | None = None) -> np.ndarray:
    """A copy of ``image`` (RGB uint8) with head-pose axes and optional labels drawn on it.

    Args:
        axes: ``(4, 2)`` or ``(F, 4, 2)`` image points per face: the origin, then the ends of the x, y and z axes
            (``awing.pose.HeadPose.axes``), drawn in :data:`AXIS_COLOURS` (red x, green y, blue z).
        labels: optional text per face, written at its origin (e.g. ``"#3 yaw 12"``).
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise TypeError(f"image must be an H x W x 3 uint8 array, got {getattr(image, 'shape', type(image))}")
    points = np.asarray(axes, dtype=np.float64)
    points = points[None] if points.ndim == 2 else points
    if points.ndim != 3 or points.shape[1:] != (4, 2):
        raise ValueError(f"axes must have shape (4, 2) or (F, 4, 2), got {np.shape(axes)}")
    if labels is not None and len(labels) != len(points):
        raise ValueError(f"labels must have one entry per face: {len(points)} faces, {len(labels)} labels")
    canvas = image.copy()
    thickness = max(1, int(round(min(canvas.shape[:2]) / 240)))
    for f, face in enumerate(points):
        if not np.isfinite(face).all():
            continue
        origin = tuple(int(v) for v in _fixed(face[0]))
        for end, colour in zip(face[1:], AXIS_COLOURS, strict=True):
            cv2.line(canvas, origin, tuple(int(v) for v in _fixed(end)), colour, thickness, cv2.LINE_AA, _SHIFT)
        if labels is not None:
            x, y = (int(round(v)) for v in face[0])
            scale = max(0.4, min(canvas.shape[:2]) / 900)
            cv2.putText(canvas, labels[f], (x + 4, y - 6), _FONT, scale, (255, 255, 0), 1, cv2.LINE_AA)
    return canvas


def draw_faces(
    image: np.ndarray, landmarks: np.ndarray, boxes: np.ndarray, scores: list[float | None] | None = None
) -> np.ndarray:
    """A copy of ``image`` with each face in its own colour (:data:`PALETTE`, in turn): its points, its box and a
    label ``"<number>: <score>"`` above the box (the number counts from 1 in the given order; the score is left out
    where it is ``None``).

    Args:
        image: ``H x W x 3`` RGB uint8 (or ``H x W`` grey).
        landmarks: ``(F, K, 2)`` image pixels.
        boxes: ``(F, 4)`` boxes ``(x0, y0, x1, y1)``.
        scores: ``F`` detector scores or ``None`` each (default: no scores).
    """
    landmarks, boxes = np.asarray(landmarks, np.float64), np.asarray(boxes, np.float64)
    if landmarks.ndim != 3 or boxes.shape != (len(landmarks), 4):
        raise ValueError(f"expected landmarks (F, K, 2) and boxes (F, 4), got {landmarks.shape} and {boxes.shape}")
    scores = [None] * len(boxes) if scores is None else list(scores)
    if len(scores) != len(boxes):
        raise ValueError(f"expected {len(boxes)} scores (one per face), got {len(scores)}")
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image
    scale = max(0.4, min(canvas.shape[:2]) / 800)
    for i, (points, box, score) in enumerate(zip(landmarks, boxes, scores, strict=True)):
        colour = PALETTE[i % len(PALETTE)]
        canvas = draw_landmarks(canvas, points, box, colour=colour, box_colour=colour)
        label = f"{i + 1}" if score is None else f"{i + 1}: {score:.2f}"
        (width, height), baseline = cv2.getTextSize(label, _FONT, scale, 1)
        x = int(np.clip(box[0], 0, max(canvas.shape[1] - width, 0)))
        y = int(np.clip(box[1] - 3, height + 1, canvas.shape[0] - baseline))
        cv2.rectangle(canvas, (x, y - height - 1), (x + width, y + baseline), colour, -1)
        cv2.putText(canvas, label, (x, y), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas.copy() if canvas is image else canvas
