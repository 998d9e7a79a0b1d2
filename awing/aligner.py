"""``FaceAligner``: images -> faces with landmarks in original-image pixels (architecture.md, Data flow).

Per image: face boxes from the detector (or the caller's boxes, or the whole image when there is no detector) ->
the box adapter (detector boxes only) -> one crop matrix per face (:func:`awing.geometry.box_to_crop_matrix`,
side ``crop_scale * max(w, h)``) -> ``cv2.warpAffine`` from the original image to the ``S x S`` input -> all faces
of a batch of images through the network together -> the last stack's landmark heatmaps (boundary channel
dropped) -> optional flip test -> :meth:`HeatmapCodec.decode` -> ``to_crop`` -> the inverse crop matrix -> landmarks
in original-image pixels (float32, never rounded). From the crops on, this is :func:`awing.inference.predict_crops`,
the routine evaluation uses too.

The crop is always warped from the original image, whatever its size (the detector alone works on a copy resized
to its ``input_max_side``), exactly as training crops are made (:func:`awing.data.augment.warp_face`).

**Inference settings** come from the landmark weights' metadata (:class:`~awing.inference.InferenceSettings`,
keys ``data`` and ``box_adapter``, written by the trainer and by
``save_weights(..., extra_metadata=settings.to_metadata())``); absent keys take the training defaults of
:class:`awing.config.DataConfig` (crop_scale 1.25, subpixel codec, sigma 1.5) and the identity adapter.

**Box adapter.** The model was trained on crops around boxes of one convention (e.g. the tight box of the
ground-truth points); a detector's boxes sit differently on the face. :class:`~awing.geometry.BoxAdapter` maps a
detector box to the training convention by a centre shift in fractions of the box's width and height and a scale of
its sides. It is applied to detector boxes only; boxes given by the caller are taken to be in the model's own
convention. A detector with its own ``box_adapter`` attribute (:class:`~awing.detection.haar.HaarFaceDetector`)
brings the adapter fitted for it, which replaces the one stored with the landmark weights (fitted for awing's
detector).

**Scores.** ``Face.box_score`` is the detector's score: awing's detector gives a face probability, OpenCV's Haar
cascade a level weight (unbounded, not a probability); ``None`` for caller boxes and whole-image faces.
``Face.scores`` holds each point's heatmap maximum (the raw peak value of the decoded channel; about 1 on a
confident point, near 0 on a lost one; not a probability).

**Flip test** (``flip_test=True``): each crop is also run mirrored (``x' = S - 1 - x``); the mirrored heatmaps are
flipped back and their channels permuted by the scheme's ``flip_index``
(:func:`awing.codecs.flip_heatmaps_back`), then averaged with the plain ones before decoding, as in ``awing eval``.

**No face** is an empty list. ``get_landmarks_from_image`` / ``get_landmarks_from_directory`` mirror the
face-alignment library's methods (and its ``None`` for no face) for users switching from it.

Bundled weights: ``from_pretrained()`` loads ``awing/assets/landmarks_68.safetensors`` with awing's own detector,
``awing/assets/detector.safetensors``, in front (``detector=OPENCV`` puts OpenCV's Haar cascade,
:mod:`awing.detection.haar`, there instead). Both are installed with the package; nothing is ever downloaded.
"""

from __future__ import annotations

import copy
import math
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from awing.data.io import DataError, read_image
from awing.detection.detector import FaceDetector
from awing.detection.haar import HaarFaceDetector
from awing.face_crops import align_face
from awing.geometry import BoxAdapter, _finite, box_problem, box_to_crop_matrix, warp_image
from awing.imread import as_rgb_image, list_images
from awing.inference import InferenceSettings, predict_crops, resolve_device
from awing.landmarks import get_scheme
from awing.models.hourglass import ModelConfig, StackedHourglass
from awing.models.weights import default_scheme, model_from_state_dict, read_metadata, read_weights
from awing.pose import HeadPose, face_pose
from awing.runtime import HeatmapRunner, resolve_backend, torch_threads

