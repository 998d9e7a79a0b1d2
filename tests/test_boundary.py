"""Tests of awing.boundary: the interpolating spline and the boundary heatmap (methods.md §3.7)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from scipy.interpolate import splev, splprep
from scipy.spatial import cKDTree

from awing.boundary import boundary_heatmap, spline_curve
from awing.landmarks import LandmarkScheme, get_scheme

# One real 68-point face (AFLW2000-3D image00087, re-annotated points, yaw 8.7 degrees) scaled into the 64 grid and
# rounded to 0.01 px. The inner lips touch (closed mouth); no x has the fraction .5 (rint ties break mirroring).
FACE_68 = np.array(
    [
        [6.7, 18.56], [7.48, 25.56], [9.81, 31.52], [11.36, 37.73], [12.92, 43.95], [15.25, 49.39], [17.58, 52.5],
        [21.98, 54.83], [29.76, 56.39], [37.53, 54.05], [43.75, 50.95], [48.41, 47.06], [52.04, 42.4],
        [53.59, 36.18], [55.15, 30.22], [55.92, 24.0], [56.7, 16.23], [8.25, 13.9], [10.59, 11.57],
        [13.69, 10.79], [17.58, 11.57], [19.91, 13.12], [33.64, 11.57], [36.75, 10.79], [39.86, 10.01],
        [44.52, 10.79], [47.63, 12.35], [27.43, 20.12], [27.43, 24.78], [26.65, 29.44], [26.65, 32.29],
        [23.54, 34.62], [25.09, 35.4], [27.43, 36.18], [29.76, 35.4], [32.09, 34.62], [12.92, 19.34],
        [15.25, 17.79], [18.36, 18.56], [21.47, 20.12], [18.36, 20.89], [15.25, 20.89], [34.42, 19.34],
        [37.53, 17.79], [40.64, 17.01], [42.97, 18.56], [40.64, 20.12], [36.75, 20.12], [19.91, 42.4],
        [22.76, 41.62], [25.87, 40.07], [27.43, 40.07], [29.76, 40.07], [33.64, 40.84], [37.53, 41.62],
        [33.64, 43.95], [31.31, 45.51], [28.2, 45.51], [25.87, 45.51], [22.76, 44.73], [20.69, 42.4],
        [25.87, 42.4], [28.2, 42.4], [30.53, 42.4], [36.75, 41.62], [30.53, 42.4], [28.2, 42.4], [25.87, 42.4],
    ]
)  # fmt: skip


def _scheme(*curves: tuple[int, ...], num_points: int | None = None) -> LandmarkScheme:
    """A throw-away scheme holding the given curves."""
    k = num_points or max(max(c) for c in curves) + 1
    names = tuple(f"p{i}" for i in range(k))
    return LandmarkScheme(name="test", num_points=k, point_names=names, flip_pairs=(), curves=curves, norm_groups={})


def _splprep_samples(points: np.ndarray, count: int = 200_000) -> np.ndarray:
    """The official fit (scipy splprep, s=0, degree min(4, n) - 1), sampled densely."""
    tck, _ = splprep(points.T, s=0, k=min(4, len(points)) - 1)
    return np.stack(splev(np.linspace(0, 1, count), tck), axis=1)


def _distance_from_value(heat: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    return np.sqrt(-2 * sigma**2 * np.log(np.where(heat > 0, heat, np.nan)))


class TestSplineCurve:
    @pytest.mark.parametrize("curve", get_scheme(68).curves, ids=lambda c: f"{c[0]}-{c[-1]}")
    def test_passes_through_control_points(self, curve):
        points = FACE_68[list(curve)]
        samples = spline_curve(points)
        assert cKDTree(samples).query(points)[0].max() < 1e-5
        np.testing.assert_allclose(samples[[0, -1]], points[[0, -1]], atol=1e-5)

    @pytest.mark.parametrize("curve", get_scheme(68).curves, ids=lambda c: f"{c[0]}-{c[-1]}")
    def test_matches_splprep_on_a_real_face(self, curve):
        points = FACE_68[list(curve)]
        ours = spline_curve(points, spacing=0.05)
        assert cKDTree(_splprep_samples(points)).query(ours)[0].max() < 0.01  # brief's bar: 0.5 px

    @pytest.mark.parametrize("count", [2, 3, 4, 5, 9, 33])
    def test_matches_splprep_on_random_arcs(self, count):
        rng = np.random.default_rng(count)
        angle = np.sort(rng.uniform(0, np.pi, count))
        points = np.stack((32 + 25 * np.cos(angle), 32 + 20 * np.sin(angle)), axis=1) + rng.normal(0, 0.5, (count, 2))
        ours = spline_curve(points, spacing=0.05)
        assert cKDTree(_splprep_samples(points)).query(ours)[0].max() < 0.01

    @pytest.mark.parametrize("spacing", [0.5, 0.2])
    def test_spacing(self, spacing):
        points = FACE_68[:17]
        samples = spline_curve(points, spacing=spacing)
        steps = np.linalg.norm(np.diff(samples, axis=0), axis=1)
        assert steps.max() <= spacing + 1e-5

    def test_three_points_make_a_parabola(self):
        points = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])  # chord parameter u = 0, sqrt 2, 2 sqrt 2
        samples = spline_curve(points, spacing=0.01)
        # symmetric points and parameters: x is linear in u, y quadratic, so y = x (2 - x)
        np.testing.assert_allclose(samples[:, 1], samples[:, 0] * (2 - samples[:, 0]), atol=1e-5)

    def test_two_points_make_a_segment(self):
        samples = spline_curve(np.array([[1.0, 2.0], [4.0, 6.0]]))
        np.testing.assert_allclose(samples, np.linspace([1.0, 2.0], [4.0, 6.0], 11), atol=1e-6)  # 5 px in 0.5 steps

    def test_duplicates_and_nan_are_dropped(self):
        points = FACE_68[:5]
        noisy = np.insert(points, [1, 3, 3], [points[0], [np.nan, 1.0], points[2]], axis=0)
        np.testing.assert_array_equal(spline_curve(noisy), spline_curve(points))

    def test_single_point(self):
        np.testing.assert_array_equal(spline_curve(np.array([[3.0, 4.0], [3.0, 4.0]])), [[3.0, 4.0]])

    def test_no_points(self):
        assert spline_curve(np.full((3, 2), np.nan)).shape == (0, 2)

    def test_errors(self):
        with pytest.raises(ValueError, match=r"points must have shape \(n, 2\), got \(3,\)"):
            spline_curve(np.zeros(3))
        with pytest.raises(ValueError, match="spacing must be positive, got 0"):
            spline_curve(np.zeros((3, 2)), spacing=0)


class TestBoundaryHeatmap:
    def test_smoke(self):
        heat = boundary_heatmap(FACE_68, get_scheme(68), heatmap_size=64)
        assert heat.shape == (64, 64) and heat.dtype == np.float32
        assert heat.min() == 0.0 and heat.max() == 1.0
        np.testing.assert_array_equal(boundary_heatmap(FACE_68, "300w"), heat)

    def test_non_square(self):
        heat = boundary_heatmap(np.array([[2.0, 3.0], [40.0, 3.0]]), _scheme((0, 1)), heatmap_size=(48, 20))
        assert heat.shape == (20, 48)
        assert (heat[3, 2:41] == 1).all() and heat[3, 41] == pytest.approx(math.exp(-0.5))

    def test_horizontal_line_golden(self):
        points = np.array([[10.0, 20.0], [20.0, 20.0], [30.0, 20.0], [40.0, 20.0]])
        heat = boundary_heatmap(points, _scheme((0, 1, 2, 3)))
        assert (heat[20, 10:41] == 1.0).all()
        assert (heat[20, :10] < 1).all() and (heat[20, 41:] < 1).all()
        for distance in (1, 2):
            expected = math.exp(-(distance**2) / 2)
            np.testing.assert_allclose(heat[20 - distance, 10:41], expected, rtol=1e-6)
            np.testing.assert_allclose(heat[20 + distance, 10:41], expected, rtol=1e-6)
        assert heat[21, 42] == pytest.approx(math.exp(-2.5), rel=1e-6)  # d^2 = 2^2 + 1^2
        assert (heat[23] == 0).all() and (heat[17] == 0).all()  # d = 3 sigma: zero
        assert heat[20, 43] == 0 and heat[20, 7] == 0

    def test_sigma(self):
        points = np.array([[10.0, 20.0], [40.0, 20.0]])
        heat = boundary_heatmap(points, _scheme((0, 1)), sigma=2.0)
        assert heat[25, 20] == pytest.approx(math.exp(-25 / 8), rel=1e-6)
        assert heat[26, 20] == 0.0 and heat[25, 20] > 0

    def test_zero_beyond_three_sigma(self):
        heat = boundary_heatmap(FACE_68, get_scheme(68))
        marked = (heat == 1).astype(np.uint8)
        distance = cv2.distanceTransform(1 - marked, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        assert (heat[distance >= 3] == 0).all() and (heat[distance < 3] > 0).all()
        np.testing.assert_allclose(heat, np.where(distance < 3, np.exp(-(distance**2) / 2), 0), rtol=1e-6)

    def test_axis_aligned_segment_equals_analytic_distance(self):
        points = np.array([[12.0, 30.0], [12.0, 45.0]])
        heat = boundary_heatmap(points, _scheme((0, 1)))
        ys, xs = np.mgrid[0:64, 0:64].astype(np.float64)
        distance = np.hypot(xs - 12, ys - np.clip(ys, 30, 45))
        np.testing.assert_allclose(heat, np.where(distance < 3, np.exp(-(distance**2) / 2), 0), rtol=1e-6, atol=0)

    def test_oblique_segment_is_within_half_a_diagonal_of_the_analytic_distance(self):
        start, end = np.array([5.2, 10.7]), np.array([50.3, 40.1])
        heat = boundary_heatmap(np.stack((start, end)), _scheme((0, 1)))
        ys, xs = np.mgrid[0:64, 0:64].astype(np.float64)
        pixels = np.stack((xs, ys), axis=-1)
        direction = end - start
        along = np.clip(((pixels - start) @ direction) / (direction @ direction), 0, 1)
        exact = np.linalg.norm(pixels - (start + along[..., None] * direction), axis=-1)
        ours = _distance_from_value(heat)
        near = exact < 2.2  # where ours is known to be < 3 as well
        # marked pixels lie within half a pixel diagonal of the segment and the segment within that of them
        assert np.abs(ours[near] - exact[near]).max() <= math.sqrt(0.5) + 1e-4
        assert (exact[heat == 1] <= math.sqrt(0.5)).all()
        assert cv2.connectedComponents((heat == 1).astype(np.uint8), connectivity=8)[0] == 2

    @pytest.mark.parametrize(
        "points",
        [
            np.array([[0.0, 0.0], [63.0, 50.0]]),
            np.array(
                [
                    [5.37, 42.65],
                    [4.34, 29.62],
                    [9.35, 17.54],
                    [19.29, 9.05],
                    [32.0, 6.0],
                    [44.71, 9.05],
                    [54.65, 17.54],
                    [59.66, 29.62],
                    [58.63, 42.65],
                ]
            ),  # fmt: skip
        ],
        ids=["line", "arc"],
    )
    def test_no_gaps(self, points):
        heat = boundary_heatmap(points, _scheme(tuple(range(len(points)))))
        count, _ = cv2.connectedComponents((heat == 1).astype(np.uint8), connectivity=8)
        assert count == 2  # background + one curve

    def test_single_point_curve(self):
        heat = boundary_heatmap(np.array([[20.4, 9.6], [50.0, 50.0]]), _scheme((0,), num_points=2))
        assert heat[10, 20] == 1 and (heat == 1).sum() == 1
        assert heat[10, 21] == pytest.approx(math.exp(-0.5)) and heat[11, 21] == pytest.approx(math.exp(-1))

    def test_invisible_and_nan_points_leave_their_curve(self):
        points = np.array([[10.0, 20.0], [30.0, 5.0], [40.0, 20.0], [np.nan, 0.0]])
        scheme = _scheme((0, 1, 2, 3))
        visible = np.array([True, False, True, True])
        expected = boundary_heatmap(points[[0, 2]], _scheme((0, 1)))
        np.testing.assert_array_equal(boundary_heatmap(points, scheme, visible=visible), expected)
        assert not boundary_heatmap(points, scheme, visible=np.zeros(4, dtype=bool)).any()

    def test_points_off_the_canvas(self):
        heat = boundary_heatmap(np.array([[-20.0, 30.0], [80.0, 30.0]]), _scheme((0, 1)))
        assert (heat[30] == 1).all() and (heat == 1).sum() == 64
        assert not boundary_heatmap(np.array([[-20.0, -30.0], [-5.0, -9.0]]), _scheme((0, 1))).any()

    def test_flip_consistency_68(self):
        """Mirroring the points (x -> W - 1 - x) and permuting them by the flip index mirrors the map."""
        scheme = get_scheme(68)
        mirrored = FACE_68.copy()
        mirrored[:, 0] = 63 - mirrored[:, 0]
        mirrored = mirrored[list(scheme.flip_index)]
        np.testing.assert_allclose(boundary_heatmap(mirrored, scheme), boundary_heatmap(FACE_68, scheme)[:, ::-1])

    def test_wflw_sample(self, shared_data):
        """Every curve of real 98-point faces is drawn as one connected piece through its points."""
        path = shared_data / "fixtures/mmpose/tests/data/wflw/test_wflw.json"
        scheme = get_scheme(98)
        for annotation in json.loads(path.read_text())["annotations"]:
            points_img = np.array(annotation["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
            low, high = points_img.min(axis=0), points_img.max(axis=0)
            points = (points_img - (low + high) / 2) * 54 / (high - low).max() + 31.7
            heat = boundary_heatmap(points, scheme)
            for curve in scheme.curves:
                alone = boundary_heatmap(points, _scheme(curve, num_points=98))
                assert cv2.connectedComponents((alone == 1).astype(np.uint8), connectivity=8)[0] == 2
                pixels = np.rint(points[list(curve)]).astype(int)
                assert (heat[pixels[:, 1], pixels[:, 0]] == 1).all()

    def test_errors(self):
        scheme = get_scheme(68)
        with pytest.raises(ValueError, match=r"shape \(68, 2\) for scheme 68, got \(98, 2\)"):
            boundary_heatmap(np.zeros((98, 2)), scheme)
        with pytest.raises(ValueError, match=r"visible must have shape \(68,\), got \(67,\)"):
            boundary_heatmap(FACE_68, scheme, visible=np.ones(67, dtype=bool))
        with pytest.raises(ValueError, match="sigma must be a positive finite number"):
            boundary_heatmap(FACE_68, scheme, sigma=0)
        with pytest.raises(ValueError, match="heatmap_size must be a positive int"):
            boundary_heatmap(FACE_68, scheme, heatmap_size=(64,))
        with pytest.raises(ValueError, match="unknown landmark scheme"):
            boundary_heatmap(FACE_68, "nope")
