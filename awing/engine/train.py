"""The training loop: config -> data, model, loss, optimiser, schedule -> checkpoints, logs, release weights.

One optimiser step (architecture.md, Data flow): augmented uint8 crops, made float on the device
(:func:`awing.data.training.model_input`) -> model (all stacks) -> loss on every stack's landmark and boundary
heatmaps against the same target (landmark heatmaps encoded on the device from the crop points, then the worker's
boundary map: :meth:`~awing.data.training.LandmarkTrainingSet.targets`), summed with equal weights (intermediate
supervision, methods.md §3.4) -> backward (float16 autocast and gradient scaling on CUDA) -> optional gradient-norm
clipping -> optimiser -> per-step learning-rate schedule -> optional EMA of the weights.

The loss per stack is ``mean(L(pred, target) · v · (W·M + 1))`` (methods.md §1.3, §2): ``L`` the AWing (or
Wing / MSE / L1 for ablations), ``M`` the thresholded 3x3 dilation of the target, ``v`` the per-channel weight
``B x (K+1) x 1 x 1``: each landmark's point weight (0 for points that are invisible or outside the crop) and
``loss.boundary_weight`` for the boundary channel. A model without the boundary channel drops it from the target.

Reproducibility: the shuffle order of epoch ``e`` is a function of ``(seed, e)`` only
(:class:`~awing.data.training.EpochSampler`; the DistributedSampler's of ``seed + e``), and augmentation comes from
``(seed, e, index)`` (awing.data.training), so an epoch does not depend on what ran before it, nor on DataLoader
workers; the checkpoint written at the end of every epoch also holds the global RNG states, the optimiser,
scheduler, gradient scaler and EMA. A Ctrl-C mid-epoch writes ``last.pt`` after the current step
(``epoch_step`` batches into the epoch; not under torchrun). Resuming from either continues exactly: on CPU with
``run.deterministic=true`` the weights equal an uninterrupted run's bit for bit, with or without workers.

One training writes a run folder at a time (:func:`~awing.engine.run_folder.run_lock`); ``metrics.jsonl`` starts
empty for a fresh run and is cut back to the checkpoint's step on resume
(:func:`~awing.engine.run_folder.prepare_metrics`).

Files in the run folder (``run.run_dir``): ``config.yaml`` (the resolved config), ``metrics.jsonl``, ``last.pt``
and ``best.pt`` (lowest validation NME; atomic writes, ``awing.engine.checkpoint``), ``best.safetensors`` (release
weights of the best epoch, EMA weights when EMA is on) and ``last.safetensors`` (the final model).

Multi-GPU: under ``torchrun`` (``WORLD_SIZE > 1``) each process takes ``LOCAL_RANK``'s GPU (NCCL; gloo on CPU),
wraps the model in DistributedDataParallel and reads its shard through a DistributedSampler; ``data.batch_size``
is per process. Rank 0 alone validates, logs and writes files.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from awing.config import ConfigError, LossConfig, OptimConfig, ScheduleConfig, TrainConfig, config_to_dict, save_config
from awing.data import LandmarkTrainingSet
from awing.data.training import model_input, training_loader
from awing.engine.checkpoint import CheckpointManager
from awing.engine.evaluate import default_norm, evaluate_model, open_dataset, resolve_device
from awing.engine.loggers import build_logger
from awing.engine.run_folder import StopRequest, prepare_metrics, run_lock
from awing.engine.seeding import rng_state, seed_everything, set_rng_state
from awing.landmarks import get_scheme
from awing.losses import AdaptiveWingLoss, get_loss, loss_weight_map
from awing.models import MODELS, StackedHourglass, load_state_dict_strict, read_weights, save_weights

__all__ = [
    "DistributedContext",
    "ModelEma",
    "StackedHeatmapLoss",
    "TrainResult",
    "build_model_from_config",
    "build_optimizer",
    "lr_factor",
    "setup_distributed",
    "train",
]


class StackedHeatmapLoss(nn.Module):
    """Sum over stacks of the heatmap loss with the weighted loss map and per-channel visibility weights.

    Args:
        cfg: the loss section (name, AWing constants, weight map, boundary weight, stack weighting).

    Shape:
        - outputs: list of ``B x C x H x W`` (``C = K + 1`` with the boundary channel last, or ``K``).
        - target: ``B x (K + 1) x H x W`` or ``B x K x H x W`` (extra target channels beyond ``C`` are dropped).
        - point_weight: ``B x K`` (1 visible and inside the crop, else 0).
        - returns ``(total, per_stack)``: a scalar and a list of one scalar per stack.
    """

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        if cfg.stack_weights != "equal":
            raise ConfigError(
                f"loss.stack_weights must be 'equal' (the only scheme implemented), got {cfg.stack_weights!r}"
            )
        self.cfg = cfg
        self.criterion: Callable[..., Tensor]
        if cfg.name == "awing":
            self.criterion = AdaptiveWingLoss(
                omega=cfg.omega,
                theta=cfg.theta,
                epsilon=cfg.epsilon,
                alpha=cfg.alpha,
                use_weight_map=cfg.use_weight_map,
                weight=cfg.weight,
                threshold=cfg.threshold,
                kernel_size=cfg.kernel_size,
            )
        else:
            try:
                loss = get_loss(cfg.name)
            except ValueError as err:
                raise ConfigError(f"loss.name: {err}") from None
            kwargs = {"omega": cfg.omega, "epsilon": cfg.epsilon} if cfg.name == "wing" else {}
            self.criterion = functools.partial(loss, **kwargs)

    def forward(self, outputs: list[Tensor], target: Tensor, point_weight: Tensor) -> tuple[Tensor, list[Tensor]]:
        if not outputs:
            raise ValueError("outputs must hold at least one stack's heatmaps, got an empty list")
        batch, channels = outputs[0].shape[:2]
        num_points = point_weight.shape[1]
        if point_weight.shape[0] != batch or channels not in (num_points, num_points + 1):
            raise ValueError(
                f"model outputs {tuple(outputs[0].shape)} do not fit point_weight {tuple(point_weight.shape)}: "
                "expected K or K + 1 channels for K points"
            )
        if target.shape[1] < channels:
            raise ValueError(
                f"target has {target.shape[1]} channels but the model predicts {channels} "
                "(a boundary-predicting model needs data.boundary=true)"
            )
        target = target[:, :channels]
        weight = point_weight
        if channels > num_points:
            weight = torch.cat([weight, weight.new_full((batch, 1), self.cfg.boundary_weight)], dim=1)
        weight = weight[:, :, None, None].to(target.dtype)
        if self.cfg.name != "awing" and self.cfg.use_weight_map:  # the AWing module builds the map in its own pass
            weight = weight * loss_weight_map(
                target, threshold=self.cfg.threshold, weight=self.cfg.weight, kernel_size=self.cfg.kernel_size
            )
        per_stack = [self.criterion(out.float(), target, weight) for out in outputs]
        return torch.stack(per_stack).sum(), per_stack


def build_optimizer(params: Iterable[Tensor], cfg: OptimConfig) -> torch.optim.Optimizer:
    """RMSProp (the paper's, methods.md §4; torch's default smoothing 0.99 and eps 1e-8) or Adam."""
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def restore_training_state(
    state: dict[str, Any],
    path: str,
    model: nn.Module,
    model_config: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    kind: str = "model",
) -> tuple[int, int]:
    """Load a resumed checkpoint's model, optimiser, scheduler and RNG states -> ``(epoch, step)``.

    Refuses a checkpoint whose stored model config differs from ``model_config``. Callers restore their own extras
    (AMP scaler, EMA, ALWA) from ``state``.
    """
    if state.get("model_config") != model_config:
        raise ConfigError(
            f"checkpoint {path} holds a {kind} {state.get('model_config')}, the config builds {model_config}"
        )
    load_state_dict_strict(model, state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return int(state["epoch"]), int(state["step"])


def lr_factor(step: int, steps_per_epoch: int, cfg: ScheduleConfig) -> float:
    """Learning-rate multiplier at 0-based optimiser step ``step``.

    Linear warm-up ``(step + 1) / (warmup_epochs · steps_per_epoch)`` during the warm-up epochs, then
    ``gamma ** (number of milestones <= current epoch)`` (step decay at epoch boundaries).

    >>> cfg = ScheduleConfig(epochs=10, milestones=[4, 8], gamma=0.1, warmup_epochs=1)
    >>> [round(lr_factor(s, 2, cfg), 4) for s in (0, 1, 2, 7, 8, 16)]
    [0.5, 1.0, 1.0, 1.0, 0.1, 0.01]
    """
    warmup = cfg.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    epoch = step // steps_per_epoch
    return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)


class ModelEma:
    """Exponential moving average of a model's floating-point state: ``ema = d · ema + (1 - d) · w``.

    With warm-up, update ``n`` (0-based) uses ``d = min(decay, (1 + n) / (10 + n))`` (as TensorFlow's
    ``ExponentialMovingAverage`` with ``num_updates``), so the average forgets the random initialisation within the
    first few hundred steps instead of ``1 / (1 - decay)`` steps. BatchNorm running statistics are averaged like the
    weights; integer buffers (``num_batches_tracked``) are copied. ``module`` is an eval-mode copy used for
    validation and the release weights.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, updates: int | None) -> float:
        """The decay of update number ``updates`` (0-based); None: no warm-up."""
        return self.decay if updates is None else min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def update(self, model: nn.Module, updates: int | None = None) -> None:
        """Average ``model``'s state in; ``updates``: how many updates came before (the optimiser step)."""
        ema_state, state = self.module.state_dict(), model.state_dict()
        floats = [k for k, v in ema_state.items() if v.is_floating_point()]
        weight = 1.0 - self.decay_at(updates)
        torch._foreach_lerp_([ema_state[k] for k in floats], [state[k] for k in floats], weight)
        for key, value in ema_state.items():
            if not value.is_floating_point():
                value.copy_(state[key])

    def state_dict(self) -> dict[str, Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        load_state_dict_strict(self.module, state)


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_name: str) -> tuple[DistributedContext, torch.device]:
    """Join the process group when ``WORLD_SIZE > 1`` (torchrun's ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` ...).

    CUDA: one GPU per process (``cuda:LOCAL_RANK``), NCCL; CPU: gloo. Without torchrun: rank 0 of 1 on
    :func:`~awing.engine.evaluate.resolve_device`'s device.
    """
    device = resolve_device(device_name)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(), device
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    except KeyError as err:
        raise RuntimeError(f"WORLD_SIZE={world_size} but {err.args[0]} is not set: start with torchrun") from None
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank, world_size, local_rank), device


