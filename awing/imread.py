"""Image input for prediction besides files: caller arrays -> RGB uint8, and the image files of a folder.

Files are read by the one image reader of awing, :func:`awing.data.io.read_image` (EXIF orientation applied by
awing itself), the same for training, evaluation and prediction.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from awing.data.io import IMAGE_EXTENSIONS, to_rgb_uint8

__all__ = ["as_rgb_image", "list_images"]


def as_rgb_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """A caller's RGB array -> RGB uint8 ``H x W x 3``: grey ``H x W`` / ``H x W x 1``, RGB, RGBA (alpha dropped),
    uint8 or uint16 (scaled by 1/257). Raises ``TypeError`` for a non-array, ``ValueError`` for other shapes/types."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array (RGB, H x W x 3) or a path, got {type(image).__name__}")
    if image.ndim not in (2, 3) or 0 in image.shape[:2]:
        raise ValueError(f"{name} must be a non-empty H x W or H x W x C array, got shape {image.shape}")
    return to_rgb_uint8(image, bgr=False, name=name)


def list_images(
    folder: str | os.PathLike, recursive: bool = False, extensions: Iterable[str] = IMAGE_EXTENSIONS
) -> list[Path]:
    """The image files in ``folder`` (and its sub-folders when ``recursive``), sorted by path.

    A file is an image when its suffix, lower-cased, is in ``extensions`` (default
    :data:`awing.data.io.IMAGE_EXTENSIONS`). Raises ``NotADirectoryError`` when ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    suffixes = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in suffixes and p.is_file())
