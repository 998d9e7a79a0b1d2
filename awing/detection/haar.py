"""``HaarFaceDetector``: OpenCV's Viola-Jones Haar cascade as a face front end with :class:`FaceDetector`'s interface.

Pipeline per image: grey copy (``cv2.COLOR_RGB2GRAY``) -> resized (``cv2.INTER_AREA``) so that the longer side is at
most ``max_side`` (never enlarged; pixel centres map to pixel centres: ``x_in = (x + 0.5) k - 0.5`` with
``k = new_width / width``, the same for ``y``) -> ``cv2.CascadeClassifier.detectMultiScale3`` with
``outputRejectLevels=True`` -> boxes mapped back to original pixels by the inverse resize
``x = (x_in + 0.5) / k - 0.5``.

OpenCV's integer rectangle ``(x, y, w, h)`` covers the pixels ``x .. x + w - 1``; in awing's convention (0-based,
pixel centres on integers, :mod:`awing.geometry`) its box is ``(x, y, x + w - 1, y + h - 1)``, from the first to
the last pixel centre. Boxes are not clipped to the image.

Scores are the cascade's level weights (the last stage's summed weak-classifier votes of each grouped detection):
larger means more face-like, but they are unbounded and **not a probability**; results are by decreasing score.
The cascade finds no facial points: ``landmarks`` are NaN.

The cascade file ``haarcascade_frontalface_default.xml`` ships with the ``opencv-python`` 4.x wheels
(``cv2.data.haarcascades``); OpenCV 5 wheels no longer include it: pass its path as ``cascade``.

A Haar box sits differently on the face than the boxes the landmark model was trained on (the tight box of the 68
points), so the detector carries its own :class:`~awing.geometry.BoxAdapter` (:data:`HAAR_BOX_ADAPTER`), which
:class:`~awing.aligner.FaceAligner` uses instead of the one stored with the landmark weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from awing.detection.detector import _check_image, check_images
from awing.geometry import BoxAdapter

__all__ = ["HAAR_BOX_ADAPTER", "HAAR_CASCADE", "HaarFaceDetector", "haar_cascade_path", "rects_to_boxes"]

HAAR_CASCADE = "haarcascade_frontalface_default.xml"
"""The frontal-face cascade of the OpenCV 4.x wheels (``cv2.data.haarcascades``)."""

# Fitted with
#   python scripts/calibrate_box_adapter.py --detector opencv --max-faces 3000 --json haar_adapter.json
# (AFLW-68 train split, 3000 evenly spaced 120 px crops centred in a 3x replicate-border canvas, HaarFaceDetector
# defaults, min IoU 0.3): detection rate 75.4% (2262 / 3000 matched; any detection 76.0%; AFLW has many profile
# faces, which a frontal cascade misses). Per-face terms, median [q25, q75] (IQR): shift_x +0.0038 [-0.0625, +0.0779]
# (0.140), shift_y +0.1473 [+0.1225, +0.1732] (0.051), scale 0.8769 [0.8301, 0.9321] (0.102). Median crop error vs the
# target crop, raw -> adapted: centre 0.198 -> 0.095 crop sides, size |ln| 0.135 -> 0.057.
HAAR_BOX_ADAPTER = BoxAdapter(shift_x=0.0038, shift_y=0.1473, scale=0.8769)
"""Haar box -> the landmark model's training box (the tight box of the 68 points); see the comment above."""


def haar_cascade_path(name: str = HAAR_CASCADE) -> Path:
    """Path of a cascade shipped with OpenCV (``cv2.data.haarcascades``); ``FileNotFoundError`` when absent."""
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder or "") / name
    if folder is None or not path.is_file():
        raise FileNotFoundError(
            f"OpenCV {cv2.__version__} does not ship the Haar cascade {name!r} (looked in {folder}); install "
            f"opencv-python-headless 4.x or pass HaarFaceDetector(cascade=<path to {name}>)"
        )
    return path


def rects_to_boxes(rects: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """OpenCV ``(x, y, w, h)`` rectangles of an image resized by ``(scale_x, scale_y)`` -> original-pixel boxes.

    ``(x, y, x + w - 1, y + h - 1)`` in the resized image, then ``x = (x_in + 0.5) / k - 0.5`` per axis.

    Shapes: ``(N, 4)`` -> float32 ``(N, 4)`` xyxy.

    >>> rects_to_boxes(np.array([[10, 20, 30, 40]]), 0.5, 0.5).tolist()
    [[20.5, 40.5, 78.5, 118.5]]
    """
    rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    boxes_in = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:] - 1], axis=1)
    return ((boxes_in + 0.5) / np.array([scale_x, scale_y, scale_x, scale_y]) - 0.5).astype(np.float32)


