"""Robust image input for prediction: any readable file -> RGB uint8, upright as a viewer shows it.

:func:`load_image` reads the file's bytes with numpy (so non-ASCII paths work), decodes them with ``cv2.imdecode``
and applies the JPEG's EXIF orientation itself: OpenCV's own handling differs between versions (4.14 applies it in
``imdecode``, older ones did not), so decoding asks OpenCV to ignore it (``IMREAD_IGNORE_ORIENTATION``) and
:func:`jpeg_orientation` / :func:`apply_orientation` do the work the same way everywhere. Only JPEG EXIF is read
(the orientation of cameras and phones); other formats are taken as stored.

Grey, grey + alpha, RGBA (alpha dropped) and 16-bit images (scaled to 8 bits) become RGB uint8
(:func:`awing.data.io.to_rgb_uint8`). A missing, empty, truncated, corrupt or non-image file raises
:class:`awing.data.io.DataError` (a ``ValueError``) whose message names the file.

>>> import numpy as np
>>> image = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
>>> apply_orientation(image, 6)[..., 0].tolist()  # 6: rotate 90 degrees clockwise to display
[[3, 0], [4, 1], [5, 2]]
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from awing.data.io import IMAGE_EXTENSIONS, DataError, _jpeg_is_truncated, to_rgb_uint8

__all__ = ["apply_orientation", "as_rgb_image", "jpeg_orientation", "list_images", "load_image"]

_ORIENTATION_TAG = 0x0112
_SHORT = 3


def jpeg_orientation(data: bytes) -> int:
    """The EXIF orientation (1..8) of a JPEG file's bytes; 1 (as stored) when absent, malformed or out of range.

    Walks the marker segments before the first scan (start of scan ``FF DA`` ends the search) for an APP1
    (``FF E1``) segment starting ``Exif\\0\\0``, then reads its TIFF header (byte order ``II`` or ``MM``, the
    magic 42, the offset of IFD0) and looks up tag 0x0112 (a SHORT) among IFD0's 12-byte entries.
    """
    if data[:2] != b"\xff\xd8":
        return 1
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA or 0xD0 <= marker <= 0xD9:  # scan or a marker without payload: no EXIF before it
            return 1
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        payload = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and payload[:6] == b"Exif\x00\x00":
            return _tiff_orientation(payload[6:])
        pos += 2 + length
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8 or int.from_bytes(tiff[2:4], order) != 42:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 1
    count = int.from_bytes(tiff[ifd : ifd + 2], order)
    for entry in range(ifd + 2, min(ifd + 2 + 12 * count, len(tiff) - 11), 12):
        tag = int.from_bytes(tiff[entry : entry + 2], order)
        if tag == _ORIENTATION_TAG:
            kind = int.from_bytes(tiff[entry + 2 : entry + 4], order)
            value = int.from_bytes(tiff[entry + 8 : entry + 10], order)
            return value if kind == _SHORT and 1 <= value <= 8 else 1
    return 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a stored image (H, W[, C]) upright for EXIF ``orientation`` (TIFF 6.0 / EXIF 2.3 tag 0x0112).

    1 as stored; 2 mirror left-right; 3 rotate 180 degrees; 4 mirror top-bottom; 5 transpose (mirror about the
    main diagonal); 6 rotate 90 degrees clockwise; 7 transverse (mirror about the anti-diagonal); 8 rotate 90
    degrees counter-clockwise. Returns a contiguous array (W and H swap for 5 to 8).
    """
    if isinstance(orientation, bool) or not isinstance(orientation, (int, np.integer)) or not 1 <= orientation <= 8:
        raise ValueError(f"EXIF orientation must be an int in 1..8, got {orientation!r}")
    if orientation >= 5:
        image = image.swapaxes(0, 1)  # 5; 6, 7 and 8 are 5 followed by a mirror
    mirror_rows, mirror_cols = {1: (0, 0), 2: (0, 1), 3: (1, 1), 4: (1, 0), 5: (0, 0), 6: (0, 1), 7: (1, 1), 8: (1, 0)}[
        orientation
    ]
    if mirror_rows:
        image = image[::-1]
    if mirror_cols:
        image = image[:, ::-1]
    return np.ascontiguousarray(image)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file -> RGB uint8 ``H x W x 3``, EXIF orientation applied (see the module docstring).

    Raises :class:`~awing.data.io.DataError` naming the file when it is missing, a folder, unreadable, empty,
    truncated (JPEG without its end marker) or not decodable.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError("is a folder, not an image file", path)
    if not path.is_file():
        raise DataError("image not found", path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise DataError(f"cannot read the file: {err.strerror or err}", path) from None
    if data.size == 0:
        raise DataError("image file is empty", path)
    orientation = 1
    if data[:2].tobytes() == b"\xff\xd8":
        raw = data.tobytes()
        if _jpeg_is_truncated(raw):
            raise DataError("truncated JPEG: no end-of-image marker after the scan data", path)
        orientation = jpeg_orientation(raw)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as err:  # e.g. more pixels than OpenCV's CV_IO_MAX_IMAGE_PIXELS
        raise DataError(f"OpenCV cannot decode this file: {str(err).strip().splitlines()[-1]}", path) from None
    if image is None:
        raise DataError("not a decodable image (corrupt, truncated or another file type)", path)
    return apply_orientation(to_rgb_uint8(image, bgr=True, name=path), orientation)


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
