"""AFLW2000-3D (68-point test benchmark) and AFLW-21 (120 x 120 training crops), as prepared in ``shared/data``.

Layouts: datasets/aflw2000-3d/README.md and datasets/aflw/README.md. Neither set has a face box: the box is the
tight box of the visible points.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from awing.data.base import LandmarkDataset, require_path
from awing.data.io import DataError, InvalidItems
from awing.data.sample import LandmarkRecord, make_record
from awing.landmarks import AFLW19_FROM_21, get_scheme

__all__ = [
    "AFLW_CROP_SIZE",
    "YAW_BINS",
    "AFLW2000Dataset",
    "AFLWDataset",
    "aflw_crop_points",
    "aflw_is_validation",
    "yaw_bin",
]

#: Yaw subsets by |yaw| in degrees: [0, 30), [30, 60), [60, 90]; like 3DDFA's benchmark, the few faces whose stored
#: |yaw| exceeds 90 (7 in AFLW2000-3D) fall in the last bin, so the three bins cover every face.
YAW_BINS = ("yaw_0_30", "yaw_30_60", "yaw_60_90")

#: Side of the AFLW-21 crops in pixels.
AFLW_CROP_SIZE = 120

_AFLW2000_POINTS = {"reannotated": "pts68_reannotated.npy", "fitted": "pts68_fitted.npy", "21": "pts21.npy"}


def yaw_bin(yaw_deg: float) -> str:
    """The :data:`YAW_BINS` name of a yaw angle in degrees (by its absolute value)."""
    magnitude = abs(yaw_deg)
    return YAW_BINS[0] if magnitude < 30 else YAW_BINS[1] if magnitude < 60 else YAW_BINS[2]


def aflw_is_validation(name: str) -> bool:
    """AFLW-21's fixed validation rule: CRC-32 of the UTF-8 image name divisible by 20 (~5 %: 909 of 17,172)."""
    return zlib.crc32(name.encode("utf-8")) % 20 == 0


def aflw_crop_points(points: np.ndarray, roi_box: np.ndarray, size: int = AFLW_CROP_SIZE) -> np.ndarray:
    """Original-image points -> crop pixels with the data set authors' formula (shared/data/README.md).

    ``x_crop = (x - sx) * size / (ex - sx)``, ``y_crop = (y - sy) * size / (ey - sy)`` for ``roi_box = (sx, sy, ex,
    ey)``. Kept as published: the exact pixel-centre map of ``cv2.resize(image[sy:ey, sx:ex])`` would be
    ``(x - sx + 0.5) * size / (ex - sx) - 0.5``, which differs by ``0.5 * (size / (ex - sx) - 1)`` px (about -0.28 px
    for a 270 px box). Shapes: points (..., K, 2), roi_box (..., 4).
    """
    box = np.asarray(roi_box, dtype=np.float64)[..., None, :]
    origin = box[..., :2]
    extent = box[..., 2:] - origin
    return ((np.asarray(points, dtype=np.float64) - origin) * size / extent).astype(np.float32)


def _read_names(path: Path, dataset: str) -> list[str]:
    lines = require_path(path, dataset).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def _load_array(path: Path, shape: tuple[int | None, ...], dataset: str) -> np.ndarray:
    """A ``.npy`` array whose shape matches ``shape`` (None: any size), as float64."""
    array = np.load(require_path(path, dataset))
    if array.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, array.shape, strict=True)):
        expected = " x ".join("N" if s is None else str(s) for s in shape)
        raise DataError(f"array has shape {array.shape}; expected {expected}", path)
    return array.astype(np.float64)


def _check_marked(raw: np.ndarray, pts_path: Path, item: str) -> None:
    """AFLW's 21 points (K x 2, original pixels) mark an invisible point by a negative x, never by NaN or infinity:
    such a value is a broken annotation, not an invisible point."""
    bad = np.flatnonzero(~np.isfinite(raw).all(axis=1))
    if len(bad):
        raise DataError(
            f"point {bad[0]} is {raw[bad[0]].tolist()}: not finite (invisible is x < 0)", pts_path, None, item
        )


def _yaw_record(
    points: np.ndarray, visible: np.ndarray, image_path: Path, pts_path: Path, item: str, yaw: float
) -> LandmarkRecord:
    """One face of an AFLW-family array file: invisible points zeroed, yaw and yaw bin as attributes."""
    return make_record(
        np.where(visible[:, None], points, 0.0),
        num_points=len(visible),
        image_path=image_path,
        file=pts_path,
        item=item,
        visible=visible,
        attributes={"yaw_deg": float(yaw), "subsets": (yaw_bin(yaw),)},
        check_image=True,
    )


