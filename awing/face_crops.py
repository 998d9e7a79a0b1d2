"""Aligned face crops: five points from the landmarks, a similarity transform onto a template, one warp.

Five points, in the templates' order (image left first, as in the templates' sources): the image-left eye centre,
the image-right eye centre, the nose tip, the image-left and the image-right mouth corner. From the 68 iBUG points
(:func:`five_points`): the means of points 36-41 and 42-47, point 30, points 48 and 54; a 5-point scheme is used
as it is.

Templates (:data:`TEMPLATES`; pixel coordinates in a square crop of side ``base``, OpenCV's pixel-centre
convention, scaled to any output size by :func:`template_points`):

- ``arcface``, 112 x 112: the reference points of ArcFace / InsightFace (``arcface_dst`` in InsightFace's
  ``python-package/insightface/utils/face_align.py``), the alignment face-recognition models expect;
- ``ffhq``, 512 x 512: the 5-point FFHQ template of facexlib's ``FaceRestoreHelper``
  (``facexlib/utils/face_restoration_helper.py``, used by GFPGAN and CodeFormer), the framing of FFHQ-style face
  crops (more forehead and chin than ArcFace's).

The transform is the least-squares similarity (rotation, uniform scale, translation; no reflection) of Umeyama,
"Least-squares estimation of transformation parameters between two point patterns", PAMI 1991
(:func:`similarity_transform`).

>>> src = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
>>> M = similarity_transform(src, src @ [[0.0, 1.0], [-1.0, 0.0]] * 2 + [3.0, 4.0])  # rotate 90, scale 2, shift
>>> np.round(M, 6).tolist()
[[0.0, -2.0, 3.0], [2.0, 0.0, 4.0]]
"""

from __future__ import annotations

import numpy as np

from awing.geometry import warp_image

__all__ = ["TEMPLATES", "align_face", "five_points", "similarity_transform", "template_points"]

#: name -> (base side in pixels, (5, 2) points); see the module docstring for the sources.
TEMPLATES: dict[str, tuple[int, np.ndarray]] = {
    "arcface": (
        112,
        np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]),
    ),
    "ffhq": (
        512,
        np.array(
            [
                [192.98138, 239.94708],
                [318.90277, 240.1936],
                [256.63416, 314.01935],
                [201.26117, 371.41043],
                [313.08905, 371.15118],
            ]
        ),
    ),
}


def template_points(template: str, size: int) -> np.ndarray:
    """The template's five points for a ``size x size`` crop: ``(p + 0.5) * size / base - 0.5`` (the crop's
    extent ``[-0.5, base - 0.5]`` maps onto ``[-0.5, size - 0.5]``)."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; valid: {sorted(TEMPLATES)}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}")
    base, points = TEMPLATES[template]
    return (points + 0.5) * (size / base) - 0.5


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """``(68, 2)`` iBUG points (or ``(5, 2)`` already) -> the ``(5, 2)`` float64 points of the module docstring."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape == (5, 2):
        return points
    if points.shape != (68, 2):
        raise ValueError(f"five_points needs (68, 2) iBUG points or (5, 2) points, got {points.shape}")
    return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``dst ~ s R src + t`` (Umeyama 1991) -> ``(2, 3)`` float64 matrix.

    ``src``, ``dst``: ``(K, 2)`` corresponding points, K >= 2, not all equal.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"expected two (K, 2) point sets with K >= 2, got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("points must be finite")
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    a, b = src - src_mean, dst - dst_mean
    var = (a**2).sum() / len(a)
    if var <= 0:
        raise ValueError("the source points are all equal")
    cov = b.T @ a / len(a)
    U, sigma, Vt = np.linalg.svd(cov)
    d = np.array([1.0, np.sign(np.linalg.det(U) * np.linalg.det(Vt)) or 1.0])  # no reflection
    R = U @ np.diag(d) @ Vt
    scale = (sigma * d).sum() / var
    t = dst_mean - scale * R @ src_mean
    return np.concatenate([scale * R, t[:, None]], axis=1)


def align_face(
    image: np.ndarray, landmarks: np.ndarray, size: int = 112, template: str = "arcface"
) -> tuple[np.ndarray, np.ndarray]:
    """The aligned ``size x size`` crop of one face and its matrix (image -> crop).

    Args:
        image: ``H x W x C`` image (any dtype ``cv2.warpAffine`` takes).
        landmarks: ``(68, 2)`` iBUG points or ``(5, 2)`` points (module docstring) in image pixels.
        size: crop side in pixels.
        template: a name of :data:`TEMPLATES`.

    Returns:
        ``(crop size x size x C, M (2, 3))``; ``transform_points(M, points)`` maps image points into the crop.
    """
    dst = template_points(template, size)
    M = similarity_transform(five_points(landmarks), dst)
    return warp_image(image, M, size), M
