"""The map-style dataset base shared by every loader: eager records, lazy images, named splits and subsets."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from awing.data.io import DataError, read_image
from awing.data.sample import FaceSample, LandmarkRecord
from awing.landmarks import get_scheme

__all__ = ["LandmarkDataset", "require_path"]


def require_path(path: str | os.PathLike, dataset: str, folder: bool = False) -> Path:
    """Return ``path`` if the file (or folder) exists, else raise naming the data set's layout README."""
    path = Path(path)
    if not (path.is_dir() if folder else path.is_file()):
        kind = "folder" if folder else "file"
        raise DataError(f"{kind} not found; see datasets/{dataset}/README.md for the expected layout", path)
    return path


class LandmarkDataset:
    """Faces with landmarks: ``len()``, ``ds[i] -> FaceSample``, ``records``, ``subset_indices(name)``.

    Subclasses parse their annotation files at construction into :class:`LandmarkRecord` s (so errors surface at
    once with file and line, and ``len()`` needs no image) and read the image in ``__getitem__``.

    Attributes:
        SPLITS: the standard split names a subclass accepts (empty: no standard split).
        records: one record per face.
        scheme: the landmark scheme name (``awing.landmarks``).
        subset_names: the names :meth:`subset_indices` accepts.
    """

    SPLITS: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, records: Sequence[LandmarkRecord], scheme: str | int, subset_names: Sequence[str] | None = None
    ) -> None:
        self.scheme = get_scheme(scheme).name
        self.records = list(records)
        tagged = sorted({name for r in self.records for name in r.attributes.get("subsets", ())})
        self.subset_names = tuple(subset_names) if subset_names is not None else tuple(tagged)

    @classmethod
    def check_split(cls, split: str) -> str:
        """Return ``split`` if it is one of :attr:`SPLITS`, else raise with the valid names."""
        if split not in cls.SPLITS:
            valid = ", ".join(cls.SPLITS) if cls.SPLITS else "none (this data set has no standard split)"
            raise ValueError(f"unknown split {split!r} for {cls.__name__}; valid splits: {valid}")
        return split

    def __len__(self) -> int:
        return len(self.records)

    def load_image(self, index: int) -> np.ndarray:
        """The RGB uint8 image of record ``index`` (subclasses that keep images elsewhere override this)."""
        return read_image(self.records[index].image_path)

    def __getitem__(self, index: int) -> FaceSample:
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index = int(index) % len(self)
        record = self.records[index]
        try:
            image = self.load_image(index)
        except DataError as error:
            raise DataError(
                f"{error.reason} (annotation: {record.source})", error.file, error.line, error.item
            ) from error
        return FaceSample(
            image=image,
            landmarks_img=record.landmarks_img.copy(),
            box=record.box.copy(),
            visible=record.visible.copy(),
            scheme=self.scheme,
            attributes=dict(record.attributes),
            image_path=record.image_path,
        )

    def subset_indices(self, name: str) -> np.ndarray:
        """Indices (int64) of the records tagged with subset ``name``; unknown names raise with the valid ones."""
        if name not in self.subset_names:
            valid = ", ".join(self.subset_names) or "none"
            raise ValueError(f"unknown subset {name!r} for {type(self).__name__}; valid subsets: {valid}")
        hits = [i for i, r in enumerate(self.records) if name in r.attributes.get("subsets", ())]
        return np.asarray(hits, dtype=np.int64)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} faces, scheme {self.scheme})"
