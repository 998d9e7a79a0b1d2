"""Generic formats: folders of images with ``.pts`` files, COCO-style keypoint JSON and SPIGA's annotation JSON.

See datasets/generic/README.md for the layouts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from awing.data.base import LandmarkDataset, require_path
from awing.data.io import IMAGE_EXTENSIONS, DataError, InvalidItems, read_pts
from awing.data.sample import LandmarkRecord, make_record
from awing.landmarks import get_scheme

__all__ = [
    "CocoKeypointsDataset",
    "PtsFolderDataset",
    "SpigaJsonDataset",
    "pts_records",
    "read_coco_keypoints",
    "read_spiga_json",
]


def _images_by_stem(folder: Path) -> dict[str, Path]:
    """Image files of one folder by file stem (one directory listing instead of a stat per suffix)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            found.setdefault(path.stem, path)
    return found


def pts_records(
    pts_files: Sequence[Path],
    num_points: int,
    invalid: InvalidItems,
    attributes: dict[Path, dict[str, Any]] | None = None,
) -> list[LandmarkRecord]:
    """One record per ``.pts`` file (1-based, :func:`read_pts`) with the image of the same stem beside it.

    ``attributes`` maps a file's folder to the attributes its records get. Bad files raise :class:`DataError`
    unless ``invalid`` skips them.
    """
    listings: dict[Path, dict[str, Path]] = {}
    records = []
    for pts_path in pts_files:
        folder = pts_path.parent
        if folder not in listings:
            listings[folder] = _images_by_stem(folder)
        with invalid:
            image = listings[folder].get(pts_path.stem)
            if image is None:
                raise DataError(
                    f"no image {pts_path.stem}.* beside it (suffixes {', '.join(IMAGE_EXTENSIONS)})", pts_path
                )
            extra = (attributes or {}).get(folder, {"subsets": ()})
            records.append(
                make_record(
                    read_pts(pts_path), num_points=num_points, image_path=image, file=pts_path, attributes=extra
                )
            )
    return records