__all__ = [
    "ASSETS_DIR",
    "BUNDLED",
    "BUNDLED_DETECTOR",
    "BUNDLED_FAST_LANDMARKS",
    "BUNDLED_LANDMARKS",
    "LANDMARK_MODELS",
    "OPENCV",
    "Face",
    "FaceAligner",
    "ImagePrediction",
]

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
BUNDLED_LANDMARKS = ASSETS_DIR / "landmarks_68.safetensors"
"""The bundled ``accurate`` 68-point model (``cpu_small``: 2 stacks x 96 features), the default."""
BUNDLED_FAST_LANDMARKS = ASSETS_DIR / "landmarks_68_fast.safetensors"
"""The bundled ``fast`` 68-point model (``cpu_fast``: 1 stack x 64 features)."""
LANDMARK_MODELS = ("accurate", "fast")
"""Names of the bundled landmark models (``FaceAligner.from_pretrained(model=...)``, ``awing predict --model``)."""
BUNDLED_DETECTOR = ASSETS_DIR / "detector.safetensors"
BUNDLED = "bundled"
"""``detector=BUNDLED`` selects the detector installed with the package."""
OPENCV = "opencv"
"""``detector=OPENCV`` selects OpenCV's Haar cascade (:class:`~awing.detection.haar.HaarFaceDetector`)."""
MAX_FACES_PER_FORWARD = 64
"""Faces per network call: a batch's faces go through together, in chunks of at most this many (memory bound)."""

ImageInput = np.ndarray | str | Path