def build_model_from_config(cfg: TrainConfig) -> StackedHourglass:
    """The network of ``cfg.model`` for ``cfg.data``'s scheme and input size (the heatmaps must be input / 4)."""
    if cfg.model.name not in MODELS:
        raise ConfigError(f"unknown model.name {cfg.model.name!r}; valid names: {', '.join(MODELS)}")
    if cfg.data.heatmap_size * 4 != cfg.data.input_size:
        raise ConfigError(
            f"the hourglass has stride 4: data.heatmap_size must be data.input_size / 4 = {cfg.data.input_size / 4:g}, "
            f"got {cfg.data.heatmap_size}"
        )
    if cfg.model.with_boundary and not cfg.data.boundary:
        raise ConfigError("model.with_boundary=true needs the boundary target: set data.boundary=true")
    try:
        return MODELS[cfg.model.name](
            num_stacks=cfg.model.num_stacks,
            num_landmarks=get_scheme(cfg.data.scheme).num_points,
            features=cfg.model.features,
            depth=cfg.model.depth,
            input_size=cfg.data.input_size,
            with_boundary=cfg.model.with_boundary,
            coordconv=cfg.model.coordconv,
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model: {err}") from None


@dataclass
class TrainResult:
    """What :func:`train` did: the run folder, epochs and optimiser steps completed, the best validation NME
    (``inf`` without validation) and one summary dict per epoch run in this call."""

    run_dir: Path
    epoch: int
    step: int
    best_metric: float
    history: list[dict[str, Any]] = field(default_factory=list)


def _export(model: StackedHourglass, path: Path, scheme: str) -> None:
    """Release weights, atomically: a temporary ``.safetensors`` beside ``path``, then a rename."""
    tmp = path.with_name(f".{path.stem}.tmp.safetensors")
    try:
        save_weights(model, tmp, scheme=scheme)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _train_loader(
    data: LandmarkTrainingSet, cfg: TrainConfig, ctx: DistributedContext, device: torch.device
) -> tuple[DataLoader, Any]:
    sampler = None
    if ctx.enabled:
        sampler = DistributedSampler(
            data, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.run.seed, drop_last=True
        )
    loader, sampler = training_loader(
        data, cfg.data.batch_size, cfg.data.num_workers, device, seed=cfg.run.seed, sampler=sampler
    )
    if len(loader) == 0:
        raise ConfigError(
            f"the training split has {len(data)} faces, fewer than one batch of data.batch_size="
            f"{cfg.data.batch_size} x {ctx.world_size} process(es)"
        )
    return loader, sampler


def train(cfg: TrainConfig, *, progress: bool | None = None) -> TrainResult:
    """Train the model of ``cfg``; resume from ``cfg.run.resume`` when set (see the module docstring).

    Args:
        cfg: the resolved config.
        progress: tqdm bars on stderr (None: only when stderr is a terminal; always off on ranks > 0).

    Raises:
        ConfigError: inconsistent settings, a run folder that already holds a checkpoint without ``run.resume``
            or that another training is writing, or a checkpoint whose model differs.
    """
    ctx, device = setup_distributed(cfg.run.device)
    try:
        with run_lock(cfg.run.run_dir, enabled=ctx.is_main):
            return _train(cfg, ctx, device, progress)
    finally:
        if ctx.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, ctx: DistributedContext, device: torch.device, progress: bool | None) -> TrainResult:
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    scheme = get_scheme(cfg.data.scheme)
    run_dir = Path(cfg.run.run_dir)
    checkpoints = CheckpointManager(run_dir)
    if cfg.run.resume is None and checkpoints.last_path.exists():
        raise ConfigError(
            f"{checkpoints.last_path} exists: pass --resume (run.resume={checkpoints.last_path}) to continue that run, "
            "or choose another run.name / run.out_dir"
        )
    model = build_model_from_config(cfg).to(device)
    if cfg.run.init_weights and cfg.run.resume is None:
        load_state_dict_strict(model, read_weights(cfg.run.init_weights)[0])
    train_set = LandmarkTrainingSet.from_config(
        open_dataset(cfg.data, cfg.data.train_split), cfg.data, train=True, seed=cfg.run.seed
    )
    val_faces = open_dataset(cfg.data, cfg.data.val_split) if cfg.data.val_split and ctx.is_main else None
    loader, sampler = _train_loader(train_set, cfg, ctx, device)
    steps_per_epoch = len(loader)
    criterion = StackedHeatmapLoss(cfg.loss)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, cfg.schedule)
    )
    use_amp = cfg.optim.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    ema = ModelEma(model, cfg.optim.ema) if cfg.optim.ema > 0 else None
    epoch, step, epoch_step, epoch_loss = 0, 0, 0, 0.0  # epoch_step, epoch_loss: of an epoch resumed midway
    if cfg.run.resume is not None:
        state = checkpoints.resume(cfg.run.resume)
        epoch, step = restore_training_state(state, cfg.run.resume, model, model.config.to_dict(), optimizer, scheduler)
        epoch_step, epoch_loss = int(state.get("epoch_step", 0)), float(state.get("epoch_loss_sum", 0.0))
        scaler.load_state_dict(state["scaler"])
        if ema is not None:
            if state.get("ema") is None:
                raise ConfigError(f"optim.ema={cfg.optim.ema} but checkpoint {cfg.run.resume} has no EMA weights")
            ema.load_state_dict(state["ema"])
    train_model: nn.Module = model
    if ctx.enabled:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    logger = None
    if ctx.is_main:
        save_config(cfg, run_dir / "config.yaml")
        prepare_metrics(run_dir / "metrics.jsonl", None if cfg.run.resume is None else step)
        logger = build_logger(cfg.logging, run_dir, name=cfg.run.name, config=config_to_dict(cfg))
        logger.log_config(config_to_dict(cfg))
    norm = default_norm(cfg.data.name)
    result = TrainResult(run_dir, epoch, step, checkpoints.best_metric)

    def training_state() -> dict[str, Any]:
        return {
            "epoch": epoch,
            "step": step,
            "model": model.state_dict(),
            "model_config": model.config.to_dict(),
            "scheme": scheme.name,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "ema": None if ema is None else ema.state_dict(),
            "rng": rng_state(),
            "config": config_to_dict(cfg),
        }

    stop = StopRequest()
    try:
        while epoch < cfg.schedule.epochs:
            train_set.set_epoch(epoch)
            sampler.set_epoch(epoch)
            if epoch_step:  # resumed from an interrupted epoch: its first epoch_step batches are done
                sampler.set_epoch(epoch, start=epoch_step * cfg.data.batch_size)
            model.train()
            started = time.perf_counter()
            data_time, loss_sum = 0.0, torch.tensor(epoch_loss, device=device)
            bar = tqdm(
                stop.start(loader),
                total=len(loader),
                desc=f"epoch {epoch + 1}/{cfg.schedule.epochs}",
                leave=False,
                file=sys.stderr,
                disable=True if not ctx.is_main else None if progress is None else not progress,
            )
            tick = time.perf_counter()
            with stop:
                for batch in bar:
                    data_time += time.perf_counter() - tick
                    images = model_input(batch["image"], device)
                    target = train_set.targets(batch, device)
                    point_weight = batch["point_weight"].to(device, non_blocking=True)
                    with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                        outputs = train_model(images)
                    loss, _ = criterion(outputs, target, point_weight)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    if cfg.optim.grad_clip > 0:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    if ema is not None:
                        ema.update(model, step)
                    step += 1
                    epoch_step += 1
                    loss_sum += loss.detach()
                    if logger is not None and step % cfg.run.log_every == 0:
                        value = loss.item()
                        if not math.isfinite(value):
                            raise FloatingPointError(f"training loss is {value} at step {step} (epoch {epoch + 1})")
                        bar.set_postfix(loss=f"{value:.4g}")
                        logger.log(step, {"epoch": epoch + 1, "loss": value, "lr": optimizer.param_groups[0]["lr"]})
                    tick = time.perf_counter()
                    if stop.requested:  # Ctrl-C: a resumable checkpoint at this step (module docstring)
                        if ctx.is_main and not ctx.enabled:
                            state = {**training_state(), "epoch_step": epoch_step, "epoch_loss_sum": loss_sum.item()}
                            checkpoints.save(state)
                            raise KeyboardInterrupt(f"wrote {checkpoints.last_path} at step {step}: --resume continues")
                        raise KeyboardInterrupt
            bar.close()
            epoch, epoch_step, epoch_loss = epoch + 1, 0, 0.0
            elapsed = time.perf_counter() - started
            summary: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": loss_sum.item() / steps_per_epoch,
                "lr": optimizer.param_groups[0]["lr"],
                "epoch_time_s": elapsed,
                "images_per_s": steps_per_epoch * cfg.data.batch_size * ctx.world_size / elapsed,
                "data_time_share": data_time / elapsed,
            }
            if not math.isfinite(summary["train_loss"]):
                raise FloatingPointError(f"training loss is {summary['train_loss']} in epoch {epoch}")
            if ctx.is_main:
                final = epoch == cfg.schedule.epochs
                eval_model = model if ema is None else ema.module
                metric = None
                if val_faces is not None and (epoch % cfg.run.val_every == 0 or final):
                    report = evaluate_model(
                        eval_model, val_faces, cfg.data, device=device, norm=norm, amp=use_amp, progress=progress
                    ).report
                    metric = report[f"nme_{norm}"]
                    summary.update({f"val_{k}": v for k, v in report.items() if k.startswith(("nme_", "fr@", "auc@"))})
                summary["best"] = checkpoints.save(training_state(), metric=metric)
                if summary["best"]:
                    _export(eval_model, run_dir / "best.safetensors", scheme.name)
                if final:
                    _export(eval_model, run_dir / "last.safetensors", scheme.name)
            if logger is not None:
                logger.log(step, summary)
            result.history.append(summary)
            if ctx.enabled:
                dist.barrier()
    finally:
        if logger is not None:
            logger.close()
    result.epoch, result.step, result.best_metric = epoch, step, checkpoints.best_metric
    return result
