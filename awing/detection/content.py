"""A cheap image-content check of a face box, independent of any network's weights.

Two measures of the box's grey image, each rejecting what a face never is:

- **Texture** (:func:`texture`): a face has structure (eyes, brows, mouth, nostrils): the box resized to ``32 x 32``
  with area averaging has a mean absolute Laplacian of about 8 grey levels or more (the lowest over 344 detections
  on 200 AFLW2000-3D photos was 8.4, the median 28). A flat area (a blank or uniform image of any size) gives 0, a
  linear or radial gradient at most 3.5. Boxes under :data:`MIN_TEXTURE` are rejected.
- **Two tones** (:func:`two_tone_share`): printed or rendered text is ink on paper: split at Otsu's threshold, nearly
  every pixel lies within 12 grey levels of its side's median (1.0 for rendered text; 0.70 or more for 95 % of the
  detector's boxes on blurred or anti-aliased text pages). A face is shaded continuously: over 705 detections
  matched to AFLW2000-3D faces the share was 0.39 at the median and 0.86 at most. Boxes at or above
  :data:`MAX_TWO_TONE` are rejected.

:func:`has_face_content` applies both, so that a detector that fires on such areas (awing's did, with scores
0.38-0.79 on flat images and up to 0.52 on text pages) reports no face there.

>>> import numpy as np
>>> has_face_content(np.full((64, 64, 3), 128, np.uint8), [0, 0, 63, 63])
False
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["MAX_TWO_TONE", "MIN_TEXTURE", "has_face_content", "texture", "two_tone_share"]

MIN_TEXTURE = 5.0
"""Mean absolute Laplacian (grey levels, box resized to 32 x 32) below which a box holds no face."""
MAX_TWO_TONE = 0.9
"""Share of two-tone pixels (see :func:`two_tone_share`) from which a box is ink on paper, not a face."""
_SIDE = 32
_TONE_SIDE = 128
_TONE_TOLERANCE = 12


def _grey_box(image: np.ndarray, box: Sequence[float]) -> np.ndarray | None:
    """The grey pixels of ``image`` (RGB uint8 ``H x W x 3``) inside ``box`` (xyxy, clipped to the image); None
    when the box covers no pixel or is not finite (an untrained network's box may overflow)."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(np.isfinite((x0, y0, x1, y1))):
        return None
    left, top = max(0, int(np.floor(x0 + 0.5))), max(0, int(np.floor(y0 + 0.5)))
    right, bottom = min(width, int(np.ceil(x1 + 0.5))), min(height, int(np.ceil(y1 + 0.5)))
    if right <= left or bottom <= top:
        return None
    return cv2.cvtColor(np.ascontiguousarray(image[top:bottom, left:right]), cv2.COLOR_RGB2GRAY)


def texture(image: np.ndarray, box: Sequence[float]) -> float:
    """Mean absolute 3x3 Laplacian of the box's grey image resized to ``32 x 32``; 0 for an empty or non-finite
    box."""
    grey = _grey_box(image, box)
    return 0.0 if grey is None else _texture(grey)


def _texture(grey: np.ndarray) -> float:
    grey = cv2.resize(grey, (_SIDE, _SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


def two_tone_share(image: np.ndarray, box: Sequence[float]) -> float:
    """Share of the box's grey pixels within 12 grey levels of the median of their side of Otsu's threshold.

    The box is sampled (nearest neighbour, so no new grey levels appear) to at most 128 px on its longer side; the
    medians (the lower middle value) and counts come from its 256-bin histogram. 1 for an empty or non-finite box
    (nothing there is a face).
    """
    grey = _grey_box(image, box)
    return 1.0 if grey is None else _two_tone_share(grey)


def _two_tone_share(grey: np.ndarray) -> float:
    scale = _TONE_SIDE / max(grey.shape)
    if scale < 1:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    threshold, _ = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    histogram = np.bincount(grey.ravel(), minlength=256)
    split = int(threshold) + 1  # Otsu's binary image: dark = values <= threshold
    near = 0
    for low, high in ((0, split), (split, 256)):
        side = histogram[low:high]
        count = int(side.sum())
        if count:
            median = low + int(np.searchsorted(np.cumsum(side), (count + 1) // 2))
            near += int(histogram[max(low, median - _TONE_TOLERANCE) : min(high, median + _TONE_TOLERANCE + 1)].sum())
    return near / grey.size


def has_face_content(image: np.ndarray, box: Sequence[float]) -> bool:
    """Whether the box's content could be a face: :func:`texture` >= :data:`MIN_TEXTURE` and
    :func:`two_tone_share` < :data:`MAX_TWO_TONE` (the box's grey image is cut out once for both)."""
    grey = _grey_box(image, box)
    return grey is not None and _texture(grey) >= MIN_TEXTURE and _two_tone_share(grey) < MAX_TWO_TONE
