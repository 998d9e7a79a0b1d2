"""Reference face detectors trained by others on WIDER FACE, used as distillation teachers and benchmark rows.

They are never bundled: the caller passes the ``.onnx`` file (``../shared/models/face-detectors``, README there).
Both follow :class:`~awing.detection.detector.FaceDetector`'s ``detect_batch`` contract for RGB uint8 images:
``{"boxes": (N, 4) float32 xyxy original pixels, "scores": (N,) float32}`` by decreasing score.

- :class:`UltraLightDetector` (ULFD RFB-320 / RFB-640, onnxruntime): the image is resized (aspect not kept, as its
  authors do) to the network's ``W x H`` input (320 x 240 or 640 x 480, read from the model), RGB ``(x - 127) / 128``;
  the outputs are per-prior softmax scores ``(1, P, 2)`` and corner boxes ``(1, P, 4)`` in image fractions; keep
  face scores ``>= score_threshold``, NMS at ``nms_iou`` (0.3, its authors'), scale to pixels.
- :class:`YuNetDetector` (OpenCV's ``cv2.FaceDetectorYN``): the image is resized so that its longer side is
  ``input_max_side`` (640; an image already that small or smaller is not enlarged), BGR; YuNet decodes and runs NMS
  itself; boxes ``x y w h`` are mapped back to the original pixels.

Pixel convention: box edges scale with the image (``x_img = x_in * W / W_in``); these detectors' boxes are
approximate to a pixel anyway.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from awing.detection.detector import check_images
from awing.detection.nms import nms

__all__ = ["TEACHER_FILES", "UltraLightDetector", "YuNetDetector", "build_teacher"]

TEACHER_FILES = {
    "ulfd320": "version-RFB-320.onnx",
    "ulfd640": "version-RFB-640.onnx",
    "yunet": "face_detection_yunet_2026may.onnx",
}
"""Teacher name -> file name in the models folder."""


def _model_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference detector not found: {path} (see ../shared/models/face-detectors/README.md)")
    return path


class UltraLightDetector:
    """ULFD RFB (Ultra-Light-Fast-Generic-Face-Detector) through onnxruntime (module docstring).

    Args:
        path: ``version-RFB-320.onnx`` or ``version-RFB-640.onnx``.
        score_threshold: minimum face probability (its authors use 0.7).
        nms_iou: NMS IoU threshold.
        threads: onnxruntime intra-op threads.
    """

    def __init__(
        self, path: str | os.PathLike, score_threshold: float = 0.7, nms_iou: float = 0.3, threads: int = 2
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # the files' initializers-as-inputs warnings
        self.session = ort.InferenceSession(str(_model_file(path)), options, providers=["CPUExecutionProvider"])
        shape = self.session.get_inputs()[0].shape  # 1 x 3 x H x W
        self.input_size = (int(shape[3]), int(shape[2]))
        self.score_threshold, self.nms_iou = score_threshold, nms_iou

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Faces in each RGB uint8 image (one network call per image)."""
        results = []
        for image in check_images(images):
            height, width = image.shape[:2]
            resized = cv2.resize(image, self.input_size, interpolation=cv2.INTER_LINEAR)
            blob = ((resized.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
            scores, boxes = self.session.run(None, {self.session.get_inputs()[0].name: blob})
            face = scores[0, :, 1]
            keep = face >= self.score_threshold
            kept_boxes = boxes[0, keep] * np.array([width, height, width, height], np.float32)
            order = nms(torch.from_numpy(kept_boxes), torch.from_numpy(face[keep]), self.nms_iou).numpy()
            results.append({"boxes": kept_boxes[order].astype(np.float32), "scores": face[keep][order]})
        return results


class YuNetDetector:
    """YuNet through ``cv2.FaceDetectorYN`` (module docstring).

    Args:
        path: the YuNet ``.onnx`` file.
        score_threshold: minimum score (OpenCV's demo uses 0.9).
        nms_iou: YuNet's NMS threshold (OpenCV's default 0.3).
        input_max_side: the longer side the image is reduced to (never enlarged).
        top_k: boxes kept before NMS.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        score_threshold: float = 0.9,
        nms_iou: float = 0.3,
        input_max_side: int = 640,
        top_k: int = 5000,
    ) -> None:
        self.model = cv2.FaceDetectorYN.create(str(_model_file(path)), "", (320, 320), score_threshold, nms_iou, top_k)
        self.input_max_side = input_max_side

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Faces in each RGB uint8 image."""
        results = []
        for image in check_images(images):
            height, width = image.shape[:2]
            k = min(1.0, self.input_max_side / max(height, width))
            size = (max(1, round(width * k)), max(1, round(height * k)))
            small = image if size == (width, height) else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            self.model.setInputSize(size)
            _, faces = self.model.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
            faces = np.zeros((0, 15), np.float32) if faces is None else faces
            scale = np.array([width / size[0], height / size[1]] * 2, np.float32)
            xywh = faces[:, :4] * scale
            boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            order = np.argsort(-faces[:, 14], kind="stable")
            results.append({"boxes": boxes[order].astype(np.float32), "scores": faces[order, 14].astype(np.float32)})
        return results


def build_teacher(
    name: str, models_dir: str | os.PathLike, score_threshold: float, threads: int = 2
) -> UltraLightDetector | YuNetDetector:
    """Teacher ``name`` (a key of :data:`TEACHER_FILES`) from ``models_dir`` at ``score_threshold``."""
    if name not in TEACHER_FILES:
        raise ValueError(f"unknown reference detector {name!r}; valid names: {', '.join(TEACHER_FILES)}")
    path = Path(models_dir) / TEACHER_FILES[name]
    if name == "yunet":
        return YuNetDetector(path, score_threshold)
    return UltraLightDetector(path, score_threshold, threads=threads)
