"""The one training loop: config + task hooks -> optimiser steps, validation, checkpoints, logs, release weights.

The landmark trainer (:func:`awing.engine.train.train`) and the detector trainer
(:func:`awing.detection.train.train_detector`) are this loop with a :class:`TrainingTask`: the task owns the
network, the training set, the loss, validation and the release-weights format; the loop owns everything else,
the same for both:

One optimiser step: the task's forward pass under float16 autocast on CUDA (``optim.amp``; off on CPU) -> the
task's loss in float32 -> backward through the gradient scaler -> optional gradient-norm clipping
(``optim.grad_clip``) -> optimiser -> per-step learning rate (:func:`lr_factor`: linear warm-up, then ``gamma`` at
each milestone epoch) -> the task's ``after_step`` (the detector's ALWA) -> optional EMA of the weights
(``optim.ema``, :class:`ModelEma`; validation and the release weights use the average).

Reproducibility: the shuffle order of epoch ``e`` is a function of ``(seed, e)`` only
(:class:`~awing.data.training.EpochSampler`; the DistributedSampler's of ``seed + e``), and augmentation comes from
``(seed, e, index)`` (the tasks' datasets), so an epoch does not depend on what ran before it, nor on DataLoader
workers; the checkpoint written at the end of every epoch also holds the global RNG states, the optimiser,
scheduler, gradient scaler, EMA and the task's own state. A Ctrl-C mid-epoch writes ``last.pt`` after the current
step (``epoch_step`` batches into the epoch; not under torchrun). Resuming from either continues exactly: on CPU
with ``run.deterministic=true`` the weights equal an uninterrupted run's bit for bit, with or without workers.

One training writes a run folder at a time (:func:`~awing.engine.run_folder.run_lock`); ``metrics.jsonl`` starts
empty for a fresh run and is cut back to the checkpoint's step on resume
(:func:`~awing.engine.run_folder.prepare_metrics`).

Files in the run folder (``run.run_dir``): ``config.yaml`` (the resolved config), ``metrics.jsonl``, ``last.pt`` and
``best.pt`` (lowest validation metric; atomic writes, :mod:`awing.engine.checkpoint`), ``best.safetensors`` (release
weights of the best epoch) and ``last.safetensors`` (the final model), both written by the task, atomically.

Multi-GPU: under ``torchrun`` (``WORLD_SIZE > 1``) each process takes ``LOCAL_RANK``'s GPU (NCCL; gloo on CPU),
wraps the model in DistributedDataParallel and reads its shard through a DistributedSampler; ``data.batch_size`` is
per process. Rank 0 alone validates, logs and writes files.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from awing.config import ConfigError, ScheduleConfig, config_to_dict, save_config
from awing.data.training import training_loader
from awing.engine.checkpoint import CheckpointManager
from awing.engine.loggers import build_logger
from awing.engine.run_folder import StopRequest, prepare_metrics, run_lock
from awing.engine.seeding import rng_state, seed_everything, set_rng_state
from awing.inference import resolve_device
from awing.models.weights import load_state_dict_strict

__all__ = [
    "DistributedContext",
    "ModelEma",
    "TrainResult",
    "TrainingTask",
    "export_atomically",
    "lr_factor",
    "restore_training_state",
    "run_training",
    "setup_distributed",
]


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
    :func:`~awing.inference.resolve_device`'s device.
    """
    device = resolve_device(device_name, "run.device")
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

    Refuses a checkpoint whose stored model config differs from ``model_config``. The loop restores the gradient
    scaler and the EMA, the task its own state, from ``state``.
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


