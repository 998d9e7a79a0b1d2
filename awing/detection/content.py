"""A cheap image-content check of a face box, independent of any network's weights.

A face has structure (eyes, brows, mouth, nostrils): the box's grey image, resized to ``32 x 32`` with area
averaging, has a mean absolute Laplacian of about 8 grey levels or more (the lowest over 344 detections on 200
AFLW2000-3D photos was 8.4, the median 28). A flat area (a blank or uniform image of any size) gives 0, a linear
or radial gradient at most 3.5. :func:`has_texture` rejects boxes under :data:`MIN_TEXTURE`, so that a detector
that fires on such areas (awing's did, with scores 0.38-0.79) reports no face there.

>>> import numpy as np
>>> has_texture(np.full((64, 64, 3), 128, np.uint8), [0, 0, 63, 63])
False
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["MIN_TEXTURE", "has_texture", "texture"]

MIN_TEXTURE = 5.0
"""Mean absolute Laplacian (grey levels, box resized to 32 x 32) below which a box holds no face."""
_SIDE = 32


def texture(image: np.ndarray, box: Sequence[float]) -> float:
    """Mean absolute 3x3 Laplacian of the grey ``image`` (RGB uint8 ``H x W x 3``) inside ``box`` (xyxy, clipped
    to the image), resized to ``32 x 32``; 0 when the box covers no pixel or is not finite (an untrained network's
    box may overflow)."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(np.isfinite((x0, y0, x1, y1))):
        return 0.0
    left, top = max(0, int(np.floor(x0 + 0.5))), max(0, int(np.floor(y0 + 0.5)))
    right, bottom = min(width, int(np.ceil(x1 + 0.5))), min(height, int(np.ceil(y1 + 0.5)))
    if right <= left or bottom <= top:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(image[top:bottom, left:right]), cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (_SIDE, _SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


def has_texture(image: np.ndarray, box: Sequence[float]) -> bool:
    """Whether the box's content has the structure of a face (:func:`texture` >= :data:`MIN_TEXTURE`)."""
    return texture(image, box) >= MIN_TEXTURE
