"""Detector configuration: dataclass defaults (methods.md §7-§10), loadable with :func:`awing.config.load_config`.

>>> from awing.config import load_config
>>> cfg = load_config(None, ["loss.alwa.enabled=true", "loss.noisy.top_n=20"], cls=DetectorConfig)
>>> cfg.loss.classification, cfg.loss.alwa.enabled, cfg.loss.alwa.interval, cfg.loss.noisy.top_n
('focal', True, 100, 20)

Each research method of the detector is one switch: ``loss.classification`` (``focal`` or RetinaFace's ``ohem``),
``loss.alwa.enabled`` (methods.md §8) and ``loss.noisy.enabled`` (methods.md §9).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from awing.config import LoggingConfig, RunConfig, ScheduleConfig, _field, _require, _require_probabilities

__all__ = [
    "ALWAConfig",
    "DetectionAugmentConfig",
    "DetectionDataConfig",
    "DetectionLossConfig",
    "DetectorConfig",
    "DetectorModelConfig",
    "DetectorOptimConfig",
    "InferenceConfig",
    "NoisyAnchorConfig",
]

STRIDES = (8, 16, 32)


@dataclass
class DetectorModelConfig:
    """Network and anchors (methods.md §10.1)."""

    width_mult: float = _field(0.25, "MobileNetV1 width multiplier (0.25: channels 8 ... 256)")
    fpn_channels: int = _field(64, "channels of the feature pyramid, context modules and heads (multiple of 4)")
    context: bool = _field(True, "SSH-style context module on each pyramid level")
    anchor_sizes: list[list[float]] = _field(
        [[16.0, 32.0], [64.0, 128.0], [256.0, 512.0]],
        "square anchor sides in input pixels per level (strides 8, 16, 32); same count on every level",
    )
    variances: tuple[float, float] = _field((0.1, 0.2), "box-coding variances (centre, log-size)")
    prior_prob: float = _field(0.01, "face probability the classifier starts at (focal-loss prior, methods.md §7)")
    verifier: bool = _field(False, "a second-stage network re-scores and refines each box (awing.detection.verifier)")

    def __post_init__(self) -> None:
        _require(self.width_mult > 0, "width_mult", "> 0", self.width_mult)
        _require(
            self.fpn_channels >= 4 and self.fpn_channels % 4 == 0, "fpn_channels", "a multiple of 4", self.fpn_channels
        )
        counts = {len(sizes) for sizes in self.anchor_sizes}
        _require(
            len(self.anchor_sizes) == len(STRIDES) and len(counts) == 1 and 0 not in counts,
            "anchor_sizes",
            f"{len(STRIDES)} non-empty lists of equal length (one per stride {STRIDES})",
            self.anchor_sizes,
        )
        _require(
            all(s > 0 for sizes in self.anchor_sizes for s in sizes), "anchor_sizes", "positive", self.anchor_sizes
        )
        _require(all(v > 0 for v in self.variances), "variances", "positive", self.variances)
        _require(0 < self.prior_prob < 1, "prior_prob", "in (0, 1)", self.prior_prob)

    @property
    def strides(self) -> tuple[int, ...]:
        return STRIDES

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (JSON-safe), the inverse of ``DetectorModelConfig(**d)`` up to list/tuple types."""
        return {
            "width_mult": self.width_mult,
            "fpn_channels": self.fpn_channels,
            "context": self.context,
            "anchor_sizes": [list(map(float, s)) for s in self.anchor_sizes],
            "variances": list(self.variances),
            "prior_prob": self.prior_prob,
            "verifier": self.verifier,
        }


@dataclass
class ALWAConfig:
    """Adaptive Loss Weight Adjustment (methods.md §8)."""

    enabled: bool = _field(False, "adjust the classification weight during training")
    interval: int = _field(100, "C: iterations between two updates")
    statistic: Literal["std", "mean_std"] = _field("std", "'std' (ALWA_2, default) or 'mean_std' (ALWA_1)")
    weighted: bool = _field(True, "record the already-weighted losses, as the reference code does")

    def __post_init__(self) -> None:
        _require(self.interval >= 2, "interval", ">= 2 (a sample standard deviation needs 2 values)", self.interval)


@dataclass
class NoisyAnchorConfig:
    """Learning from noisy anchors (methods.md §9)."""

    enabled: bool = _field(False, "soft cleanliness targets and re-weighting of candidate positives")
    top_n: int = _field(
        10,
        "candidate positives per face: its top-N anchors by IoU (plus every anchor at IoU >= pos_iou); the reference "
        "N = 30 (paper: 50?, unverified) at RetinaNet's 9 anchors per location, scaled to our 2, gives 7 to 11",
    )
    alpha: float = _field(0.75, "weight of the localisation term in the cleanliness and the re-weighting")
    gamma: float = _field(1.0, "exponent of the re-weighting r = (alpha f(loc) + (1 - alpha) f(cls))^gamma")

    def __post_init__(self) -> None:
        _require(self.top_n >= 1, "top_n", ">= 1", self.top_n)
        _require(0 <= self.alpha <= 1, "alpha", "in [0, 1]", self.alpha)
        _require(self.gamma >= 0, "gamma", ">= 0", self.gamma)