def export_atomically(save: Callable[[Path], Any], path: Path) -> None:
    """Release weights, atomically: ``save`` writes a temporary ``.safetensors`` beside ``path``, then a rename."""
    tmp = path.with_name(f".{path.stem}.tmp.safetensors")
    try:
        save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class TrainingTask:
    """What a trainer plugs into :func:`run_training` (the loop calls these hooks; see the module docstring).

    Attributes set by the subclass: ``model`` (on the device), ``train_set`` (a Dataset with ``set_epoch``),
    ``kind`` (its name in messages, e.g. ``"detector"``), ``items`` (what the training set holds, e.g. ``"faces"``),
    ``summed`` (the loss-dict keys averaged over the epoch as ``train_<key>``), ``collate_fn`` (None: default).
    """

    model: nn.Module
    train_set: Any
    kind: str = "model"
    items: str = "items"
    summed: tuple[str, ...] = ("loss",)
    collate_fn: Callable[..., Any] | None = None

    @property
    def model_config(self) -> dict[str, Any]:
        """The network's config as a plain dict (stored in checkpoints; a resume must match it)."""
        raise NotImplementedError

    def build_optimizer(self) -> torch.optim.Optimizer:
        raise NotImplementedError

    def forward(self, model: nn.Module, batch: Any, device: torch.device) -> Any:
        """The network's outputs for a batch (run under autocast when AMP is on); ``model`` may be DDP-wrapped."""
        raise NotImplementedError

    def loss(self, outputs: Any, batch: Any, device: torch.device) -> dict[str, Tensor]:
        """Scalar tensors (float32, outside autocast); ``"loss"`` is optimised, every entry is logged per step."""
        raise NotImplementedError

    def after_step(self, losses: Mapping[str, Tensor]) -> None:
        """Called after each optimiser step (e.g. ALWA's update)."""

    def log_values(self) -> dict[str, float]:
        """Extra values logged with every step and epoch."""
        return {}

    @property
    def validates(self) -> bool:
        """Whether :meth:`validate` has data (called on rank 0 only)."""
        return False

    def validate(self, model: nn.Module, progress: bool | None) -> tuple[float | None, dict[str, Any]]:
        """``(metric to minimise or None, summary entries)`` of the eval-mode (EMA) model."""
        raise NotImplementedError

    def export(self, model: nn.Module, path: Path) -> None:
        """Write release weights of ``model`` (the EMA model when EMA is on) to ``path`` (a ``.safetensors`` file)."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """Extra checkpoint entries (plain types and tensors)."""
        return {}

    def load_state(self, state: Mapping[str, Any], path: str) -> None:
        """Restore :meth:`state`'s entries from a resumed checkpoint ``path``."""


@dataclass
class TrainResult:
    """What a training run did: the run folder, epochs and optimiser steps completed, the best (lowest) validation
    metric (``inf`` without validation) and one summary dict per epoch run in this call."""

    run_dir: Path
    epoch: int
    step: int
    best_metric: float
    history: list[dict[str, Any]] = field(default_factory=list)