class PtsFolderDataset(LandmarkDataset):
    """Every ``*.pts`` file under ``root`` with the image of the same stem beside it; box: tight box of the points.

    Args:
        root: the folder.
        scheme: landmark scheme; None takes the point count of the first ``.pts`` file.
        recursive: also look in sub-folders.
        skip_invalid: skip bad files with one warning.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        scheme: str | int | None = None,
        recursive: bool = True,
        skip_invalid: bool = False,
    ) -> None:
        root = require_path(root, "generic", folder=True)
        files = sorted(root.rglob("*.pts") if recursive else root.glob("*.pts"))
        if not files:
            raise DataError("no .pts files in this folder", root)
        scheme = get_scheme(len(read_pts(files[0])) if scheme is None else scheme)
        invalid = InvalidItems(skip_invalid)
        records = pts_records(files, scheme.num_points, invalid)
        invalid.warn(f".pts files under {root}", len(files))
        super().__init__(records, scheme.name)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError("not a text file; expected JSON", path) from None
    except json.JSONDecodeError as error:
        raise DataError(f"invalid JSON: {error.msg}", path, error.lineno) from None


def _get(mapping: Any, key: str, path: Path, item: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise DataError(f"missing key {key!r}", path, item=item)
    return mapping[key]


def _array(value: Any, shape: tuple[int, ...], what: str, path: Path, item: str) -> np.ndarray:
    """``value`` as float64 of ``shape`` (-1: any length), else :class:`DataError`."""
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nesting
        array = np.asarray(None)
    if array.dtype.kind not in "iuf":
        raise DataError(f"{what} holds a value that is not a number", path, item=item)
    array = array.astype(np.float64)
    if array.ndim != len(shape) or any(s not in (-1, n) for s, n in zip(shape, array.shape, strict=True)):
        expected = " x ".join("N" if s == -1 else str(s) for s in shape)
        raise DataError(f"{what} has shape {array.shape}; expected {expected}", path, item=item)
    return array


def _xywh_to_xyxy(box: np.ndarray) -> np.ndarray:
    return np.array([box[0], box[1], box[0] + box[2], box[1] + box[3]])


def read_coco_keypoints(
    json_path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    num_points: int | None = None,
    skip_invalid: bool = False,
) -> list[LandmarkRecord]:
    """Parse COCO-style face keypoints (mmpose's face data sets) -> one record per annotation.

    JSON: ``images`` (``id``, ``file_name``) and ``annotations`` (``image_id``, ``keypoints`` as K (x, y, v)
    triplets, optional ``bbox`` (x, y, w, h)). Coordinates are taken as written. ``visible = v > 0`` (v = 0: not
    labelled; its coordinates become 0); the raw v values are kept in ``attributes["keypoint_v"]``. Images live in
    ``image_root`` (default: the JSON's folder) and must exist. K: ``num_points`` or the first annotation's.
    """
    path = require_path(json_path, "generic")
    root = path.parent if image_root is None else Path(image_root)
    data = _load_json(path)
    images = {}
    for i, image in enumerate(_get(data, "images", path, "top level")):
        images[_get(image, "id", path, f"images[{i}]")] = _get(image, "file_name", path, f"images[{i}]")
    annotations = _get(data, "annotations", path, "top level")
    invalid = InvalidItems(skip_invalid)
    records = []
    for i, annotation in enumerate(annotations):
        item = f"annotations[{i}]"
        with invalid:
            triplets = _array(_get(annotation, "keypoints", path, item), (-1,), "keypoints", path, item)
            if len(triplets) % 3:
                raise DataError(f"{len(triplets)} keypoint values; expected (x, y, v) triplets", path, item=item)
            num_points = len(triplets) // 3 if num_points is None else num_points
            points = triplets.reshape(-1, 3)
            visible = points[:, 2] > 0
            landmarks = np.where(visible[:, None], points[:, :2], 0.0)
            image_id = _get(annotation, "image_id", path, item)
            if image_id not in images:
                raise DataError(f"image_id {image_id!r} is not in 'images'", path, item=item)
            box = annotation.get("bbox")
            records.append(
                make_record(
                    landmarks,
                    num_points=num_points,
                    image_path=root / images[image_id],
                    file=path,
                    item=item,
                    box=None if box is None else _xywh_to_xyxy(_array(box, (4,), "bbox", path, item)),
                    visible=visible,
                    attributes={
                        "keypoint_v": points[:, 2].astype(np.int8),
                        "annotation_id": annotation.get("id"),
                        "subsets": (),
                    },
                    check_image=True,
                )
            )
    invalid.warn(f"annotations of {path}", len(annotations))
    return records


class CocoKeypointsDataset(LandmarkDataset):
    """Faces from a COCO-style keypoint JSON (:func:`read_coco_keypoints`); box: the annotation's ``bbox``.

    Args:
        json_path: the JSON file.
        image_root: folder of the images (default: the JSON's folder).
        scheme: landmark scheme; None takes the point count of the first annotation.
        skip_invalid: skip bad annotations (including missing images) with one warning.
    """

    def __init__(
        self,
        json_path: str | os.PathLike,
        image_root: str | os.PathLike | None = None,
        scheme: str | int | None = None,
        skip_invalid: bool = False,
    ) -> None:
        num_points = None if scheme is None else get_scheme(scheme).num_points
        records = read_coco_keypoints(json_path, image_root, num_points, skip_invalid)
        if not records:
            raise DataError("no valid annotation", json_path)
        super().__init__(records, len(records[0].landmarks_img) if scheme is None else scheme)


def read_spiga_json(
    json_path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    db_info: str | os.PathLike | None = None,
    num_points: int | None = None,
    skip_invalid: bool = False,
) -> list[LandmarkRecord]:
    """Parse a SPIGA annotation list (e.g. ``300wpublic/test.json``) -> one record per entry.

    Each entry: ``imgpath``, ``bbox`` (x, y, w, h), ``landmarks`` (K x 2, 0-based pixels: they equal the 300W
    ``.pts`` values minus 1), ``visible`` (K; 0 marks an occluded but annotated point, so every point stays
    visible and the zeros go to ``attributes["occluded"]``), ``headpose``. ``db_info`` (SPIGA's ``db_info.json``)
    tags entries with its ``test_subsets`` (e.g. helen, lfpw, common, ibug; indoor, outdoor). ``image_root``
    None keeps the image paths as written and does not check them.
    """
    path = require_path(json_path, "generic")
    entries = _load_json(path)
    if not isinstance(entries, list):
        raise DataError(f"expected a JSON list of entries, got {type(entries).__name__}", path)
    tags: dict[int, list[str]] = {}
    if db_info is not None:
        info_path = require_path(db_info, "generic")
        subsets = _get(_load_json(info_path), "test_subsets", info_path, "top level")
        for name, indices in subsets.items():
            for index in indices:
                if not isinstance(index, int) or not 0 <= index < len(entries):
                    raise DataError(f"subset {name!r} lists entry {index!r}; {path} has {len(entries)}", info_path)
                tags.setdefault(index, []).append(name)
    root = None if image_root is None else Path(image_root)
    invalid = InvalidItems(skip_invalid)
    records = []
    for i, entry in enumerate(entries):
        item = f"entry {i}"
        with invalid:
            landmarks = _array(_get(entry, "landmarks", path, item), (-1, 2), "landmarks", path, item)
            num_points = len(landmarks) if num_points is None else num_points
            flags = _array(_get(entry, "visible", path, item), (len(landmarks),), "visible", path, item)
            name = _get(entry, "imgpath", path, item)
            records.append(
                make_record(
                    landmarks,
                    num_points=num_points,
                    image_path=name if root is None else root / name,
                    file=path,
                    item=item,
                    box=_xywh_to_xyxy(_array(_get(entry, "bbox", path, item), (4,), "bbox", path, item)),
                    attributes={
                        "occluded": flags == 0,
                        "headpose": entry.get("headpose"),
                        "subsets": tuple(tags.get(i, ())),
                    },
                    check_image=root is not None,
                )
            )
    invalid.warn(f"entries of {path}", len(entries))
    return records


class SpigaJsonDataset(LandmarkDataset):
    """Faces from a SPIGA annotation list (:func:`read_spiga_json`): 300W public (689) / private (600), COFW-68
    (507), WFLW.

    Args:
        json_path: ``<db>/test.json``.
        image_root: the folder the entries' ``imgpath`` is relative to (None: not checked).
        db_info: SPIGA's ``db_info.json`` for the test subsets; None uses the one beside ``json_path`` if present.
        scheme: landmark scheme; None takes the point count of the first entry.
        skip_invalid: skip bad entries with one warning.
    """

    def __init__(
        self,
        json_path: str | os.PathLike,
        image_root: str | os.PathLike | None = None,
        db_info: str | os.PathLike | None = None,
        scheme: str | int | None = None,
        skip_invalid: bool = False,
    ) -> None:
        if db_info is None and (Path(json_path).parent / "db_info.json").is_file():
            db_info = Path(json_path).parent / "db_info.json"
        num_points = None if scheme is None else get_scheme(scheme).num_points
        records = read_spiga_json(json_path, image_root, db_info, num_points, skip_invalid)
        if not records:
            raise DataError("no valid entry", json_path)
        super().__init__(records, len(records[0].landmarks_img) if scheme is None else scheme)
