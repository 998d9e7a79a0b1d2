"""Head pose (yaw, pitch, roll in degrees) from 68 image points and a mean 3D face, by a weak-perspective fit.

Model: the image points ``x_i`` (68 iBUG points, image pixels) are a scaled orthographic projection of the mean 3D
face ``X_i`` (:data:`awing.mean_face.MEAN_FACE_68`, built by ``scripts/build_mean_face.py`` from AFLW training
faces): ``x_i = s R[:2] X_i + t``. The fit (:func:`fit_weak_perspective`) solves the affine camera ``P`` (2 x 3) by
least squares on the centred points, then takes the nearest scaled rotation: with ``P = U Sigma V^T``,
``R[:2] = U V^T``, ``s`` = the mean singular value, ``R[2] = R[0] x R[1]``. Weak perspective needs no camera
intrinsics (unknown for a photo) and matches how faces' pose labels are usually made (3DMM fits under scaled
orthography, e.g. AFLW2000-3D).

**Angles** (degrees), camera axes x right, y down, z away from the camera; the face frame is the same when the face
looks straight at the camera (yaw = pitch = roll = 0)::

    R = Rz(roll) @ Ry(yaw) @ Rx(-pitch)

- **yaw > 0**: the face turns towards the image left (its nose points to the image left; the subject turns to
  their own right). This is the sign of AFLW's and AFLW2000-3D's ``yaw_deg`` (checked on AFLW training faces: the
  teacher points' yaw correlates with the labels at r = 0.97).
- **pitch > 0**: the face turns up (chin forward, nose tip moves up in the image).
- **roll > 0**: the face is rotated clockwise in the image (the image-right eye lower than the image-left eye).

**Points used**: the 51 inner points 17-67 (brows, nose, eyes, mouth), not the jaw line 0-16, whose points are not
fixed on the face (on a turned face they follow its outline). Chosen on the 909 AFLW validation faces (the AFLW
training set's held-out split, never AFLW2000-3D) from the bundled model's predicted points, yaw MAE against AFLW's
labels: 10.9 degrees with the inner points against 15.2 with all 68 (the predicted jaw line of a strongly turned face
pulls the yaw towards frontal). :data:`POSE_POINTS`.

``yaw`` lies in [-90, 90]; beyond that the Euler angles fold (a face seen from behind has no 68 points anyway).

>>> pose = head_pose(project(MEAN_FACE_68, rotation_matrix(30.0, -10.0, 5.0), scale=100.0, shift=(320, 240)))
>>> [round(v, 6) for v in (pose.yaw, pose.pitch, pose.roll)]
[30.0, -10.0, 5.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from awing.mean_face import MEAN_FACE_68

__all__ = [
    "MEAN_FACE_68",
    "POSE_POINTS",
    "HeadPose",
    "euler_angles",
    "face_pose",
    "fit_weak_perspective",
    "head_pose",
    "project",
    "rotation_matrix",
]


POSE_POINTS = tuple(range(17, 68))
"""The iBUG points the pose is fitted to (module docstring)."""


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``Rz(roll) @ Ry(yaw) @ Rx(-pitch)`` (degrees) -> ``(3, 3)`` float64 (module docstring conventions)."""
    y, p, r = np.radians([yaw, -pitch, roll])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def euler_angles(R: np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`rotation_matrix`: ``(yaw, pitch, roll)`` in degrees, yaw in [-90, 90]."""
    R = np.asarray(R, dtype=np.float64)
    yaw = math.degrees(math.asin(float(np.clip(-R[2, 0], -1.0, 1.0))))
    pitch = -math.degrees(math.atan2(R[2, 1], R[2, 2]))
    roll = math.degrees(math.atan2(R[1, 0], R[0, 0]))
    return yaw, pitch, roll


def project(points_3d: np.ndarray, R: np.ndarray, scale: float = 1.0, shift: Any = (0.0, 0.0)) -> np.ndarray:
    """Scaled orthographic projection ``scale * R[:2] @ X + shift`` of ``(K, 3)`` points -> ``(K, 2)``."""
    return scale * np.asarray(points_3d, np.float64) @ np.asarray(R, np.float64)[:2].T + np.asarray(shift, np.float64)


def fit_weak_perspective(points_2d: np.ndarray, points_3d: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Scaled orthographic camera of ``(K, 2)`` image points of ``(K, 3)`` model points (module docstring).

    Returns ``(R (3, 3) rotation, scale, shift (2,))`` with ``points_2d ~ scale * R[:2] @ X + shift``, ``shift``
    being the image position of the model's origin. Raises ``ValueError`` for non-finite or degenerate points.
    """
    x = np.asarray(points_2d, np.float64)
    X = np.asarray(points_3d, np.float64)
    if x.ndim != 2 or x.shape[1] != 2 or X.shape != (len(x), 3):
        raise ValueError(f"expected (K, 2) image points and (K, 3) model points, got {x.shape} and {X.shape}")
    if not np.isfinite(x).all():
        raise ValueError("image points must be finite")
    X_mean, solver = _affine_solver(X.tobytes(), len(X))
    x_mean = x.mean(axis=0)
    P = (solver @ (x - x_mean)).T  # (2, 3): least squares of x - x_mean ~ (X - X_mean) @ P^T
    U, sigma, Vt = np.linalg.svd(P, full_matrices=False)
    if not sigma[1] > 1e-9 * max(sigma[0], 1e-300):
        raise ValueError("degenerate points: the image points do not span two dimensions")
    a, b = U @ Vt
    R = np.array([a, b, [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]])
    scale = float(sigma.mean())
    shift = x_mean - scale * R[:2] @ X_mean
    return R, scale, shift


@lru_cache(maxsize=8)
def _affine_solver(model_bytes: bytes, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``(X_mean (3,), pinv(X - X_mean) (3, K))`` of ``count`` model points given as float64 bytes: the model is
    the same for every face, so its least-squares solver is computed once (a fit then costs two small products)."""
    X = np.frombuffer(model_bytes, dtype=np.float64).reshape(count, 3)
    X_mean = X.mean(axis=0)
    return X_mean, np.linalg.pinv(X - X_mean)


@dataclass(frozen=True)
class HeadPose:
    """A face's head pose: Euler angles in degrees (module docstring) and its weak-perspective camera.

    Attributes:
        yaw, pitch, roll: degrees.
        rotation: ``(3, 3)`` face-to-camera rotation.
        scale: pixels per model unit (the mean face's outer eye corner distance is 1 unit).
        origin: ``(2,)`` image position of the model's origin (the mean of its 68 points).
    """

    yaw: float
    pitch: float
    roll: float
    rotation: np.ndarray
    scale: float
    origin: np.ndarray

    def to_dict(self) -> dict[str, float]:
        """``{"yaw", "pitch", "roll"}`` in degrees (the JSON form)."""
        return {"yaw": self.yaw, "pitch": self.pitch, "roll": self.roll}

    def axes(self, length: float = 0.6) -> np.ndarray:
        """Image points ``(4, 2)``: the origin, then the ends of the face's x, y, z axes of ``length`` model units."""
        ends = np.vstack([np.zeros(3), length * np.eye(3)])
        return project(ends, self.rotation, self.scale, self.origin)


def head_pose(
    landmarks: np.ndarray, model: np.ndarray = MEAN_FACE_68, points: tuple[int, ...] = POSE_POINTS
) -> HeadPose:
    """Head pose of one face from its ``(68, 2)`` image points (iBUG order) and the mean 3D face, fitted to
    ``points`` (default :data:`POSE_POINTS`); ``origin`` is the image position of the model's origin."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (len(model), 2):
        raise ValueError(f"landmarks must have shape ({len(model)}, 2), got {landmarks.shape}")
    index = list(points)
    R, scale, shift = fit_weak_perspective(landmarks[index], model[index])
    yaw, pitch, roll = euler_angles(R)
    return HeadPose(yaw, pitch, roll, R, scale, shift)


def face_pose(landmarks: np.ndarray, scheme: str) -> HeadPose | None:
    """:func:`head_pose` of a face of landmark ``scheme``: ``None`` unless it is ``"68"`` and its points are finite
    and not degenerate."""
    if scheme != "68":
        return None
    try:
        return head_pose(landmarks)
    except ValueError:
        return None
