"""AFLW-68: the AFLW-21 training crops relabelled with 68 points by a teacher, and the AFLW -> 68 correspondence.

``scripts/build_aflw68.py`` labels every crop of AFLW-21 with dlib's 68-point shape predictor and keeps a face when
the teacher agrees with the human AFLW points on their shared meanings (:data:`AFLW21_TO_68`,
:func:`teacher_agreement`). Layout, build command and statistics: datasets/aflw68/README.md. The crops are not
copied: ``build.json`` names the AFLW-21 root they are read from.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from awing.data.aflw import YAW_BINS, _load_array, _read_names, _yaw_record, aflw_is_validation
from awing.data.base import LandmarkDataset, require_path
from awing.data.io import DataError, InvalidItems

__all__ = [
    "AFLW21_SHARED",
    "AFLW21_TO_68",
    "AFLW68Dataset",
    "BUILD_FORMAT",
    "shared_point_errors",
    "shared_points_68",
    "teacher_agreement",
]

#: ``format`` value of a build's ``build.json``.
BUILD_FORMAT = "awing.aflw68.v1"

#: AFLW-21 point -> the 68-point indices (0-based, iBUG order) whose mean has the same meaning. Brows: ends 17/21
#: and 22/26, centres 19/24; eyes: corners 36/39 and 42/45, centres = mean of the six eye points; nose: wings 31/35,
#: tip 30; mouth: corners 48/54, centre = mean of the inner-lip midpoints 62/66; chin 8. The ears (12, 16) have no
#: 68-point counterpart. "Left" is the image left in both schemes.
AFLW21_TO_68: MappingProxyType[int, tuple[int, ...]] = MappingProxyType(
    {
        0: (17,),
        1: (19,),
        2: (21,),
        3: (22,),
        4: (24,),
        5: (26,),
        6: (36,),
        7: (36, 37, 38, 39, 40, 41),
        8: (39,),
        9: (42,),
        10: (42, 43, 44, 45, 46, 47),
        11: (45,),
        13: (31,),
        14: (30,),
        15: (35,),
        17: (48,),
        18: (62, 66),
        19: (54,),
        20: (8,),
    }
)

#: The AFLW-21 indices with a 68-point counterpart, ascending (the 21 points without the ears).
AFLW21_SHARED = tuple(sorted(AFLW21_TO_68))


def _correspondence_matrix() -> np.ndarray:
    """(19, 68) averaging weights: row r holds 1/n on the n counterparts of ``AFLW21_SHARED[r]``."""
    matrix = np.zeros((len(AFLW21_SHARED), 68))
    for row, index in enumerate(AFLW21_SHARED):
        matrix[row, list(AFLW21_TO_68[index])] = 1.0 / len(AFLW21_TO_68[index])
    return matrix


_CORRESPONDENCE = _correspondence_matrix()


def shared_points_68(points68: np.ndarray) -> np.ndarray:
    """The 68-point counterparts of the :data:`AFLW21_SHARED` points: (..., 68, 2) -> (..., 19, 2) float64."""
    pts = np.asarray(points68, dtype=np.float64)
    if pts.ndim < 2 or pts.shape[-2:] != (68, 2):
        raise ValueError(f"points68 must have shape (..., 68, 2), got {pts.shape}")
    return _CORRESPONDENCE @ pts


def shared_point_errors(points68: np.ndarray, points21: np.ndarray) -> np.ndarray:
    """Distances between the teacher's counterparts and the human :data:`AFLW21_SHARED` points, in teacher box sizes.

    ``e_ik = ||c_k(P_i) - h_ik|| / sqrt(w_i h_i)``: ``c_k`` the 68-point counterpart of AFLW point k
    (:func:`shared_points_68`), ``w_i x h_i`` the tight box of the teacher's 68 points ``P_i`` (the box of the
    AFLW2000-3D protocol, so the values read like a box-normalised NME).

    Shapes: points68 (N, 68, 2), points21 (N, 21, 2) in the same frame -> float64 (N, 19). Raises ValueError for a
    teacher box without area.
    """
    teacher = np.asarray(points68, dtype=np.float64)
    human = np.asarray(points21, dtype=np.float64)
    if teacher.ndim != 3 or teacher.shape[1:] != (68, 2) or human.shape != (len(teacher), 21, 2):
        raise ValueError(
            f"expected points68 (N, 68, 2) and points21 (N, 21, 2) with the same N, got {teacher.shape} and "
            f"{human.shape}"
        )
    extent = teacher.max(axis=1) - teacher.min(axis=1)
    size = np.sqrt(extent[:, 0] * extent[:, 1])
    flat = np.flatnonzero(~(size > 0))
    if flat.size:
        raise ValueError(f"face {int(flat[0])}: the teacher's 68 points span a box without area")
    return np.linalg.norm(shared_points_68(teacher) - human[:, list(AFLW21_SHARED)], axis=-1) / size[:, None]


def teacher_agreement(points68: np.ndarray, points21: np.ndarray, visible21: np.ndarray) -> np.ndarray:
    """Per-face agreement of teacher and human: the mean of :func:`shared_point_errors` over the visible points.

    ``agreement_i = mean_{k in S_i} e_ik`` with ``S_i`` the visible :data:`AFLW21_SHARED` points of face i.

    Args:
        points68: (N, 68, 2) teacher points.
        points21: (N, 21, 2) human AFLW points, same frame.
        visible21: (N, 21) bool: the human point is annotated.

    Returns:
        float64 (N,). Raises ValueError for a face with no visible shared point or a box without area.
    """
    errors = shared_point_errors(points68, points21)
    mask = np.asarray(visible21)
    if mask.shape != (len(errors), 21) or mask.dtype != bool:
        raise ValueError(f"visible21 must be a bool array of shape ({len(errors)}, 21), got {mask.shape} {mask.dtype}")
    mask = mask[:, list(AFLW21_SHARED)]
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        raise ValueError(f"face {int(empty[0])} has no visible shared AFLW point ({empty.size} such faces)")
    return np.where(mask, errors, 0.0).sum(axis=1) / mask.sum(axis=1)


def _read_build_info(path: Path) -> dict[str, Any]:
    """``build.json`` as a dict, checked for the format tag and the AFLW-21 root."""
    try:
        info = json.loads(require_path(path, "aflw68").read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"not valid JSON ({err})", path) from None
    if not isinstance(info, dict) or info.get("format") != BUILD_FORMAT:
        found = info.get("format") if isinstance(info, dict) else type(info).__name__
        raise DataError(f"format is {found!r}; expected {BUILD_FORMAT!r}", path)
    if not isinstance(info.get("aflw_root"), str):
        raise DataError(f"'aflw_root' must be a path string, got {info.get('aflw_root')!r}", path)
    return info


def _checked_box(box: np.ndarray, path: Path, item: str) -> np.ndarray:
    if not (np.isfinite(box).all() and box[2] > box[0] and box[3] > box[1]):
        message = f"box (x0, y0, x1, y1) = {box.tolist()} is not finite with x1 > x0 and y1 > y0"
        raise DataError(message, path, item=item)
    return box.astype(np.float32)


class AFLW68Dataset(LandmarkDataset):
    """AFLW-21 crops (120 x 120) with the 68 teacher points of a ``scripts/build_aflw68.py`` build.

    Args:
        root: the build folder (``build.json``, ``names.txt``, ``pts68.npy``, ``yaw_deg.npy``, ``agreement.npy``).
        split: ``"train"``, ``"val"`` (AFLW-21's CRC-32 rule, :func:`~awing.data.aflw.aflw_is_validation`) or
            ``"all"``.
        aflw_root: the AFLW-21 folder holding ``crops/``; None takes ``build.json``'s ``aflw_root`` (relative to
            ``root`` unless absolute).
        skip_invalid: skip bad faces with one warning.

    Points are in crop pixels; the box is their tight box (the box rule of the AFLW2000-3D protocol). A build
    extended with human points (``scripts/extend_aflw68_human.py``) also has faces where only some points are
    labelled (the others have x and y NaN: not visible, weight 0 in training; one NaN coordinate is an error) and
    a ``boxes.npy`` (N, 4) that gives every box.
    Subsets: yaw bins (:data:`~awing.data.aflw.YAW_BINS`); ``attributes`` hold ``yaw_deg`` and ``agreement``
    (:func:`teacher_agreement` of the face, NaN for a human-labelled one).
    """

    SPLITS = ("train", "val", "all")

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        aflw_root: str | os.PathLike | None = None,
        skip_invalid: bool = False,
    ) -> None:
        self.check_split(split)
        root = Path(root)
        info = _read_build_info(root / "build.json")
        source = root / info["aflw_root"] if aflw_root is None else Path(aflw_root)  # an absolute path stays as is
        crops = require_path(source / "crops", "aflw68", folder=True)
        names = _read_names(root / "names.txt", "aflw68")
        pts_path = root / "pts68.npy"
        points = _load_array(pts_path, (len(names), 68, 2), "aflw68")
        yaws = _load_array(root / "yaw_deg.npy", (len(names),), "aflw68")
        agreement = _load_array(root / "agreement.npy", (len(names),), "aflw68")
        boxes_path = root / "boxes.npy"
        boxes = _load_array(boxes_path, (len(names), 4), "aflw68") if boxes_path.exists() else None
        labelled = ~np.isnan(points).all(axis=2)  # x and y NaN: a point the face has no label for
        invalid = InvalidItems(skip_invalid)
        records = []
        order = [i for i, name in enumerate(names) if split == "all" or aflw_is_validation(name) == (split == "val")]
        for i in order:
            with invalid:
                item = f"row {i}, {names[i]}"
                record = _yaw_record(points[i], labelled[i], crops / names[i], pts_path, item, yaws[i])
                if boxes is not None:
                    record = dataclasses.replace(record, box=_checked_box(boxes[i], boxes_path, item))
                record.attributes["agreement"] = float(agreement[i])
                records.append(record)
        invalid.warn(f"faces of {pts_path}", len(order))
        super().__init__(records, "68", subset_names=YAW_BINS)
