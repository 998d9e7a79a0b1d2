"""Face landmark data: readers for WFLW, 300W, COFW, AFLW2000-3D, AFLW and generic formats.

>>> from awing.data import build_dataset
>>> ds = build_dataset("wflw", "data/WFLW", split="test")  # doctest: +SKIP
>>> sample = ds[0]  # doctest: +SKIP
>>> sample.image.shape, sample.landmarks_img.shape  # RGB uint8 image, 98 x 2 float32 points  # doctest: +SKIP
"""

from __future__ import annotations

from awing.data.aflw import AFLW2000Dataset, AFLWDataset, aflw_crop_points, aflw_is_validation, yaw_bin
from awing.data.aflw68 import AFLW68Dataset
from awing.data.aflw68_3d import AFLW68TeacherDataset
from awing.data.base import LandmarkDataset
from awing.data.cofw import COFWDataset, read_cofw_mat
from awing.data.datasets import DATASETS, build_dataset
from awing.data.generic import (
    CocoKeypointsDataset,
    PtsFolderDataset,
    SpigaJsonDataset,
    read_coco_keypoints,
    read_spiga_json,
)
from awing.data.io import DataError, read_image, read_pts, to_rgb_uint8, write_pts
from awing.data.sample import FaceSample, LandmarkRecord, tight_box
from awing.data.w300 import W300Dataset
from awing.data.wflw import WFLW_FLAGS, LandmarkListDataset, WFLWDataset, read_landmark_list

__all__ = [
    "AFLW2000Dataset",
    "AFLWDataset",
    "COFWDataset",
    "CocoKeypointsDataset",
    "DATASETS",
    "DataError",
    "FaceSample",
    "LandmarkDataset",
    "LandmarkListDataset",
    "LandmarkRecord",
    "PtsFolderDataset",
    "SpigaJsonDataset",
    "W300Dataset",
    "WFLWDataset",
    "WFLW_FLAGS",
    "AFLW68Dataset",
    "AFLW68TeacherDataset",
    "aflw_crop_points",
    "aflw_is_validation",
    "build_dataset",
    "read_cofw_mat",
    "read_coco_keypoints",
    "read_image",
    "read_landmark_list",
    "read_pts",
    "read_spiga_json",
    "tight_box",
    "to_rgb_uint8",
    "write_pts",
    "yaw_bin",
]

# Training samples: augmentation, targets and the torch Dataset (albumentations is imported lazily, on first use).
from awing.data.augment import FaceAugmenter, GeometricParams, WarpedFace, sample_rng, warp_face  # noqa: E402
from awing.data.targets import make_targets, point_weights  # noqa: E402
from awing.data.training import LandmarkTrainingSet, seed_worker  # noqa: E402

__all__ += [
    "FaceAugmenter",
    "GeometricParams",
    "LandmarkTrainingSet",
    "WarpedFace",
    "make_targets",
    "point_weights",
    "sample_rng",
    "seed_worker",
    "warp_face",
]
