"""Face detection front end: a compact anchor-based detector (methods.md §10), its loss, data readers and augmentation.

- :mod:`~awing.detection.network` (``FaceDetectorNet``), :mod:`~awing.detection.anchors` (anchors, IoU, coding,
  matching), :mod:`~awing.detection.nms`, :mod:`~awing.detection.detector` (``FaceDetector``, weights I/O),
  :mod:`~awing.detection.loss` (``DetectionLoss``: focal or OHEM, ALWA, noisy anchors), :mod:`~awing.detection.data`
  (VOC / dlib / WIDER FACE readers, dataset, collate), :mod:`~awing.detection.augment`, :mod:`~awing.detection.config`.

>>> import numpy as np
>>> from awing.detection import FaceDetector, FaceDetectorNet
>>> detector = FaceDetector(FaceDetectorNet())  # or FaceDetector.from_weights("detector.safetensors")
>>> sorted(detector.detect(np.zeros((120, 160, 3), np.uint8)))
['boxes', 'landmarks', 'scores']
"""

from __future__ import annotations

from awing.detection.anchors import (
    MatchResult,
    box_iou,
    decode_boxes,
    decode_landmarks,
    encode_boxes,
    encode_landmarks,
    generate_anchors,
    match_anchors,
    paired_box_iou,
)
from awing.detection.augment import DetectionAugment
from awing.detection.config import DetectorConfig, DetectorModelConfig, InferenceConfig
from awing.detection.data import (
    DETECTION_DATASETS,
    DetectionDataset,
    DetectionRecord,
    DetectionSample,
    build_detection_dataset,
    collate_detection,
    is_validation,
    read_dlib_xml,
    read_voc_folder,
    read_voc_xml,
    read_wider_annotations,
)
from awing.detection.detector import FaceDetector, load_detector, save_detector
from awing.detection.loss import DetectionLoss, build_alwa
from awing.detection.network import FaceDetectorNet, fuse_batchnorm
from awing.detection.nms import batched_nms, nms

__all__ = [
    "DETECTION_DATASETS",
    "DetectionAugment",
    "DetectionDataset",
    "DetectionLoss",
    "DetectionRecord",
    "DetectionSample",
    "DetectorConfig",
    "DetectorModelConfig",
    "FaceDetector",
    "FaceDetectorNet",
    "InferenceConfig",
    "MatchResult",
    "batched_nms",
    "box_iou",
    "build_alwa",
    "build_detection_dataset",
    "collate_detection",
    "decode_boxes",
    "decode_landmarks",
    "encode_boxes",
    "encode_landmarks",
    "fuse_batchnorm",
    "generate_anchors",
    "is_validation",
    "load_detector",
    "match_anchors",
    "nms",
    "paired_box_iou",
    "read_dlib_xml",
    "read_voc_folder",
    "read_voc_xml",
    "read_wider_annotations",
    "save_detector",
]

# Evaluation (AP, recall, WIDER FACE protocol); the training loop is awing.detection.train.train_detector (not
# imported here: inference must not pull in the training stack).
from awing.detection.evaluate import (  # noqa: E402
    DetectionMetrics,
    average_precision,
    evaluate_detections,
    match_detections,
)

__all__ += ["DetectionMetrics", "average_precision", "evaluate_detections", "match_detections"]
