"""Training augmentation: one affine matrix per face (ours), then photometric ops on the warped crop alone.

Geometry (architecture.md, "One matrix per sample"): the crop matrix of the face box
(:func:`awing.geometry.box_to_crop_matrix`) and a random augmentation in the crop frame
(:func:`awing.geometry.augmentation_matrix`: scale and rotation about the crop centre, shift, horizontal flip) compose
into ONE 2x3 matrix ``M`` (image -> crop). ``M`` warps the image once and maps the points; when ``M`` mirrors
(``det < 0``) the points and their visibility are permuted by the scheme's flip permutation, so point ``i`` keeps its
meaning. Evaluation takes the same path with the identity augmentation (:class:`GeometricParams` defaults).

Photometric ops (the image only; points are untouched), in this order, each applied with its own probability:
colour jitter (brightness, contrast, saturation), one occluding rectangle of a random colour, Gaussian blur, grey,
additive Gaussian noise, JPEG re-compression. albumentations 2.0.8 does colour, occlusion, blur, grey and JPEG;
the noise is ours (albumentations' ``GaussNoise`` costs about 4 ms per 256 x 256 crop, more than the rest of a sample).
albumentations is imported lazily, on the first photometric call in each process, with
``NO_ALBUMENTATIONS_UPDATE=1`` (no network check).

Randomness: every draw of one face comes from one ``numpy.random.Generator`` (:func:`sample_rng` derives it from
``(seed, epoch, index)``), which also drives albumentations (``Compose.set_random_state``) and the noise; no global
generator is used. A sample is therefore a function of ``(seed, epoch, index)`` alone: the same in any DataLoader
worker, in any order, and different for every index and epoch.

Magnitudes: rotation, scale, shift and flip probability come from :class:`awing.config.AugmentConfig` (methods.md §4:
rotation +-50 degrees, scale +-15 %, shift +-25 px at 256, flip 0.5); the photometric magnitudes below are awing's
own choice (the official values are unknown, methods.md §4).

>>> import numpy as np
>>> from awing.landmarks import get_scheme
>>> scheme = get_scheme("aflw")  # 21 points
>>> points = np.random.default_rng(0).uniform(20, 60, (21, 2)).astype(np.float32)
>>> face = warp_face(np.zeros((100, 80, 3), np.uint8), points, np.ones(21, bool), np.array([10, 20, 70, 80]),
...                  scheme, 64, params=GeometricParams(rotation_deg=10, flip=True))
>>> face.image.shape, is_mirrored(face.matrix)
((64, 64, 3), True)
>>> bool(np.allclose(face.landmarks_crop, transform_points(face.matrix, points)[list(scheme.flip_index)]))
True
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import cv2
import numpy as np

from awing.config import AugmentConfig
from awing.geometry import (
    augmentation_matrix,
    box_to_crop_matrix,
    compose,
    is_mirrored,
    transform_points,
    warp_image,
)
from awing.landmarks import LandmarkScheme, get_scheme

__all__ = [
    "BLUR_SIGMA",
    "COLOUR_JITTER",
    "JPEG_QUALITY",
    "NOISE_STD",
    "OCCLUSION_SIDE",
    "FaceAugmenter",
    "GeometricParams",
    "WarpedFace",
    "augmenter_from",
    "sample_rng",
    "warp_face",
]

#: Colour jitter: brightness, contrast and saturation factors drawn in [1 - j, 1 + j] (no hue change).
COLOUR_JITTER = 0.3
#: Occluding rectangle: height and width drawn as fractions of the crop side.
OCCLUSION_SIDE = (0.15, 0.4)
#: Gaussian blur standard deviation in pixels of a 256-pixel crop (scaled by input_size / 256).
BLUR_SIGMA = (0.5, 2.0)
#: Additive Gaussian noise: standard deviation drawn as a fraction of 255.
NOISE_STD = (0.02, 0.08)
#: JPEG re-compression quality range.
JPEG_QUALITY = (30, 90)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample: PCG64 seeded by ``numpy.random.SeedSequence([seed, epoch, index])``.

    SeedSequence hashes the three integers, so neighbouring indices, epochs and seeds give independent streams.
    """
    values = (seed, epoch, index)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ValueError(f"seed, epoch and index must be non-negative integers, got {values!r}")
    return np.random.default_rng(np.random.SeedSequence([int(v) for v in values]))