@dataclass
class DetectionLossConfig:
    """Anchor matching and the multi-task loss (methods.md §7, §10.1)."""

    classification: Literal["focal", "ohem"] = _field(
        "focal", "'focal' (sigmoid focal loss over all anchors) or 'ohem' (cross-entropy, hard negatives 7:1)"
    )
    focal_alpha: float = _field(0.25, "focal-loss alpha (weight of positives)")
    focal_gamma: float = _field(2.0, "focal-loss gamma")
    ohem_neg_pos: int = _field(7, "hard negatives kept per positive with 'ohem'")
    pos_iou: float = _field(0.35, "an anchor with IoU >= pos_iou with a face is positive (RetinaFace's 0.35)")
    neg_iou: float = _field(0.35, "an anchor whose best IoU is < neg_iou is negative; in between it is ignored")
    low_quality_iou: float = _field(0.2, "each face's best anchor is positive when its IoU reaches this")
    cls_weight: float = _field(1.0, "weight of the classification loss (ALWA multiplies it further)")
    box_weight: float = _field(2.0, "weight of the box regression loss (RetinaFace: 2)")
    landmark_weight: float = _field(1.0, "weight of the 5-point regression loss (faces with points only)")
    smooth_l1_beta: float = _field(1.0, "beta of the smooth-L1 box and landmark losses on encoded deltas")
    alwa: ALWAConfig = _field(ALWAConfig(), "ALWA classification-weight adjustment")
    noisy: NoisyAnchorConfig = _field(NoisyAnchorConfig(), "noisy-anchor soft targets and re-weighting")

    def __post_init__(self) -> None:
        _require(0 <= self.focal_alpha <= 1, "focal_alpha", "in [0, 1]", self.focal_alpha)
        _require(self.focal_gamma >= 0, "focal_gamma", ">= 0", self.focal_gamma)
        _require(self.ohem_neg_pos >= 1, "ohem_neg_pos", ">= 1", self.ohem_neg_pos)
        _require(0 < self.pos_iou <= 1, "pos_iou", "in (0, 1]", self.pos_iou)
        _require(0 <= self.neg_iou <= self.pos_iou, "neg_iou", f"in [0, pos_iou={self.pos_iou}]", self.neg_iou)
        _require(0 <= self.low_quality_iou <= 1, "low_quality_iou", "in [0, 1]", self.low_quality_iou)
        for name in ("cls_weight", "box_weight", "landmark_weight"):
            _require(getattr(self, name) >= 0, name, ">= 0", getattr(self, name))
        _require(self.smooth_l1_beta > 0, "smooth_l1_beta", "> 0", self.smooth_l1_beta)


@dataclass
class DetectionAugmentConfig:
    """Training augmentation (awing.detection.augment)."""

    crop_scales: list[float] = _field(
        [0.3, 0.45, 0.6, 0.8, 1.0], "side of the random square crop relative to the image's shorter side"
    )
    crop_tries: int = _field(50, "random crops tried before falling back to the whole (padded) image")
    flip_prob: float = _field(0.5, "probability of a horizontal flip (eyes and mouth corners swap)")
    photometric_prob: float = _field(0.5, "probability of each photometric op (brightness, contrast, saturation, hue)")
    min_face: float = _field(
        4.0, "faces whose shorter side is below this many output pixels are turned into ignore regions"
    )
    zoom_prob: float = _field(
        0.0,
        "probability of a face-zoom crop instead of the random square crop: one face, drawn at random, is brought "
        "to a size drawn log-uniformly from zoom_sizes, with its own surroundings (after PyramidBox's "
        "data-anchor-sampling)",
    )
    zoom_sizes: tuple[float, float] = _field(
        (16.0, 320.0), "range of the zoomed face's side (sqrt of its box area) in output pixels"
    )

    def __post_init__(self) -> None:
        _require(
            0 < self.zoom_sizes[0] <= self.zoom_sizes[1], "zoom_sizes", "(low, high) with 0 < low <= high",
            self.zoom_sizes,
        )  # fmt: skip
        _require(
            len(self.crop_scales) > 0 and all(0 < s <= 1 for s in self.crop_scales),
            "crop_scales",
            "a non-empty list in (0, 1]",
            self.crop_scales,
        )
        _require(self.crop_tries >= 1, "crop_tries", ">= 1", self.crop_tries)
        _require_probabilities(self, ("flip_prob", "photometric_prob", "zoom_prob"))
        _require(self.min_face >= 0, "min_face", ">= 0", self.min_face)


