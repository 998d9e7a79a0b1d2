"""Training targets of one face: landmark heatmaps, the boundary heatmap and per-point weights.

Crop points go to the heatmap grid by the codec's ``to_heatmap`` (``x_hm = (x_crop + 0.5) / s - 0.5``, stride
``s``). A point is used (weight 1) when it is visible and its heatmap coordinates lie inside the grid,
``[-0.5, W - 0.5) x [-0.5, H - 0.5)`` (the crop's pixel extent); otherwise its weight is 0 and its heatmap channel is
all zero. Nothing is dropped: every point keeps its channel and its coordinates.

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

from awing.boundary import boundary_heatmap
from awing.codecs import HeatmapCodec
from awing.landmarks import LandmarkScheme, get_scheme

__all__ = ["BOUNDARY_SIGMA", "make_targets", "point_weights"]

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


def make_targets(
    landmarks_crop: np.ndarray,
    visible: np.ndarray,
    codec: HeatmapCodec,
    scheme: LandmarkScheme | str | int,
    with_boundary: bool = True,
    boundary_sigma: float = BOUNDARY_SIGMA,
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps and point weights of one face.

    Args:
        landmarks_crop: (K, 2) points in crop pixels (K = ``scheme.num_points``).
        visible: (K,) booleans.
        codec: the heatmap codec (input size, heatmap size, sigma, mode).
        scheme: landmark scheme (its curves draw the boundary).
        with_boundary: append the boundary heatmap (:func:`awing.boundary.boundary_heatmap`, drawn from the visible
            points, inside the grid or not) as the last channel.
        boundary_sigma: the boundary Gaussian's width in heatmap pixels.

    Returns:
        ``(heatmaps, point_weight)``: float32 (K + 1, H, W) (boundary last; (K, H, W) without it) and float32 (K,),
        see :func:`point_weights`. A weight-0 point has an all-zero channel.
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
        return codec.encode(landmarks_hm, visible=weight > 0), weight
    # One extra, invisible point gives the boundary's (all-zero) channel: no copy of the K heatmaps to append it.
    heatmaps = codec.encode(np.vstack((landmarks_hm, [[0.0, 0.0]])), visible=np.append(weight > 0, False))
    heatmaps[-1] = boundary_heatmap(landmarks_hm, scheme, codec.heatmap_size, sigma=boundary_sigma, visible=mask)
    return heatmaps, weight
