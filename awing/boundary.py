"""Boundary heatmaps: one map of the face's boundary curves, drawn from landmarks (methods.md §3.7).

The AWing model predicts, besides one heatmap per landmark, a single boundary channel. Its target is built as in
the official code (``AddBoundary``): each curve of the scheme is interpolated by a spline through its points,
rasterised, and the exact Euclidean distance d to it becomes ``exp(-d^2 / (2 sigma^2))`` (0 for d >= 3 sigma).

Deviations from the official code, all deliberate:

- sub-pixel landmarks are used as given (the official code floors them to the heatmap grid first);
- the spline is sampled densely (<= 0.5 px between samples, end point included) instead of 100 samples that skip
  the end, so long curves have no gaps;
- samples are rasterised into a numpy array (the pixel with the nearest centre) instead of through matplotlib, and
  the map is not quantised to 1/255.

The spline is awing's own vectorised implementation of what the official ``scipy.interpolate.splprep(s=0)`` fits:
an interpolating cubic on the cumulative chord-length parameter with the not-a-knot end condition (FITPACK puts
the interior knots of an interpolating cubic at the data parameters but the second and the second-last, which is
exactly not-a-knot), a parabola through 3 points and a segment through 2. It therefore matches splprep's curve up
to rounding; all curves of a face are solved in one block-diagonal linear system.

>>> import numpy as np
>>> from awing.landmarks import get_scheme
>>> boundary_heatmap(np.full((68, 2), 30.0) + np.arange(68)[:, None] * [0.3, 0.1], get_scheme(68)).shape
(64, 64)
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from awing.geometry import as_size
from awing.landmarks import LandmarkScheme, get_scheme

#: Consecutive curve points closer than this (heatmap px) are duplicates; the later one is dropped.
DUPLICATE_TOLERANCE = 1e-3

#: Upper bound on the samples of one spline segment (only a degenerate, wildly overshooting spline reaches it).
_MAX_SEGMENT_SAMPLES = 100_000


def _clean(points: np.ndarray, curve_id: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop points not in ``keep``, non-finite points and consecutive duplicates within a curve."""
    keep = keep & np.isfinite(points).all(axis=1)
    points, curve_id = points[keep], curve_id[keep]
    step = np.linalg.norm(np.diff(points, axis=0), axis=1)
    duplicate = (curve_id[1:] == curve_id[:-1]) & (step < DUPLICATE_TOLERANCE)
    keep = np.ones(len(points), dtype=bool)
    keep[1:] = ~duplicate
    return points[keep], curve_id[keep]


def _spline_samples(points: np.ndarray, curve_id: np.ndarray, spacing: float) -> np.ndarray:
    """Samples (M, 2) of the interpolating splines through runs of ``points`` (N, 2) sharing a ``curve_id``.

    Spline of n points, cumulative chord-length parameter with knot spacings h_i, second derivatives M_i
    (the moment form): on segment i, with t in [0, 1],
    ``S(t) = (1 - t) P_i + t P_i+1 + h_i^2 / 6 * (((1 - t)^3 - (1 - t)) M_i + (t^3 - t) M_i+1)``.
    Interior rows: ``h_i-1 M_i-1 + 2 (h_i-1 + h_i) M_i + h_i M_i+1 = 6 (D_i - D_i-1)``, D_i the chord direction.
    Ends: not-a-knot (S''' continuous at the second and second-last point) for n >= 4, a constant M (parabola)
    for n = 3, M = 0 (segment) for n = 2. Each segment gets m uniform steps in t, m = ceil(3 e / spacing) with e
    the longest edge of its Bezier control polygon: 3 e bounds |dS/dt|, so consecutive samples are at most
    ``spacing`` apart. Samples take t = 0, 1/m, ..., (m - 1)/m on each segment, then the last point of each
    curve (a one-point curve is its point).
    """
    n_points = len(points)
    counts = np.bincount(curve_id)
    size = counts[curve_id]
    position = np.arange(n_points) - (np.cumsum(counts) - counts)[curve_id]
    first, last = position == 0, position == size - 1

    seg = np.flatnonzero(~last)  # segment k joins points seg[k] and seg[k] + 1
    delta = points[seg + 1] - points[seg]
    h = np.linalg.norm(delta, axis=1)
    h_next, h_prev = np.zeros(n_points), np.zeros(n_points)
    d_next, d_prev = np.zeros((n_points, 2)), np.zeros((n_points, 2))
    h_next[seg], h_prev[seg + 1] = h, h
    d_next[seg], d_prev[seg + 1] = delta / h[:, None], delta / h[:, None]

    a = np.zeros((n_points, n_points))
    rhs = np.zeros((n_points, 2))
    g = np.flatnonzero(~first & ~last)
    a[g, g - 1], a[g, g], a[g, g + 1] = h_prev[g], 2 * (h_prev[g] + h_next[g]), h_next[g]
    rhs[g] = 6 * (d_next[g] - d_prev[g])
    g = np.flatnonzero(first & (size >= 4))  # -h1 M0 + (h0 + h1) M1 - h0 M2 = 0
    a[g, g], a[g, g + 1], a[g, g + 2] = -h_next[g + 1], h_next[g] + h_next[g + 1], -h_next[g]
    g = np.flatnonzero(last & (size >= 4))  # mirror image at the far end
    a[g, g], a[g, g - 1], a[g, g - 2] = -h_prev[g - 1], h_prev[g] + h_prev[g - 1], -h_prev[g]
    g = np.flatnonzero(first & (size == 3))  # M0 = M1
    a[g, g], a[g, g + 1] = 1.0, -1.0
    g = np.flatnonzero(last & (size == 3))  # M2 = M1
    a[g, g], a[g, g - 1] = 1.0, -1.0
    g = np.flatnonzero(size <= 2)
    a[g, g] = 1.0
    moments = np.linalg.solve(a, rhs)

    m0, m1, h2 = moments[seg], moments[seg + 1], (h * h / 6)[:, None]
    tangent0 = delta - h2 * (2 * m0 + m1)  # dS/dt at t = 0 and t = 1
    tangent1 = delta + h2 * (m0 + 2 * m1)
    edges = np.stack((tangent0 / 3, delta - (tangent0 + tangent1) / 3, tangent1 / 3))
    longest = np.linalg.norm(edges, axis=2).max(axis=0)
    steps = np.clip(np.ceil(3 * longest / spacing), 1, _MAX_SEGMENT_SAMPLES).astype(np.int64)

    owner = np.repeat(np.arange(len(seg)), steps)
    t = (np.arange(len(owner)) - np.repeat(np.cumsum(steps) - steps, steps)) / steps[owner]
    t, u = t[:, None], 1 - t[:, None]
    inner = points[seg][owner] * u + points[seg + 1][owner] * t
    bend = h2[owner] * ((u**3 - u) * m0[owner] + (t**3 - t) * m1[owner])
    return np.concatenate((inner + bend, points[last]))


