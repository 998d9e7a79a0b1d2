"""The name -> dataset class table and :func:`build_dataset`."""

from __future__ import annotations

import os
from typing import Any

from awing.data.aflw import AFLW2000Dataset, AFLWDataset
from awing.data.aflw68 import AFLW68Dataset
from awing.data.aflw68_3d import AFLW68TeacherDataset
from awing.data.base import LandmarkDataset
from awing.data.cofw import COFWDataset
from awing.data.generic import CocoKeypointsDataset, PtsFolderDataset, SpigaJsonDataset
from awing.data.w300 import W300Dataset
from awing.data.wflw import LandmarkListDataset, WFLWDataset

__all__ = ["DATASETS", "build_dataset"]

#: Data set name -> class. The first argument of every class is the data set's root (or its file, for the
#: generic formats); see datasets/<name>/README.md.
DATASETS: dict[str, type[LandmarkDataset]] = {
    "wflw": WFLWDataset,
    "300w": W300Dataset,
    "cofw": COFWDataset,
    "aflw2000-3d": AFLW2000Dataset,
    "aflw": AFLWDataset,
    "aflw68": AFLW68Dataset,
    "aflw68-3d": AFLW68TeacherDataset,
    "pts": PtsFolderDataset,
    "coco": CocoKeypointsDataset,
    "spiga": SpigaJsonDataset,
    "list": LandmarkListDataset,
}


def build_dataset(name: str, root: str | os.PathLike, split: str | None = None, **kwargs: Any) -> LandmarkDataset:
    """``DATASETS[name](root, split=split, **kwargs)``; None leaves the class's default split.

    Unknown names raise with the valid ones; a split for a data set without standard splits raises too.
    """
    key = name.strip().lower()
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    cls = DATASETS[key]
    if split is None:
        return cls(root, **kwargs)
    cls.check_split(split)
    return cls(root, split=split, **kwargs)
