"""Affine geometry: boxes to crops, augmentation, crop to heatmap, and point/image warping.

Coordinate convention (the only place it is stated; every other module follows it):

- Coordinates are 0-based ``(x, y)`` with pixel centres on integers, as in OpenCV's ``warpAffine``: pixel ``(i, j)``
  (column ``i``, row ``j``) is centred at ``(i, j)``, and an image of width ``W`` and height ``H`` spans
  ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``.
- Landmarks are float32 and never rounded. Variables name their frame by suffix: ``_img`` (original image),
  ``_crop`` (network input), ``_hm`` (heatmap grid).
- A transform is one float64 2x3 affine matrix ``M = [[a, b, tx], [c, d, ty]]`` mapping a source point to a
  destination point: ``x_dst = a x + b y + tx``, ``y_dst = c x + d y + ty``. The same matrix warps the image
  (:func:`warp_image`) and the points (:func:`transform_points`). Crop, augmentation and flip compose into one
  matrix per sample (:func:`compose`); a flip shows as ``det(M[:, :2]) < 0`` (:func:`is_mirrored`), and then the
  landmark scheme's flip permutation must be applied to keep left/right semantics (:func:`flip_landmarks`).

Sizes are ``int`` (square) or ``(width, height)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import cv2
import numpy as np

__all__ = [
    "BoxAdapter",
    "MAX_BOX_SIDE_FACTOR",
    "MIN_BOX_SIDE",
    "box_problem",
    "as_size",
    "augmentation_matrix",
    "box_to_crop_matrix",
    "compose",
    "crop_to_heatmap_matrix",
    "flip_landmarks",
    "invert",
    "is_mirrored",
    "points_box",
    "transform_points",
    "warp_image",
]

Size = int | tuple[int, int]


def as_size(size: Size, name: str) -> tuple[int, int]:
    """An int or a ``(width, height)`` pair of positive ints -> ``(width, height)``; ValueError otherwise."""
    pair = (size, size) if isinstance(size, (int, np.integer)) else size
    if (
        not isinstance(pair, Sequence)
        or isinstance(pair, str)
        or len(pair) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in pair)
    ):
        raise ValueError(f"{name} must be a positive int or a (W, H) pair of positive ints, got {size!r}")
    return int(pair[0]), int(pair[1])


def _square_size(size: Size, name: str) -> int:
    w, h = as_size(size, name)
    if w != h:
        raise ValueError(f"{name} must be square (an int or (S, S)), got (width, height) = {size!r}")
    return w


def _as_matrix(M: np.ndarray, name: str = "M") -> np.ndarray:
    """Validate a 2x3 affine matrix and return it as float64."""
    M = np.asarray(M, dtype=np.float64)
    if M.shape != (2, 3):
        raise ValueError(f"{name} must be a 2x3 affine matrix, got shape {M.shape}")
    if not np.isfinite(M).all():
        raise ValueError(f"{name} must be finite, got {M.tolist()}")
    return M


def _matrix(A: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Build ``[A | t]`` from a 2x2 linear part and a translation."""
    return np.concatenate([np.asarray(A, np.float64), np.asarray(t, np.float64).reshape(2, 1)], axis=1)


MIN_BOX_SIDE = 1.0
"""Smallest face box side in pixels: a smaller box holds no face (and a subnormal side overflows ``S / side``)."""
MAX_BOX_SIDE_FACTOR = 16.0
"""Largest face box side, in multiples of the image's longer side (a box beyond that holds no face of the image)."""


