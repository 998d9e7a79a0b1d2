"""``FaceDetector``: images of any size -> face boxes, scores and 5 points in original-image pixels.

Pipeline per image (batched): resize so that the longer side equals ``input_max_side`` (``cv2.resize``, bilinear;
pixel centres map to pixel centres: ``x_in = (x + 0.5) k - 0.5`` with ``k = new_width / width``, the same for
``y``), pad bottom and right to a multiple of 32 with black (0, what the convolutions' own zero padding sees), run
the network once on the batch, then per image: sigmoid scores, score threshold, the ``pre_nms_top_k`` best, decode
boxes and points, NMS (all images in one call), the ``max_detections`` best, the inverse resize; for a network with a
verifier (``config.verifier``), the second stage of :mod:`awing.detection.verifier` on the boxes above
``proposal_threshold``: a crop around each box re-scored (its probability is the box's score and must reach
``score_threshold``) and its edges refined, then NMS again; last, the image-content check of
:mod:`awing.detection.content` (a box on a flat, smoothly shaded or two-tone area is dropped: no face in a blank
image, a gradient or a page of text, whatever the weights). Boxes are not clipped to the image. Images of
different input sizes go through the network separately (:meth:`FaceDetector.detect_batch`), so a result does not
depend on the rest of the batch.

No face gives empty arrays of the right shapes, never ``None`` or an exception.

Weights are ``.safetensors`` files (:func:`save_detector`) whose metadata hold the network config and the default
inference thresholds, so :meth:`FaceDetector.from_weights` needs nothing else.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from awing.detection.anchors import decode_boxes, decode_landmarks, generate_anchors
from awing.detection.config import DetectorModelConfig, InferenceConfig
from awing.detection.content import has_face_content
from awing.detection.network import VERIFIER_SIDE, FaceDetectorNet, fuse_batchnorm
from awing.detection.nms import batched_nms, nms
from awing.detection.verifier import crop_squares, crops_to_tensor, refine_boxes
from awing.inference import resolve_device
from awing.models.weights import check_fits, load_state_dict_strict, read_metadata, read_safetensors
from awing.runtime import OnnxRunner, resolve_backend, torch_threads
from awing.version import __version__

__all__ = ["DETECTOR_FORMAT", "PAD_VALUE", "FaceDetector", "load_detector", "save_detector"]

DETECTOR_FORMAT = "awing.detector.v1"
PAD_VALUE = 0
"""Padding value (black): the network's input is not normalised, so this equals its convolutions' zero padding."""
SIZE_DIVISOR = 32
MAX_WIDTH_MULT = 8.0
"""Largest backbone width a detector file may claim (the bundled one uses 0.25)."""


def _check_image(image: np.ndarray, index: int | None = None) -> None:
    where = "image" if index is None else f"images[{index}]"
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise TypeError(f"{where} must be an RGB uint8 H x W x 3 numpy array, got {dtype} with shape {shape}")
    if min(image.shape[:2]) < 1:
        raise ValueError(f"{where} is empty: shape {image.shape}")


def check_images(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The images of a ``detect_batch`` call as a list, each checked (a lone image array is refused)."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise TypeError("detect_batch expects a list of images; use detect() for a single image")
    images = list(images)
    for i, image in enumerate(images):
        _check_image(image, i)
    return images


class FaceDetector:
    """Face detector for RGB uint8 images of any size.

    Args:
        model: a :class:`~awing.detection.network.FaceDetectorNet` (copied, put in eval mode, BatchNorm fused,
            moved to ``device``; the caller's model is untouched).
        input_max_side: the longer image side is resized to this.
        score_threshold: minimum face probability (the second stage's, for a network with a verifier).
        proposal_threshold: first-stage probability from which a box goes to the verifier (networks with one).
        nms_iou: IoU above which a lower-scoring box is suppressed.
        nms_containment: share of the smaller box inside a higher-scoring one above which it is suppressed too
            (nested boxes on one face; :func:`~awing.detection.nms.nms`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when present).
        pre_nms_top_k: best boxes per image entering NMS.
        max_detections: boxes kept per image after NMS.
        backend: ``"auto"`` (onnxruntime for a :class:`FaceDetectorNet` itself, not a subclass, on the CPU when
            installed), ``"torch"`` or ``"onnxruntime"`` (:mod:`awing.runtime`; the session, built at the first
            detection, takes any batch and image size).
        threads: CPU threads of the onnxruntime session (``None``: :func:`awing.runtime.default_threads`).

    >>> detector = FaceDetector(FaceDetectorNet())
    >>> result = detector.detect(np.zeros((48, 64, 3), np.uint8))
    >>> result["boxes"].shape, result["scores"].shape, result["landmarks"].shape
    ((0, 4), (0,), (0, 5, 2))
    """

    def __init__(
        self,
        model: FaceDetectorNet,
        input_max_side: int = 640,
        score_threshold: float = 0.5,
        nms_iou: float = 0.4,
        device: str | torch.device = "cpu",
        pre_nms_top_k: int = 2000,
        max_detections: int = 750,
        nms_containment: float = 0.8,
        backend: str = "auto",
        threads: int | None = None,
        proposal_threshold: float = 0.1,
    ) -> None:
        if not isinstance(model, FaceDetectorNet):
            raise TypeError(f"model must be a FaceDetectorNet, got {type(model).__name__}")
        self.settings = InferenceConfig(
            input_max_side=input_max_side,
            score_threshold=score_threshold,
            proposal_threshold=proposal_threshold,
            nms_iou=nms_iou,
            pre_nms_top_k=pre_nms_top_k,
            max_detections=max_detections,
            nms_containment=nms_containment,
        )
        self.device = resolve_device(device)
        self.config: DetectorModelConfig = model.config
        network = fuse_batchnorm(copy.deepcopy(model).eval())
        self.model = network.to(self.device, memory_format=torch.channels_last)
        self.backend = resolve_backend(backend, self.device, exportable=type(model) is FaceDetectorNet)
        self._runner = None
        if self.backend == "onnxruntime":
            axes = {"input": {0: "batch", 2: "height", 3: "width"}}
            axes |= {name: {0: "batch", 1: "anchors"} for name in ("logits", "boxes", "landmarks")}
            example = torch.zeros(1, 3, 2 * SIZE_DIVISOR, 3 * SIZE_DIVISOR)
            self._runner = OnnxRunner(network, example, ["logits", "boxes", "landmarks"], axes, threads)
        self._verifier_runner = None
        if self.backend == "onnxruntime" and network.verifier is not None:
            axes = {name: {0: "crops"} for name in ("input", "logits", "offsets")}
            example = torch.zeros(1, 3, VERIFIER_SIDE, VERIFIER_SIDE)
            self._verifier_runner = OnnxRunner(network.verifier, example, ["logits", "offsets"], axes, threads)
        self._anchors: dict[tuple[int, int], Tensor] = {}

    @classmethod
    def from_weights(cls, path: str | Path, **kwargs) -> FaceDetector:
        """Build from a ``.safetensors`` file of :func:`save_detector`; ``kwargs`` override the stored thresholds."""
        model, settings = load_detector(path)
        return cls(model, **{**asdict(settings), **kwargs})

    def _anchors_for(self, height: int, width: int) -> Tensor:
        key = (height, width)
        if key not in self._anchors:
            sizes = FaceDetectorNet.feature_sizes(height, width, self.config.strides)
            self._anchors[key] = generate_anchors(sizes, self.config.strides, self.config.anchor_sizes, self.device)
        return self._anchors[key]

    def _resized_size(self, image: np.ndarray) -> tuple[int, int]:
        """``(width, height)`` of ``image`` resized so that its longer side is ``input_max_side``."""
        h, w = image.shape[:2]
        k = self.settings.input_max_side / max(h, w)
        return max(1, round(w * k)), max(1, round(h * k))

    def _padded_size(self, image: np.ndarray) -> tuple[int, int]:
        """``(height, width)`` of the network input of ``image`` alone: the resized size padded to a multiple of 32."""
        new_w, new_h = self._resized_size(image)
        return SIZE_DIVISOR * math.ceil(new_h / SIZE_DIVISOR), SIZE_DIVISOR * math.ceil(new_w / SIZE_DIVISOR)

    def _prepare(self, images: Sequence[np.ndarray]) -> tuple[Tensor, np.ndarray]:
        """Resized, padded ``B x 3 x H x W`` float batch (channels-last) and the per-image ``(kx, ky)`` scales."""
        resized, scales = [], []
        for image in images:
            h, w = image.shape[:2]
            new_w, new_h = self._resized_size(image)
            if (new_w, new_h) != (w, h):
                image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
            resized.append(image)
            scales.append((new_w / w, new_h / h))
        height = max(r.shape[0] for r in resized)
        width = max(r.shape[1] for r in resized)
        height, width = (SIZE_DIVISOR * math.ceil(v / SIZE_DIVISOR) for v in (height, width))
        batch = np.full((len(resized), height, width, 3), PAD_VALUE, dtype=np.uint8)
        for i, r in enumerate(resized):
            batch[i, : r.shape[0], : r.shape[1]] = r
        if self._runner is None:  # torch: channels-last, NHWC in memory as the image already is
            tensor = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        else:  # onnxruntime: NCHW float32, made in one numpy pass (torch's permute-cast-copy took 3 ms at 640 x 480)
            tensor = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32))
        return tensor, np.asarray(scales, dtype=np.float64)

    def detect(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Faces in one RGB uint8 ``H x W x 3`` image.

        Returns:
            ``boxes`` ``(N, 4)`` float32 xyxy, ``scores`` ``(N,)`` float32, ``landmarks`` ``(N, 5, 2)`` float32
            (eye centres, nose tip, mouth corners as in ``get_scheme("5")``), all in original-image pixels, by
            decreasing score; ``N = 0`` when there is no face.
        """
        _check_image(image)
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """:meth:`detect` for a list of images of any sizes: one network call per input size.

        Images whose padded inputs have the same size go through together; each gets exactly the padding it would
        get alone, so an image's faces do not depend on the other images of the call (padding an image further,
        to a larger image's size, changes the network's outputs near its border).
        """
        images = check_images(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(self._padded_size(image), []).append(i)
        results: list[dict[str, np.ndarray]] = [{}] * len(images)
        for members in groups.values():
            with torch.inference_mode(), torch_threads(None if self._runner is None else 1):  # see awing.runtime
                batch, scales = self._prepare([images[i] for i in members])
                if self._runner is None:
                    logits, box_deltas, landmark_deltas = self.model(batch)
                else:
                    logits, box_deltas, landmark_deltas = map(torch.from_numpy, self._runner(batch.numpy()))
                found = self._postprocess(logits, box_deltas, landmark_deltas, batch.shape[-2:], scales)
            for i, result in zip(members, found, strict=True):
                if self.model.verifier is not None:
                    result = self._verify(images[i], result)
                plausible = np.array([has_face_content(images[i], box) for box in result["boxes"]], dtype=bool)
                results[i] = {key: value[plausible] for key, value in result.items()}
        return results

    def _verify(self, image: np.ndarray, found: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The second stage on one image's first-stage boxes: the verifier's probability replaces the score, boxes
        under ``score_threshold`` go, the others' edges move by the predicted offsets, then NMS again (refined
        boxes of one face overlap more than before)."""
        if not len(found["boxes"]):
            return found
        crops, squares = crop_squares(image, found["boxes"])
        with torch.inference_mode():
            if self._verifier_runner is None:
                outputs = self.model.verifier(crops_to_tensor(crops).to(self.device))
                logits, offsets = (t.cpu().numpy() for t in outputs)
            else:
                logits, offsets = self._verifier_runner(crops_to_tensor(crops).numpy())
        scores = (1 / (1 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
        kept = np.flatnonzero(scores >= self.settings.score_threshold)
        boxes = refine_boxes(squares[kept], offsets[kept])
        order = nms(torch.from_numpy(boxes), torch.from_numpy(scores[kept]), self.settings.nms_iou,
                    self.settings.nms_containment).numpy()  # fmt: skip
        kept = kept[order]
        return {"boxes": boxes[order], "scores": scores[kept], "landmarks": found["landmarks"][kept]}

    def _postprocess(
        self, logits: Tensor, box_deltas: Tensor, landmark_deltas: Tensor, size: torch.Size, scales: np.ndarray
    ) -> list[dict[str, np.ndarray]]:
        settings = self.settings
        anchors = self._anchors_for(int(size[0]), int(size[1]))
        scores = torch.sigmoid(logits)
        threshold = settings.score_threshold if self.model.verifier is None else settings.proposal_threshold
        # the best min(pre_nms_top_k, most boxes above the threshold in one image) per image: usually a few
        count = int((scores > threshold).sum(dim=1).max()) if scores.numel() else 0
        top = scores.topk(min(settings.pre_nms_top_k, count), dim=1)
        image_idx, rank = torch.nonzero(top.values > threshold, as_tuple=True)
        anchor_idx = top.indices[image_idx, rank]
        kept_scores = top.values[image_idx, rank]
        variances = self.config.variances
        boxes = decode_boxes(box_deltas[image_idx, anchor_idx], anchors[anchor_idx], variances)
        points = decode_landmarks(landmark_deltas[image_idx, anchor_idx], anchors[anchor_idx], variances)
        keep = batched_nms(boxes, kept_scores, image_idx, settings.nms_iou, settings.nms_containment)
        # back to original pixels: x = (x_in + 0.5) / k - 0.5 per image and axis
        inv = torch.as_tensor(1.0 / scales, dtype=boxes.dtype, device=boxes.device)[image_idx[keep]]  # (K, 2)
        boxes = (boxes[keep].view(-1, 2, 2) + 0.5) * inv[:, None] - 0.5
        points = (points[keep] + 0.5) * inv[:, None] - 0.5
        image_idx, kept_scores = image_idx[keep].cpu().numpy(), kept_scores[keep]
        boxes, points, kept_scores = (t.float().cpu().numpy() for t in (boxes.reshape(-1, 4), points, kept_scores))
        results = []
        for i in range(len(scales)):
            mine = np.flatnonzero(image_idx == i)[: settings.max_detections]  # keep is in decreasing score order
            results.append({"boxes": boxes[mine], "scores": kept_scores[mine], "landmarks": points[mine]})
        return results

    def __repr__(self) -> str:
        return f"FaceDetector({self.settings}, device={self.device}, backend={self.backend})"


def save_detector(
    model: FaceDetectorNet,
    path: str | Path,
    inference: InferenceConfig | None = None,
    *,
    extra_metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model``'s weights to a ``.safetensors`` file with its config and default thresholds as metadata.

    Metadata (str -> str): ``format`` (:data:`DETECTOR_FORMAT`), ``model_config`` (JSON of
    :meth:`DetectorModelConfig.to_dict`), ``inference`` (JSON of :class:`InferenceConfig`), ``awing_version``, and
    any ``extra_metadata`` entries (e.g. provenance), which may not reuse those four keys.
    """
    from safetensors.torch import save_file

    if not isinstance(model, FaceDetectorNet):
        raise TypeError(f"save_detector expects a FaceDetectorNet, got {type(model).__name__}")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"detector weights are saved as .safetensors, got {path.name!r}")
    metadata = {
        "format": DETECTOR_FORMAT,
        "model_config": json.dumps(model.config.to_dict()),
        "inference": json.dumps(asdict(inference or InferenceConfig())),
        "awing_version": __version__,
    }
    if extra_metadata is not None and not isinstance(extra_metadata, Mapping):
        raise TypeError(f"extra_metadata must be a mapping of str to str, got {type(extra_metadata).__name__}")
    extra = dict(extra_metadata or {})
    bad = [f"{k!r}: {type(v).__name__}" for k, v in extra.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise TypeError(f"extra_metadata must map str to str (JSON-encode other values), got {', '.join(bad)}")
    clash = sorted(set(extra) & set(metadata))
    if clash:
        raise ValueError(f"extra_metadata may not set the reserved keys {clash} (reserved: {sorted(metadata)})")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={**extra, **metadata})
    return path


def load_detector(path: str | Path) -> tuple[FaceDetectorNet, InferenceConfig]:
    """Read a file of :func:`save_detector` -> (network in eval mode, stored inference settings)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"detector weights not found: {path}")
    metadata = read_metadata(path)
    if metadata.get("format") != DETECTOR_FORMAT or "model_config" not in metadata:
        raise ValueError(
            f"{path} is not an awing detector file (expected metadata format {DETECTOR_FORMAT!r} and a model_config; "
            f"got keys {sorted(metadata)}); write it with awing.detection.save_detector"
        )
    try:
        stored = json.loads(metadata["model_config"])
        config = DetectorModelConfig(**{**stored, "variances": tuple(stored["variances"])})
        settings = InferenceConfig(**json.loads(metadata.get("inference", "{}")))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: invalid detector metadata: {type(err).__name__}: {err}") from None
    if config.width_mult > MAX_WIDTH_MULT:
        raise ValueError(
            f"{path}: invalid detector metadata: width_mult={config.width_mult} (at most {MAX_WIDTH_MULT})"
        )
    tensors, _ = read_safetensors(path)
    check_fits(lambda: FaceDetectorNet(config), tensors, path)
    model = FaceDetectorNet(config)
    load_state_dict_strict(model, tensors)
    return model.eval(), settings