def spline_curve(points: np.ndarray, spacing: float = 0.5) -> np.ndarray:
    """Dense samples of the interpolating spline through ``points`` (what the boundary map draws per curve).

    Non-finite points and consecutive duplicates are dropped first. See the module docstring for the spline.

    Args:
        points: (n, 2) control points (x, y).
        spacing: largest distance between consecutive samples (heatmap px).

    Returns:
        float32 (M, 2): ordered samples from the first to the last point, every point included, consecutive
        samples at most ``spacing`` apart.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (n, 2), got {points.shape}")
    if not spacing > 0:
        raise ValueError(f"spacing must be positive, got {spacing!r}")
    points, curve_id = _clean(points, np.zeros(len(points), dtype=np.int64), np.ones(len(points), dtype=bool))
    return _spline_samples(points, curve_id, spacing).astype(np.float32)


def boundary_heatmap(
    landmarks_hm: np.ndarray,
    scheme: LandmarkScheme | str | int,
    heatmap_size: int | tuple[int, int] = 64,
    sigma: float = 1.0,
    visible: np.ndarray | None = None,
) -> np.ndarray:
    """The boundary heatmap of one face (methods.md §3.7).

    Each curve of ``scheme.curves`` (invisible and NaN points and consecutive duplicates dropped) is interpolated
    by :func:`spline_curve`'s spline, sampled <= 0.5 px apart, and each sample marks the pixel with the nearest
    centre (samples off the canvas are dropped). With d the exact Euclidean distance to the nearest marked pixel
    (OpenCV ``DIST_L2`` with the precise mask), the map is ``exp(-d^2 / (2 sigma^2))`` where ``d < 3 sigma``, else 0.
    A curve left with one point marks that point's pixel.

    Args:
        landmarks_hm: (K, 2) points in heatmap pixels, K = ``scheme.num_points``.
        scheme: a :class:`~awing.landmarks.LandmarkScheme` or a name / point count for ``get_scheme``.
        heatmap_size: int or (W, H).
        sigma: Gaussian width in heatmap pixels (the official value is 1).
        visible: optional (K,) booleans; invisible points are left out of their curves.

    Returns:
        float32 (H, W), values in [0, 1]; all zero when no curve reaches the canvas.
    """
    scheme = get_scheme(scheme)
    width, height = as_size(heatmap_size, "heatmap_size")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma < math.inf:
        raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")
    points = np.asarray(landmarks_hm, dtype=np.float64)
    if points.shape != (scheme.num_points, 2):
        raise ValueError(
            f"landmarks_hm must have shape ({scheme.num_points}, 2) for scheme {scheme.name}, got {points.shape}"
        )
    keep = np.ones(scheme.num_points, dtype=bool)
    if visible is not None:
        keep = np.asarray(visible)
        if keep.shape != (scheme.num_points,):
            raise ValueError(f"visible must have shape ({scheme.num_points},), got {keep.shape}")
        keep = keep.astype(bool)
    canvas = np.full((height, width), 255, dtype=np.uint8)
    if scheme.curves:
        index = np.concatenate(scheme.curves)
        curve_id = np.repeat(np.arange(len(scheme.curves)), [len(c) for c in scheme.curves])
        curve_points, curve_id = _clean(points[index], curve_id, keep[index])
        if len(curve_points):
            pixels = np.rint(_spline_samples(curve_points, curve_id, 0.5))
            x, y = pixels[:, 0], pixels[:, 1]
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            canvas[y[inside].astype(np.intp), x[inside].astype(np.intp)] = 0
    if canvas.all():
        return np.zeros((height, width), dtype=np.float32)
    distance = cv2.distanceTransform(canvas, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    heat = np.exp(distance * distance * np.float32(-0.5 / sigma**2))
    heat[distance >= 3 * sigma] = 0.0
    return heat
