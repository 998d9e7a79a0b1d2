"""Tests of awing.data.augment: one matrix per face, flip permutation, random draws, photometric ops."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from awing.config import AugmentConfig
from awing.data.augment import (
    BLUR_SIGMA,
    FaceAugmenter,
    GeometricParams,
    _add_gaussian_noise,
    augmenter_from,
    sample_rng,
    warp_face,
)
from awing.geometry import augmentation_matrix, box_to_crop_matrix, compose, is_mirrored, transform_points
from awing.landmarks import get_scheme

SCHEME = get_scheme("aflw")  # 21 points; 6 <-> 11 (outer eye corners), 14 (nose tip) maps to itself
BOX = np.array([30.0, 25.0, 90.0, 95.0], dtype=np.float32)
PHOTOMETRIC = ("colour_prob", "occlusion_prob", "blur_prob", "noise_prob", "jpeg_prob")


def face_points(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(35, 85, (21, 2)).astype(np.float32)


def smooth_image(seed: int = 0, shape: tuple[int, int] = (120, 110)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 216, (shape[0] // 10, shape[1] // 10, 3)).astype(np.uint8)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def only(**probs: float) -> dict[str, float]:
    """Augmentation parameters with every photometric op off except ``probs``."""
    return {**dict.fromkeys(PHOTOMETRIC, 0.0), **probs}


class TestSampleRng:
    def test_same_triple_same_stream(self):
        assert np.array_equal(sample_rng(3, 1, 7).random(5), sample_rng(3, 1, 7).random(5))

    @pytest.mark.parametrize("other", [(4, 1, 7), (3, 2, 7), (3, 1, 8), (7, 1, 3)])
    def test_any_change_changes_stream(self, other):
        assert not np.array_equal(sample_rng(3, 1, 7).random(5), sample_rng(*other).random(5))

    @pytest.mark.parametrize("bad", [(-1, 0, 0), (0, 0.5, 0), (0, 0, True)])
    def test_errors(self, bad):
        with pytest.raises(ValueError, match="non-negative integers"):
            sample_rng(*bad)


class TestGeometricParams:
    def test_default_is_identity(self):
        assert np.array_equal(GeometricParams().matrix(64), [[1, 0, 0], [0, 1, 0]])

    def test_matrix_is_augmentation_matrix(self):
        params = GeometricParams(1.2, 30.0, (3.0, -2.0), True)
        expected = augmentation_matrix(64, scale=1.2, rotation_deg=30.0, shift=(3.0, -2.0), flip=True)
        assert np.array_equal(params.matrix(64), expected)


class TestWarpFace:
    def test_identity_is_the_crop(self):
        face = warp_face(smooth_image(), face_points(), np.ones(21, bool), BOX, SCHEME, 64)
        # side = 1.25 * 70 = 87.5 around the centre (60, 60): x_crop = (x - 16.25) * 64 / 87.5 - 0.5
        k = 64 / 87.5
        assert np.allclose(face.matrix, [[k, 0, -16.25 * k - 0.5], [0, k, -16.25 * k - 0.5]], atol=1e-12)
        assert face.image.shape == (64, 64, 3) and face.image.dtype == np.uint8

    def test_one_matrix(self):
        params = GeometricParams(0.9, -40.0, (5.0, 7.0), True)
        face = warp_face(smooth_image(), face_points(), np.ones(21, bool), BOX, SCHEME, 128, params=params)
        expected = compose(box_to_crop_matrix(BOX, 128, scale=1.25), params.matrix(128))
        assert np.array_equal(face.matrix, expected)
        assert is_mirrored(face.matrix)

    def test_points_equal_matrix_applied(self):
        points = face_points()
        params = GeometricParams(1.1, 25.0, (-4.0, 3.0), False)
        face = warp_face(smooth_image(), points, np.ones(21, bool), BOX, SCHEME, 128, crop_scale=1.4, params=params)
        assert face.landmarks_crop.dtype == np.float32
        assert np.abs(face.landmarks_crop - transform_points(face.matrix, points)).max() <= 1e-4

    def test_flip_permutes_points_and_visibility(self):
        points, visible = face_points(), np.ones(21, bool)
        visible[6] = False  # left outer eye corner: after the flip it is point 11's visibility
        params = GeometricParams(1.0, 10.0, (0.0, 0.0), True)
        face = warp_face(smooth_image(), points, visible, BOX, SCHEME, 128, params=params)
        order = list(SCHEME.flip_index)
        assert order[6] == 11 and order[14] == 14
        assert np.abs(face.landmarks_crop - transform_points(face.matrix, points)[order]).max() <= 1e-4
        assert not face.visible[11] and face.visible[6] and face.visible.sum() == 20

    def test_flip_mirrors_the_unflipped_crop(self):
        image, points = smooth_image(), face_points()
        plain = warp_face(image, points, np.ones(21, bool), BOX, SCHEME, 96, params=GeometricParams(1.1, 15.0))
        flipped = warp_face(
            image, points, np.ones(21, bool), BOX, SCHEME, 96, params=GeometricParams(1.1, 15.0, flip=True)
        )
        mirrored = plain.landmarks_crop[list(SCHEME.flip_index)] * [-1, 1] + [95, 0]
        assert np.abs(flipped.landmarks_crop - mirrored).max() <= 1e-4
        diff = np.abs(flipped.image.astype(int) - plain.image[:, ::-1].astype(int))
        assert diff.max() <= 3 and diff.mean() < 0.05  # OpenCV's fixed-point bilinear weights

    @pytest.mark.parametrize("flip", [False, True])
    def test_image_and_points_agree(self, flip):
        """A coloured blob drawn at three points before the warp is found at their warped positions after it."""
        points = face_points(1)
        points[6], points[11], points[14] = (40.2, 50.7), (78.6, 48.3), (60.4, 75.1)
        ys, xs = np.mgrid[0:120, 0:110]
        image = np.zeros((120, 110, 3), np.float64)
        for channel, k in enumerate((6, 11, 14)):
            x, y = points[k]
            image[:, :, channel] = 255 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 1.5**2))
        params = GeometricParams(1.15, 35.0, (6.0, -4.0), flip)
        face = warp_face(image.round().astype(np.uint8), points, np.ones(21, bool), BOX, SCHEME, 128, params=params)
        crop = face.image.astype(np.float64)
        cys, cxs = np.mgrid[0:128, 0:128]
        for channel, k in enumerate((6, 11, 14)):
            expected = face.landmarks_crop[SCHEME.flip_index[k] if flip else k]
            near = np.hypot(cxs - expected[0], cys - expected[1]) < 10
            weights = crop[:, :, channel] * near
            found = np.array([(weights * cxs).sum(), (weights * cys).sum()]) / weights.sum()
            assert np.hypot(*(found - expected)) < 0.5, (k, found, expected)

    def test_points_outside_and_invisible_are_kept(self):
        points, visible = face_points(), np.ones(21, bool)
        points[0] = (-50.0, 300.0)  # far outside the crop
        points[1], visible[1] = (0.0, 0.0), False  # AFLW-style placeholder
        face = warp_face(smooth_image(), points, visible, BOX, SCHEME, 64)
        assert face.landmarks_crop.shape == (21, 2)
        assert np.allclose(face.landmarks_crop[:2], transform_points(face.matrix, points[:2]), atol=1e-4)
        assert face.visible[0] and not face.visible[1]

    def test_errors(self):
        image, points, visible = smooth_image(), face_points(), np.ones(21, bool)
        with pytest.raises(ValueError, match=r"landmarks_img must have shape \(21, 2\) for scheme 21"):
            warp_face(image, points[:20], visible, BOX, SCHEME, 64)
        with pytest.raises(ValueError, match=r"visible must have shape \(21,\)"):
            warp_face(image, points, visible[:5], BOX, SCHEME, 64)
        with pytest.raises(ValueError, match="x1 > x0"):
            warp_face(image, points, visible, np.array([10.0, 10.0, 10.0, 50.0]), SCHEME, 64)


class TestFaceAugmenter:
    def test_takes_the_config_fields(self):
        config = AugmentConfig(rotation_deg=10.0, flip_prob=0.0)
        augmenter = FaceAugmenter(128, **dataclasses.asdict(config))
        assert augmenter.config == config and augmenter.input_size == 128
        assert augmenter_from(config, 128).config == config
        assert augmenter_from(dataclasses.asdict(config), 128).config == config
        assert augmenter_from(None, 128) is None
        assert FaceAugmenter().config == AugmentConfig()

    def test_errors(self):
        with pytest.raises(TypeError, match=r"unknown augmentation parameter\(s\) \['rotation'\]; valid names: rot"):
            FaceAugmenter(256, rotation=10)
        with pytest.raises(ValueError, match="flip_prob must be a probability in"):
            FaceAugmenter(256, flip_prob=1.5)
        with pytest.raises(ValueError, match="input_size must be a positive int"):
            FaceAugmenter(0)
        with pytest.raises(TypeError, match="augment must be an AugmentConfig"):
            augmenter_from([10.0], 256)
        with pytest.raises(ValueError, match=r"image must be an \(H, W, 3\) uint8 RGB array"):
            FaceAugmenter(64).photometric(np.zeros((64, 64, 3), np.float32), sample_rng(0, 0, 0))

    def test_geometry_ranges(self):
        augmenter = FaceAugmenter(128, rotation_deg=20.0, scale=0.1, shift_px=16.0, flip_prob=0.25)
        draws = [augmenter.sample_geometry(sample_rng(0, 0, i)) for i in range(2000)]
        scale = np.array([d.scale for d in draws])
        rotation = np.array([d.rotation_deg for d in draws])
        shift = np.array([d.shift for d in draws])
        assert 0.9 <= scale.min() < 0.91 and 1.09 < scale.max() <= 1.1
        assert -20 <= rotation.min() < -19.5 and 19.5 < rotation.max() <= 20
        assert -8 <= shift.min() < -7.9 and 7.9 < shift.max() <= 8  # 16 px at 256 is 8 px at 128
        assert 0.22 < np.mean([d.flip for d in draws]) < 0.28

    def test_geometry_off_is_identity(self):
        augmenter = FaceAugmenter(64, rotation_deg=0.0, scale=0.0, shift_px=0.0, flip_prob=0.0)
        assert augmenter.sample_geometry(sample_rng(0, 0, 5)) == GeometricParams()

    def test_photometric_deterministic(self):
        augmenter = FaceAugmenter(64, **dict.fromkeys(PHOTOMETRIC, 1.0))
        image = smooth_image(shape=(64, 64))
        before = image.copy()
        a = augmenter.photometric(image, sample_rng(0, 0, 1))
        b = augmenter.photometric(image, sample_rng(0, 0, 1))
        c = augmenter.photometric(image, sample_rng(0, 0, 2))
        assert np.array_equal(a, b) and not np.array_equal(a, c)
        assert a.shape == image.shape and a.dtype == np.uint8 and a.flags.c_contiguous
        assert np.array_equal(image, before)  # the input is not modified

    def test_photometric_off_is_identity(self):
        image = smooth_image(shape=(64, 64))
        out = FaceAugmenter(64, **only()).photometric(image, sample_rng(0, 0, 0))
        assert np.array_equal(out, image)

    @pytest.mark.parametrize("name", PHOTOMETRIC)
    def test_each_op_changes_the_image(self, name):
        image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        out = FaceAugmenter(64, **only(**{name: 1.0})).photometric(image, sample_rng(0, 0, 3))
        assert out.shape == image.shape and not np.array_equal(out, image)

    def test_blur_scales_with_input_size(self):
        blur = FaceAugmenter(128, **only(blur_prob=1.0))._albumentations()[0].transforms[0]
        assert np.allclose(blur.sigma_limit, np.array(BLUR_SIGMA) / 2)

    def test_noise_statistics(self):
        image = np.full((200, 200, 3), 128, np.uint8)
        noisy = _add_gaussian_noise(image, 10.0, np.random.default_rng(0)).astype(np.float64)
        assert abs(noisy.mean() - 128) < 0.1 and abs(noisy.std() - 10) < 0.15
        assert np.abs(noisy - 128).max() <= 29  # tails stop at 2.9 std
        assert np.array_equal(
            _add_gaussian_noise(np.full((4, 4, 3), 250, np.uint8), 30.0, np.random.default_rng(1)).max(axis=(0, 1)),
            [255] * 3,
        )

    def test_pickles_after_use(self):
        augmenter = FaceAugmenter(64, **dict.fromkeys(PHOTOMETRIC, 1.0))
        image = smooth_image(shape=(64, 64))
        expected = augmenter.photometric(image, sample_rng(0, 0, 4))
        clone = pickle.loads(pickle.dumps(augmenter))
        assert clone._pipeline is None
        assert np.array_equal(clone.photometric(image, sample_rng(0, 0, 4)), expected)

    def test_albumentations_is_lazy(self):
        code = (
            "import sys, awing.data, awing.data.augment, awing.data.training; "
            "assert 'albumentations' not in sys.modules, 'albumentations imported'"
        )
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=Path(__file__).parents[1])
