"""Landmark training: the :class:`LandmarkTask` of the shared loop (:mod:`awing.engine.loop`) and its loss.

One optimiser step (architecture.md, Data flow): augmented uint8 crops, made float on the device
(:func:`awing.inference.model_input`) -> model (all stacks) -> loss on every stack's landmark and boundary
heatmaps against the same target (landmark heatmaps encoded on the device from the crop points, then the worker's
boundary map: :meth:`~awing.data.training.LandmarkTrainingSet.targets`), summed with equal weights (intermediate
supervision, methods.md §3.4); AMP, gradient clipping, the schedule, EMA, checkpoints, resume and DDP are the
loop's (:mod:`awing.engine.loop`).

The loss per stack is ``mean(L(pred, target) · v · (W·M + 1))`` (methods.md §1.3, §2): ``L`` the AWing (or
Wing / MSE / L1 for ablations), ``M`` the thresholded 3x3 dilation of the target, ``v`` the per-channel weight
``B x (K+1) x 1 x 1``: each landmark's point weight (0 for points that are invisible or outside the crop) and
``loss.boundary_weight`` for the boundary channel. A model without the boundary channel drops it from the target.

Validation: NME on ``data.val_split`` (:func:`awing.engine.evaluate.evaluate_model`, the prediction routine); the
best epoch has the lowest NME. Release weights (``best.safetensors``, ``last.safetensors``; EMA weights when EMA
is on) carry the inference settings of ``cfg.data`` (codec, sigma, crop scale, input and heatmap size:
:class:`awing.inference.InferenceSettings`) beside the model config and scheme, so ``awing predict --weights``
decodes as ``awing eval`` and validation did.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from awing.config import ConfigError, LossConfig, OptimConfig, TrainConfig
from awing.data import LandmarkTrainingSet
from awing.engine.evaluate import default_norm, evaluate_model, open_dataset
from awing.engine.loop import DistributedContext, TrainingTask, TrainResult, export_atomically, run_training
from awing.inference import InferenceSettings, model_input
from awing.landmarks import get_scheme
from awing.losses import AdaptiveWingLoss, get_loss, loss_weight_map
from awing.models import MODELS, StackedHourglass, load_state_dict_strict, read_weights, save_weights

__all__ = [
    "LandmarkTask",
    "StackedHeatmapLoss",
    "build_model_from_config",
    "build_optimizer",
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


class LandmarkTask(TrainingTask):
    """The landmark network of ``cfg`` as a :class:`~awing.engine.loop.TrainingTask` (see the module docstring)."""

    kind = "model"
    items = "faces"
    summed = ("loss",)

    def __init__(self, cfg: TrainConfig, device: torch.device, ctx: DistributedContext) -> None:
        self.cfg = cfg
        self.scheme = get_scheme(cfg.data.scheme)
        self.model = build_model_from_config(cfg).to(device)
        if cfg.run.init_weights and cfg.run.resume is None:
            load_state_dict_strict(self.model, read_weights(cfg.run.init_weights)[0])
        self.train_set = LandmarkTrainingSet.from_config(
            open_dataset(cfg.data, cfg.data.train_split), cfg.data, train=True, seed=cfg.run.seed
        )
        self.val_faces = open_dataset(cfg.data, cfg.data.val_split) if cfg.data.val_split and ctx.is_main else None
        self.criterion = StackedHeatmapLoss(cfg.loss)
        self.device = device
        self.norm = default_norm(cfg.data.name)
        self.settings = InferenceSettings.from_data_config(cfg.data)

    @property
    def model_config(self) -> dict[str, Any]:
        return self.model.config.to_dict()

    def build_optimizer(self) -> torch.optim.Optimizer:
        return build_optimizer(self.model.parameters(), self.cfg.optim)

    def forward(self, model: nn.Module, batch: Mapping[str, Tensor], device: torch.device) -> list[Tensor]:
        return model(model_input(batch["image"], device))

    def loss(self, outputs: list[Tensor], batch: Mapping[str, Tensor], device: torch.device) -> dict[str, Tensor]:
        target = self.train_set.targets(batch, device)
        point_weight = batch["point_weight"].to(device, non_blocking=True)
        return {"loss": self.criterion(outputs, target, point_weight)[0]}

    @property
    def validates(self) -> bool:
        return self.val_faces is not None

    def validate(self, model: nn.Module, progress: bool | None) -> tuple[float, dict[str, Any]]:
        amp = self.cfg.optim.amp and self.device.type == "cuda"
        report = evaluate_model(
            model, self.val_faces, self.cfg.data, device=self.device, norm=self.norm, amp=amp, progress=progress
        ).report
        values = {f"val_{k}": v for k, v in report.items() if k.startswith(("nme_", "fr@", "auc@"))}
        return report[f"nme_{self.norm}"], values

    def export(self, model: nn.Module, path: Path) -> None:
        metadata = self.settings.to_metadata(model.config)
        export_atomically(lambda tmp: save_weights(model, tmp, scheme=self.scheme.name, extra_metadata=metadata), path)

    def state(self) -> dict[str, Any]:
        return {"scheme": self.scheme.name}


def train(cfg: TrainConfig, *, progress: bool | None = None) -> TrainResult:
    """Train the landmark model of ``cfg``; resume from ``cfg.run.resume`` when set (:func:`run_training`).

    Args:
        cfg: the resolved config.
        progress: tqdm bars on stderr (None: only when stderr is a terminal; always off on ranks > 0).

    Raises:
        ConfigError: inconsistent settings, a run folder that already holds a checkpoint without ``run.resume``,
            or a checkpoint whose model differs.
    """
    return run_training(cfg, lambda device, ctx: LandmarkTask(cfg, device, ctx), progress=progress)
