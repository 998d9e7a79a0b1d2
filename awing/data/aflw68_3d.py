"""AFLW68-3D: the AFLW-21 crops with a 3D-aware teacher's 68 points at every yaw, and the human points beside them.

``shared/data/aflw-21/teacher68_3ddfa_v2.npz`` holds, for every one of the 17,172 crops, the 68 points of 3DDFA_V2
(MobileNet x0.5, mirror-averaged; Guo et al., ECCV 2020) in crop pixels and ``agree19``, the teacher's mean distance
to the 19 human points (ears left out) in % of the crop side. Layout, rule and weights: datasets/aflw68-3d/README.md.

The training target of a face is:

- the teacher's 68 points;
- blended, at the 16 AFLW points that have a single 68-point counterpart (:data:`HUMAN_TARGETS`) and are visible,
  with the human point: ``p_k = (1 - w) t_k + w (h_k - b_k)``, ``w`` = :data:`HUMAN_WEIGHT`. ``b_k`` is the mean
  human-minus-teacher offset of that point over the training split in units of the teacher's box size
  sqrt(w h): the two conventions differ systematically at some points (AFLW's nose wings sit ~4 % of the box outside
  iBUG's nostril corners 31 / 35), and only the human's face-specific information should move the target;
- faces whose ``agree19`` exceeds :data:`MAX_DISAGREEMENT` are dropped (hands over the face, bad crops; ~1 % of them).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from awing.data.aflw import YAW_BINS, _load_array, _read_names, _yaw_record, aflw_crop_points, aflw_is_validation
from awing.data.aflw68 import AFLW21_TO_68
from awing.data.base import LandmarkDataset, require_path
from awing.data.io import DataError, InvalidItems

__all__ = ["HUMAN_TARGETS", "HUMAN_WEIGHT", "MAX_DISAGREEMENT", "TEACHER_FILE", "AFLW68TeacherDataset", "human_bias"]

#: The teacher's file inside the AFLW-21 folder.
TEACHER_FILE = "teacher68_3ddfa_v2.npz"

#: Faces whose teacher-to-human distance ``agree19`` (% of the 120-pixel crop side) exceeds this are dropped: about
#: 2.6 times the median (2.61) and between the 95th (4.18) and 99th (6.48) percentiles of the file's statistics.
MAX_DISAGREEMENT = 6.0

#: Weight of the (bias-corrected) human point in the blended target of a :data:`HUMAN_TARGETS` point.
HUMAN_WEIGHT = 0.3

#: AFLW-21 index -> 68-point index for the 16 points with a single counterpart (brow ends and centres, eye corners,
#: nose wings and tip, mouth corners, chin); eye and mouth centres are means of several points and are left out.
HUMAN_TARGETS: dict[int, int] = {k: v[0] for k, v in AFLW21_TO_68.items() if len(v) == 1}


def _box_sizes(points: np.ndarray) -> np.ndarray:
    """sqrt(w h) of the tight box of each face's points: (N, K, 2) -> (N,)."""
    extent = points.max(axis=1) - points.min(axis=1)
    return np.sqrt(extent[:, 0] * extent[:, 1])


