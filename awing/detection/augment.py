"""Detection augmentation: random square crop and scale, horizontal flip, photometric jitter -> fixed-size images.

Geometry is one affine matrix per image (``awing.geometry``): a square region of the image maps exactly onto the
``S x S`` output (:func:`~awing.geometry.box_to_crop_matrix` with scale 1), optionally followed by a mirror
(:func:`~awing.geometry.augmentation_matrix` with ``flip=True``). The same matrix warps the image (bilinear, outside
filled with black, :data:`~awing.detection.detector.PAD_VALUE`) and maps box corners and points; a mirrored image
gets the 5-point flip permutation (eyes and mouth corners swap, ``get_scheme("5").flip_index``), and every box is
rebuilt from its transformed corners.

Training (``train=True``), RetinaFace-style:

1. With probability ``zoom_prob`` (images with faces only): a face-zoom crop. One face, drawn uniformly, is brought
   to a side ``sqrt(w h)`` drawn log-uniformly from ``zoom_sizes`` output pixels (but the square is at most the
   image's longer side), placed uniformly where it holds the whole face (or, when the face is larger than the
   square, centred on it) and, where it can, inside the image. It gives every face size with the face's real
   surroundings, so large faces meet their own hair, neck and background as negatives (after the
   data-anchor-sampling of PyramidBox, Tang et al., ECCV 2018, with a continuous size instead of anchor bins).
   Otherwise, up to ``crop_tries`` times: a square of side ``scale x min(W, H)`` (``scale`` drawn from
   ``crop_scales``) at a uniformly random position inside the image; it is accepted when it contains the centre of
   at least one face (an image without faces accepts the first). Otherwise the whole image, padded to a square at
   the bottom or right.
2. Faces whose centre falls outside the crop are dropped; ignore regions are kept when they overlap it. Kept boxes
   are clipped to the output; faces whose shorter side is below ``min_face`` output pixels become ignore regions.
3. Mirror with probability ``flip_prob``.
4. Photometric, each with probability ``photometric_prob``, in this order: brightness (add U(-32, 32)), contrast
   (multiply by U(0.5, 1.5)), saturation (HSV S times U(0.5, 1.5)), hue (shift by U(-18, 18) degrees).

Evaluation (``train=False``): the whole image padded to a square, resized to ``S x S``; nothing random.

>>> import numpy as np
>>> from awing.detection.data import DetectionSample
>>> sample = DetectionSample(np.zeros((100, 200, 3), np.uint8), np.array([[10, 20, 50, 60]], np.float32),
...                          np.zeros((1, 5, 2), np.float32), np.zeros(1, bool), np.zeros(1, bool), "x.jpg")
>>> out = DetectionAugment(64, train=False)(sample, np.random.default_rng(0))
>>> out.image.shape, np.round(out.boxes, 2)  # x_out = (x + 0.5) * 64 / 200 - 0.5
((64, 64, 3), array([[ 2.86,  6.06, 15.66, 18.86]], dtype=float32))
"""

from __future__ import annotations

import cv2
import numpy as np

from awing.detection.config import DetectionAugmentConfig
from awing.detection.data import DetectionSample
from awing.detection.detector import PAD_VALUE
from awing.geometry import augmentation_matrix, box_to_crop_matrix, compose, is_mirrored, transform_points, warp_image
from awing.landmarks import get_scheme

__all__ = ["DetectionAugment", "photometric_jitter", "transform_boxes"]

FIVE_POINT_FLIP = get_scheme("5").flip_index