@dataclass
class DetectionDataConfig:
    """Detection data set and batches."""

    name: Literal["face_mask", "voc", "distill", "wider", "dlib"] = _field(
        "face_mask",
        "data set format: 'face_mask' (VOC XML, fixed split), 'voc', 'distill' (build_distill_set.py), "
        "'wider' or 'dlib'",
    )
    root: str = _field("data/face-mask-detection", "data set root folder")
    train_split: str = _field("train", "split used for training")
    val_split: str = _field("val", "split used for validation")
    input_size: int = _field(640, "side of the square training images")
    batch_size: int = _field(32, "images per training batch")
    num_workers: int = _field(2, "DataLoader worker processes")
    max_samples: int = _field(0, "use only the first N images of each split (0 = all)")
    augment: DetectionAugmentConfig = _field(DetectionAugmentConfig(), "training augmentation")

    def __post_init__(self) -> None:
        _require(self.input_size > 0 and self.input_size % 32 == 0, "input_size", "a multiple of 32", self.input_size)
        _require(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        _require(self.num_workers >= 0, "num_workers", ">= 0", self.num_workers)
        _require(self.max_samples >= 0, "max_samples", ">= 0", self.max_samples)


@dataclass
class DetectorOptimConfig:
    """Optimiser (methods.md §10.1: SGD, lr 1e-3, momentum 0.9, weight decay 5e-4)."""

    name: Literal["sgd", "adamw"] = _field("sgd", "'sgd' or 'adamw'")
    lr: float = _field(1e-3, "initial learning rate")
    momentum: float = _field(0.9, "SGD momentum")
    weight_decay: float = _field(5e-4, "weight decay")
    grad_clip: float = _field(0.0, "clip the global gradient norm to this value (0 = off)")
    ema: float = _field(
        0.0,
        "decay of an exponential moving average of the weights (0 = off, e.g. 0.999); validation and the "
        "release weights use the average",
    )
    amp: bool = _field(True, "mixed precision (autocast + gradient scaling) on CUDA; ignored on CPU")

    def __post_init__(self) -> None:
        _require(self.lr > 0, "lr", "> 0", self.lr)
        _require(0 <= self.momentum < 1, "momentum", "in [0, 1)", self.momentum)
        _require(self.weight_decay >= 0, "weight_decay", ">= 0", self.weight_decay)
        _require(self.grad_clip >= 0, "grad_clip", ">= 0", self.grad_clip)
        _require(0 <= self.ema < 1, "ema", "in [0, 1)", self.ema)


@dataclass
class InferenceConfig:
    """Inference and evaluation settings of :class:`~awing.detection.detector.FaceDetector`."""

    input_max_side: int = _field(640, "the image is resized so that its longer side equals this")
    score_threshold: float = _field(0.5, "minimum face probability (of the verifier, for a detector that has one)")
    proposal_threshold: float = _field(
        0.1, "first-stage face probability from which a box goes to the verifier (detectors with a verifier only)"
    )
    nms_iou: float = _field(0.4, "IoU above which a lower-scoring box is suppressed")
    nms_containment: float = _field(
        0.8,
        "a lower-scoring box is also suppressed when this share of the smaller box lies in the other (nested "
        "boxes on one face); 1 = off",
    )
    pre_nms_top_k: int = _field(2000, "highest-scoring boxes kept before NMS")
    max_detections: int = _field(750, "boxes kept after NMS")

    def __post_init__(self) -> None:
        _require(
            isinstance(self.input_max_side, int) and 32 <= self.input_max_side <= 4096,
            "input_max_side",
            "an integer in [32, 4096]",
            self.input_max_side,
        )
        _require(0 <= self.score_threshold <= 1, "score_threshold", "in [0, 1]", self.score_threshold)
        _require(0 <= self.proposal_threshold <= 1, "proposal_threshold", "in [0, 1]", self.proposal_threshold)
        _require(0 < self.nms_iou <= 1, "nms_iou", "in (0, 1]", self.nms_iou)
        _require(0 < self.nms_containment <= 1, "nms_containment", "in (0, 1]", self.nms_containment)
        _require(self.pre_nms_top_k >= 1, "pre_nms_top_k", ">= 1", self.pre_nms_top_k)
        _require(self.max_detections >= 1, "max_detections", ">= 1", self.max_detections)


@dataclass
class DetectorConfig:
    """Everything a detector training run needs."""

    model: DetectorModelConfig = _field(DetectorModelConfig(), "network and anchors")
    loss: DetectionLossConfig = _field(DetectionLossConfig(), "matching and multi-task loss")
    data: DetectionDataConfig = _field(DetectionDataConfig(), "data set, batches, augmentation")
    optim: DetectorOptimConfig = _field(DetectorOptimConfig(), "optimiser")
    schedule: ScheduleConfig = _field(
        ScheduleConfig(epochs=250, milestones=[190, 220]), "learning-rate schedule (methods.md §10.1)"
    )
    inference: InferenceConfig = _field(InferenceConfig(), "thresholds for validation and the saved detector")
    run: RunConfig = _field(RunConfig(name="detector"), "run folder, seed, device, logging cadence, resume")
    logging: LoggingConfig = _field(LoggingConfig(), "metric sinks")