@dataclass(frozen=True, eq=False)
class Face:
    """One face of an image; coordinates in original-image pixels (``awing.geometry`` convention).

    Attributes:
        box: ``(4,)`` float32 ``(x0, y0, x1, y1)``: the detector's box (before the box adapter), the caller's box,
            or the whole image ``(-0.5, -0.5, W - 0.5, H - 0.5)``.
        box_score: the detector's score (see the module docstring); ``None`` when the box did not come from the
            detector.
        landmarks: ``(K, 2)`` float32 ``(x, y)``, never rounded.
        scores: ``(K,)`` float32 per-point heatmap maxima.
        scheme: landmark scheme name (``awing.landmarks.get_scheme``).
        pose: head pose (:class:`awing.pose.HeadPose`, yaw / pitch / roll in degrees) of a 68-point face, else
            ``None``.
        track_id: the face's track in a video (:class:`awing.tracking.FaceTracker`), ``None`` for a still image.
    """

    box: np.ndarray
    box_score: float | None
    landmarks: np.ndarray
    scores: np.ndarray
    scheme: str
    pose: HeadPose | None = None
    track_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; floats are the exact float32 values (``json`` writes them without loss); a non-finite
        value becomes ``None`` (JSON ``null``: strict JSON has no NaN).

        ``"pose"`` is ``{"yaw", "pitch", "roll"}`` in degrees or ``null``; ``"track_id"`` is present for tracked
        faces only."""
        score = self.box_score if self.box_score is None or math.isfinite(self.box_score) else None
        out = {
            "box": _json_numbers(self.box),
            "box_score": score,
            "landmarks": _json_numbers(self.landmarks),
            "scores": _json_numbers(self.scores),
            "scheme": self.scheme,
            "pose": None if self.pose is None else self.pose.to_dict(),
        }
        if self.track_id is not None:
            out["track_id"] = self.track_id
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Face:
        """Inverse of :meth:`to_dict` (float32 arrays; the pose is fitted again from the landmarks)."""
        score = data["box_score"]
        landmarks = np.asarray(data["landmarks"], dtype=np.float32).reshape(-1, 2)
        scheme = str(data["scheme"])
        track = data.get("track_id")
        return cls(
            box=np.asarray(data["box"], dtype=np.float32).reshape(4),
            box_score=None if score is None else float(score),
            landmarks=landmarks,
            scores=np.asarray(data["scores"], dtype=np.float32).reshape(-1),
            scheme=scheme,
            pose=face_pose(landmarks, scheme),
            track_id=None if track is None else int(track),
        )

    def aligned(self, image: np.ndarray, size: int = 112, template: str = "arcface") -> np.ndarray:
        """This face's aligned ``size x size`` crop of ``image`` (RGB array), a similarity transform of five
        points onto ``template`` (``"arcface"`` or ``"ffhq"``; :func:`awing.face_crops.align_face`)."""
        return align_face(image, self.landmarks, size, template)[0]


@dataclass(eq=False)
class ImagePrediction:
    """The outcome for one image file of :meth:`FaceAligner.predict_files`.

    Attributes:
        path: the file.
        faces: its faces (empty when none was found or on error).
        size: ``(width, height)`` of the upright image, ``None`` on error.
        error: why the file failed (unreadable, bad boxes), ``None`` on success.
        image: the RGB image when ``keep_images=True`` (else ``None``).
    """

    path: Path
    faces: list[Face]
    size: tuple[int, int] | None = None
    error: str | None = None
    image: np.ndarray | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """``{"image", "width", "height", "faces"}`` (``{"image", "error"}`` for a failed file)."""
        if self.error is not None:
            return {"image": str(self.path), "error": self.error}
        width, height = self.size
        return {"image": str(self.path), "width": width, "height": height, "faces": [f.to_dict() for f in self.faces]}


def _json_numbers(array: np.ndarray) -> list:
    """``array.tolist()`` with ``None`` for each NaN or infinite value."""
    values = np.asarray(array, dtype=np.float64)
    if np.isfinite(values).all():
        return np.asarray(array).tolist()
    return np.where(np.isfinite(values), values, None).tolist()


def _as_boxes(boxes: Any, name: str = "boxes", image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Caller boxes -> float64 ``(N, 4)``: ``(N, 4)`` or ``(N, 5)`` (a fifth column, a score, is ignored), each
    passing :func:`awing.geometry.box_problem` (inside the ``(width, height)`` image when given). Raises
    ``ValueError`` naming the bad box."""
    expected = f"{name} must have shape (N, 4) or (N, 5) (x0, y0, x1, y1[, score])"
    try:
        array = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):  # ragged: rows of 4 and of 5 numbers, or not numbers
        try:
            rows = [np.asarray(row, dtype=np.float64).reshape(-1) for row in boxes]
        except (TypeError, ValueError):
            raise ValueError(f"{expected}, got {boxes!r}") from None
        if any(len(row) not in (4, 5) for row in rows):
            raise ValueError(f"{expected}, got rows of {sorted({len(row) for row in rows})} numbers") from None
        array = np.stack([row[:4] for row in rows])
    if array.size == 0:
        return np.zeros((0, 4))
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] not in (4, 5):
        raise ValueError(f"{expected}, got {array.shape}")
    array = array[:, :4]
    for i, box in enumerate(array):
        problem = box_problem(box, image_size)
        if problem is not None:
            raise ValueError(f"{name}[{i}] {box.tolist()} is not a face box: {problem}")
    return array


def _size(image: np.ndarray) -> tuple[int, int]:
    """``(width, height)`` of an ``H x W x C`` image."""
    return image.shape[1], image.shape[0]


