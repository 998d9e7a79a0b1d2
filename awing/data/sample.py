"""The sample types: :class:`LandmarkRecord` (parsed annotation, no pixels) and :class:`FaceSample` (with the image).

Coordinates follow ``awing.geometry``: 0-based image pixels, pixel centres on integers, float32, never rounded.

Boxes are ``(x0, y0, x1, y1)`` in the same frame. A data set's own box is used where it has one (WFLW, COFW,
COCO-style JSON, SPIGA JSON); a box given as ``(x, y, w, h)`` becomes ``(x, y, x + w, y + h)``. Where a data set has
none (300W, ``.pts`` folders, AFLW2000-3D, AFLW) the box is the tight box of the visible points
(:func:`tight_box`).

``visible[k]`` says that point k has an annotated location that losses and metrics should use. A point that is
annotated but hidden (COFW's occlusion flags) stays visible and is listed in ``attributes["occluded"]``; a point
without a location (AFLW's invisible points) has ``visible[k] = False`` and placeholder coordinates (0, 0).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from awing.data.io import DataError, location

__all__ = ["FaceSample", "LandmarkRecord", "make_record", "tight_box"]


@dataclass(eq=False)
class LandmarkRecord:
    """One annotated face without its pixels (what a dataset parses at construction).

    Attributes:
        image_path: the image file (for COFW, ``"<file.mat>[IsT[i]]"``: the image lives in the MAT file).
        landmarks_img: K x 2 float32, image pixels.
        visible: K bool.
        box: (4,) float32 ``(x0, y0, x1, y1)``.
        attributes: data-set specific values; ``attributes["subsets"]`` is a tuple of subset names.
        source: where the annotation came from (``file:line`` or ``file [item]``), for error messages.
    """

    image_path: str
    landmarks_img: np.ndarray
    visible: np.ndarray
    box: np.ndarray
    attributes: dict[str, Any] = field(default_factory=dict)
    source: str = ""


@dataclass(eq=False)
class FaceSample:
    """One face ready for augmentation.

    Attributes:
        image: H x W x 3 RGB uint8.
        landmarks_img: K x 2 float32 (x, y) in image pixels; meaningful only where ``visible``.
        box: (4,) float32 ``(x0, y0, x1, y1)`` in image pixels (see the module docstring for its origin).
        visible: (K,) bool.
        scheme: landmark scheme name (``awing.landmarks.get_scheme``), e.g. ``"98"``.
        attributes: data-set specific values (WFLW flags, ``subsets``, ``yaw_deg``, ``occluded``, ...).
        image_path: where the image came from.
    """

    image: np.ndarray
    landmarks_img: np.ndarray
    box: np.ndarray
    visible: np.ndarray
    scheme: str
    attributes: dict[str, Any]
    image_path: str


def tight_box(landmarks: np.ndarray) -> np.ndarray:
    """Tight box of N x 2 points -> (4,) float32 ``(min x, min y, max x, max y)``."""
    points = np.asarray(landmarks, dtype=np.float32).reshape(-1, 2)
    if len(points) == 0:
        raise ValueError("tight_box needs at least one point, got none")
    return np.concatenate([points.min(axis=0), points.max(axis=0)]).astype(np.float32)


MAX_COORDINATE = 65536.0
"""Largest ``|x|`` or ``|y|`` of an annotated point (JPEG's largest side): beyond it a point is a typo, not a face."""


def make_record(
    landmarks: np.ndarray,
    *,
    num_points: int,
    image_path: str | os.PathLike,
    file: str | os.PathLike,
    line: int | None = None,
    item: str | None = None,
    box: np.ndarray | None = None,
    visible: np.ndarray | None = None,
    attributes: dict[str, Any] | None = None,
    check_image: bool = False,
) -> LandmarkRecord:
    """Validate one annotation and build its record; every failure is a :class:`DataError` at ``file:line``.

    Checks: K x 2 points with K == ``num_points``; finite values within :data:`MAX_COORDINATE`; at least one
    visible point; a finite box with x1 > x0 and y1 > y0 (the tight box of the visible points when ``box`` is
    None); with ``check_image``, that the image file exists.
    """
    points = np.asarray(landmarks, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 2:
        raise DataError(f"landmarks have shape {points.shape}; expected K x 2", file, line, item)
    if len(points) != num_points:
        raise DataError(f"{len(points)} points; the scheme has {num_points}", file, line, item)
    if not np.isfinite(points).all():
        raise DataError("a landmark coordinate is NaN or infinite", file, line, item)
    far = np.flatnonzero((np.abs(points) > MAX_COORDINATE).any(axis=1))
    if len(far):
        raise DataError(
            f"point {far[0]} at {points[far[0]].tolist()} lies outside any image (|x|, |y| <= {MAX_COORDINATE:g} px)",
            file,
            line,
            item,
        )
    mask = np.ones(num_points, dtype=bool) if visible is None else np.asarray(visible, dtype=bool).reshape(-1)
    if mask.shape != (num_points,):
        raise DataError(f"visibility has {mask.size} values for {num_points} points", file, line, item)
    if not mask.any():
        raise DataError("no visible point", file, line, item)
    rect = tight_box(points[mask]) if box is None else np.asarray(box, dtype=np.float32).reshape(-1)
    if rect.shape != (4,) or not np.isfinite(rect).all():
        raise DataError(f"box {rect.tolist()} is not 4 finite numbers", file, line, item)
    if box is not None and not (rect[2] > rect[0] and rect[3] > rect[1]):
        raise DataError(f"box (x0, y0, x1, y1) = {rect.tolist()} has no area", file, line, item)
    if check_image and not os.path.isfile(image_path):
        raise DataError(f"image not found: {image_path}", file, line, item)
    return LandmarkRecord(
        image_path=str(image_path),
        landmarks_img=points,
        visible=mask,
        box=rect,
        attributes=dict(attributes or {}),
        source=location(file, line, item),
    )
