"""300W (Sagonas et al., 2013/2016): 68 points in iBUG ``.pts`` files beside the images.

Layout (datasets/300w/README.md)::

    root/afw/  root/helen/{trainset,testset}/  root/lfpw/{trainset,testset}/  root/ibug/
    root/300W/{01_Indoor,02_Outdoor}/          (the private test set)

Splits (methods.md §5.4): train 3,148 = AFW 337 + LFPW-train 811 + HELEN-train 2,000; common 554 = LFPW-test 224
+ HELEN-test 330; challenging = iBUG 135; full = common + challenging = 689; private 600 = 300 indoor + 300 outdoor.
``.pts`` files are 1-based; :func:`awing.data.io.read_pts` subtracts 1. 300W has no face box: the box is the tight
box of the 68 points.
"""

from __future__ import annotations

import os
from pathlib import Path

from awing.data.base import LandmarkDataset, require_path
from awing.data.generic import pts_records
from awing.data.io import DataError, InvalidItems

__all__ = ["W300_FOLDERS", "W300Dataset"]

#: Folder (relative to the root) -> subset names its faces are tagged with.
W300_FOLDERS = {
    "afw": ("afw",),
    "helen/trainset": ("helen",),
    "lfpw/trainset": ("lfpw",),
    "helen/testset": ("helen", "common"),
    "lfpw/testset": ("lfpw", "common"),
    "ibug": ("ibug", "challenging"),
    "300W/01_Indoor": ("indoor",),
    "300W/02_Outdoor": ("outdoor",),
}

_SPLIT_FOLDERS = {
    "train": ("afw", "helen/trainset", "lfpw/trainset"),
    "common": ("helen/testset", "lfpw/testset"),
    "challenging": ("ibug",),
    "full": ("helen/testset", "lfpw/testset", "ibug"),
    "private": ("300W/01_Indoor", "300W/02_Outdoor"),
}


class W300Dataset(LandmarkDataset):
    """300W faces of one split: ``"train"``, ``"common"``, ``"challenging"``, ``"full"`` or ``"private"``.

    Subsets: afw, helen, lfpw, ibug, common, challenging, indoor, outdoor (those of the split's folders).
    """

    SPLITS = tuple(_SPLIT_FOLDERS)

    def __init__(self, root: str | os.PathLike, split: str = "train", skip_invalid: bool = False) -> None:
        self.check_split(split)
        root = Path(root)
        folders = [require_path(root / name, "300w", folder=True) for name in _SPLIT_FOLDERS[split]]
        files = []
        for folder in folders:
            found = sorted(folder.glob("*.pts"))
            if not found:
                raise DataError("no .pts files in this folder; see datasets/300w/README.md", folder)
            files += found
        attributes = {
            folder: {"subsets": W300_FOLDERS[name], "folder": name}
            for folder, name in zip(folders, _SPLIT_FOLDERS[split], strict=True)
        }
        invalid = InvalidItems(skip_invalid)
        records = pts_records(files, 68, invalid, attributes)
        invalid.warn(f".pts files of 300W {split}", len(files))
        tags = sorted({tag for name in _SPLIT_FOLDERS[split] for tag in W300_FOLDERS[name]})
        super().__init__(records, "68", subset_names=tags)
