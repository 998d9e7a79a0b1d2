"""Low-level readers: images, iBUG ``.pts`` files, numeric tokens, and the error type for bad data.

:func:`read_image` is awing's one image reader (training, evaluation and prediction alike): it reads the file's
bytes with numpy (so non-ASCII paths work), decodes them with ``cv2.imdecode`` and applies the JPEG's EXIF
orientation itself: OpenCV's own handling differs between versions (4.14 applies it in ``imdecode``, older ones
did not), so decoding asks OpenCV to ignore it (``IMREAD_IGNORE_ORIENTATION``) and :func:`jpeg_orientation` /
:func:`apply_orientation` do the work the same way everywhere. Only JPEG EXIF is read (the orientation of cameras
and phones); other formats are taken as stored. Annotations of a photo are in its upright (as displayed) frame.

>>> image = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
>>> apply_orientation(image, 6)[..., 0].tolist()  # 6: rotate 90 degrees clockwise to display
[[3, 0], [4, 1], [5, 2]]

Every reader turns bad input into a :class:`DataError` whose message names the file and, for text files, the
line, so that a broken annotation never becomes a silently wrong sample. :class:`InvalidItems` lets a dataset
skip such items instead (``skip_invalid=True``) and emit one warning with their count.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "DataError",
    "InvalidItems",
    "location",
    "parse_numbers",
    "apply_orientation",
    "jpeg_orientation",
    "read_image",
    "read_pts",
    "to_rgb_uint8",
    "write_pts",
]

#: File suffixes taken as images when a loader looks for the image beside an annotation file.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """Bad data: the message reads ``file:line: reason`` (or ``file [item]: reason`` for non-text items).

    Attributes ``file``, ``line``, ``item`` and ``reason`` keep the parts. Built from one string (as when an
    exception is re-raised across processes), it is a plain message.
    """

    def __init__(
        self, reason: str, file: str | os.PathLike | None = None, line: int | None = None, item: str | None = None
    ) -> None:
        self.reason = reason
        self.file = None if file is None else str(file)
        self.line = line
        self.item = item
        where = location(file, line, item)
        super().__init__(f"{where}: {reason}" if where else reason)


def location(file: str | os.PathLike | None, line: int | None = None, item: str | None = None) -> str:
    """``file:line`` or ``file [item]`` (the prefix of :class:`DataError` messages)."""
    where = "" if file is None else str(file)
    if line is not None:
        where += f":{line}"
    if item is not None:
        where += f" [{item}]"
    return where


class InvalidItems:
    """Context manager per item: re-raises :class:`DataError`, or counts and swallows it when ``skip``.

    >>> invalid = InvalidItems(skip=True)
    >>> for token in ["1", "x", "2"]:
    ...     with invalid:
    ...         _ = parse_numbers([token], "list.txt", 1)
    >>> invalid.count
    1
    """

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.errors: list[DataError] = []

    @property
    def count(self) -> int:
        return len(self.errors)

    def __enter__(self) -> InvalidItems:
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        if exc_type is not None and self.skip and issubclass(exc_type, DataError):
            self.errors.append(exc)
            return True
        return False

    def warn(self, what: str, total: int) -> None:
        """One warning for all skipped items (none when nothing was skipped)."""
        if self.errors:
            warnings.warn(
                f"skipped {self.count} of {total} {what} as invalid; first error: {self.errors[0]}",
                UserWarning,
                stacklevel=3,
            )


def parse_numbers(tokens: Sequence[str], file: str | os.PathLike, line: int | None = None) -> np.ndarray:
    """Tokens -> float64 array; a non-number or a non-finite value raises :class:`DataError` naming the token."""
    values = np.empty(len(tokens), dtype=np.float64)
    for i, token in enumerate(tokens):
        try:
            value = float(token)
        except ValueError:
            raise DataError(f"token {i + 1} ({token!r}) is not a number", file, line) from None
        if not math.isfinite(value):
            raise DataError(f"token {i + 1} is {token!r}; expected a finite number", file, line)
        values[i] = value
    return values


def _jpeg_is_truncated(data: bytes) -> bool:
    """True when a JPEG has no end-of-image marker (FF D9) after the start of its first scan.

    OpenCV 4.8 decodes a truncated JPEG into a grey-filled image with only a warning (4.14 rejects it), so the
    check is ours. The marker segments before the scan are skipped by their lengths, so an EXIF thumbnail's own
    end marker does not count.
    """
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False  # not a marker: leave the verdict to the decoder
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xDA:  # start of scan
            return data.rfind(b"\xff\xd9") < pos
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
        else:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return True


def to_rgb_uint8(image: np.ndarray, bgr: bool = False, name: str | os.PathLike = "image") -> np.ndarray:
    """Any decoded image -> RGB uint8 H x W x 3 (contiguous).

    Accepts H x W (grey), H x W x 1, H x W x 3 and H x W x 4 (alpha dropped), uint8 or uint16 (scaled by
    1/257 and rounded: 65535 -> 255). ``bgr`` says the channels are in OpenCV's order.
    """
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise DataError(f"unsupported pixel type {image.dtype}; expected uint8 or uint16", name)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.ndim != 3 or image.shape[2] not in (3, 4) or 0 in image.shape:
        raise DataError(f"image array has shape {image.shape}; expected H x W, H x W x 3 or H x W x 4", name)
    image = image[:, :, :3]
    return np.ascontiguousarray(image[:, :, ::-1] if bgr else image)


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


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file -> RGB uint8 ``H x W x 3``, EXIF orientation applied (see the module docstring).

    Grey, grey + alpha, RGBA (alpha dropped) and 16-bit images (scaled to 8 bits) become RGB uint8
    (:func:`to_rgb_uint8`). Raises :class:`DataError` naming the file when it is missing, a folder, unreadable,
    empty, truncated (JPEG without its end marker) or not decodable.
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


def read_pts(path: str | os.PathLike, one_based: bool = True) -> np.ndarray:
    """Read an iBUG ``.pts`` file -> K x 2 float32 (x, y), 0-based with pixel centres on integers.

    Format: header lines ``key: value`` (``version: 1``, ``n_points: K``), then ``{``, K lines ``x y``, ``}``.
    The files of 300W / iBUG / menpo are 1-based (MATLAB convention): with ``one_based`` (default) 1 is subtracted
    (datasets/300w/README.md). Errors name the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("landmark file not found", path)
    try:
        lines = path.read_bytes().decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise DataError("not a text file; expected an iBUG .pts file", path) from None
    if not any(line.strip() for line in lines):
        raise DataError("empty .pts file", path)
    n_points = None
    number = 0
    for number, text in enumerate(lines, 1):
        text = text.strip()
        if text == "{":
            break
        key, _, value = text.partition(":")
        if key.strip() == "n_points":
            try:
                n_points = int(value)
            except ValueError:
                raise DataError(f"n_points is {value.strip()!r}; expected an integer", path, number) from None
    else:
        raise DataError("no '{' line: not an iBUG .pts file", path)
    if n_points is None:
        raise DataError("header has no 'n_points:' line", path)
    points = []
    body_start = number
    for number, text in enumerate(lines[body_start:], body_start + 1):
        tokens = text.split()
        if tokens == ["}"]:
            break
        if not tokens:
            continue
        if len(tokens) != 2:
            raise DataError(f"expected 2 numbers 'x y', got {len(tokens)} tokens", path, number)
        points.append(parse_numbers(tokens, path, number))
    else:
        raise DataError("no closing '}' line", path)
    if len(points) != n_points:
        raise DataError(f"header says n_points: {n_points} but {len(points)} points follow", path)
    landmarks = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    return landmarks - 1.0 if one_based else landmarks


def write_pts(path: str | os.PathLike, landmarks: np.ndarray, one_based: bool = True) -> None:
    """Write K x 2 points (0-based) as an iBUG ``.pts`` file; ``one_based`` adds 1 (the inverse of :func:`read_pts`)."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"landmarks must be K x 2, got shape {points.shape}")
    if one_based:
        points = points + 1.0
    rows = "".join(f"{x:.6f} {y:.6f}\n" for x, y in points)
    Path(path).write_text(f"version: 1\nn_points: {len(points)}\n{{\n{rows}}}\n", encoding="utf-8")