def transform_boxes(M: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The xyxy boxes ``(N, 4)`` bounding the images of each box's four corners under ``M`` -> ``(N, 4)`` float32."""
    x0, y0, x1, y1 = np.asarray(boxes, np.float64).reshape(-1, 4).T
    corners = np.stack(
        [np.stack([x0, y0], -1), np.stack([x1, y0], -1), np.stack([x0, y1], -1), np.stack([x1, y1], -1)], 1
    )
    mapped = transform_points(M, corners)  # (N, 4, 2)
    return np.concatenate([mapped.min(axis=1), mapped.max(axis=1)], axis=1).astype(np.float32)


def photometric_jitter(image: np.ndarray, rng: np.random.Generator, prob: float) -> np.ndarray:
    """Brightness, contrast, saturation and hue jitter of an RGB uint8 image, each with probability ``prob``."""
    draws = rng.random(4) < prob
    values = rng.uniform([-32.0, 0.5, 0.5, -18.0], [32.0, 1.5, 1.5, 18.0])
    if not draws.any():
        return image
    out = image.astype(np.float32)
    if draws[0]:
        out += values[0]
    if draws[1]:
        out *= values[1]
    if draws[2] or draws[3]:
        hsv = cv2.cvtColor(np.clip(out, 0, 255) / 255.0, cv2.COLOR_RGB2HSV)  # H in [0, 360), S and V in [0, 1]
        if draws[2]:
            hsv[..., 1] = np.clip(hsv[..., 1] * values[2], 0, 1)
        if draws[3]:
            hsv[..., 0] = (hsv[..., 0] + values[3]) % 360
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


class DetectionAugment:
    """``augment(sample, rng) -> sample`` with an ``output_size x output_size`` image (see the module docstring).

    Args:
        output_size: side ``S`` of the output images.
        config: :class:`~awing.detection.config.DetectionAugmentConfig` (crop scales and tries, flip and photometric
            probabilities, minimum face size).
        train: random augmentation (True) or the deterministic letterbox (False).
    """

    def __init__(
        self, output_size: int = 640, config: DetectionAugmentConfig | None = None, train: bool = True
    ) -> None:
        if isinstance(output_size, bool) or not isinstance(output_size, int) or output_size < 1:
            raise ValueError(f"output_size must be a positive int, got {output_size!r}")
        self.output_size = output_size
        self.config = config or DetectionAugmentConfig()
        self.train = train

    def crop_region(
        self, width: int, height: int, boxes: np.ndarray, ignore: np.ndarray, rng: np.random.Generator | None
    ) -> tuple[float, float, float, float]:
        """The square source region ``(x0, y0, x1, y1)`` (pixel edges) that becomes the output image."""
        if self.train:
            faces = ~ignore
            if self.config.zoom_prob > 0 and faces.any() and rng.random() < self.config.zoom_prob:
                return self.zoom_region(boxes[faces][rng.integers(faces.sum())], width, height, rng)
            centres = (boxes[faces, :2] + boxes[faces, 2:]) / 2
            short = min(width, height)
            for _ in range(self.config.crop_tries):
                side = float(rng.choice(self.config.crop_scales)) * short
                left = rng.uniform(-0.5, width - 0.5 - side)
                top = rng.uniform(-0.5, height - 0.5 - side)
                inside = (centres >= (left, top)) & (centres <= (left + side, top + side))
                if not faces.any() or inside.all(axis=1).any():
                    return left, top, left + side, top + side
        side = float(max(width, height))
        return -0.5, -0.5, side - 0.5, side - 0.5

    def zoom_region(
        self, box: np.ndarray, width: int, height: int, rng: np.random.Generator
    ) -> tuple[float, float, float, float]:
        """A square region in which the face ``box`` (4,) gets a side ``sqrt(w h)`` drawn log-uniformly from
        ``zoom_sizes`` output pixels, but never larger than the image's longer side (no zooming out onto padding).
        Along each axis the region holds the face where it fits (else it is centred on it) and stays inside the
        image where it can."""
        x0, y0, x1, y1 = (float(v) for v in box)
        face = np.sqrt(max(x1 - x0, 1e-3) * max(y1 - y0, 1e-3))
        target = np.exp(rng.uniform(*np.log(self.config.zoom_sizes)))
        side = min(self.output_size * face / target, float(max(width, height)))
        starts = []
        for start, end, extent in ((x0, x1, width), (y0, y1, height)):
            centred = (start + end - side) / 2
            lo, hi = min(end - side, centred), max(start, centred)  # the face (or its centre) inside
            inside = sorted((-0.5, extent - 0.5 - side))  # the region inside the image, or covering it
            both = max(lo, inside[0]), min(hi, inside[1])
            if both[0] <= both[1]:
                lo, hi = both
            starts.append(rng.uniform(lo, hi))
        left, top = starts
        return left, top, left + side, top + side

    def __call__(self, sample: DetectionSample, rng: np.random.Generator | None = None) -> DetectionSample:
        cfg, size = self.config, self.output_size
        if self.train and rng is None:
            raise ValueError("training augmentation needs a numpy Generator (awing.data.augment.sample_rng)")
        height, width = sample.image.shape[:2]
        region = self.crop_region(width, height, sample.boxes, sample.ignore, rng)
        M = box_to_crop_matrix(region, size, scale=1.0)
        if self.train and rng.random() < cfg.flip_prob:
            M = compose(M, augmentation_matrix(size, flip=True))
        image = warp_image(sample.image, M, size, border_value=PAD_VALUE)

        boxes = transform_boxes(M, sample.boxes)
        extent = (-0.5, size - 0.5)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        clipped = np.clip(boxes, *extent)
        has_area = (clipped[:, 2:] > clipped[:, :2]).all(axis=1)
        centre_inside = ((centres >= extent[0]) & (centres <= extent[1])).all(axis=1)
        keep = np.where(sample.ignore, has_area, centre_inside & has_area)
        landmarks = transform_points(M, sample.landmarks.astype(np.float32))
        if is_mirrored(M):
            landmarks = landmarks[:, list(FIVE_POINT_FLIP)]
        boxes, landmarks = clipped[keep], landmarks[keep]
        ignore = sample.ignore[keep] | ((boxes[:, 2:] - boxes[:, :2]).min(axis=1) < cfg.min_face)
        if self.train:
            image = photometric_jitter(image, rng, cfg.photometric_prob)
        return DetectionSample(
            image, boxes.astype(np.float32), landmarks.astype(np.float32), sample.landmark_mask[keep].copy(), ignore,
            sample.image_path,
        )  # fmt: skip
