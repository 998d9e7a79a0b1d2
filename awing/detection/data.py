"""Detection data: readers for PASCAL VOC XML, dlib XML and WIDER FACE, a fixed split, a dataset and its collate.

Every reader returns :class:`DetectionRecord` s: boxes ``(x0, y0, x1, y1)`` float32 in image pixels (the
``awing.geometry`` convention; a box given as ``x y w h`` becomes ``(x, y, x + w, y + h)``), optional 5 points per
face (eye centres, nose tip, mouth corners: ``get_scheme("5")``; ``landmark_mask`` False and zeros when absent) and an
``ignore`` flag per box (a region that must not count as background nor as a face: VOC ``difficult``, dlib
``ignore='1'``, WIDER ``invalid``, and boxes of zero width or height). Bad annotations raise
:class:`~awing.data.io.DataError` naming the file (and the line for WIDER, the object for XML): a missing file,
malformed XML, a missing or non-numeric coordinate, a box of negative size, a count that does not match the lines.

Formats:

- **PASCAL VOC** (:func:`read_voc_xml`): ``<annotation><filename>``, ``<size>``, one ``<object>`` per face with
  ``<name>``, ``<difficult>`` and ``<bndbox>`` ``xmin ymin xmax ymax``. Every object is a face (the face-mask set's
  names ``with_mask`` / ``without_mask`` / ``mask_weared_incorrect`` are kept in ``attributes["labels"]``). VOC
  coordinates are 1-based pixel indices, so 1 is subtracted (``one_based=True``); the face-mask set follows that
  convention (its smallest ``xmin`` is 1 and its largest ``xmax`` is the image width + 1).
- **dlib XML** (:func:`read_dlib_xml`): ``<images><image file=...><box top left width height [ignore='1']>``
  with optional ``<part name x y>``; 68 parts (iBUG order) give the 5 points (:func:`five_points_from_68`).
- **WIDER FACE** (:func:`read_wider_annotations`): per image a name line (relative to ``WIDER_<split>/images``), a
  count line, then ``count`` lines ``x y w h blur expression illumination invalid occlusion pose``; a count of 0 is
  followed by one line of zeros.

Fixed face-mask split (:func:`is_validation`): an image is in ``val`` when the CRC-32 of its annotation file's stem
(``maksssksksss42``) modulo 100 is below 15 (about 15 %), else in ``train``.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from awing.data.augment import sample_rng
from awing.data.base import require_path
from awing.data.io import DataError, location, parse_numbers, read_image

__all__ = [
    "DETECTION_DATASETS",
    "VAL_PERCENT",
    "DetectionDataset",
    "DetectionRecord",
    "DetectionSample",
    "build_detection_dataset",
    "collate_detection",
    "five_points_from_68",
    "is_validation",
    "make_detection_record",
    "read_dlib_xml",
    "read_voc_folder",
    "read_voc_xml",
    "read_wider_annotations",
]

VAL_PERCENT = 15
"""Share of the face-mask images in the fixed validation split (CRC-32 rule, :func:`is_validation`)."""
WIDER_FIELDS = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")


@dataclass(eq=False)
class DetectionRecord:
    """One annotated image without its pixels.

    Attributes:
        image_path: the image file.
        boxes: ``(N, 4)`` float32 xyxy, image pixels.
        landmarks: ``(N, 5, 2)`` float32, meaningful where ``landmark_mask``.
        landmark_mask: ``(N,)`` bool, True for faces with 5 points.
        ignore: ``(N,)`` bool, True for regions to ignore (neither face nor background).
        attributes: format-specific values (labels, WIDER attributes, the annotated image size).
        source: where the annotation came from (``file``, ``file:line`` or ``file [item]``).
    """

    image_path: str
    boxes: np.ndarray
    landmarks: np.ndarray
    landmark_mask: np.ndarray
    ignore: np.ndarray
    attributes: dict[str, Any] = field(default_factory=dict)
    source: str = ""


@dataclass(eq=False)
class DetectionSample:
    """One image ready for the network: the record's arrays, with the (augmented) image in RGB uint8."""

    image: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    landmark_mask: np.ndarray
    ignore: np.ndarray
    image_path: str