def _int_at_least(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


class HaarFaceDetector:
    """OpenCV Haar-cascade face detector for RGB uint8 images of any size (see the module docstring).

    Args:
        max_side: the grey copy is shrunk so that its longer side is at most this (speed); never enlarged.
        scale_factor: image pyramid step of ``detectMultiScale3`` (> 1).
        min_neighbors: overlapping raw detections needed to keep a grouped one.
        min_size: smallest face side searched, in pixels of the resized copy.
        box_adapter: Haar box -> landmark training box; :class:`~awing.aligner.FaceAligner` uses it.
        cascade: cascade XML file; default :func:`haar_cascade_path` (``FileNotFoundError`` when absent).

    >>> detector = HaarFaceDetector()
    >>> result = detector.detect(np.zeros((48, 64, 3), np.uint8))
    >>> result["boxes"].shape, result["scores"].shape, result["landmarks"].shape
    ((0, 4), (0,), (0, 5, 2))
    """

    def __init__(
        self,
        max_side: int = 640,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 24,
        box_adapter: BoxAdapter = HAAR_BOX_ADAPTER,
        cascade: str | Path | None = None,
    ) -> None:
        self.max_side = _int_at_least(max_side, "max_side", 1)
        self.min_neighbors = _int_at_least(min_neighbors, "min_neighbors", 0)
        self.min_size = _int_at_least(min_size, "min_size", 1)
        if isinstance(scale_factor, bool) or not isinstance(scale_factor, (int, float)) or not scale_factor > 1:
            raise ValueError(f"scale_factor must be a number > 1, got {scale_factor!r}")
        self.scale_factor = float(scale_factor)
        if not isinstance(box_adapter, BoxAdapter):
            raise TypeError(f"box_adapter must be a BoxAdapter, got {type(box_adapter).__name__}")
        self.box_adapter = box_adapter
        self.cascade_path = haar_cascade_path() if cascade is None else Path(cascade)
        if not self.cascade_path.is_file():
            raise FileNotFoundError(f"Haar cascade file not found: {self.cascade_path}")
        try:
            self.classifier = cv2.CascadeClassifier(str(self.cascade_path))
        except (cv2.error, SystemError) as err:  # OpenCV raises on some malformed files, not on others
            raise ValueError(f"{self.cascade_path} is not an OpenCV cascade classifier file: {err}") from None
        if self.classifier.empty():
            raise ValueError(f"{self.cascade_path} is not an OpenCV cascade classifier file")

    def detect(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Faces in one RGB uint8 ``H x W x 3`` image.

        Returns:
            ``boxes`` ``(N, 4)`` float32 xyxy in original-image pixels, ``scores`` ``(N,)`` float32 level weights
            (not probabilities), ``landmarks`` ``(N, 5, 2)`` float32 NaN; by decreasing score; ``N = 0`` for no face.
        """
        _check_image(image)
        return self._detect(image)

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """:meth:`detect` for a list of images of any sizes (one after the other)."""
        return [self._detect(image) for image in check_images(images)]

    def _detect(self, image: np.ndarray) -> dict[str, np.ndarray]:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        height, width = grey.shape
        k = min(1.0, self.max_side / max(height, width))
        new_w, new_h = max(1, round(width * k)), max(1, round(height * k))
        if (new_w, new_h) != (width, height):
            grey = cv2.resize(grey, (new_w, new_h), interpolation=cv2.INTER_AREA)
        rects, _, weights = self.classifier.detectMultiScale3(
            grey,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
            outputRejectLevels=True,
        )
        scores = np.asarray(weights, dtype=np.float32).reshape(-1)
        order = np.argsort(-scores, kind="stable")
        boxes = rects_to_boxes(np.asarray(rects).reshape(-1, 4)[order], new_w / width, new_h / height)
        landmarks = np.full((len(order), 5, 2), np.nan, dtype=np.float32)
        return {"boxes": boxes, "scores": scores[order], "landmarks": landmarks}

    def __repr__(self) -> str:
        return (
            f"HaarFaceDetector(max_side={self.max_side}, scale_factor={self.scale_factor}, "
            f"min_neighbors={self.min_neighbors}, min_size={self.min_size}, box_adapter={self.box_adapter}, "
            f"cascade={self.cascade_path.name!r})"
        )
