"""COFW (Burgos-Artizzu et al., ICCV 2013): 29 points with occlusion flags, images inside MATLAB files.

Layout (datasets/cofw/README.md): ``root/COFW_train_color.mat`` (1,345 faces) and ``root/COFW_test_color.mat``
(507 faces). Fields: images ``IsTr`` / ``IsT`` (cells of uint8 arrays, grey H x W or RGB H x W x 3), points
``phisTr`` / ``phisT`` (N x 87: 29 x, 29 y, 29 occlusion flags), boxes ``bboxesTr`` / ``bboxesT`` (N x 4:
x, y, w, h). MATLAB coordinates are 1-based: 1 is subtracted from points and boxes. Both the classic MAT format
(scipy.io.loadmat) and v7.3 (HDF5, needs h5py) are read.

An occluded point still has an annotated location and is part of COFW's NME, so every point stays visible; the
flags are in ``attributes["occluded"]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from awing.data.base import LandmarkDataset, require_path
from awing.data.io import DataError, InvalidItems, to_rgb_uint8
from awing.data.sample import make_record

__all__ = ["COFW_FIELDS", "COFWDataset", "read_cofw_mat"]

#: split -> (file name, image field, points field, box field).
COFW_FIELDS = {
    "train": ("COFW_train_color.mat", "IsTr", "phisTr", "bboxesTr"),
    "test": ("COFW_test_color.mat", "IsT", "phisT", "bboxesT"),
}


def _read_v73(path: Path, fields: tuple[str, str, str]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """MATLAB v7.3 (HDF5): arrays are stored transposed and cells as object references."""
    try:
        import h5py
    except ImportError:
        raise ImportError(f"{path} is a MATLAB v7.3 (HDF5) file; reading it needs h5py: pip install h5py") from None
    image_key, points_key, box_key = fields
    with h5py.File(path, "r") as mat:
        missing = [key for key in fields if key not in mat]
        if missing:
            raise DataError(f"missing fields {missing}; found {sorted(mat.keys())}", path)
        images = [np.asarray(mat[ref][()]).T for ref in np.asarray(mat[image_key][()]).ravel()]
        return images, np.asarray(mat[points_key][()]).T, np.asarray(mat[box_key][()]).T


def _read_classic(path: Path, fields: tuple[str, str, str]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    mat = loadmat(path)
    missing = [key for key in fields if key not in mat]
    if missing:
        raise DataError(f"missing fields {missing}; found {sorted(k for k in mat if not k.startswith('__'))}", path)
    image_key, points_key, box_key = fields
    return list(mat[image_key].ravel()), np.asarray(mat[points_key]), np.asarray(mat[box_key])


def read_cofw_mat(
    path: str | os.PathLike, image_key: str, points_key: str, box_key: str
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Read a COFW MAT file -> (images, phis N x 87, boxes N x 4) as stored (1-based, images as in the file).

    Raises :class:`DataError` for a file that is not a MAT file, missing fields or mismatched counts, and an
    ImportError telling to ``pip install h5py`` for a v7.3 file without h5py.
    """
    from scipy.io.matlab import MatReadError, matfile_version

    path = Path(path)
    try:
        major, _ = matfile_version(path)
    except (MatReadError, ValueError) as error:
        raise DataError(f"not a MATLAB MAT file ({error})", path) from None
    fields = (image_key, points_key, box_key)
    images, phis, boxes = (_read_v73 if major == 2 else _read_classic)(path, fields)
    if phis.ndim != 2 or phis.shape[1] != 87:
        raise DataError(f"{points_key} has shape {phis.shape}; expected N x 87 (29 x, 29 y, 29 flags)", path)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DataError(f"{box_key} has shape {boxes.shape}; expected N x 4 (x, y, w, h)", path)
    if not len(images) == len(phis) == len(boxes):
        raise DataError(f"{len(images)} images, {len(phis)} point rows and {len(boxes)} boxes differ", path)
    return images, phis.astype(np.float64), boxes.astype(np.float64)


class COFWDataset(LandmarkDataset):
    """COFW faces of split ``"train"`` or ``"test"``; box: the data set's (x, y, w, h) box."""

    SPLITS = tuple(COFW_FIELDS)

    def __init__(self, root: str | os.PathLike, split: str = "train", skip_invalid: bool = False) -> None:
        self.check_split(split)
        name, image_key, points_key, box_key = COFW_FIELDS[split]
        path = require_path(Path(root) / name, "cofw")
        images, phis, boxes = read_cofw_mat(path, image_key, points_key, box_key)
        invalid = InvalidItems(skip_invalid)
        records, self._images = [], []
        for i, (image, row, box) in enumerate(zip(images, phis, boxes, strict=True)):
            item = f"{points_key}[{i}]"
            with invalid:
                image = to_rgb_uint8(np.asarray(image), name=f"{path} [{image_key}[{i}]]")
                flags = row[58:]
                if not np.isin(flags, (0, 1)).all():
                    raise DataError(f"occlusion flags must be 0 or 1, got {np.unique(flags).tolist()}", path, item=item)
                records.append(
                    make_record(
                        np.stack([row[:29], row[29:58]], axis=1) - 1.0,
                        num_points=29,
                        image_path=f"{path} [{image_key}[{i}]]",
                        file=path,
                        item=item,
                        box=np.array([box[0], box[1], box[0] + box[2], box[1] + box[3]]) - 1.0,
                        attributes={"occluded": flags.astype(bool), "subsets": ()},
                    )
                )
                self._images.append(image)
        invalid.warn(f"faces of {path}", len(phis))
        super().__init__(records, "29")

    def load_image(self, index: int) -> np.ndarray:
        return self._images[index].copy()