@dataclass(frozen=True)
class GeometricParams:
    """One draw of the geometric augmentation (the defaults are the identity: evaluation).

    Attributes:
        scale: zoom factor (> 1 zooms in) about the crop centre.
        rotation_deg: rotation about the crop centre (positive: counter-clockwise on screen).
        shift: (dx, dy) translation in crop pixels.
        flip: mirror horizontally (last, about the crop centre).
    """

    scale: float = 1.0
    rotation_deg: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    flip: bool = False

    def matrix(self, input_size: int) -> np.ndarray:
        """The crop -> crop matrix (2, 3) float64 of :func:`awing.geometry.augmentation_matrix`."""
        return augmentation_matrix(
            input_size, scale=self.scale, rotation_deg=self.rotation_deg, shift=self.shift, flip=self.flip
        )


@dataclass(eq=False)
class WarpedFace:
    """A face cropped (and augmented) by one matrix.

    Attributes:
        image: (S, S, C) crop, the input image's dtype.
        landmarks_crop: (K, 2) float32 crop pixels, flip-permuted when ``matrix`` mirrors.
        visible: (K,) bool, permuted like the points.
        matrix: (2, 3) float64 image -> crop matrix (crop, scale, rotation, shift and flip in one).
    """

    image: np.ndarray
    landmarks_crop: np.ndarray
    visible: np.ndarray
    matrix: np.ndarray


def warp_face(
    image: np.ndarray,
    landmarks_img: np.ndarray,
    visible: np.ndarray,
    box: np.ndarray,
    scheme: LandmarkScheme | str | int,
    input_size: int,
    *,
    crop_scale: float = 1.25,
    params: GeometricParams | None = None,
) -> WarpedFace:
    """Crop a face around ``box`` and apply ``params`` with one matrix.

    ``M = compose(box_to_crop_matrix(box, S, crop_scale), params.matrix(S))``; the image is warped once by ``M``
    (bilinear, black border); ``landmarks_crop = M(landmarks_img)``, then, if ``det(M[:, :2]) < 0``, point ``i``
    and its visibility become those of point ``scheme.flip_index[i]``. Points outside the crop and invisible points
    stay in the array (their coordinates are mapped like the others).

    Args:
        image: (H, W) or (H, W, C) array.
        landmarks_img: (K, 2) image pixels, K = ``scheme.num_points``.
        visible: (K,) booleans.
        box: (x0, y0, x1, y1) face box in image pixels.
        scheme: landmark scheme (its ``flip_index`` is used when ``M`` mirrors).
        input_size: crop side S.
        crop_scale: crop side relative to the box's longer side.
        params: the augmentation; None is the identity (evaluation crop).
    """
    scheme = get_scheme(scheme)
    points = np.asarray(landmarks_img, dtype=np.float32)
    num_points = scheme.num_points
    if points.shape != (num_points, 2):
        raise ValueError(
            f"landmarks_img must have shape ({num_points}, 2) for scheme {scheme.name}, got {points.shape}"
        )
    mask = np.asarray(visible)
    if mask.shape != (num_points,):
        raise ValueError(f"visible must have shape ({num_points},), got {mask.shape}")
    params = GeometricParams() if params is None else params
    matrix = compose(box_to_crop_matrix(box, input_size, scale=crop_scale), params.matrix(input_size))
    landmarks_crop = transform_points(matrix, points)
    mask = mask.astype(bool)
    if is_mirrored(matrix):
        order = np.asarray(scheme.flip_index)
        landmarks_crop, mask = landmarks_crop[order], mask[order]
    return WarpedFace(warp_image(image, matrix, input_size), landmarks_crop, mask, matrix)


def _unit_normal_quantiles() -> np.ndarray:
    """The 256 quantiles ``Phi^-1((j + 0.5) / 256)`` of the standard normal, rescaled to unit variance."""
    quantiles = np.array([NormalDist().inv_cdf((j + 0.5) / 256) for j in range(256)])
    return quantiles / np.sqrt(np.mean(quantiles**2))


_NORMAL_QUANTILES = _unit_normal_quantiles()