def run_training(
    cfg: Any,
    make_task: Callable[[torch.device, DistributedContext], TrainingTask],
    *,
    progress: bool | None = None,
) -> TrainResult:
    """Train the task that ``make_task(device, ctx)`` builds with the loop settings of ``cfg`` (its ``optim``,
    ``schedule``, ``data.batch_size`` / ``num_workers``, ``run`` and ``logging`` sections).

    The task is built after seeding (so its initial weights follow ``run.seed``) and after the run-folder check.
    ``progress``: tqdm bars on stderr (None: only when stderr is a terminal; always off on ranks > 0).

    Raises:
        ConfigError: a run folder that already holds a checkpoint without ``run.resume`` or that another training
            is writing (:func:`~awing.engine.run_folder.run_lock`), a checkpoint of another network, or fewer
            training items than one batch.
    """
    ctx, device = setup_distributed(cfg.run.device)
    try:
        with run_lock(cfg.run.run_dir, enabled=ctx.is_main):
            return _run(cfg, make_task, ctx, device, progress)
    finally:
        if ctx.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _run(
    cfg: Any,
    make_task: Callable[[torch.device, DistributedContext], TrainingTask],
    ctx: DistributedContext,
    device: torch.device,
    progress: bool | None,
) -> TrainResult:
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    run_dir = Path(cfg.run.run_dir)
    checkpoints = CheckpointManager(run_dir)
    if cfg.run.resume is None and checkpoints.last_path.exists():
        raise ConfigError(
            f"{checkpoints.last_path} exists: pass --resume (run.resume={checkpoints.last_path}) to continue that run, "
            "or choose another run.name / run.out_dir"
        )
    task = make_task(device, ctx)
    model = task.model
    sampler = None
    if ctx.enabled:
        sampler = DistributedSampler(
            task.train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.run.seed, drop_last=True
        )
    loader, sampler = training_loader(
        task.train_set,
        cfg.data.batch_size,
        cfg.data.num_workers,
        device,
        seed=cfg.run.seed,
        sampler=sampler,
        collate_fn=task.collate_fn,
    )
    if len(loader) == 0:
        raise ConfigError(
            f"the training split has {len(task.train_set)} {task.items}, fewer than one batch of data.batch_size="
            f"{cfg.data.batch_size} x {ctx.world_size} process(es)"
        )
    steps_per_epoch = len(loader)
    optimizer = task.build_optimizer()
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, cfg.schedule)
    )
    use_amp = cfg.optim.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    ema = ModelEma(model, cfg.optim.ema) if cfg.optim.ema > 0 else None
    epoch, step, epoch_step = 0, 0, 0  # epoch_step: batches done of an epoch resumed midway
    epoch_sums: dict[str, float] = {}  # the loss sums of those batches
    if cfg.run.resume is not None:
        state = checkpoints.resume(cfg.run.resume)
        epoch, step = restore_training_state(
            state, cfg.run.resume, model, task.model_config, optimizer, scheduler, kind=task.kind
        )
        epoch_step = int(state.get("epoch_step", 0))
        epoch_sums = {k: float(v) for k, v in (state.get("epoch_sums") or {}).items()}
        if state.get("scaler") is not None:  # absent in checkpoints of the former detector loop
            scaler.load_state_dict(state["scaler"])
        if ema is not None:
            if state.get("ema") is None:
                raise ConfigError(f"optim.ema={cfg.optim.ema} but checkpoint {cfg.run.resume} has no EMA weights")
            ema.load_state_dict(state["ema"])
        task.load_state(state, cfg.run.resume)
    train_model: nn.Module = model
    if ctx.enabled:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    logger = None
    if ctx.is_main:
        save_config(cfg, run_dir / "config.yaml")
        prepare_metrics(run_dir / "metrics.jsonl", None if cfg.run.resume is None else step)
        logger = build_logger(cfg.logging, run_dir, name=cfg.run.name, config=config_to_dict(cfg))
        logger.log_config(config_to_dict(cfg))
    result = TrainResult(run_dir, epoch, step, checkpoints.best_metric)

    def training_state() -> dict[str, Any]:
        return {
            "epoch": epoch,
            "step": step,
            "model": model.state_dict(),
            "model_config": task.model_config,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "ema": None if ema is None else ema.state_dict(),
            "rng": rng_state(),
            "config": config_to_dict(cfg),
            **task.state(),
        }

    stop = StopRequest()
    try:
        while epoch < cfg.schedule.epochs:
            task.train_set.set_epoch(epoch)
            sampler.set_epoch(epoch)
            if epoch_step:  # resumed from an interrupted epoch: its first epoch_step batches are done
                sampler.set_epoch(epoch, start=epoch_step * cfg.data.batch_size)
            model.train()
            started = time.perf_counter()
            data_time = 0.0
            sums = {key: torch.tensor(epoch_sums.get(key, 0.0), device=device) for key in task.summed}
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
                    with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                        outputs = task.forward(train_model, batch, device)
                    losses = task.loss(outputs, batch, device)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(losses["loss"]).backward()
                    if cfg.optim.grad_clip > 0:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    task.after_step(losses)
                    if ema is not None:
                        ema.update(model, step)
                    step += 1
                    epoch_step += 1
                    for key, total in sums.items():
                        total += losses[key].detach()
                    if logger is not None and step % cfg.run.log_every == 0:
                        values = {k: v.item() for k, v in losses.items()}
                        if not math.isfinite(values["loss"]):
                            raise FloatingPointError(
                                f"training loss is {values['loss']} at step {step}, epoch {epoch + 1}"
                            )
                        bar.set_postfix(loss=f"{values['loss']:.4g}")
                        logger.log(
                            step,
                            {"epoch": epoch + 1, **values, "lr": optimizer.param_groups[0]["lr"], **task.log_values()},
                        )
                    tick = time.perf_counter()
                    if stop.requested:  # Ctrl-C: a resumable checkpoint at this step (module docstring)
                        if ctx.is_main and not ctx.enabled:
                            sums_now = {k: v.item() for k, v in sums.items()}
                            checkpoints.save({**training_state(), "epoch_step": epoch_step, "epoch_sums": sums_now})
                            raise KeyboardInterrupt(f"wrote {checkpoints.last_path} at step {step}: --resume continues")
                        raise KeyboardInterrupt
            bar.close()
            epoch, epoch_step, epoch_sums = epoch + 1, 0, {}
            elapsed = time.perf_counter() - started
            summary: dict[str, Any] = {"epoch": epoch}
            summary.update({f"train_{k}": v.item() / steps_per_epoch for k, v in sums.items()})
            summary.update(
                lr=optimizer.param_groups[0]["lr"],
                epoch_time_s=elapsed,
                images_per_s=steps_per_epoch * cfg.data.batch_size * ctx.world_size / elapsed,
                data_time_share=data_time / elapsed,
                **task.log_values(),
            )
            if not math.isfinite(summary["train_loss"]):
                raise FloatingPointError(f"training loss is {summary['train_loss']} in epoch {epoch}")
            if ctx.is_main:
                final = epoch == cfg.schedule.epochs
                eval_model = model if ema is None else ema.module
                metric = None
                if task.validates and (epoch % cfg.run.val_every == 0 or final):
                    metric, values = task.validate(eval_model, progress)
                    summary.update(values)
                summary["best"] = checkpoints.save(training_state(), metric=metric)
                if summary["best"]:
                    task.export(eval_model, run_dir / "best.safetensors")
                if final:
                    task.export(eval_model, run_dir / "last.safetensors")
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
