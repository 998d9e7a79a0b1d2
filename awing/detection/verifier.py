"""The detector's second stage: re-score and refine each first-stage box with a small CNN on a crop around it (a
cascade, as MTCNN's output network, Zhang et al. 2016).

The first stage (:class:`~awing.detection.network.FaceDetectorNet`) runs at a low score threshold
(``proposal_threshold``) so that it misses few faces; every box it keeps is cut out as a square around it
(:func:`crop_squares`: side ``CROP_SCALE`` times the box's longer side, so the crop shows the face and some
context, resized to 48 x 48 pixels) and :class:`~awing.detection.network.VerifierNet` gives a face logit and four
box-edge offsets. A box whose face probability is under the operating threshold is dropped (a texture, a dog, a
second box on one face); the offsets move the box edges (:func:`refine_boxes`), in units of the square's side.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from awing.detection.network import VERIFIER_SIDE

__all__ = ["CROP_SCALE", "crop_squares", "crops_to_tensor", "encode_offsets", "refine_boxes", "square_regions"]

CROP_SCALE = 1.25
"""Side of the cut-out square relative to the box's longer side."""


def square_regions(boxes: np.ndarray, scale: float = CROP_SCALE) -> np.ndarray:
    """Squares ``(N, 4)`` float32 xyxy centred on ``boxes`` (``(N, 4)`` xyxy) that cover whole pixels: side
    ``max(1, round(scale * longer side))`` pixels, edges on pixel borders (pixel ``i`` spans ``[i - 0.5, i + 0.5]``,
    the box convention of :mod:`awing.geometry`), so the first pixel inside is ``x0 + 0.5``."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = np.maximum(1, np.round(scale * np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])))
    x0 = np.round((boxes[:, 0] + boxes[:, 2] - side) / 2 + 0.5) - 0.5  # first pixel: round(centre - side / 2 + 0.5)
    y0 = np.round((boxes[:, 1] + boxes[:, 3] - side) / 2 + 0.5) - 0.5
    return np.stack([x0, y0, x0 + side, y0 + side], axis=1).astype(np.float32)


def crop_squares(image: np.ndarray, boxes: np.ndarray, scale: float = CROP_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """Square crops around ``boxes`` resized to the verifier's input.

    Args:
        image: RGB uint8 ``H x W x 3``.
        boxes: ``(N, 4)`` xyxy in image pixels (finite).

    Returns:
        ``(crops, squares)``: ``(N, 48, 48, 3)`` uint8 (outside the image: black; ``cv2.INTER_AREA`` when
        shrinking, so large faces are not aliased) and the squares of :func:`square_regions`.
    """
    squares = square_regions(boxes, scale)
    crops = np.zeros((len(squares), VERIFIER_SIDE, VERIFIER_SIDE, 3), np.uint8)
    height, width = image.shape[:2]
    for i, (x0, y0, x1, y1) in enumerate((squares + 0.5).astype(np.int64).tolist()):  # Python ints: faster here
        k = VERIFIER_SIDE / (x1 - x0)
        left, top, right, bottom = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        # the part inside the image, resized on its own and pasted where it lies in the square (no black canvas
        # of the square's full size is made; a huge box costs no more than the image)
        c0, r0 = round((left - x0) * k), round((top - y0) * k)
        c1, r1 = round((right - x0) * k), round((bottom - y0) * k)
        if c1 > c0 and r1 > r0:
            interpolation = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
            part = image[top:bottom, left:right]
            crops[i, r0:r1, c0:c1] = cv2.resize(part, (c1 - c0, r1 - r0), interpolation=interpolation)
    return crops, squares


def encode_offsets(squares: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Edge offsets ``(targets - squares) / side`` (``(N, 4)`` each, xyxy): what :class:`VerifierNet` learns."""
    side = (squares[:, 2] - squares[:, 0])[:, None]
    return ((targets - squares) / side).astype(np.float32)


def refine_boxes(squares: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_offsets`: boxes ``squares + offsets * side`` (``(N, 4)`` float32)."""
    side = (squares[:, 2] - squares[:, 0])[:, None]
    return (squares + offsets * side).astype(np.float32)


def crops_to_tensor(crops: np.ndarray) -> Tensor:
    """``(N, 48, 48, 3)`` uint8 crops -> ``N x 3 x 48 x 48`` float32 network input."""
    return torch.from_numpy(np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32))