def _add_gaussian_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` + i.i.d. zero-mean Gaussian noise of standard deviation ``std`` (uint8 in, uint8 out, saturated).

    Each pixel and channel takes one uniform random byte ``j`` of ``rng`` and adds the rounded normal quantile
    ``std * Phi^-1((j + 0.5) / 256)`` (a 256-level inverse-CDF sample, unit variance; its tails stop at 2.9
    std). About 4x cheaper than ``cv2.randn`` and 15x cheaper than albumentations' ``GaussNoise`` at 256 x 256.
    Rounding the noise before the addition equals rounding the sum, the image being integer.
    """
    table = np.rint(std * _NORMAL_QUANTILES).astype(np.int16)
    words = rng.bit_generator.random_raw(-(-image.size // 8))
    uniform = words.view(np.uint8)[: image.size].reshape(image.shape)
    return cv2.add(image, cv2.LUT(uniform, table), dtype=cv2.CV_8U)


class FaceAugmenter:
    """Random geometric parameters and photometric ops for training crops of side ``input_size``.

    Keyword arguments are the fields of :class:`awing.config.AugmentConfig` (defaults and range checks come from
    there), so ``FaceAugmenter(256, **dataclasses.asdict(cfg.data.augment))`` works. ``shift_px`` is in pixels of a
    256-pixel crop and scales with ``input_size``.

    Per face, with one generator ``rng`` (:func:`sample_rng`): :meth:`sample_geometry` first (always four draws),
    then :meth:`photometric`. The albumentations pipeline is built on first use in each process and is not pickled.
    """

    def __init__(self, input_size: int = 256, **params: float) -> None:
        if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) or input_size <= 0:
            raise ValueError(f"input_size must be a positive int, got {input_size!r}")
        names = [f.name for f in dataclasses.fields(AugmentConfig)]
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise TypeError(f"unknown augmentation parameter(s) {unknown}; valid names: {', '.join(names)}")
        self.input_size = int(input_size)
        self.config = AugmentConfig(**params)
        self._pipeline: tuple[Any, Any] | None = None

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self.config).items())
        return f"FaceAugmenter(input_size={self.input_size}, {fields})"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pipeline": None}

    def sample_geometry(self, rng: np.random.Generator) -> GeometricParams:
        """Draw scale in [1 - s, 1 + s], rotation in [-r, r], shift in [-t, t]^2 (t = shift_px * S / 256), all
        uniform, and a flip with probability ``flip_prob``."""
        cfg = self.config
        scale = rng.uniform(1.0 - cfg.scale, 1.0 + cfg.scale)
        rotation = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)
        shift = rng.uniform(-1.0, 1.0, size=2) * (cfg.shift_px * self.input_size / 256)
        flip = rng.random() < cfg.flip_prob
        return GeometricParams(float(scale), float(rotation), (float(shift[0]), float(shift[1])), bool(flip))

    def _albumentations(self) -> tuple[Any, Any]:
        """(ops before the noise, ops after it) as albumentations Composes; None where a part has no op."""
        if self._pipeline is None:
            os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
            import albumentations as A

            cfg, k = self.config, self.input_size / 256
            before = [
                A.ColorJitter(COLOUR_JITTER, COLOUR_JITTER, COLOUR_JITTER, hue=0.0, p=cfg.colour_prob),
                A.CoarseDropout(
                    num_holes_range=(1, 1),
                    hole_height_range=OCCLUSION_SIDE,
                    hole_width_range=OCCLUSION_SIDE,
                    fill="random_uniform",
                    p=cfg.occlusion_prob,
                ),
                A.GaussianBlur(blur_limit=0, sigma_limit=(BLUR_SIGMA[0] * k, BLUR_SIGMA[1] * k), p=cfg.blur_prob),
                A.ToGray(num_output_channels=3, p=cfg.grey_prob),
            ]
            after = [A.ImageCompression(quality_range=JPEG_QUALITY, p=cfg.jpeg_prob)]
            self._pipeline = tuple(
                A.Compose(ops) if ops else None for ops in ([t for t in part if t.p > 0] for part in (before, after))
            )
        return self._pipeline

    def photometric(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Colour, occlusion, blur (albumentations), noise (ours), JPEG (albumentations) on an (S, S, 3) uint8 RGB
        crop; every op with its own probability, every draw from ``rng``.

        Returns the (S, S, 3) uint8 result (the input itself when no op fires); the input is never modified.
        """
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
            shape = getattr(image, "shape", None)
            raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got {type(image).__name__} {shape}")
        cfg = self.config
        py_random = random.Random(int(rng.integers(2**63)))
        uses_albumentations = max(cfg.colour_prob, cfg.occlusion_prob, cfg.blur_prob, cfg.grey_prob, cfg.jpeg_prob) > 0
        before, after = self._albumentations() if uses_albumentations else (None, None)
        if before is not None:
            before.set_random_state(rng, py_random)
            image = before(image=image)["image"]
        if rng.random() < cfg.noise_prob:
            image = _add_gaussian_noise(image, rng.uniform(*NOISE_STD) * 255, rng)
        if after is not None:
            after.set_random_state(rng, py_random)
            image = after(image=image)["image"]
        return np.ascontiguousarray(image)


def augmenter_from(augment: AugmentConfig | Mapping[str, float] | None, input_size: int) -> FaceAugmenter | None:
    """A :class:`FaceAugmenter` from an ``AugmentConfig``, a mapping of its fields, or None (no augmentation)."""
    if augment is None:
        return None
    if isinstance(augment, AugmentConfig):
        return FaceAugmenter(input_size, **dataclasses.asdict(augment))
    if isinstance(augment, Mapping):
        return FaceAugmenter(input_size, **augment)
    raise TypeError(f"augment must be an AugmentConfig, a mapping of its fields or None, got {type(augment).__name__}")
