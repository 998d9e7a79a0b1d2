"""Detector evaluation: AP at IoU 0.5 (all-point interpolation), recall at the operating threshold, WIDER FACE.

**Matching** (:func:`match_detections`, per image, the PASCAL VOC rule that WIDER FACE's evaluation also uses):
detections are visited in decreasing score order; each takes the ground-truth box it overlaps most (IoU over all
boxes of the image, ignore regions included; ties: the lower index). When that IoU is ``>= iou_threshold``:

- the box is an ignore region (VOC ``difficult``, WIDER ``invalid`` or outside the WIDER subset) -> the detection is
  **ignored** (neither true nor false positive);
- the face is not matched yet -> **true positive**, and the face is now matched;
- the face is already matched -> **false positive** (a duplicate).

Below the threshold the detection is a false positive. Optionally (``require_centre``) a pair counts only when the
detection box contains the centre of the ground-truth box (its IoU is taken as 0 otherwise); the AFLW2000-3D
recall check of ``scripts/eval_detector_refs.py`` uses it with tight landmark boxes.

**Precision-recall and AP** (:func:`precision_recall`, :func:`average_precision`): all detections of all images
(ignored ones removed) sorted by decreasing score (stable); after the first ``n``: ``precision = TP(n) / n``,
``recall = TP(n) / F`` with ``F`` the number of faces that are not ignore regions. AP is the area under the
precision envelope (all-point interpolation, PASCAL VOC 2010 onwards)::

    r = [0, r_1 ... r_N, 1],  p = [0, p_1 ... p_N, 0],  p_i <- max_{j >= i} p_j,
    AP = sum_i (r_{i+1} - r_i) * p_{i+1}   over the i where recall changes.

**Recall at the operating threshold** (:func:`evaluate_detections`): ``TP / F`` counting only the detections with
score ``>= score_threshold`` (the detector's ``inference.score_threshold``); with greedy matching in score order the
matches of these detections are those of the full matching, so it is read off the same curve. Precision likewise.

**WIDER FACE** (:func:`wider_face_evaluation`): the official protocol (the MATLAB ``eval_tools`` and its Python port
wondervictor/WiderFace-Evaluation, methods.md §10.2), re-implemented: ground truth and the easy / medium / hard face
lists from ``wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat`` (:func:`read_wider_ground_truth`); faces
outside a subset become ignore regions; IoU with the inclusive-pixel convention (``w + 1``, ``h + 1``: the
official one, so our boxes get ``+1`` on ``x1, y1`` for the IoU); scores min-max normalised over all detections of
the split; precision and recall read at the 1000 thresholds ``1 - (t + 1) / 1000``; images without ground-truth
boxes skipped (their detections count nowhere, as in the official code); AP by the all-point formula above.
Without the ``.mat`` files, :func:`simplified_wider_subsets` builds **approximate** subsets from the annotation
text file alone: easy / medium / hard = the valid faces at least 50 / 25 / 10 pixels tall (10 and 50 are the
scale-group bounds of the WIDER FACE paper, 25 is awing's choice [U]). The official subsets come from EdgeBox
detection rates, not from size alone, so the simplified APs are **not comparable** with published numbers; reports
say which protocol ran (``"protocol": "official" | "simplified"``).

Differences from the VOC toolkit: IoU ``>= 0.5`` (VOC uses ``> 0.5``) and continuous box sizes (VOC adds 1 pixel;
WIDER evaluation here does, as its official code).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from awing.config import ConfigError
from awing.data.io import DataError
from awing.detection.anchors import box_iou
from awing.detection.augment import DetectionAugment
from awing.detection.config import DetectorConfig, InferenceConfig
from awing.detection.data import DetectionDataset, build_detection_dataset
from awing.detection.detector import FaceDetector, load_detector
from awing.detection.network import FaceDetectorNet
from awing.engine.loggers import strict_json
from awing.inference import resolve_device

__all__ = [
    "AP_SCORE_THRESHOLD",
    "SIMPLIFIED_WIDER_MIN_HEIGHT",
    "WIDER_SUBSETS",
    "DetectionMetrics",
    "WiderImage",
    "average_precision",
    "best_f1_threshold",
    "build_eval_detector",
    "detect_dataset",
    "evaluate_detections",
    "evaluate_detector",
    "find_wider_ground_truth",
    "match_detections",
    "open_detection_split",
    "precision_recall",
    "read_wider_ground_truth",
    "run_detector_evaluation",
    "simplified_wider_subsets",
    "wider_face_evaluation",
    "wider_key",
]

AP_SCORE_THRESHOLD = 0.02
"""Score threshold of the detections that enter AP (libfacedetection's WIDER setting, methods.md §10.2)."""
WIDER_SUBSETS = ("easy", "medium", "hard")
SIMPLIFIED_WIDER_MIN_HEIGHT = {"easy": 50.0, "medium": 25.0, "hard": 10.0}
"""Minimum face height in image pixels of each approximate WIDER subset (module docstring)."""
WIDER_THRESHOLDS = 1000
TRUE_POSITIVE, FALSE_POSITIVE, IGNORED = 1, 0, -1


def _boxes(value: Any, name: str) -> np.ndarray:
    boxes = np.asarray(value, dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must be (N, 4) xyxy boxes, got shape {boxes.shape}")
    return boxes


def _iou(det: np.ndarray, gt: np.ndarray, require_centre: bool) -> np.ndarray:
    """``(D, G)`` IoU (float64); 0 where ``require_centre`` and the detection does not contain the GT centre."""
    iou = box_iou(torch.from_numpy(det), torch.from_numpy(gt)).numpy()
    if require_centre:
        centre = (gt[:, :2] + gt[:, 2:]) / 2  # (G, 2)
        inside = (det[:, None, :2] <= centre[None]) & (centre[None] <= det[:, None, 2:])
        iou = np.where(inside.all(axis=-1), iou, 0.0)
    return iou


def match_detections(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: np.ndarray,
    gt_ignore: np.ndarray | None = None,
    iou_threshold: float = 0.5,
    require_centre: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of one image's detections to its ground truth (rule in the module docstring).

    Args:
        det_boxes: ``(D, 4)`` xyxy.
        det_scores: ``(D,)``.
        gt_boxes: ``(G, 4)`` xyxy.
        gt_ignore: ``(G,)`` bool, True for ignore regions (default: none).
        iou_threshold: minimum IoU of a match.
        require_centre: a pair counts only when the detection contains the ground-truth box's centre.

    Returns:
        ``outcome`` ``(D,)`` int8 in the detections' order: 1 true positive, 0 false positive, -1 ignored; and
        ``matched`` ``(G,)`` bool: faces found by a true positive.

    >>> gt = np.array([[0.0, 0, 10, 10]])
    >>> match_detections(np.array([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]]), np.array([0.9, 0.8, 0.7]), gt)
    (array([1, 0, 0], dtype=int8), array([ True]))
    """
    det = _boxes(det_boxes, "det_boxes")
    gt = _boxes(gt_boxes, "gt_boxes")
    scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    if scores.shape[0] != det.shape[0]:
        raise ValueError(f"det_scores must have one score per box ({det.shape[0]}), got shape {scores.shape}")
    ignore = np.zeros(len(gt), bool) if gt_ignore is None else np.asarray(gt_ignore, dtype=bool).reshape(-1)
    if ignore.shape[0] != gt.shape[0]:
        raise ValueError(f"gt_ignore must have one flag per box ({gt.shape[0]}), got shape {ignore.shape}")
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    outcome = np.full(len(det), FALSE_POSITIVE, np.int8)
    matched = np.zeros(len(gt), bool)
    if len(det) == 0 or len(gt) == 0:
        return outcome, matched
    iou = _iou(det, gt, require_centre)
    best = iou.argmax(axis=1)  # first maximum: ties go to the lower index
    hit = iou[np.arange(len(det)), best] >= iou_threshold
    for d in np.argsort(-scores, kind="stable"):
        if not hit[d]:
            continue
        g = best[d]
        if ignore[g]:
            outcome[d] = IGNORED
        elif not matched[g]:
            outcome[d] = TRUE_POSITIVE
            matched[g] = True
    return outcome, matched


def precision_recall(
    scores: np.ndarray, outcomes: np.ndarray, num_faces: int, thresholds: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall over the detections of all images ranked by decreasing score.

    Args:
        scores: ``(D,)`` scores of all detections.
        outcomes: ``(D,)`` 1 / 0 / -1 of :func:`match_detections` (ignored detections are dropped).
        num_faces: faces that count (``F``, ignore regions excluded).
        thresholds: None: one point per detection (in rank order); else ``(T,)`` score thresholds in decreasing
            order: one point per threshold that at least one detection reaches (score ``>=`` threshold).

    Returns:
        ``precision``, ``recall`` and the score of each point (the last detection's, or the threshold).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    outcomes = np.asarray(outcomes).reshape(-1)
    if scores.shape != outcomes.shape:
        raise ValueError(f"scores {scores.shape} and outcomes {outcomes.shape} must have the same shape")
    if num_faces < 0:
        raise ValueError(f"num_faces must be >= 0, got {num_faces}")
    kept = outcomes != IGNORED
    scores, outcomes = scores[kept], outcomes[kept]
    order = np.argsort(-scores, kind="stable")
    scores, tp = scores[order], np.cumsum(outcomes[order] == TRUE_POSITIVE)
    count = np.arange(1, len(scores) + 1)
    if thresholds is not None:
        thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        reached = np.searchsorted(-scores, -thresholds, side="right")  # detections with score >= threshold
        valid = reached > 0
        tp, count, scores = tp[reached[valid] - 1], reached[valid], thresholds[valid]
    recall = tp / num_faces if num_faces > 0 else np.full(len(tp), np.nan)
    return tp / np.maximum(count, 1), recall, scores


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP: area under the precision envelope (formula in the module docstring).

    ``recall`` must be non-decreasing (a ranked curve). NaN when ``recall`` holds NaN (no faces).

    >>> average_precision(np.array([1 / 3, 1 / 3, 2 / 3, 2 / 3]), np.array([1.0, 0.5, 2 / 3, 0.5]))  # 5/9
    0.5555555555555556
    """
    recall = np.asarray(recall, dtype=np.float64).reshape(-1)
    precision = np.asarray(precision, dtype=np.float64).reshape(-1)
    if recall.shape != precision.shape:
        raise ValueError(f"recall {recall.shape} and precision {precision.shape} must have the same shape")
    if np.isnan(recall).any():
        return float("nan")
    if (np.diff(recall) < 0).any():
        raise ValueError("recall must be non-decreasing (points of a ranked precision-recall curve)")
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


@dataclass
class DetectionMetrics:
    """Result of :func:`evaluate_detections`.

    Attributes:
        ap: all-point AP at ``iou_threshold`` (NaN without faces).
        recall, precision: at ``score_threshold`` (every detection when it is None); NaN precision without detections.
        num_faces: faces that count; num_images: images; num_detections: detections that are not ignored.
        precision_curve, recall_curve, score_curve: the ranked curve (one point per detection).
    """

    ap: float
    recall: float
    precision: float
    num_faces: int
    num_images: int
    num_detections: int
    iou_threshold: float
    score_threshold: float | None
    precision_curve: np.ndarray = field(repr=False)
    recall_curve: np.ndarray = field(repr=False)
    score_curve: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The scalars, strict-JSON-safe: an undefined (NaN) AP, recall or precision becomes None."""
        return {
            "ap": _finite_or_none(self.ap),
            "recall": _finite_or_none(self.recall),
            "precision": _finite_or_none(self.precision),
            "num_faces": self.num_faces,
            "num_images": self.num_images,
            "num_detections": self.num_detections,
            "iou_threshold": self.iou_threshold,
            "score_threshold": self.score_threshold,
        }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _check_detection(det: Mapping[str, Any], i: int | str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(det, Mapping) or "boxes" not in det or "scores" not in det:
        raise TypeError(f"detections[{i!r}] must be a mapping with 'boxes' and 'scores', got {type(det).__name__}")
    return _boxes(det["boxes"], f"detections[{i!r}]['boxes']"), np.asarray(det["scores"], np.float64).reshape(-1)


def evaluate_detections(
    detections: Sequence[Mapping[str, Any]],
    ground_truth: Sequence[tuple[np.ndarray, np.ndarray | None]],
    iou_threshold: float = 0.5,
    score_threshold: float | None = 0.5,
    require_centre: bool = False,
) -> DetectionMetrics:
    """AP, recall and precision of a detector over images (module docstring).

    Args:
        detections: per image ``{"boxes": (D, 4) xyxy, "scores": (D,)}`` (e.g. :meth:`FaceDetector.detect`).
        ground_truth: per image ``(boxes (G, 4) xyxy, ignore (G,) bool or None)``.
        iou_threshold: minimum IoU of a match (0.5).
        score_threshold: operating threshold of ``recall`` and ``precision`` (None: every detection).
        require_centre: see :func:`match_detections`.
    """
    if len(detections) != len(ground_truth):
        raise ValueError(
            f"detections and ground_truth need one entry per image, got {len(detections)} and {len(ground_truth)}"
        )
    all_scores, all_outcomes, num_faces = [], [], 0
    for i, (det, (gt_boxes, gt_ignore)) in enumerate(zip(detections, ground_truth, strict=True)):
        boxes, scores = _check_detection(det, i)
        outcome, _ = match_detections(boxes, scores, gt_boxes, gt_ignore, iou_threshold, require_centre)
        gt = _boxes(gt_boxes, f"ground_truth[{i}] boxes")
        num_faces += len(gt) - (0 if gt_ignore is None else int(np.asarray(gt_ignore, bool).sum()))
        all_scores.append(scores)
        all_outcomes.append(outcome)
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    outcomes = np.concatenate(all_outcomes) if all_outcomes else np.zeros(0, np.int8)
    precision, recall, ranked = precision_recall(scores, outcomes, num_faces)
    if score_threshold is None:
        at = len(ranked)
    else:
        at = int(np.searchsorted(-ranked, -score_threshold, side="right"))  # ranked scores >= threshold
    return DetectionMetrics(
        ap=average_precision(recall, precision),
        recall=float(recall[at - 1]) if at else (0.0 if num_faces else float("nan")),
        precision=float(precision[at - 1]) if at else float("nan"),
        num_faces=num_faces,
        num_images=len(detections),
        num_detections=len(ranked),
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        precision_curve=precision,
        recall_curve=recall,
        score_curve=ranked,
    )


def best_f1_threshold(metrics: DetectionMetrics) -> tuple[float, float]:
    """The operating point of a validation run: the score of the ranked curve's point with the highest F1 (ties:
    the higher score) and that F1 -> ``(threshold, f1)``; ``(nan, nan)`` without detections. Choose it on
    validation data only: a threshold picked on the test images flatters them."""
    precision, recall, scores = metrics.precision_curve, metrics.recall_curve, metrics.score_curve
    if len(scores) == 0:
        return float("nan"), float("nan")
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    best = int(np.argmax(f1))  # the first maximum in decreasing score order: the highest threshold
    return float(scores[best]), float(f1[best])


def detect_dataset(
    detector: Any, dataset: Any, batch_size: int = 8, progress: bool | None = None
) -> list[dict[str, np.ndarray]]:
    """Run ``detector`` (:class:`~awing.detection.detector.FaceDetector`) on every image of ``dataset``
    (``ds[i].image`` RGB uint8, e.g. a :class:`~awing.detection.data.DetectionDataset` without transform) in
    batches; one ``{"boxes", "scores", "landmarks"}`` dict per image in the dataset's order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    results: list[dict[str, np.ndarray]] = []
    with tqdm(total=len(dataset), desc="detect", leave=False, file=sys.stderr, disable=_disabled(progress)) as bar:
        for start in range(0, len(dataset), batch_size):
            images = [dataset[i].image for i in range(start, min(start + batch_size, len(dataset)))]
            results.extend(detector.detect_batch(images))
            bar.update(len(images))
    return results


def _disabled(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: None switches the bar off when stderr is not a terminal."""
    return None if progress is None else not progress


def build_eval_detector(
    model: FaceDetectorNet, inference: InferenceConfig, device: str | torch.device = "cpu"
) -> FaceDetector:
    """A :class:`FaceDetector` of ``model`` with ``inference``'s settings, but keeping detections down to
    :data:`AP_SCORE_THRESHOLD` (or the operating threshold when lower) so that the AP sees the whole curve."""
    return FaceDetector(
        model,
        input_max_side=inference.input_max_side,
        score_threshold=min(AP_SCORE_THRESHOLD, inference.score_threshold),
        proposal_threshold=inference.proposal_threshold,
        nms_iou=inference.nms_iou,
        device=device,
        pre_nms_top_k=inference.pre_nms_top_k,
        max_detections=inference.max_detections,
        nms_containment=inference.nms_containment,
    )


def _ground_truth(dataset: DetectionDataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(r.boxes, r.ignore) for r in dataset.records]


def evaluate_detector(
    model: FaceDetectorNet,
    dataset: DetectionDataset,
    inference: InferenceConfig,
    *,
    device: str | torch.device = "cpu",
    iou_threshold: float = 0.5,
    progress: bool | None = None,
) -> DetectionMetrics:
    """AP at ``iou_threshold`` and recall / precision at ``inference.score_threshold`` of ``model`` on the original
    images of ``dataset`` (:func:`build_eval_detector`, :func:`detect_dataset`, :func:`evaluate_detections`)."""
    detections = detect_dataset(build_eval_detector(model, inference, device), dataset, progress=progress)
    return evaluate_detections(detections, _ground_truth(dataset), iou_threshold, inference.score_threshold)


def open_detection_split(cfg: DetectorConfig, split: str, train: bool = False) -> DetectionDataset:
    """Split ``split`` of ``cfg.data`` (a relative root is relative to the CWD): augmented ``S x S`` training
    images when ``train``, else the original images."""
    transform = DetectionAugment(cfg.data.input_size, cfg.data.augment, train=True) if train else None
    try:
        return build_detection_dataset(
            cfg.data.name, cfg.data.root, split, transform, seed=cfg.run.seed, max_samples=cfg.data.max_samples
        )
    except ValueError as err:
        if str(err).startswith(("unknown split", "unknown detection data set")):
            raise ConfigError(f"data: {err}") from None
        raise


# --- WIDER FACE ----------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class WiderImage:
    """One WIDER FACE validation image: ``boxes`` ``(G, 4)`` xyxy and ``keep[subset]`` ``(G,)`` bool."""

    boxes: np.ndarray
    keep: dict[str, np.ndarray]


def wider_key(image_path: str | os.PathLike) -> str:
    """``"<event folder>/<file stem>"``, e.g. ``"0--Parade/0_Parade_marchingband_1_465"``."""
    path = Path(image_path)
    return f"{path.parent.name}/{path.stem}"


def _cell_items(value: Any) -> list[Any]:
    """The entries of a MATLAB cell array as read by ``scipy.io.loadmat`` (an object array of any shape)."""
    return list(np.asarray(value, dtype=object).reshape(-1))


def _cell_string(value: Any) -> str:
    return str(np.asarray(value).reshape(-1)[0])


def find_wider_ground_truth(root: str | os.PathLike, gt_dir: str | os.PathLike | None = None) -> Path | None:
    """The folder holding ``wider_face_val.mat`` and the three subset files: ``gt_dir`` if given (it must hold
    them), else the first of ``root/eval_tools/ground_truth``, ``root/ground_truth``, ``root/wider_face_split``,
    ``root`` that does; None when none does (the simplified protocol then applies)."""
    names = ["wider_face_val.mat"] + [f"wider_{s}_val.mat" for s in WIDER_SUBSETS]
    if gt_dir is not None:
        missing = [n for n in names if not (Path(gt_dir) / n).is_file()]
        if missing:
            raise FileNotFoundError(
                f"WIDER FACE ground-truth folder {gt_dir} lacks {', '.join(missing)}; see datasets/wider-face/README.md"
            )
        return Path(gt_dir)
    root = Path(root)
    for folder in (root / "eval_tools" / "ground_truth", root / "ground_truth", root / "wider_face_split", root):
        if all((folder / n).is_file() for n in names):
            return folder
    return None


def read_wider_ground_truth(gt_dir: str | os.PathLike) -> dict[str, WiderImage]:
    """The official validation ground truth: ``wider_face_val.mat`` (``event_list``, ``file_list``,
    ``face_bbx_list`` of ``x y w h``) and ``wider_{easy,medium,hard}_val.mat`` (``gt_list``: 1-based indices of the
    faces in each subset) -> ``{wider_key: WiderImage}``. Needs scipy."""
    from scipy.io import loadmat

    gt_dir = Path(gt_dir)

    def load(name: str, keys: tuple[str, ...]) -> dict[str, Any]:
        path = gt_dir / name
        if not path.is_file():
            raise DataError("file not found; see datasets/wider-face/README.md", path)
        data = loadmat(str(path))
        missing = [k for k in keys if k not in data]
        if missing:
            raise DataError(f"lacks the variable(s) {missing} of the official WIDER FACE evaluation files", path)
        return data

    main = load("wider_face_val.mat", ("event_list", "file_list", "face_bbx_list"))
    subsets = {s: _cell_items(load(f"wider_{s}_val.mat", ("gt_list",))["gt_list"]) for s in WIDER_SUBSETS}
    events = _cell_items(main["event_list"])
    files, boxes = _cell_items(main["file_list"]), _cell_items(main["face_bbx_list"])
    out: dict[str, WiderImage] = {}
    for e, event in enumerate(events):
        event_name = _cell_string(event)
        names, event_boxes = _cell_items(files[e]), _cell_items(boxes[e])
        subset_lists = {s: _cell_items(lists[e]) for s, lists in subsets.items()}
        for j, name in enumerate(names):
            xywh = np.asarray(event_boxes[j], np.float64).reshape(-1, 4)
            xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            keep = {}
            for s, lists in subset_lists.items():
                index = np.asarray(lists[j], np.int64).reshape(-1) - 1
                if index.size and (index.min() < 0 or index.max() >= len(xyxy)):
                    raise DataError(
                        f"gt_list of {event_name}/{_cell_string(name)} indexes face {index.max() + 1} of {len(xyxy)}",
                        gt_dir / f"wider_{s}_val.mat",
                    )
                keep[s] = np.zeros(len(xyxy), bool)
                keep[s][index] = True
            out[f"{event_name}/{_cell_string(name)}"] = WiderImage(xyxy, keep)
    return out


def simplified_wider_subsets(records: Sequence[Any]) -> dict[str, WiderImage]:
    """Approximate subsets from :func:`~awing.detection.data.read_wider_annotations` records: a face is in subset
    ``s`` when it is valid (not ``invalid``) and at least ``SIMPLIFIED_WIDER_MIN_HEIGHT[s]`` pixels tall."""
    out = {}
    for record in records:
        height = record.boxes[:, 3] - record.boxes[:, 1]
        keep = {s: ~record.ignore & (height >= h) for s, h in SIMPLIFIED_WIDER_MIN_HEIGHT.items()}
        out[wider_key(record.image_path)] = WiderImage(record.boxes.astype(np.float64), keep)
    return out


def wider_face_evaluation(
    detections: Mapping[str, Mapping[str, Any]],
    ground_truth: Mapping[str, WiderImage],
    iou_threshold: float = 0.5,
    num_thresholds: int = WIDER_THRESHOLDS,
) -> dict[str, float]:
    """AP per WIDER subset with the official protocol's rules (module docstring).

    Args:
        detections: ``{wider_key: {"boxes": (D, 4) xyxy, "scores": (D,)}}``; an image without an entry has no
            detections.
        ground_truth: ``{wider_key: WiderImage}`` (:func:`read_wider_ground_truth` or
            :func:`simplified_wider_subsets`).

    Returns:
        ``{"easy": AP, "medium": AP, "hard": AP}`` (subsets found in the ground truth).
    """
    unknown = sorted(set(detections) - set(ground_truth))
    if unknown:
        raise ValueError(f"{len(unknown)} detection key(s) are not in the ground truth, e.g. {unknown[0]!r}")
    scores = {k: _check_detection(d, k)[1] for k, d in detections.items()}
    flat = np.concatenate(list(scores.values())) if scores else np.zeros(0)
    low, high = (float(flat.min()), float(flat.max())) if flat.size else (0.0, 1.0)
    span = high - low if high > low else 1.0
    thresholds = 1.0 - np.arange(1, num_thresholds + 1) / num_thresholds
    one = np.array([0.0, 0.0, 1.0, 1.0])  # inclusive pixels: w + 1, h + 1
    subsets = [s for s in WIDER_SUBSETS if all(s in image.keep for image in ground_truth.values())]
    result = {}
    for subset in subsets:
        all_scores, all_outcomes, num_faces = [], [], 0
        for key, image in ground_truth.items():
            keep = image.keep[subset]
            num_faces += int(keep.sum())
            if key not in detections or len(image.boxes) == 0:
                continue
            boxes = _boxes(detections[key]["boxes"], f"detections[{key!r}]['boxes']")
            normalised = (scores[key] - low) / span
            outcome, _ = match_detections(boxes + one, normalised, image.boxes + one, ~keep, iou_threshold)
            all_scores.append(normalised)
            all_outcomes.append(outcome)
        precision, recall, _ = precision_recall(
            np.concatenate(all_scores) if all_scores else np.zeros(0),
            np.concatenate(all_outcomes) if all_outcomes else np.zeros(0, np.int8),
            num_faces,
            thresholds,
        )
        result[subset] = average_precision(recall, precision)
    return result


def run_detector_evaluation(
    cfg: DetectorConfig,
    weights: str | os.PathLike,
    *,
    split: str | None = None,
    iou_threshold: float = 0.5,
    wider_gt: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> tuple[dict[str, Any], Path]:
    """``awing eval-detector``: detector ``weights`` on split ``split`` (default ``cfg.data.val_split``) of
    ``cfg.data``; writes ``report.json`` to ``out_dir`` (default ``<weights folder>/eval_<data>_<split>``).

    The thresholds and the input size come from ``cfg.inference`` (the training config's, also stored in the
    weights). With ``data.name=wider`` the report adds the easy / medium / hard APs, official when the ``.mat``
    files are found (:func:`find_wider_ground_truth`), else simplified (module docstring). Returns the report and the
    output folder.
    """
    if not 0 < iou_threshold <= 1:
        raise ConfigError(f"the IoU threshold must be in (0, 1], got {iou_threshold}")
    split = cfg.data.val_split if split is None else split
    if not split:
        raise ConfigError("no split to evaluate: pass --split or set data.val_split")
    device = resolve_device(cfg.run.device, "run.device")
    model, stored = load_detector(weights)
    if stored != cfg.inference:
        print(f"awing eval-detector: using the config's {cfg.inference} (the weights store {stored})", file=sys.stderr)
    dataset = open_detection_split(cfg, split)
    detections = detect_dataset(build_eval_detector(model, cfg.inference, device), dataset, progress=progress)
    metrics = evaluate_detections(detections, _ground_truth(dataset), iou_threshold, cfg.inference.score_threshold)
    report: dict[str, Any] = {
        "dataset": cfg.data.name,
        "split": split,
        "weights": str(weights),
        "input_max_side": cfg.inference.input_max_side,
        "nms_iou": cfg.inference.nms_iou,
        "ap_score_threshold": min(AP_SCORE_THRESHOLD, cfg.inference.score_threshold),
        **metrics.to_dict(),
    }
    if cfg.data.name == "wider":
        gt_dir = find_wider_ground_truth(cfg.data.root, wider_gt)
        if gt_dir is None:
            ground_truth, protocol = simplified_wider_subsets(dataset.records), "simplified"
        else:
            ground_truth, protocol = read_wider_ground_truth(gt_dir), "official"
        keyed = {wider_key(r.image_path): d for r, d in zip(dataset.records, detections, strict=True)}
        missing = sorted(set(keyed) - set(ground_truth))
        if missing:
            raise DataError(
                f"{len(missing)} image(s) of the split are not in the WIDER ground truth, e.g. {missing[0]}"
            )
        # the evaluated images only (all of them unless data.max_samples cuts the split)
        aps = wider_face_evaluation(keyed, {k: ground_truth[k] for k in keyed}, iou_threshold)
        report["wider"] = {
            "protocol": protocol,
            "ground_truth": None if gt_dir is None else str(gt_dir),
            **{subset: _finite_or_none(ap) for subset, ap in aps.items()},  # None: no face in the subset
        }
    out = Path(weights).parent / f"eval_{cfg.data.name}_{split}" if out_dir is None else Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(strict_json(report, indent=2) + "\n", encoding="utf-8")
    return report, out