def make_detection_record(
    image_path: str | os.PathLike,
    boxes: np.ndarray,
    *,
    landmarks: np.ndarray | None = None,
    landmark_mask: np.ndarray | None = None,
    ignore: np.ndarray | None = None,
    attributes: dict[str, Any] | None = None,
    source: str = "",
) -> DetectionRecord:
    """Validate and normalise the arrays of one image (see :class:`DetectionRecord`).

    Raises :class:`DataError` (prefixed with ``source``) for non-finite values or boxes of negative size; boxes of
    zero width or height become ignore regions.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    count = len(boxes)
    if not np.isfinite(boxes).all():
        raise DataError(f"boxes must be finite, got {boxes.tolist()}", source or None)
    size = boxes[:, 2:] - boxes[:, :2]
    if (size < 0).any():
        i = int(np.flatnonzero((size < 0).any(axis=1))[0])
        raise DataError(f"box {i} has a negative size (x0, y0, x1, y1) = {boxes[i].tolist()}", source or None)
    ignore = np.zeros(count, bool) if ignore is None else np.asarray(ignore, dtype=bool).reshape(count)
    ignore = ignore | (size <= 0).any(axis=1)
    if landmarks is None:
        landmarks = np.zeros((count, 5, 2), np.float32)
        landmark_mask = np.zeros(count, bool)
    landmarks = np.asarray(landmarks, dtype=np.float32).reshape(count, 5, 2)
    mask = np.ones(count, bool) if landmark_mask is None else np.asarray(landmark_mask, dtype=bool).reshape(count)
    return DetectionRecord(str(image_path), boxes, landmarks, mask, ignore, dict(attributes or {}), source)


def five_points_from_68(points: np.ndarray) -> np.ndarray:
    """iBUG 68 points ``(..., 68, 2)`` -> the 5 detector points ``(..., 5, 2)``: eye centres (means of 36-41 and
    42-47, image-left eye first), nose tip (30), mouth corners (48, 54)."""
    points = np.asarray(points, dtype=np.float32)
    if points.shape[-2:] != (68, 2):
        raise ValueError(f"expected (..., 68, 2) points, got shape {points.shape}")
    eyes = [points[..., 36:42, :].mean(axis=-2), points[..., 42:48, :].mean(axis=-2)]
    return np.stack([*eyes, points[..., 30, :], points[..., 48, :], points[..., 54, :]], axis=-2)


def is_validation(name: str, percent: int = VAL_PERCENT) -> bool:
    """The fixed split rule: ``crc32(name) % 100 < percent`` (``name`` = the annotation file's stem).

    >>> is_validation("maksssksksss0"), is_validation("maksssksksss14")
    (False, True)
    """
    return zlib.crc32(name.encode("utf-8")) % 100 < percent


# --- PASCAL VOC ---------------------------------------------------------------------------------------------------


def _parse_xml(path: Path) -> ET.Element:
    if not path.is_file():
        raise DataError("annotation file not found", path)
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as err:
        raise DataError(f"malformed XML: {err}", path, err.position[0]) from None


def _number(text: str | None, what: str, path: Path, item: str) -> float:
    if text is None or not text.strip():
        raise DataError(f"missing {what}", path, item=item)
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{what} is {text.strip()!r}; expected a number", path, item=item) from None
    if not math.isfinite(value):
        raise DataError(f"{what} is {text.strip()!r}; expected a finite number", path, item=item)
    return value


def read_voc_xml(
    path: str | os.PathLike, image_dir: str | os.PathLike | None = None, one_based: bool = True
) -> DetectionRecord:
    """One PASCAL VOC annotation file -> :class:`DetectionRecord` (every object is a face; ``difficult`` -> ignore).

    Args:
        path: the ``.xml`` file.
        image_dir: folder of the images; default the annotation folder's sibling ``images`` (face-mask layout),
            else ``JPEGImages`` (VOC layout).
        one_based: subtract 1 from the coordinates (VOC's 1-based pixel indices).
    """
    path = Path(path)
    root = _parse_xml(path)
    if root.tag != "annotation":
        raise DataError(f"root element is <{root.tag}>; expected <annotation> (PASCAL VOC)", path)
    filename = (root.findtext("filename") or "").strip()
    if not filename:
        raise DataError("no <filename>", path)
    if image_dir is None:
        parent = path.parent.parent
        image_dir = parent / "images" if (parent / "images").is_dir() else parent / "JPEGImages"
    boxes, labels, difficult = [], [], []
    shift = 1.0 if one_based else 0.0
    for i, obj in enumerate(root.iter("object")):
        item = f"object {i}"
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise DataError("no <bndbox>", path, item=item)
        box = [_number(bndbox.findtext(k), f"<{k}>", path, item) - shift for k in ("xmin", "ymin", "xmax", "ymax")]
        if box[2] < box[0] or box[3] < box[1]:
            raise DataError(f"box of negative size: xmin, ymin, xmax, ymax = {box}", path, item=item)
        boxes.append(box)
        labels.append((obj.findtext("name") or "").strip())
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    size = root.find("size")
    attributes: dict[str, Any] = {"labels": labels}
    if size is not None:
        attributes["size"] = tuple(
            int(_number(size.findtext(k), f"<size><{k}>", path, "size")) for k in ("width", "height")
        )
    return make_detection_record(
        Path(image_dir) / filename, np.asarray(boxes, np.float32), ignore=np.asarray(difficult, bool),
        attributes=attributes, source=str(path),
    )  # fmt: skip


def read_voc_folder(
    root: str | os.PathLike, split: str = "all", dataset: str = "face-mask-detection"
) -> list[DetectionRecord]:
    """All ``*.xml`` of ``root/annotations`` (or ``root/Annotations``) sorted by name, filtered by ``split``.

    ``split``: ``"all"``, or ``"train"`` / ``"val"`` by the fixed CRC-32 rule (:func:`is_validation`).
    """
    if split not in ("all", "train", "val"):
        raise ValueError(f"unknown split {split!r} for a VOC folder; valid splits: all, train, val")
    root = require_path(root, dataset, folder=True)
    folder = root / "annotations" if (root / "annotations").is_dir() else root / "Annotations"
    files = sorted(require_path(folder, dataset, folder=True).glob("*.xml"))
    if split != "all":
        files = [f for f in files if is_validation(f.stem) == (split == "val")]
    return [read_voc_xml(f) for f in files]


# --- dlib XML ------------------------------------------------------------------------------------------------------


def read_dlib_xml(path: str | os.PathLike) -> list[DetectionRecord]:
    """A dlib ``imglab`` XML file -> one :class:`DetectionRecord` per ``<image>`` (paths relative to the file).

    ``<box top left width height>`` becomes ``(left, top, left + width, top + height)``; ``ignore='1'`` marks an
    ignore region; a box with 68 ``<part>`` s gets the 5 points of :func:`five_points_from_68`.
    """
    path = Path(path)
    root = _parse_xml(path)
    images = root.find("images")
    if root.tag != "dataset" or images is None:
        raise DataError(
            f"expected <dataset><images>...</images></dataset> (dlib imglab XML), root is <{root.tag}>", path
        )
    records = []
    for i, image in enumerate(images.iter("image")):
        file = image.get("file")
        if not file:
            raise DataError("<image> without a file attribute", path, item=f"image {i}")
        boxes, ignore, landmarks, mask = [], [], [], []
        for j, box in enumerate(image.iter("box")):
            item = f"image {i} ({file}), box {j}"
            top, left, width, height = (
                _number(box.get(k), f"{k}", path, item) for k in ("top", "left", "width", "height")
            )
            if width < 0 or height < 0:
                raise DataError(f"box of negative size: width {width}, height {height}", path, item=item)
            boxes.append([left, top, left + width, top + height])
            ignore.append(box.get("ignore", "0").strip() == "1")
            parts = {p.get("name", ""): p for p in box.iter("part")}
            if len(parts) == 68:
                if not all(n.isdigit() for n in parts):
                    raise DataError(
                        f"68 <part>s need numeric names (iBUG order), got {sorted(parts)[:5]}...", path, item=item
                    )
                names = sorted(parts, key=int)
                xy = [[_number(parts[n].get(k), f"part {n} {k}", path, item) for k in "xy"] for n in names]
                landmarks.append(five_points_from_68(np.asarray(xy, np.float32)))
                mask.append(True)
            else:
                landmarks.append(np.zeros((5, 2), np.float32))
                mask.append(False)
        records.append(
            make_detection_record(
                path.parent / file,
                np.asarray(boxes, np.float32).reshape(-1, 4),
                landmarks=np.asarray(landmarks, np.float32).reshape(-1, 5, 2),
                landmark_mask=np.asarray(mask, bool),
                ignore=np.asarray(ignore, bool),
                source=location(path, item=f"image {i}"),
            )  # fmt: skip
        )
    return records


# --- WIDER FACE ----------------------------------------------------------------------------------------------------


def read_wider_annotations(path: str | os.PathLike, image_dir: str | os.PathLike) -> list[DetectionRecord]:
    """A WIDER FACE ``wider_face_<split>_bbx_gt.txt`` file -> one :class:`DetectionRecord` per image.

    ``invalid == 1`` boxes become ignore regions; the six attributes are kept per box in ``attributes`` (int arrays).
    Errors name the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("annotation file not found", path)
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    number = 0

    def next_line() -> tuple[int, str]:
        nonlocal number
        while number < len(lines):
            number += 1
            text = lines[number - 1].strip()
            if text:
                return number, text
        return number + 1, ""

    while True:
        name_line, name = next_line()
        if not name:
            break
        count_line, text = next_line()
        if not text:
            raise DataError(f"image {name!r} has no box-count line", path, count_line)
        try:
            count = int(text)
        except ValueError:
            raise DataError(
                f"box count is {text!r}; expected a non-negative integer (after image {name!r})", path, count_line
            ) from None
        if count < 0:
            raise DataError(f"box count is {count}; expected a non-negative integer", path, count_line)
        rows = []
        for k in range(max(count, 1)):
            line, text = next_line()
            tokens = text.split()
            if len(tokens) != 10:
                expected = f"{count} box lines" if count else "one line of zeros after a count of 0"
                got = "the end of the file" if not text else f"{len(tokens)} tokens ({text[:40]!r})"
                raise DataError(
                    f"image {name!r}: expected {expected} of 10 numbers; line {k + 1} has {got}", path, line
                )
            values = parse_numbers(tokens, path, line)
            if values[2] < 0 or values[3] < 0:
                raise DataError(f"box of negative size: w = {values[2]:g}, h = {values[3]:g}", path, line)
            rows.append(values)
        table = np.asarray(rows[:count], np.float64).reshape(-1, 10)
        x, y, w, h = table[:, :4].T
        attributes = {key: table[:, 4 + i].astype(np.int64) for i, key in enumerate(WIDER_FIELDS)}
        records.append(
            make_detection_record(
                Path(image_dir) / name,
                np.stack([x, y, x + w, y + h], axis=1),
                ignore=attributes["invalid"] == 1,
                attributes=attributes,
                source=location(path, name_line),
            )  # fmt: skip
        )
    return records


# --- datasets ------------------------------------------------------------------------------------------------------


def _wider_records(root: Path, split: str) -> list[DetectionRecord]:
    if split not in ("train", "val"):
        raise ValueError(f"unknown split {split!r} for WIDER FACE; valid splits: train, val")
    name = f"wider_face_{split}_bbx_gt.txt"
    gt = root / "wider_face_split" / name
    if not gt.is_file():
        gt = require_path(root / name, "wider-face")
    return read_wider_annotations(gt, require_path(root / f"WIDER_{split}" / "images", "wider-face", folder=True))


def _distill_records(root: Path, split: str) -> list[DetectionRecord]:
    """A distillation folder (``scripts/build_distill_set.py``): ``train`` is every image of ``root`` (all made from
    training images), ``val`` the CRC-32 val split of the VOC folder ``root/val`` (a link to face-mask)."""
    if split not in ("train", "val"):
        raise ValueError(f"unknown split {split!r} for a distillation folder; valid splits: train, val")
    if split == "val":
        return read_voc_folder(root / "val", "val", "face-mask-detection (distill val)")
    return read_voc_folder(root, "all", "distill")


DETECTION_DATASETS: dict[str, Callable[[Path, str], list[DetectionRecord]]] = {
    "face_mask": lambda root, split: read_voc_folder(root, split, "face-mask-detection"),
    "distill": _distill_records,
    "voc": lambda root, split: read_voc_folder(root, split, "voc"),
    "wider": _wider_records,
    "dlib": lambda root, split: read_dlib_xml(require_path(root / f"{split}.xml", "dlib")),
}
"""Data set name -> ``(root, split) -> records``. Splits: face_mask/voc ``all|train|val`` (CRC-32 rule), distill
``train|val``, wider
``train|val``, dlib: the XML file's stem (``training``, ``testing``)."""


class DetectionDataset(torch.utils.data.Dataset):
    """Images with face boxes: ``ds[i] -> DetectionSample`` (augmented when ``transform`` is given).

    Args:
        records: the annotations (parsed at construction by the readers, so errors surface at once).
        transform: ``transform(sample, rng) -> sample``, e.g. :class:`~awing.detection.augment.DetectionAugment`.
        seed: with ``transform``, sample ``i`` of epoch ``e`` draws from ``sample_rng(seed, e, i)``: independent of the
            worker and the order. Call :meth:`set_epoch` before each epoch (shared with DataLoader workers).
    """

    def __init__(
        self,
        records: Sequence[DetectionRecord],
        transform: Callable[[DetectionSample, np.random.Generator], DetectionSample] | None = None,
        seed: int = 0,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.seed = seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch``."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> DetectionSample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index = int(index) % len(self)
        r = self.records[index]
        try:
            image = read_image(r.image_path)
        except DataError as error:
            raise DataError(f"{error.reason} (annotation: {r.source})", error.file, error.line, error.item) from error
        sample = DetectionSample(
            image, r.boxes.copy(), r.landmarks.copy(), r.landmark_mask.copy(), r.ignore.copy(), r.image_path
        )
        if self.transform is not None:
            sample = self.transform(sample, sample_rng(self.seed, int(self._epoch), index))
        return sample


def build_detection_dataset(
    name: str,
    root: str | os.PathLike,
    split: str,
    transform: Callable[[DetectionSample, np.random.Generator], DetectionSample] | None = None,
    *,
    seed: int = 0,
    max_samples: int = 0,
) -> DetectionDataset:
    """A :class:`DetectionDataset` of a named format (:data:`DETECTION_DATASETS`).

    ``max_samples`` > 0 keeps the first N images.
    """
    if name not in DETECTION_DATASETS:
        raise ValueError(f"unknown detection data set {name!r}; valid names: {', '.join(DETECTION_DATASETS)}")
    records = DETECTION_DATASETS[name](Path(root), split)
    return DetectionDataset(records[:max_samples] if max_samples > 0 else records, transform, seed)


def collate_detection(samples: Sequence[DetectionSample]) -> tuple[Tensor, list[dict[str, Tensor]]]:
    """Samples of equal image size -> ``B x 3 x H x W`` float32 images (RGB, 0-255) and one target dict per image
    (``boxes`` ``(G, 4)``, ``landmarks`` ``(G, 5, 2)``, ``landmark_mask`` ``(G,)``, ``ignore`` ``(G,)``; the input of
    :class:`~awing.detection.loss.DetectionLoss`)."""
    shapes = {s.image.shape for s in samples}
    if len(shapes) != 1:
        raise ValueError(f"collate_detection needs images of one size (augment to a fixed size), got {sorted(shapes)}")
    images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).float()
    targets = [
        {
            "boxes": torch.from_numpy(s.boxes.astype(np.float32, copy=False)),
            "landmarks": torch.from_numpy(s.landmarks.astype(np.float32, copy=False)),
            "landmark_mask": torch.from_numpy(s.landmark_mask.astype(bool, copy=False)),
            "ignore": torch.from_numpy(s.ignore.astype(bool, copy=False)),
        }
        for s in samples
    ]
    return images, targets