class AFLW2000Dataset(LandmarkDataset):
    """AFLW2000-3D: the 450 x 450 images with 68 (or 21) points.

    Args:
        root: the folder with ``images/``, ``names.txt``, ``names_1998.txt``, the point arrays and ``yaw_deg.npy``.
        split: ``"test"`` (all 2,000 faces) or ``"test_1998"`` (the 1,998-face list most papers use).
        points: ``"reannotated"`` (default: Bulat & Tzimiropoulos's manual 68 points, the ground truth to use),
            ``"fitted"`` (the 3DMM-fitted 68 points, x and y) or ``"21"`` (the AFLW points; x < 0 marks an
            invisible point).
        skip_invalid: skip bad faces with one warning.

    Subsets: the yaw bins of :data:`YAW_BINS`; ``attributes["yaw_deg"]`` holds the yaw.
    """

    SPLITS = ("test", "test_1998")

    def __init__(
        self, root: str | os.PathLike, split: str = "test", points: str = "reannotated", skip_invalid: bool = False
    ) -> None:
        self.check_split(split)
        if points not in _AFLW2000_POINTS:
            raise ValueError(f"unknown points {points!r}; valid: {', '.join(_AFLW2000_POINTS)}")
        root = Path(root)
        names = _read_names(root / "names.txt", "aflw2000-3d")
        num_points = 21 if points == "21" else 68
        pts_path = root / _AFLW2000_POINTS[points]
        coords = _load_array(pts_path, (len(names), None, num_points), "aflw2000-3d")[:, :2].transpose(0, 2, 1)
        yaws = _load_array(root / "yaw_deg.npy", (len(names),), "aflw2000-3d")
        images = require_path(root / "images", "aflw2000-3d", folder=True)
        rows = {name: i for i, name in enumerate(names)}
        if split == "test_1998":
            list_path = root / "names_1998.txt"
            listed = _read_names(list_path, "aflw2000-3d")
            unknown = [name for name in listed if name not in rows]
            if unknown:
                raise DataError(f"names not in names.txt: {unknown[:5]}", list_path)
            order = [rows[name] for name in listed]
        else:
            order = list(range(len(names)))
        invalid = InvalidItems(skip_invalid)
        records = []
        for i in order:
            visible = coords[i, :, 0] >= 0 if points == "21" else np.ones(num_points, dtype=bool)
            with invalid:
                if points == "21":
                    _check_marked(coords[i], pts_path, f"row {i}, {names[i]}")
                records.append(
                    _yaw_record(coords[i], visible, images / names[i], pts_path, f"row {i}, {names[i]}", yaws[i])
                )
        invalid.warn(f"faces of {pts_path}", len(order))
        super().__init__(records, str(num_points), subset_names=YAW_BINS)


class AFLWDataset(LandmarkDataset):
    """AFLW-21 training crops (120 x 120) with 21 (or 19) points mapped from the original images.

    Args:
        root: the folder with ``crops/``, ``names.txt``, ``pts21.npy``, ``crop_roi_box.npy``, ``yaw_deg.npy``.
        split: ``"train"`` (about 95 %), ``"val"`` (:func:`aflw_is_validation`, about 5 %) or ``"all"`` (17,172).
        scheme: ``"21"`` or ``"19"`` (without the ears, 12 and 16).
        skip_invalid: skip bad faces with one warning.

    Points map through :func:`aflw_crop_points`; negative x marks an invisible point (``visible`` False,
    coordinates 0). Some visible points fall outside the crop (86 faces have one beyond the crop's pixels); they
    are kept as annotated. Subsets: yaw bins (:data:`YAW_BINS`); ``attributes["yaw_deg"]`` holds the yaw.
    """

    SPLITS = ("train", "val", "all")

    def __init__(
        self, root: str | os.PathLike, split: str = "train", scheme: str | int = "21", skip_invalid: bool = False
    ) -> None:
        self.check_split(split)
        scheme = get_scheme(scheme)
        if scheme.name not in ("21", "19"):
            raise ValueError(f"AFLW provides the 21- and 19-point schemes, got {scheme.name!r}")
        root = Path(root)
        names = _read_names(root / "names.txt", "aflw")
        pts_path = root / "pts21.npy"
        raw = _load_array(pts_path, (len(names), 2, 21), "aflw").transpose(0, 2, 1)
        roi = _load_array(root / "crop_roi_box.npy", (len(names), 4), "aflw")
        yaws = _load_array(root / "yaw_deg.npy", (len(names),), "aflw")
        crops = require_path(root / "crops", "aflw", folder=True)
        keep = list(AFLW19_FROM_21) if scheme.name == "19" else list(range(21))
        visible_all = raw[:, keep, 0] >= 0
        with np.errstate(divide="ignore", invalid="ignore"):
            mapped = aflw_crop_points(raw[:, keep], roi)
        invalid = InvalidItems(skip_invalid)
        records = []
        order = [i for i, name in enumerate(names) if split == "all" or aflw_is_validation(name) == (split == "val")]
        for i in order:
            visible = visible_all[i]
            with invalid:
                _check_marked(raw[i], pts_path, f"row {i}, {names[i]}")
                if not (roi[i, 2] > roi[i, 0] and roi[i, 3] > roi[i, 1]):
                    raise DataError(
                        f"crop box {roi[i].tolist()} has no area", root / "crop_roi_box.npy", item=f"row {i}"
                    )
                records.append(
                    _yaw_record(mapped[i], visible, crops / names[i], pts_path, f"row {i}, {names[i]}", yaws[i])
                )
        invalid.warn(f"faces of {pts_path}", len(order))
        super().__init__(records, scheme.name, subset_names=YAW_BINS)