def box_problem(box: Sequence[float], image_size: tuple[int, int] | None = None) -> str | None:
    """Why ``box = (x0, y0, x1, y1)`` cannot be a face box, or ``None`` when it can: the one box check of awing.

    The coordinates must be finite, the sides ``x1 - x0`` and ``y1 - y0`` finite (``+-1e308`` overflows) and at
    least :data:`MIN_BOX_SIDE`. With ``image_size = (width, height)`` the box must also overlap the image (its
    extent ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``) and its sides be at most :data:`MAX_BOX_SIDE_FACTOR` times the
    image's longer side.

    >>> box_problem([0, 0, 10, 10]) is None, box_problem([-1e308, 0, 1e308, 10])
    (True, 'its width and height must be finite, got inf x 10')
    >>> box_problem([200, 0, 300, 50], (100, 100))
    'it lies entirely outside the 100 x 100 image'
    """
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.shape != (4,) or not np.isfinite(values).all():
        return f"it must be 4 finite numbers (x0, y0, x1, y1), got {values.tolist()}"
    x0, y0, x1, y1 = values.tolist()
    with np.errstate(over="ignore"):
        width, height = float(np.subtract(x1, x0)), float(np.subtract(y1, y0))
    if not (math.isfinite(width) and math.isfinite(height)):
        return f"its width and height must be finite, got {width:g} x {height:g}"
    if width < MIN_BOX_SIDE or height < MIN_BOX_SIDE:
        return f"it needs x1 > x0 and y1 > y0 by at least {MIN_BOX_SIDE:g} px, got width {width:g}, height {height:g}"
    if image_size is not None:
        image_w, image_h = image_size
        if x1 < -0.5 or y1 < -0.5 or x0 > image_w - 0.5 or y0 > image_h - 0.5:
            return f"it lies entirely outside the {image_w} x {image_h} image"
        limit = MAX_BOX_SIDE_FACTOR * max(image_w, image_h)
        if max(width, height) > limit:
            side = max(width, height)
            return f"its side {side:g} px exceeds {MAX_BOX_SIDE_FACTOR:g} x the {image_w} x {image_h} image's"
    return None


def box_to_crop_matrix(box: Sequence[float], output_size: Size, scale: float = 1.25) -> np.ndarray:
    """Matrix mapping image coordinates to a square crop centred on ``box``.

    One box convention for ground-truth, detector and user boxes alike: ``box = (x0, y0, x1, y1)`` in image
    coordinates. With centre ``c = ((x0 + x1) / 2, (y0 + y1) / 2)`` and side ``s = scale * max(x1 - x0, y1 - y0)``,
    the square ``[c - s/2, c + s/2]^2`` maps exactly onto the crop's extent ``[-0.5, S - 0.5]^2``::

        x_crop = (x_img - (cx - s / 2)) * S / s - 0.5      (same for y)

    so the box centre lands on the crop centre ``((S - 1) / 2, (S - 1) / 2)``.

    Args:
        box: ``(x0, y0, x1, y1)`` with ``x1 > x0`` and ``y1 > y0``.
        output_size: crop size ``S`` (an int or a square ``(S, S)``; non-square crops are not supported).
        scale: side of the square relative to the box's longer side (> 0).

    Returns:
        float64 array of shape (2, 3).
    """
    S = _square_size(output_size, "output_size")
    values = np.asarray(box, dtype=np.float64)
    if values.shape != (4,):
        raise ValueError(f"box must be (x0, y0, x1, y1), got shape {values.shape}: {box!r}")
    problem = box_problem(values)
    if problem is not None:
        raise ValueError(f"invalid box {values.tolist()}: {problem}")
    x0, y0, x1, y1 = values
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    side = scale * max(x1 - x0, y1 - y0)
    k = S / side
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return _matrix(k * np.eye(2), [-(cx - side / 2) * k - 0.5, -(cy - side / 2) * k - 0.5])