def _whole_image_box(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    return np.array([[-0.5, -0.5, width - 0.5, height - 0.5]])


class FaceAligner:
    """Face boxes and landmarks for images of any size (see the module docstring for the pipeline).

    Args:
        model: landmark network: ``model(B x 3 x S x S RGB in [0, 1])`` returns a list of per-stack
            ``B x (K [+ boundary]) x S/4 x S/4`` heatmaps, and ``model.config`` is its
            :class:`~awing.models.hourglass.ModelConfig`. It is copied, put in eval mode and moved to ``device``.
        detector: a :class:`~awing.detection.detector.FaceDetector` (kept as given, on its own device), a
            :class:`~awing.detection.haar.HaarFaceDetector` (or any object with their ``detect_batch``), or
            ``None``: without caller boxes the whole image is one face. Its ``box_adapter`` attribute, when it has
            one, replaces ``settings.box_adapter``.
        scheme: landmark scheme; default from the point count.
        settings: crop and decoding settings (default :class:`InferenceSettings`).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        batch_size: images per batch in :meth:`predict_files` (all their faces go through the network together).
        flip_test: average with the mirrored crop's heatmaps.
        backend: ``"auto"`` (onnxruntime for a :class:`~awing.models.StackedHourglass`, not a subclass, on the
            CPU when installed, else torch), ``"torch"`` or ``"onnxruntime"`` (:mod:`awing.runtime`: the network
            exported to one onnxruntime session at the first prediction).
        threads: CPU threads of the onnxruntime session (``None``: :func:`awing.runtime.default_threads`); with
            the torch backend, when given, ``torch.set_num_threads(threads)`` (process-wide).

    >>> from awing.models import StackedHourglass
    >>> model = StackedHourglass(num_stacks=1, num_landmarks=68, features=16, depth=1, input_size=32)
    >>> aligner = FaceAligner(model, detector=None, device="cpu")  # or FaceAligner.from_pretrained()
    >>> faces = aligner.predict(np.zeros((90, 120, 3), np.uint8))  # no detector: the whole image is the face
    >>> len(faces), faces[0].landmarks.shape, faces[0].box.tolist()
    (1, (68, 2), [-0.5, -0.5, 119.5, 89.5])
    """

    def __init__(
        self,
        model: nn.Module,
        detector: Any = None,
        *,
        scheme: str | int | None = None,
        settings: InferenceSettings | None = None,
        device: str | torch.device = "auto",
        batch_size: int = 8,
        flip_test: bool = False,
        backend: str = "auto",
        threads: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module) or not isinstance(getattr(model, "config", None), ModelConfig):
            raise TypeError(
                f"model must be an nn.Module with a ModelConfig in .config (e.g. a StackedHourglass), "
                f"got {type(model).__name__}"
            )
        if detector is not None and not callable(getattr(detector, "detect_batch", None)):
            raise TypeError(
                f"detector must be a FaceDetector, a HaarFaceDetector (an object with detect_batch) or None, "
                f"got {type(detector).__name__}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.config: ModelConfig = model.config
        name = default_scheme(self.config.num_landmarks) if scheme is None else scheme
        if name is None:
            raise ValueError(f"no landmark scheme has {self.config.num_landmarks} points; pass scheme=")
        self.scheme = get_scheme(name)
        if self.scheme.num_points != self.config.num_landmarks:
            raise ValueError(
                f"scheme {self.scheme.name} has {self.scheme.num_points} points but the model predicts "
                f"{self.config.num_landmarks}"
            )
        self.settings = InferenceSettings() if settings is None else settings
        if not isinstance(self.settings, InferenceSettings):
            raise TypeError(f"settings must be InferenceSettings, got {type(self.settings).__name__}")
        self.codec = self.settings.make_codec(self.config)
        self.device = resolve_device(device)
        self.model = copy.deepcopy(model).eval().to(self.device, memory_format=torch.channels_last)
        self.backend = resolve_backend(backend, self.device, exportable=type(model) is StackedHourglass)
        self._runner = HeatmapRunner(self.model, threads) if self.backend == "onnxruntime" else None
        if self._runner is None and threads is not None:
            torch.set_num_threads(threads)
        self.detector = detector
        self.batch_size = batch_size
        self.flip_test = bool(flip_test)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        device: str | torch.device = "auto",
        *,
        model: str | None = None,
        detector: Any = BUNDLED,
        det_threshold: float | None = None,
        backend: str = "auto",
        threads: int | None = None,
        **kwargs: Any,
    ) -> FaceAligner:
        """Load landmark weights (``.safetensors`` with awing metadata, or ``.pth``) and a detector.

        Args:
            path: landmark weights; ``None`` = a bundled model (``model``).
            device: see :class:`FaceAligner`; the detector runs there too.
            model: which bundled landmark model when ``path`` is None: ``"accurate"`` (the default,
                :data:`BUNDLED_LANDMARKS`) or ``"fast"`` (:data:`BUNDLED_FAST_LANDMARKS`); README, Results.
            detector: :data:`BUNDLED` (the default: awing's detector, ``awing/assets/detector.safetensors``),
                :data:`OPENCV` (a :class:`~awing.detection.haar.HaarFaceDetector` with its defaults), a detector
                weights file
                (:func:`awing.detection.save_detector`), a detector object, or ``None`` (no detector).
            det_threshold: face-score threshold of awing's detector (bundled or a weights file) in [0, 1]; default
                the one stored with its weights. Other detectors refuse it.
            backend, threads: of the landmark network and of awing's detector (see :class:`FaceAligner`).
            kwargs: ``scheme``, ``settings`` (default: from the weights' metadata), ``batch_size``, ``flip_test``.

        Raises ``FileNotFoundError`` naming a missing file (a bundled one included) and ``ValueError`` for a file
        that is not awing weights.
        """
        if model is not None and model not in LANDMARK_MODELS:
            raise ValueError(f"model must be one of {LANDMARK_MODELS}, got {model!r}")
        if path is None:
            bundled = BUNDLED_FAST_LANDMARKS if model == "fast" else BUNDLED_LANDMARKS
            path = _bundled(bundled, f"{model or 'accurate'} landmark model")
        elif model is not None:
            raise ValueError(f"model={model!r} selects a bundled model: pass a weights path or a model, not both")
        path = Path(path)
        state_dict, info = read_weights(path)
        if "settings" not in kwargs:
            kwargs["settings"] = InferenceSettings.from_metadata(read_metadata(path), info.config)
        kwargs.setdefault("scheme", info.scheme)
        device = resolve_device(device)
        awing_detector = isinstance(detector, (str, Path)) and detector != OPENCV
        if det_threshold is not None and not awing_detector:
            raise ValueError(f"det_threshold applies to awing's detector (BUNDLED or a weights file), not {detector!r}")
        if isinstance(detector, str) and detector == OPENCV:
            detector = HaarFaceDetector()
        elif isinstance(detector, (str, Path)):
            detector_path = _bundled(BUNDLED_DETECTOR, "detector") if detector == BUNDLED else Path(detector)
            overrides = {} if det_threshold is None else {"score_threshold": _finite(det_threshold, "det_threshold")}
            detector = FaceDetector.from_weights(
                detector_path, device=device, backend=backend, threads=threads, **overrides
            )
        model = model_from_state_dict(state_dict, info.config)
        return cls(model, detector, device=device, backend=backend, threads=threads, **kwargs)

    def __repr__(self) -> str:
        return (
            f"FaceAligner(scheme={self.scheme.name}, input_size={self.config.input_size}, {self.settings}, "
            f"detector={self.detector!r}, device={self.device}, backend={self.backend}, batch_size={self.batch_size}, "
            f"flip_test={self.flip_test})"
        )

    @property
    def box_adapter(self) -> BoxAdapter:
        """The adapter of detector boxes: the detector's own ``box_adapter`` when it has one, else the settings'."""
        own = getattr(self.detector, "box_adapter", None)
        return self.settings.box_adapter if own is None else own

    # -- prediction ---------------------------------------------------------------------------------------------

    def predict(self, image: ImageInput, boxes: Any = None) -> list[Face]:
        """Faces in one image.

        Args:
            image: RGB array (``H x W x 3``; grey, RGBA and uint16 are converted) or an image file path (read with
                :func:`awing.data.io.read_image`, EXIF orientation applied).
            boxes: optional ``(N, 4)`` (or ``(N, 5)``, a score column ignored) xyxy face boxes in image pixels,
                in the model's box convention; they replace detection (the box adapter is not applied).

        Returns:
            The faces, by decreasing detector score (caller boxes keep their order); ``[]`` when there is none.
        """
        return self.predict_batch([image], None if boxes is None else [boxes])[0]

    def predict_batch(self, images: Sequence[ImageInput], boxes: Sequence[Any] | None = None) -> list[list[Face]]:
        """:meth:`predict` for several images: one detector call, then all faces through the network together.

        ``boxes``, when given, has one entry per image: ``None`` (detect) or that image's boxes.
        """
        if isinstance(images, (np.ndarray, str, Path)):
            raise TypeError("predict_batch expects a list of images; use predict() for a single image")
        images = [self._read(image, i) for i, image in enumerate(images)]
        if boxes is not None and len(boxes) != len(images):
            raise ValueError(f"boxes must have one entry per image: {len(images)} images, {len(boxes)} entries")
        boxes = [
            None if b is None else _as_boxes(b, f"boxes[{i}]", _size(images[i]))
            for i, b in enumerate(boxes or [None] * len(images))
        ]
        return self._predict_arrays(images, boxes)

    @staticmethod
    def _read(image: ImageInput, index: int) -> np.ndarray:
        if isinstance(image, (str, Path)):
            return read_image(image)
        return as_rgb_image(image, f"images[{index}]")

    def _boxes(self, images: list[np.ndarray], boxes: list[np.ndarray | None]) -> list[tuple[np.ndarray, Any]]:
        """Per image: ``(boxes (N, 4) float64, box scores (N,) float32 or None)``; detection runs in one call."""
        todo = [i for i, b in enumerate(boxes) if b is None and self.detector is not None]
        detected = dict(zip(todo, self.detector.detect_batch([images[i] for i in todo]) if todo else [], strict=True))
        out = []
        for i, (image, given) in enumerate(zip(images, boxes, strict=True)):
            if given is not None:
                out.append((given, None))
            elif i in detected:
                found = detected[i]["boxes"].astype(np.float64)
                good = [box_problem(box, _size(image)) is None for box in found]
                good = np.asarray(good, dtype=bool).reshape(-1)
                out.append((found[good], detected[i]["scores"][good]))
            else:
                out.append((_whole_image_box(image), None))
        return out

    def _predict_arrays(self, images: list[np.ndarray], boxes: list[np.ndarray | None]) -> list[list[Face]]:
        with torch_threads(1 if self._runner is not None else None):  # onnxruntime: torch glue on one thread
            return self._faces(images, boxes)

    def _faces(self, images: list[np.ndarray], boxes: list[np.ndarray | None]) -> list[list[Face]]:
        found = self._boxes(images, boxes)
        size = self.config.input_size
        adapter = self.box_adapter
        crops, matrices = [], []
        for image, (face_boxes, scores) in zip(images, found, strict=True):
            crop_boxes = face_boxes if scores is None else adapter(face_boxes)
            for box in crop_boxes:
                matrices.append(box_to_crop_matrix(box, size, self.settings.crop_scale))
                crops.append(warp_image(image, matrices[-1], size))
        landmarks, point_scores = self._landmarks(crops, matrices)
        results: list[list[Face]] = []
        first = 0  # index of the image's first face among all crops
        for face_boxes, scores in found:
            results.append(
                [
                    Face(
                        box=box.astype(np.float32),
                        box_score=None if scores is None else float(scores[j]),
                        landmarks=landmarks[first + j],
                        scores=point_scores[first + j],
                        scheme=self.scheme.name,
                        pose=face_pose(landmarks[first + j], self.scheme.name),
                    )
                    for j, box in enumerate(face_boxes)
                ]
            )
            first += len(face_boxes)
        return results

    def _landmarks(self, crops: list[np.ndarray], matrices: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Crops ``S x S x 3`` uint8 -> landmarks ``(N, K, 2)`` in image pixels and point scores ``(N, K)``
        (:func:`awing.inference.predict_crops`, at most :data:`MAX_FACES_PER_FORWARD` faces per network call)."""
        num = self.scheme.num_points
        if not crops:
            return np.zeros((0, num, 2), np.float32), np.zeros((0, num), np.float32)
        landmarks, scores = [], []
        for start in range(0, len(crops), MAX_FACES_PER_FORWARD):
            chunk = slice(start, start + MAX_FACES_PER_FORWARD)
            points, peaks = predict_crops(
                self._network,
                torch.from_numpy(np.stack(crops[chunk])),
                matrices[chunk],
                self.codec,
                self.scheme,
                device=self.device,
                flip=self.flip_test,
                memory_format=torch.channels_last,  # NHWC crops into the channels-last model copy
            )
            landmarks.append(points)
            scores.append(peaks)
        return np.concatenate(landmarks), np.concatenate(scores)

    def _network(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``B x 3 x S x S`` RGB in [0, 1] -> per-stack heatmaps, as the model returns them; through onnxruntime
        only the last stack's ``B x K x S/4 x S/4`` landmark heatmaps (all that :func:`predict_crops` reads)."""
        if self._runner is not None:
            return [torch.from_numpy(self._runner(np.ascontiguousarray(x.numpy())))]
        return self.model(x)

    # -- files and folders --------------------------------------------------------------------------------------

    def predict_files(
        self,
        paths: Iterable[str | Path],
        boxes: Sequence[Any] | None = None,
        *,
        keep_images: bool = False,
        progress: bool | None = False,
    ) -> Iterator[ImagePrediction]:
        """Predict image files ``batch_size`` at a time; one :class:`ImagePrediction` per path, in order.

        A file that cannot be read, or whose ``boxes`` entry is invalid, gives an ``ImagePrediction`` with
        ``error`` set; the other files of its batch are processed. ``boxes``: one entry per path (``None`` =
        detect). ``progress``: a tqdm bar on stderr (``None``: only on a terminal).
        """
        from tqdm import tqdm

        paths = [Path(p) for p in paths]
        if boxes is not None and len(boxes) != len(paths):
            raise ValueError(f"boxes must have one entry per path: {len(paths)} paths, {len(boxes)} entries")

        def load(chunk: range) -> list[tuple[ImagePrediction, Any, Any]]:
            return [self._load(paths[i], None if boxes is None else boxes[i]) for i in chunk]

        chunks = [range(s, min(s + self.batch_size, len(paths))) for s in range(0, len(paths), self.batch_size)]
        bar = tqdm(total=len(paths), desc="predict", unit="img", file=sys.stderr, disable=_disable(progress))
        # The next batch is read and decoded on a second thread while the networks run on this one (OpenCV's
        # decoders and onnxruntime release the GIL): decoding is about a fifth of a photo's time.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="awing-read") as reader:
            pending = reader.submit(load, chunks[0]) if chunks else None
            try:
                for k in range(len(chunks)):
                    results = pending.result()
                    pending = reader.submit(load, chunks[k + 1]) if k + 1 < len(chunks) else None
                    self._predict_loaded([r for r in results if r[0].ok], keep_images)
                    for result, _, _ in results:
                        bar.update(1)
                        yield result
            finally:
                if pending is not None:
                    pending.cancel()
                bar.close()

    def _predict_loaded(self, loaded: list[tuple[ImagePrediction, Any, Any]], keep_images: bool) -> None:
        """Fill in the faces of loaded images; when the batch fails, each image alone, so that one image's failure
        (named in its ``error``) costs the others nothing."""
        try:
            faces = self._predict_arrays([r[1] for r in loaded], [r[2] for r in loaded]) if loaded else []
        except (ValueError, cv2.error) as err:
            if len(loaded) == 1:
                loaded[0][0].error = f"{loaded[0][0].path}: {err}"
                return
            for one in loaded:
                self._predict_loaded([one], keep_images)
            return
        for (result, image, _), found in zip(loaded, faces, strict=True):
            result.faces = found
            result.image = image if keep_images else None

    @staticmethod
    def _load(path: Path, boxes: Any) -> tuple[ImagePrediction, np.ndarray | None, np.ndarray | None]:
        try:
            image = read_image(path)
        except DataError as err:
            return ImagePrediction(path, [], error=str(err)), None, None
        try:
            given = None if boxes is None else _as_boxes(boxes, image_size=_size(image))
        except ValueError as err:
            return ImagePrediction(path, [], error=f"{path}: {err}"), None, None
        return ImagePrediction(path, [], size=(image.shape[1], image.shape[0])), image, given

    def iter_directory(
        self, directory: str | Path, recursive: bool = False, progress: bool | None = None
    ) -> Iterator[ImagePrediction]:
        """:meth:`predict_files` over the images of ``directory`` (:func:`awing.imread.list_images`, sorted);
        an empty folder yields nothing. Raises ``NotADirectoryError`` when it is not a folder."""
        return self.predict_files(list_images(directory, recursive), progress=progress)

    # -- face-alignment compatible names ------------------------------------------------------------------------

    def get_landmarks_from_image(
        self,
        image_or_path: ImageInput,
        detected_faces: Any = None,
        return_bboxes: bool = False,
        return_landmark_score: bool = False,
    ) -> Any:
        """face-alignment's method of the same name: a list of ``(K, 2)`` float32 arrays, one per face.

        As in face-alignment: ``detected_faces`` are boxes ``(x0, y0, x1, y1[, score])`` that replace detection;
        with no face it warns "No faces were detected." and returns ``None`` (or ``(None, None, None)`` with a
        ``return_*`` flag); with a flag it returns ``(landmarks, landmark_scores, boxes)``, ``boxes`` as
        ``(5,)`` arrays ``(x0, y0, x1, y1, score)`` (score 1.0 for boxes without one). Unlike face-alignment, an
        unreadable path raises :class:`~awing.data.io.DataError` instead of printing.
        """
        boxes = None if detected_faces is None else _as_boxes(detected_faces, "detected_faces")
        faces = self.predict(image_or_path, boxes)
        if not faces:
            warnings.warn("No faces were detected.", stacklevel=2)
        given = None  # the caller's boxes with their optional score column
        if boxes is not None and len(boxes):
            given = np.asarray(detected_faces, dtype=np.float64).reshape(len(boxes), -1)
        return _face_alignment_result(faces, return_bboxes or return_landmark_score, given)

    def get_landmarks_from_directory(
        self,
        path: str | Path,
        extensions: Sequence[str] = (".jpg", ".png"),
        recursive: bool = True,
        show_progress_bar: bool = True,
        return_bboxes: bool = False,
        return_landmark_score: bool = False,
    ) -> dict[str, Any]:
        """face-alignment's method of the same name: ``{image path (str): get_landmarks_from_image result}``.

        Same defaults as face-alignment (``.jpg`` and ``.png``, recursive, a progress bar). A folder's images go
        through :meth:`predict_files` in batches. An image with no face, or one that cannot be read (a warning
        names it), maps to ``None`` (``(None, None, None)`` with a ``return_*`` flag).
        """
        files = list_images(path, recursive, extensions)
        want_tuple = return_bboxes or return_landmark_score
        out: dict[str, Any] = {}
        for result in self.predict_files(files, progress=None if show_progress_bar else False):
            if result.error is not None:
                warnings.warn(f"skipped {result.error}", stacklevel=2)
            out[str(result.path)] = _face_alignment_result(result.faces, want_tuple)
        return out


def _face_alignment_result(faces: list[Face], want_tuple: bool, given: np.ndarray | None = None) -> Any:
    """face-alignment's return value: ``landmarks`` or ``(landmarks, scores, boxes)``; ``None`` for no face.

    A box is ``(x0, y0, x1, y1, score)`` float32: the detector's score, else the caller's fifth column, else 1.
    """
    if not faces:
        return (None, None, None) if want_tuple else None
    landmarks = [f.landmarks for f in faces]
    if not want_tuple:
        return landmarks
    bboxes = []
    for i, face in enumerate(faces):
        score = face.box_score
        if score is None:
            score = given[i, 4] if given is not None and given.shape[1] == 5 else 1.0
        bboxes.append(np.array([*face.box, score], dtype=np.float32))
    return landmarks, [f.scores for f in faces], bboxes


def _disable(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: ``None`` lets tqdm decide (off when stderr is not a terminal)."""
    return None if progress is None else not progress


def _bundled(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"bundled {what} not found: {path} is missing from this installation of awing; pass the weights file "
            "explicitly (e.g. --weights / --detector-weights on the command line)"
        )
    return path
