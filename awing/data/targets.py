"""Training targets: landmark heatmaps, the boundary heatmap and per-point weights.

Crop points go to the heatmap grid by the codec's ``to_heatmap`` (``x_hm = (x_crop + 0.5) / s - 0.5``, stride
``s``). A point is used (weight 1) when it is visible and its heatmap coordinates lie inside the grid,
``[-0.5, W - 0.5) x [-0.5, H - 0.5)`` (the crop's pixel extent); otherwise its weight is 0 and its heatmap channel is
all zero. Nothing is dropped: every point keeps its channel and its coordinates.

The targets are built in two halves. :func:`face_targets` runs per face in the DataLoader worker: the point weights
and the boundary map (a spline and a distance transform, numpy/OpenCV). :func:`heatmap_targets` runs on a whole
batch on the training device: the K Gaussian heatmaps from the crop points and the weights
(:meth:`awing.codecs.HeatmapCodec.encode`, the same code in both places), then the boundary channel. A worker thus
ships 16 KB of boundary instead of 99 float32 maps (1.6 MB), whose copy into shared memory cost as much as
building the sample. :func:`make_targets` joins the halves for one face.

>>> import numpy as np
>>> from awing.codecs import HeatmapCodec
>>> codec = HeatmapCodec(input_size=256, heatmap_size=64, sigma=1.5)
>>> points = np.array([[50.0, 60.0], [300.0, 60.0], [120.0, 130.0], [130.0, 150.0], [128.0, 200.0]], np.float32)
>>> heatmaps, weight = make_targets(points, np.array([1, 1, 0, 1, 1], bool), codec, "5")
>>> heatmaps.shape, weight.tolist()  # 5 landmark channels + the boundary (all zero: scheme "5" has no curves)
((6, 64, 64), [1.0, 0.0, 0.0, 1.0, 1.0])
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from awing.boundary import boundary_heatmap
from awing.codecs import HeatmapCodec
from awing.landmarks import LandmarkScheme, get_scheme

__all__ = ["BOUNDARY_SIGMA", "face_targets", "heatmap_targets", "make_targets", "point_weights"]

#: Width (heatmap pixels) of the boundary target's Gaussian (methods.md §3.7).
BOUNDARY_SIGMA = 1.0


def point_weights(landmarks_hm: np.ndarray, visible: np.ndarray, heatmap_size: tuple[int, int]) -> np.ndarray:
    """(K,) float32: 1 where the point is visible, finite and inside ``[-0.5, W - 0.5) x [-0.5, H - 0.5)``, else 0.

    ``landmarks_hm`` (K, 2) in heatmap pixels, ``visible`` (K,) bool, ``heatmap_size`` (W, H).
    """
    width, height = heatmap_size
    x, y = landmarks_hm[:, 0], landmarks_hm[:, 1]
    with np.errstate(invalid="ignore"):
        inside = (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5)
    return (inside & visible).astype(np.float32)


def face_targets(
    landmarks_crop: np.ndarray,
    visible: np.ndarray,
    codec: HeatmapCodec,
    scheme: LandmarkScheme | str | int,
    with_boundary: bool = True,
    boundary_sigma: float = BOUNDARY_SIGMA,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The per-face half of the targets (numpy, in the DataLoader worker): point weights and the boundary map.

    Args:
        landmarks_crop: (K, 2) points in crop pixels (K = ``scheme.num_points``).
        visible: (K,) booleans.
        codec: the heatmap codec (input size, heatmap size).
        scheme: landmark scheme (its curves draw the boundary).
        with_boundary: draw the boundary map (:func:`awing.boundary.boundary_heatmap`, from the visible points,
            inside the grid or not).
        boundary_sigma: the boundary Gaussian's width in heatmap pixels.

    Returns:
        ``(point_weight, boundary)``: float32 (K,) (see :func:`point_weights`) and float32 (H, W), or None without
        the boundary.
    """
    scheme = get_scheme(scheme)
    if not isinstance(codec, HeatmapCodec):
        raise TypeError(f"codec must be an awing.codecs.HeatmapCodec, got {type(codec).__name__}")
    points = np.asarray(landmarks_crop, dtype=np.float32)
    num_points = scheme.num_points
    if points.shape != (num_points, 2):
        raise ValueError(
            f"landmarks_crop must have shape ({num_points}, 2) for scheme {scheme.name}, got {points.shape}"
        )
    mask = np.asarray(visible)
    if mask.shape != (num_points,):
        raise ValueError(f"visible must have shape ({num_points},), got {mask.shape}")
    mask = mask.astype(bool)
    landmarks_hm = codec.to_heatmap(points)
    weight = point_weights(landmarks_hm, mask, codec.heatmap_size)
    if not with_boundary:
        return weight, None
    return weight, boundary_heatmap(landmarks_hm, scheme, codec.heatmap_size, sigma=boundary_sigma, visible=mask)


def heatmap_targets(
    landmarks_crop: Tensor, point_weight: Tensor, codec: HeatmapCodec, boundary: Tensor | None = None
) -> Tensor:
    """The batched half of the targets (torch, on the tensors' device): landmark heatmaps, then the boundary.

    Args:
        landmarks_crop: (..., K, 2) points in crop pixels (a batch (B, K, 2) or one face (K, 2)).
        point_weight: (..., K) weights (:func:`point_weights`); a point of weight 0 gets an all-zero channel.
        codec: the heatmap codec.
        boundary: optional (..., H, W) boundary maps, appended as the last channel.

    Returns:
        float32 (..., K + 1, H, W) (boundary last; (..., K, H, W) without it): channel k is the codec's Gaussian
        at ``codec.to_heatmap(landmarks_crop[..., k, :])`` where ``point_weight[..., k] > 0``.
    """
    if not isinstance(landmarks_crop, Tensor) or not isinstance(point_weight, Tensor):
        raise TypeError(
            f"landmarks_crop and point_weight must be tensors, got {type(landmarks_crop).__name__} and "
            f"{type(point_weight).__name__}"
        )
    heatmaps = codec.encode(codec.to_heatmap(landmarks_crop), visible=point_weight > 0)
    if boundary is None:
        return heatmaps
    width, height = codec.heatmap_size
    expected = (*heatmaps.shape[:-3], height, width)
    if tuple(boundary.shape) != expected:
        raise ValueError(f"boundary must have shape {expected}, got {tuple(boundary.shape)}")
    return torch.cat((heatmaps, boundary.to(heatmaps)[..., None, :, :]), dim=-3)


def make_targets(
    landmarks_crop: np.ndarray,
    visible: np.ndarray,
    codec: HeatmapCodec,
    scheme: LandmarkScheme | str | int,
    with_boundary: bool = True,
    boundary_sigma: float = BOUNDARY_SIGMA,
) -> tuple[np.ndarray, np.ndarray]:
    """All targets of one face in numpy: :func:`face_targets` then :func:`heatmap_targets` (same arguments).

    Returns:
        ``(heatmaps, point_weight)``: float32 (K + 1, H, W) (boundary last; (K, H, W) without it) and float32 (K,).
    """
    weight, boundary = face_targets(landmarks_crop, visible, codec, scheme, with_boundary, boundary_sigma)
    heatmaps = heatmap_targets(
        torch.from_numpy(np.asarray(landmarks_crop, dtype=np.float32)),
        torch.from_numpy(weight),
        codec,
        None if boundary is None else torch.from_numpy(boundary),
    )
    return heatmaps.numpy(), weight