def points_box(landmarks: np.ndarray, visible: np.ndarray | None = None) -> tuple[float, float, float, float]:
    """Tight box ``(x0, y0, x1, y1)`` of the visible, finite points of ``landmarks`` (K, 2).

    ``visible`` (K,) bool selects points; NaN/inf points are ignored. Raises ValueError when no point is left.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"landmarks must have shape (K, 2), got {pts.shape}")
    keep = np.isfinite(pts).all(axis=1)
    if visible is not None:
        visible = np.asarray(visible)
        if visible.shape != (pts.shape[0],):
            raise ValueError(f"visible must have shape ({pts.shape[0]},), got {visible.shape}")
        keep &= visible.astype(bool)
    if not keep.any():
        raise ValueError(f"no visible finite point among {pts.shape[0]} landmarks: cannot build a box")
    lo, hi = pts[keep].min(axis=0), pts[keep].max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def augmentation_matrix(
    output_size: Size,
    *,
    scale: float = 1.0,
    rotation_deg: float = 0.0,
    shift: Sequence[float] = (0.0, 0.0),
    flip: bool = False,
) -> np.ndarray:
    """Augmentation acting in the crop frame (crop -> crop), in this order:

    1. scale by ``scale`` (> 1 zooms in) and rotate by ``rotation_deg`` about the crop centre
       ``c = ((W - 1) / 2, (H - 1) / 2)``; positive angles turn the content counter-clockwise on screen
       (OpenCV's ``getRotationMatrix2D`` sign): ``x' = s R (x - c) + c`` with ``R = [[cos, sin], [-sin, cos]]``;
    2. translate by ``shift = (dx, dy)`` pixels;
    3. if ``flip``, mirror horizontally about the centre: ``x' = W - 1 - x``.

    The flip reverses left and right: apply the scheme's flip permutation to the landmarks afterwards
    (see :func:`flip_landmarks`, :func:`is_mirrored`).

    Returns:
        float64 array of shape (2, 3).
    """
    W, H = as_size(output_size, "output_size")
    values = np.array([scale, rotation_deg, *np.asarray(shift, dtype=np.float64).ravel()], dtype=np.float64)
    if values.shape != (4,) or not np.isfinite(values).all() or scale <= 0:
        raise ValueError(
            f"expected a positive finite scale, a finite rotation_deg and a finite (dx, dy) shift, "
            f"got scale={scale!r}, rotation_deg={rotation_deg!r}, shift={shift!r}"
        )
    theta = math.radians(rotation_deg)
    A = scale * np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    centre = np.array([(W - 1) / 2, (H - 1) / 2])
    M = _matrix(A, centre + values[2:] - A @ centre)
    if flip:
        M = compose(M, _matrix(np.diag([-1.0, 1.0]), [W - 1, 0.0]))
    return M


def crop_to_heatmap_matrix(input_size: Size, heatmap_size: Size) -> np.ndarray:
    """Matrix from the network input grid to its heatmap grid: pixel centres map to pixel centres.

    ``x_hm = (x_crop + 0.5) * H / S - 0.5`` per axis (``S`` input size, ``H`` heatmap size; stride ``S / H``).

    Returns:
        float64 array of shape (2, 3).
    """
    W_in, H_in = as_size(input_size, "input_size")
    W_hm, H_hm = as_size(heatmap_size, "heatmap_size")
    k = np.array([W_hm / W_in, H_hm / H_in])
    return _matrix(np.diag(k), 0.5 * k - 0.5)


def compose(*matrices: np.ndarray) -> np.ndarray:
    """The matrix applying ``matrices`` in the given order: ``compose(A, B)`` maps ``x`` to ``B(A(x))``.

    With no argument, the identity. Returns a float64 array of shape (2, 3).
    """
    out = np.eye(3)
    for i, M in enumerate(matrices):
        out = np.vstack([_as_matrix(M, f"matrices[{i}]"), [0.0, 0.0, 1.0]]) @ out
    return out[:2].copy()


def invert(M: np.ndarray) -> np.ndarray:
    """Inverse affine matrix: ``[A | t]^-1 = [A^-1 | -A^-1 t]``. Raises ValueError when ``A`` is singular."""
    M = _as_matrix(M)
    A, t = M[:, :2], M[:, 2]
    det = float(np.linalg.det(A))
    if abs(det) <= 1e-12 * max(float(np.abs(A).max()), 1e-300) ** 2:
        raise ValueError(f"matrix is not invertible (det of its 2x2 part = {det:g}): {M.tolist()}")
    A_inv = np.linalg.inv(A)
    return _matrix(A_inv, -A_inv @ t)


def transform_points(M: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply ``M`` to points of shape (..., 2).

    Computed in float64; the result is float32 when ``points`` is float32, else float64. NaN points stay NaN.
    """
    M = _as_matrix(M)
    pts = np.asarray(points)
    if pts.ndim == 0 or pts.shape[-1] != 2:
        raise ValueError(f"points must have shape (..., 2), got {pts.shape}")
    out = pts.astype(np.float64) @ M[:, :2].T + M[:, 2]
    return out.astype(np.float32) if pts.dtype == np.float32 else out


def is_mirrored(M: np.ndarray) -> bool:
    """True when ``M`` reverses orientation (``det(M[:, :2]) < 0``), i.e. contains a flip."""
    return bool(np.linalg.det(_as_matrix(M)[:, :2]) < 0)


def warp_image(
    image: np.ndarray, M: np.ndarray, output_size: Size, border_value: float | Sequence[float] = 0
) -> np.ndarray:
    """Warp ``image`` (H, W) or (H, W, C) by ``M`` (source -> destination) into an image of ``output_size``.

    ``cv2.warpAffine`` with ``flags=INTER_LINEAR`` (bilinear; ``M`` is the forward map, OpenCV inverts it) and
    ``borderMode=BORDER_CONSTANT`` filled with ``border_value`` (a scalar applies to every channel). OpenCV
    quantises source coordinates to 1/32 px (rounding ties up: a mean bias of +1/2048 px); irrelevant at
    landmark accuracy. Returns an array of the image's dtype and channel count, shape (out_H, out_W[, C]).
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        shape = getattr(image, "shape", None)
        raise ValueError(f"image must be a non-empty (H, W) or (H, W, C) numpy array, got {type(image)} {shape}")
    M = _as_matrix(M)
    W, H = as_size(output_size, "output_size")
    border = (float(border_value),) * 4 if np.isscalar(border_value) else tuple(map(float, border_value))
    out = cv2.warpAffine(
        np.ascontiguousarray(image),
        M,
        (W, H),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border,
    )
    return out[..., None] if image.ndim == 3 and out.ndim == 2 else out


def flip_landmarks(landmarks: np.ndarray, width: int, flip_index: Sequence[int]) -> np.ndarray:
    """Mirror landmarks (..., K, 2) horizontally in an image of ``width`` and restore left/right semantics.

    ``x' = width - 1 - x`` (the mirror of this module's convention, same as ``augmentation_matrix(flip=True)``),
    then point ``i`` of the result is mirrored point ``flip_index[i]`` (the scheme's flip permutation,
    ``LandmarkScheme.flip_index``). Keeps the dtype of ``landmarks``.
    """
    pts = np.asarray(landmarks)
    if pts.ndim < 2 or pts.shape[-1] != 2:
        raise ValueError(f"landmarks must have shape (..., K, 2), got {pts.shape}")
    if not (isinstance(width, (int, np.integer)) and not isinstance(width, bool) and width > 0):
        raise ValueError(f"width must be a positive int (image width in pixels), got {width!r}")
    perm = np.asarray(flip_index)
    K = pts.shape[-2]
    is_perm = perm.shape == (K,) and np.issubdtype(perm.dtype, np.integer)
    if not (is_perm and np.array_equal(np.sort(perm), np.arange(K))):
        raise ValueError(f"flip_index must be a permutation of range({K}) for {K} landmarks, got {flip_index!r}")
    out = pts.copy() if np.issubdtype(pts.dtype, np.floating) else pts.astype(np.float64)
    out[..., 0] = (width - 1) - out[..., 0]
    return out[..., perm, :]


def _finite(value: Any, name: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def _check_keys(cls: type, data: Mapping[str, Any], extra: tuple[str, ...] = ()) -> None:
    known = {f.name for f in fields(cls)} | set(extra)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys: {sorted(known)}")


@dataclass(frozen=True)
class BoxAdapter:
    """Linear map from a detector's boxes to the box convention the landmark model was trained with.

    For a box ``(x0, y0, x1, y1)`` with size ``(w, h)`` and centre ``(cx, cy)``, the adapted box has centre
    ``(cx + shift_x * w, cy + shift_y * h)`` and size ``(scale * w, scale * h)``. The identity by default.

    >>> BoxAdapter(shift_y=0.1, scale=0.5)(np.array([[0.0, 0.0, 100.0, 200.0]])).tolist()
    [[25.0, 70.0, 75.0, 170.0]]
    """

    shift_x: float = 0.0
    shift_y: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("shift_x", "shift_y"):
            object.__setattr__(self, name, _finite(getattr(self, name), f"BoxAdapter.{name}"))
        object.__setattr__(self, "scale", _finite(self.scale, "BoxAdapter.scale", positive=True))

    def __call__(self, boxes: np.ndarray) -> np.ndarray:
        """Adapt ``(N, 4)`` xyxy boxes -> float64 ``(N, 4)``."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        size = boxes[:, 2:] - boxes[:, :2]
        centre = 0.5 * (boxes[:, :2] + boxes[:, 2:]) + size * (self.shift_x, self.shift_y)
        half = 0.5 * self.scale * size
        return np.concatenate([centre - half, centre + half], axis=1)

    def to_dict(self) -> dict[str, float]:
        return {"shift_x": self.shift_x, "shift_y": self.shift_y, "scale": self.scale}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BoxAdapter:
        _check_keys(cls, data)
        return cls(**data)