def human_bias(teacher: np.ndarray, human: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Mean human-minus-teacher offset of each :data:`HUMAN_TARGETS` point in teacher box sizes.

    ``b_k = mean_i (h_ik - t_i,m(k)) / s_i`` over the faces where point k is visible, ``s_i = sqrt(w_i h_i)`` of the
    teacher's 68 points. Shapes: teacher (N, 68, 2), human (N, 21, 2), visible (N, 21) bool -> (16, 2) float64 in the
    order of :data:`HUMAN_TARGETS`.
    """
    sizes = _box_sizes(teacher)[:, None]
    bias = np.zeros((len(HUMAN_TARGETS), 2))
    for row, (k, m) in enumerate(HUMAN_TARGETS.items()):
        seen = visible[:, k]
        if seen.any():
            bias[row] = ((human[seen, k] - teacher[seen, m]) / sizes[seen]).mean(axis=0)
    return bias


def blend_human(teacher: np.ndarray, human: np.ndarray, visible: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The training targets: teacher points with the visible :data:`HUMAN_TARGETS` points blended in (module doc).

    Shapes: teacher (N, 68, 2), human (N, 21, 2), visible (N, 21) bool, bias (16, 2) -> float64 (N, 68, 2).
    """
    target = np.array(teacher, dtype=np.float64)
    sizes = _box_sizes(target)[:, None]
    for row, (k, m) in enumerate(HUMAN_TARGETS.items()):
        seen = visible[:, k]
        corrected = human[seen, k] - bias[row] * sizes[seen]
        target[seen, m] = (1.0 - HUMAN_WEIGHT) * target[seen, m] + HUMAN_WEIGHT * corrected
    return target


class AFLW68TeacherDataset(LandmarkDataset):
    """AFLW-21 crops (120 x 120) with the teacher's 68 points blended with the human ones (module doc).

    Args:
        root: the AFLW-21 folder (``crops/``, ``names.txt``, ``pts21.npy``, ``crop_roi_box.npy``, ``yaw_deg.npy``
            and :data:`TEACHER_FILE`).
        split: ``"train"``, ``"val"`` (AFLW-21's CRC-32 rule, :func:`~awing.data.aflw.aflw_is_validation`) or
            ``"all"``.
        skip_invalid: skip bad faces with one warning.

    Points are in crop pixels, all 68 visible; the box is their tight box (the AFLW2000-3D protocol's rule).
    Subsets: yaw bins; ``attributes`` hold ``yaw_deg`` and ``agreement`` (the file's ``agree19``).
    """

    SPLITS = ("train", "val", "all")

    def __init__(self, root: str | os.PathLike, split: str = "train", skip_invalid: bool = False) -> None:
        self.check_split(split)
        root = Path(root)
        names = _read_names(root / "names.txt", "aflw68-3d")
        raw = _load_array(root / "pts21.npy", (len(names), 2, 21), "aflw68-3d").transpose(0, 2, 1)
        roi = _load_array(root / "crop_roi_box.npy", (len(names), 4), "aflw68-3d")
        yaws = _load_array(root / "yaw_deg.npy", (len(names),), "aflw68-3d")
        crops = require_path(root / "crops", "aflw68-3d", folder=True)
        teacher_path = require_path(root / TEACHER_FILE, "aflw68-3d")
        teacher, agreement = _read_teacher(teacher_path, len(names))
        visible = raw[:, :, 0] >= 0
        with np.errstate(divide="ignore", invalid="ignore"):
            human = aflw_crop_points(raw, roi).astype(np.float64)
        train = np.array([not aflw_is_validation(name) for name in names])
        kept = agreement <= MAX_DISAGREEMENT
        bias = human_bias(teacher[train & kept], human[train & kept], visible[train & kept])
        targets = blend_human(teacher, human, visible, bias)
        self.human_bias = bias
        all_visible = np.ones(68, dtype=bool)
        invalid = InvalidItems(skip_invalid)
        order = [i for i in range(len(names)) if kept[i] and (split == "all" or train[i] == (split == "train"))]
        records = []
        for i in order:
            with invalid:
                item = f"row {i}, {names[i]}"
                record = _yaw_record(targets[i], all_visible, crops / names[i], teacher_path, item, yaws[i])
                record.attributes["agreement"] = float(agreement[i])
                records.append(record)
        invalid.warn(f"faces of {teacher_path}", len(order))
        super().__init__(records, "68", subset_names=YAW_BINS)


def _read_teacher(path: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(points (N, 68, 2) float64 in crop pixels, agree19 (N,) float64) from the teacher's ``.npz``."""
    try:
        with np.load(path) as archive:
            points, agreement = archive["pts68_crop"], archive["agree19"]
    except (OSError, ValueError, KeyError) as error:
        raise DataError(f"expected an .npz with 'pts68_crop' and 'agree19' ({error})", path) from None
    if points.shape != (count, 2, 68) or agreement.shape != (count,):
        raise DataError(
            f"pts68_crop has shape {points.shape} and agree19 {agreement.shape}; expected ({count}, 2, 68) and "
            f"({count},) for the {count} names of names.txt",
            path,
        )
    points = points.transpose(0, 2, 1).astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(points).all(axis=(1, 2)) | ~np.isfinite(agreement))
    if bad.size:
        raise DataError(f"{bad.size} faces have non-finite teacher points or agree19 (first: row {bad[0]})", path)
    return points, agreement.astype(np.float64)
