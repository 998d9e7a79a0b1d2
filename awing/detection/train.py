"""Detector training loop: config -> data, network, loss, SGD, multi-step schedule -> checkpoints, logs, weights.

One optimiser step: a batch of augmented ``S x S`` images (:class:`~awing.detection.augment.DetectionAugment`) ->
:class:`~awing.detection.network.FaceDetectorNet` -> :class:`~awing.detection.loss.DetectionLoss` against the
anchors of the ``S x S`` input (focal or OHEM classification, box and 5-point regression, optional noisy-anchor
targets; methods.md §7, §9, §10) with the classification term multiplied by the ALWA weight when ``loss.alwa`` is on
-> backward -> optional gradient-norm clipping -> optimiser -> per-step learning rate (linear warm-up, then
``gamma`` at each milestone epoch: :func:`awing.engine.train.lr_factor`) -> ``alwa.step(cls, box)`` (methods.md §8:
the hook sees every iteration's classification and box losses, and its state goes into every checkpoint).

Validation (every ``run.val_every`` epochs and after the last): :class:`~awing.detection.detector.FaceDetector` on
the original validation images (resized to ``inference.input_max_side``) with detections down to
:data:`~awing.detection.evaluate.AP_SCORE_THRESHOLD` -> AP at IoU 0.5 and recall / precision at
``inference.score_threshold`` (:mod:`awing.detection.evaluate`). The best epoch is the one with the highest AP:
:class:`~awing.engine.checkpoint.CheckpointManager` keeps the lowest metric, so it is given ``-AP``
(``best_metric`` in the checkpoints is ``-AP``; :attr:`DetectorTrainResult.best_ap` is the AP).

Reproducibility, as the landmark loop: the shuffle order of epoch ``e`` is a function of ``(seed, e)`` only
(:class:`~awing.data.training.EpochSampler`), augmentation from
``(seed, e, index)`` (:class:`~awing.detection.data.DetectionDataset`), and the
checkpoint written after every epoch holds the model, optimiser, scheduler, ALWA and global RNG states. Resuming
from it continues exactly: on CPU the weights equal an uninterrupted run's bit for bit, with or without workers.
``metrics.jsonl`` and the run-folder lock as in :mod:`awing.engine.train`.

Files in the run folder (``run.run_dir``): ``config.yaml`` (the resolved config), ``metrics.jsonl``, ``last.pt``
and ``best.pt`` (atomic writes), ``best.safetensors`` (the best epoch's network, :func:`save_detector` with the
``inference`` thresholds; written atomically) and ``last.safetensors`` (the final network).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from awing.config import ConfigError, config_to_dict, save_config
from awing.data.training import training_loader
from awing.detection.anchors import generate_anchors
from awing.detection.config import DetectorConfig, DetectorOptimConfig, InferenceConfig
from awing.detection.data import DetectionDataset, collate_detection
from awing.detection.detector import load_detector, save_detector
from awing.detection.evaluate import evaluate_detector, open_detection_split
from awing.detection.loss import DetectionLoss, build_alwa
from awing.detection.network import FaceDetectorNet
from awing.engine.checkpoint import CheckpointManager
from awing.engine.evaluate import resolve_device
from awing.engine.loggers import build_logger
from awing.engine.run_folder import prepare_metrics, run_lock
from awing.engine.seeding import rng_state, seed_everything
from awing.engine.train import lr_factor, restore_training_state
from awing.models import load_state_dict_strict

__all__ = ["DetectorTrainResult", "build_detector_optimizer", "train_detector"]


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


def _train_loader(data: DetectionDataset, cfg: DetectorConfig, device: torch.device) -> tuple[DataLoader, Any]:
    loader, sampler = training_loader(
        data, cfg.data.batch_size, cfg.data.num_workers, device, seed=cfg.run.seed, collate_fn=collate_detection
    )
    if len(loader) == 0:
        raise ConfigError(
            f"the training split has {len(data)} images, fewer than one batch of data.batch_size={cfg.data.batch_size}"
        )
    return loader, sampler


def _export(model: FaceDetectorNet, path: Path, inference: InferenceConfig) -> None:
    """:func:`save_detector` to a temporary file beside ``path``, then a rename (atomic)."""
    tmp = path.with_name(f".{path.stem}.tmp.safetensors")
    try:
        save_detector(model, tmp, inference)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _to_device(targets: list[dict[str, Tensor]], device: torch.device) -> list[dict[str, Tensor]]:
    return [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]


def train_detector(cfg: DetectorConfig, *, progress: bool | None = None) -> DetectorTrainResult:
    """Train the detector of ``cfg``; resume from ``cfg.run.resume`` when set (see the module docstring).

    Args:
        cfg: the resolved config (:func:`awing.config.load_config` with ``cls=DetectorConfig``).
        progress: tqdm bars on stderr (None: only when stderr is a terminal).

    Raises:
        ConfigError: inconsistent settings, a run folder that already holds a checkpoint without ``run.resume``,
            or a checkpoint of another network, or a run folder that another training is writing
            (:func:`~awing.engine.run_folder.run_lock`).
    """
    with run_lock(cfg.run.run_dir):
        return _train_detector(cfg, progress)


def _train_detector(cfg: DetectorConfig, progress: bool | None) -> DetectorTrainResult:
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    device = resolve_device(cfg.run.device)
    run_dir = Path(cfg.run.run_dir)
    checkpoints = CheckpointManager(run_dir)
    if cfg.run.resume is None and checkpoints.last_path.exists():
        raise ConfigError(
            f"{checkpoints.last_path} exists: pass --resume (run.resume={checkpoints.last_path}) to continue that run, "
            "or choose another run.name / run.out_dir"
        )
    model = FaceDetectorNet(cfg.model).to(device)
    if cfg.run.init_weights and cfg.run.resume is None:
        load_state_dict_strict(model, load_detector(cfg.run.init_weights)[0].state_dict())
    train_set = open_detection_split(cfg, cfg.data.train_split, train=True)
    val_set = open_detection_split(cfg, cfg.data.val_split) if cfg.data.val_split else None
    loader, sampler = _train_loader(train_set, cfg, device)
    steps_per_epoch = len(loader)
    criterion = DetectionLoss(cfg.loss, cfg.model.variances)
    alwa = build_alwa(cfg.loss)
    size = cfg.data.input_size
    anchors = generate_anchors(
        FaceDetectorNet.feature_sizes(size, size, cfg.model.strides), cfg.model.strides, cfg.model.anchor_sizes, device
    )
    optimizer = build_detector_optimizer(model, cfg.optim)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, cfg.schedule)
    )
    epoch, step = 0, 0
    if cfg.run.resume is not None:
        state = checkpoints.resume(cfg.run.resume)
        epoch, step = restore_training_state(
            state, cfg.run.resume, model, cfg.model.to_dict(), optimizer, scheduler, kind="detector"
        )
        if alwa is not None:
            if state.get("alwa") is None:
                raise ConfigError(f"loss.alwa.enabled=true but checkpoint {cfg.run.resume} has no ALWA state")
            alwa.load_state_dict(state["alwa"])
    save_config(cfg, run_dir / "config.yaml")
    prepare_metrics(run_dir / "metrics.jsonl", None if cfg.run.resume is None else step)
    logger = build_logger(cfg.logging, run_dir, name=cfg.run.name, config=config_to_dict(cfg))
    logger.log_config(config_to_dict(cfg))
    result = DetectorTrainResult(run_dir, epoch, step, -checkpoints.best_metric)
    disable = None if progress is None else not progress
    try:
        while epoch < cfg.schedule.epochs:
            train_set.set_epoch(epoch)
            sampler.set_epoch(epoch)
            model.train()
            started = time.perf_counter()
            sums = {k: torch.zeros((), device=device) for k in ("loss", "cls", "box", "landmarks")}
            bar = tqdm(
                loader, desc=f"epoch {epoch + 1}/{cfg.schedule.epochs}", leave=False, file=sys.stderr, disable=disable
            )
            for images, targets in bar:
                images = images.to(device, non_blocking=True)
                out = criterion(
                    *model(images),
                    anchors,
                    _to_device(targets, device),
                    alwa_weight=1.0 if alwa is None else alwa.cls_weight,
                )
                optimizer.zero_grad(set_to_none=True)
                out["loss"].backward()
                if cfg.optim.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                optimizer.step()
                scheduler.step()
                if alwa is not None:
                    alwa.step(out["cls"], out["box"])
                step += 1
                for key, total in sums.items():
                    total += out[key].detach()
                if step % cfg.run.log_every == 0:
                    values = {k: out[k].item() for k in ("loss", "cls", "box", "landmarks", "num_pos")}
                    if not math.isfinite(values["loss"]):
                        raise FloatingPointError(f"training loss is {values['loss']} at step {step}, epoch {epoch + 1}")
                    bar.set_postfix(loss=f"{values['loss']:.4g}")
                    extra = {} if alwa is None else alwa.log_values()
                    logger.log(step, {"epoch": epoch + 1, **values, "lr": optimizer.param_groups[0]["lr"], **extra})
            bar.close()
            epoch += 1
            elapsed = time.perf_counter() - started
            summary: dict[str, Any] = {"epoch": epoch}
            summary.update({f"train_{k}": v.item() / steps_per_epoch for k, v in sums.items()})
            summary.update(
                lr=optimizer.param_groups[0]["lr"],
                epoch_time_s=elapsed,
                images_per_s=steps_per_epoch * cfg.data.batch_size / elapsed,
            )
            if alwa is not None:
                summary.update(alwa.log_values())
            if not math.isfinite(summary["train_loss"]):
                raise FloatingPointError(f"training loss is {summary['train_loss']} in epoch {epoch}")
            final = epoch == cfg.schedule.epochs
            metric = None
            if val_set is not None and (epoch % cfg.run.val_every == 0 or final):
                metrics = evaluate_detector(model, val_set, cfg.inference, device=device, progress=progress)
                metric = -metrics.ap if math.isfinite(metrics.ap) else None
                summary.update(val_ap=metrics.ap, val_recall=metrics.recall, val_precision=metrics.precision)
            state = {
                "epoch": epoch,
                "step": step,
                "model": model.state_dict(),
                "model_config": cfg.model.to_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "alwa": None if alwa is None else alwa.state_dict(),
                "rng": rng_state(),
                "config": config_to_dict(cfg),
            }
            summary["best"] = checkpoints.save(state, metric=metric)
            if summary["best"]:
                _export(model, run_dir / "best.safetensors", cfg.inference)
            if final:
                _export(model, run_dir / "last.safetensors", cfg.inference)
            logger.log(step, summary)
            result.history.append(summary)
    finally:
        logger.close()
    result.epoch, result.step, result.best_ap = epoch, step, -checkpoints.best_metric
    if math.isinf(result.best_ap):
        result.best_ap = float("nan")
    return result
