"""Detector training: the :class:`DetectorTask` of the shared loop (:mod:`awing.engine.loop`).

One optimiser step: a batch of augmented ``S x S`` images (:class:`~awing.detection.augment.DetectionAugment`) ->
:class:`~awing.detection.network.FaceDetectorNet` -> :class:`~awing.detection.loss.DetectionLoss` against the
anchors of the ``S x S`` input (focal or OHEM classification, box and 5-point regression, optional noisy-anchor
targets; methods.md §7, §9, §10) with the classification term multiplied by the ALWA weight when ``loss.alwa`` is on
-> the loop's backward, clipping, optimiser and per-step learning rate -> ``alwa.step(cls, box)`` (methods.md §8:
the hook sees every iteration's classification and box losses, and its state goes into every checkpoint).

As the landmark trainer, through the same loop: float16 autocast and gradient scaling on CUDA (``optim.amp``; the
loss is computed in float32), an exponential moving average of the weights (``optim.ema``; validation and the
release weights use it), ``torchrun`` DistributedDataParallel (``data.batch_size`` per process; rank 0 validates,
logs and saves), exact resume (on CPU the weights equal an uninterrupted run's bit for bit, with or without
workers; a Ctrl-C mid-epoch writes a resumable ``last.pt``), the run-folder lock and ``metrics.jsonl`` cut back on
resume (:mod:`awing.engine.loop`).

Validation (every ``run.val_every`` epochs and after the last): :class:`~awing.detection.detector.FaceDetector` on
the original validation images (resized to ``inference.input_max_side``) with detections down to
:data:`~awing.detection.evaluate.AP_SCORE_THRESHOLD` -> AP at IoU 0.5 and recall / precision at
``inference.score_threshold`` (:mod:`awing.detection.evaluate`). The best epoch is the one with the highest AP: the
loop keeps the lowest metric, so it is given ``-AP`` (``best_metric`` in the checkpoints is ``-AP``;
:attr:`DetectorTrainResult.best_ap` is the AP).

Files in the run folder (``run.run_dir``): ``config.yaml`` (the resolved config), ``metrics.jsonl``, ``last.pt``
and ``best.pt`` (atomic writes), ``best.safetensors`` (the best epoch's network, :func:`save_detector` with the
``inference`` thresholds; written atomically) and ``last.safetensors`` (the final network).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from awing.config import ConfigError
from awing.detection.anchors import generate_anchors
from awing.detection.config import DetectorConfig, DetectorOptimConfig
from awing.detection.data import collate_detection
from awing.detection.detector import load_detector, save_detector
from awing.detection.evaluate import evaluate_detector, open_detection_split
from awing.detection.loss import DetectionLoss, build_alwa
from awing.detection.network import FaceDetectorNet
from awing.engine.loop import DistributedContext, TrainingTask, export_atomically, run_training
from awing.models import load_state_dict_strict

__all__ = ["DetectorTask", "DetectorTrainResult", "build_detector_optimizer", "train_detector"]


@dataclass
class DetectorTrainResult:
    """What :func:`train_detector` did: the run folder, epochs and optimiser steps completed, the best validation AP
    (NaN without validation) and one summary dict per epoch run in this call."""

    run_dir: Path
    epoch: int
    step: int
    best_ap: float
    history: list[dict[str, Any]] = field(default_factory=list)


def build_detector_optimizer(model: nn.Module, cfg: DetectorOptimConfig) -> torch.optim.Optimizer:
    """SGD with momentum (methods.md §10.1) or AdamW, weight decay on every parameter."""
    if cfg.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


class DetectorTask(TrainingTask):
    """The detector of ``cfg`` as a :class:`~awing.engine.loop.TrainingTask` (see the module docstring)."""

    kind = "detector"
    items = "images"
    summed = ("loss", "cls", "box", "landmarks")
    collate_fn = staticmethod(collate_detection)

    def __init__(self, cfg: DetectorConfig, device: torch.device, ctx: DistributedContext) -> None:
        self.cfg = cfg
        self.device = device
        self.model = FaceDetectorNet(cfg.model).to(device)
        if cfg.run.init_weights and cfg.run.resume is None:
            load_state_dict_strict(self.model, load_detector(cfg.run.init_weights)[0].state_dict())
        self.train_set = open_detection_split(cfg, cfg.data.train_split, train=True)
        has_val = cfg.data.val_split and ctx.is_main
        self.val_set = open_detection_split(cfg, cfg.data.val_split) if has_val else None
        self.criterion = DetectionLoss(cfg.loss, cfg.model.variances)
        self.alwa = build_alwa(cfg.loss)
        size = cfg.data.input_size
        strides = cfg.model.strides
        sizes = FaceDetectorNet.feature_sizes(size, size, strides)
        self.anchors = generate_anchors(sizes, strides, cfg.model.anchor_sizes, device)

    @property
    def model_config(self) -> dict[str, Any]:
        return self.cfg.model.to_dict()

    def build_optimizer(self) -> torch.optim.Optimizer:
        return build_detector_optimizer(self.model, self.cfg.optim)

    def forward(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[Tensor, ...]:
        images, _ = batch
        return model(images.to(device, non_blocking=True))

    def loss(self, outputs: tuple[Tensor, ...], batch: Any, device: torch.device) -> dict[str, Tensor]:
        _, targets = batch
        targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
        weight = 1.0 if self.alwa is None else self.alwa.cls_weight
        return self.criterion(*(o.float() for o in outputs), self.anchors, targets, alwa_weight=weight)

    def after_step(self, losses: Mapping[str, Tensor]) -> None:
        if self.alwa is not None:
            self.alwa.step(losses["cls"], losses["box"])

    def log_values(self) -> dict[str, float]:
        return {} if self.alwa is None else self.alwa.log_values()

    @property
    def validates(self) -> bool:
        return self.val_set is not None

    def validate(self, model: nn.Module, progress: bool | None) -> tuple[float | None, dict[str, Any]]:
        metrics = evaluate_detector(model, self.val_set, self.cfg.inference, device=self.device, progress=progress)
        metric = -metrics.ap if math.isfinite(metrics.ap) else None
        return metric, {"val_ap": metrics.ap, "val_recall": metrics.recall, "val_precision": metrics.precision}

    def export(self, model: nn.Module, path: Path) -> None:
        export_atomically(lambda tmp: save_detector(model, tmp, self.cfg.inference), path)

    def state(self) -> dict[str, Any]:
        return {"alwa": None if self.alwa is None else self.alwa.state_dict()}

    def load_state(self, state: Mapping[str, Any], path: str) -> None:
        if self.alwa is not None:
            if state.get("alwa") is None:
                raise ConfigError(f"loss.alwa.enabled=true but checkpoint {path} has no ALWA state")
            self.alwa.load_state_dict(state["alwa"])


def train_detector(cfg: DetectorConfig, *, progress: bool | None = None) -> DetectorTrainResult:
    """Train the detector of ``cfg``; resume from ``cfg.run.resume`` when set (see the module docstring).

    Args:
        cfg: the resolved config (:func:`awing.config.load_config` with ``cls=DetectorConfig``).
        progress: tqdm bars on stderr (None: only when stderr is a terminal; always off on ranks > 0).

    Raises:
        ConfigError: inconsistent settings, a run folder that already holds a checkpoint without ``run.resume``,
            or a checkpoint of another network.
    """
    result = run_training(cfg, lambda device, ctx: DetectorTask(cfg, device, ctx), progress=progress)
    best_ap = -result.best_metric
    return DetectorTrainResult(
        result.run_dir, result.epoch, result.step, float("nan") if math.isinf(best_ap) else best_ap, result.history
    )
