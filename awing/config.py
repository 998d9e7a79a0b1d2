"""Typed configuration: dataclass defaults, YAML overrides, ``key=value`` command-line overrides.

The defaults live in the dataclasses below (each field documents itself in its ``help`` metadata). A YAML file
overrides them, then trailing ``key=value`` tokens override that; the resolved config is saved with every run
(:func:`save_config`) and reloads to an equal object. Training defaults follow methods.md §4 (several of its values
are marked unverified there; the augmentation probabilities are awing's own choice).

Every key is checked against the dataclass tree: a misspelt key fails with the closest valid one, a value of the
wrong type fails with the key, the expected type and the value. The machinery is generic: any dataclass tree whose
fields are bool, int, float, str, ``Literal``, ``list``, ``tuple``, ``X | None`` or nested dataclasses can use it
through the ``cls`` argument.

>>> cfg = load_config(None, ["optim.lr=3e-4", "schedule.milestones=[10,20]", "model.with_boundary=false"])
>>> cfg.optim.lr, cfg.schedule.milestones, cfg.model.with_boundary, cfg.data.batch_size
(0.0003, [10, 20], False, 16)
>>> load_config(None, ["optim.lrr=1"])
Traceback (most recent call last):
...
awing.config.ConfigError: unknown config key 'optim.lrr'; did you mean 'optim.lr'?
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key that does not exist, or a value of the wrong type or range."""


def _field(default: Any, help: str) -> Any:
    """A dataclass field with a default (mutable ones are deep-copied per instance) and a ``help`` text."""
    if isinstance(default, list) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def _require(ok: bool, name: str, expected: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def _require_probabilities(obj: Any, names: Sequence[str]) -> None:
    for name in names:
        value = getattr(obj, name)
        _require(0.0 <= value <= 1.0, name, "a probability in [0, 1]", value)


@dataclass
class AugmentConfig:
    """Training augmentation: one geometric matrix per sample (ours), photometric ops on the image alone."""

    rotation_deg: float = _field(50.0, "maximum rotation in degrees, drawn uniformly in [-r, r] (methods.md §4)")
    scale: float = _field(0.15, "maximum relative scale change, drawn uniformly in [1 - s, 1 + s]")
    shift_px: float = _field(25.0, "maximum translation in pixels of a 256-pixel input (scaled by input_size / 256)")
    flip_prob: float = _field(0.5, "probability of a horizontal flip (the scheme's flip permutation follows)")
    occlusion_prob: float = _field(0.2, "probability of pasting a random occluding rectangle")
    blur_prob: float = _field(0.2, "probability of a Gaussian blur")
    noise_prob: float = _field(0.2, "probability of additive Gaussian noise")
    jpeg_prob: float = _field(0.2, "probability of JPEG re-compression")
    colour_prob: float = _field(0.5, "probability of a brightness / contrast / saturation jitter")
    grey_prob: float = _field(0.0, "probability of turning the crop grey (the same grey in all three channels)")

    def __post_init__(self) -> None:
        _require(self.rotation_deg >= 0, "rotation_deg", ">= 0", self.rotation_deg)
        _require(0 <= self.scale < 1, "scale", "in [0, 1)", self.scale)
        _require(self.shift_px >= 0, "shift_px", ">= 0", self.shift_px)
        _require_probabilities(
            self, ("flip_prob", "occlusion_prob", "blur_prob", "noise_prob", "jpeg_prob", "colour_prob", "grey_prob")
        )


@dataclass
class DataConfig:
    """Dataset, crops and targets."""

    name: str = _field("wflw", "dataset name (a key of the dataset table in awing.data)")
    root: str = _field("data/WFLW", "dataset root folder")
    train_split: str = _field("train", "split used for training")
    val_split: str = _field("test", "split used for validation")
    scheme: str = _field("98", "landmark scheme name or point count (awing.landmarks.get_scheme)")
    input_size: int = _field(256, "side of the square network input in pixels")
    heatmap_size: int = _field(64, "side of the square heatmaps; input_size must be a multiple of it")
    sigma: float = _field(1.5, "Gaussian standard deviation in heatmap pixels (subpixel codec)")
    codec: Literal["subpixel", "awing_official"] = _field(
        "subpixel",
        "heatmap target and decoder: 'subpixel' (Gaussian at the exact point) or 'awing_official' "
        "(the official quantised 7x7 target and quarter-pixel decoder, methods.md §3.6)",
    )
    boundary: bool = _field(True, "add the boundary heatmap channel to the targets (methods.md §3.7)")
    crop_scale: float = _field(1.25, "crop side = crop_scale x the face box's longer side")
    augment: AugmentConfig = _field(AugmentConfig(), "training augmentation")
    num_workers: int = _field(2, "DataLoader worker processes (0 = load in the main process)")
    batch_size: int = _field(16, "faces per training batch")
    max_samples: int = _field(0, "use only the first N samples of each split (0 = all)")
    skip_invalid: bool = _field(
        False, "skip bad annotations with one warning naming the first (false: stop at the first, naming its file)"
    )

    def __post_init__(self) -> None:
        _require(self.input_size > 0, "input_size", "> 0", self.input_size)
        _require(self.heatmap_size > 0, "heatmap_size", "> 0", self.heatmap_size)
        _require(
            self.input_size % self.heatmap_size == 0,
            "input_size",
            f"a multiple of heatmap_size={self.heatmap_size}",
            self.input_size,
        )
        _require(self.sigma > 0, "sigma", "> 0", self.sigma)
        _require(self.crop_scale > 0, "crop_scale", "> 0", self.crop_scale)
        _require(self.num_workers >= 0, "num_workers", ">= 0", self.num_workers)
        _require(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        _require(self.max_samples >= 0, "max_samples", ">= 0", self.max_samples)


@dataclass
class ModelConfig:
    """Network (methods.md §3)."""

    name: str = _field("hourglass", "model name (a key of the model table in awing.models)")
    num_stacks: int = _field(4, "number of stacked hourglasses")
    features: int = _field(256, "channels inside each hourglass")
    depth: int = _field(4, "hourglass recursion depth (number of down-samplings)")
    with_boundary: bool = _field(True, "predict the boundary channel and feed it to the CoordConv of the next stack")
    coordconv: bool = _field(True, "add coordinate channels (CoordConv, methods.md §3.5)")

    def __post_init__(self) -> None:
        for name in ("num_stacks", "features", "depth"):
            _require(getattr(self, name) >= 1, name, ">= 1", getattr(self, name))


@dataclass
class LossConfig:
    """Heatmap loss (methods.md §1, §2)."""

    name: str = _field("awing", "loss name: 'awing', 'wing', 'mse' or 'l1' (a key of the loss table)")
    omega: float = _field(14.0, "AWing omega (Wing: w)")
    theta: float = _field(0.5, "AWing theta: switch from the log branch to the linear branch")
    epsilon: float = _field(1.0, "AWing epsilon (Wing: epsilon)")
    alpha: float = _field(2.1, "AWing alpha; must exceed 2 for a smooth loss at zero error")
    use_weight_map: bool = _field(True, "multiply the per-pixel loss by W * M + 1 (methods.md §2)")
    weight: float = _field(10.0, "W of the weight map")
    threshold: float = _field(0.2, "M = dilated target > threshold")
    kernel_size: int = _field(3, "side of the grey dilation (max-pool) window of M")
    boundary_weight: float = _field(1.0, "factor on the boundary channel's loss")
    stack_weights: str = _field("equal", "intermediate supervision: 'equal' sums every stack's loss with weight 1")

    def __post_init__(self) -> None:
        for name in ("omega", "theta", "epsilon", "alpha"):
            _require(getattr(self, name) > 0, name, "> 0", getattr(self, name))
        for name in ("weight", "threshold", "boundary_weight"):
            _require(getattr(self, name) >= 0, name, ">= 0", getattr(self, name))
        _require(self.kernel_size >= 1 and self.kernel_size % 2 == 1, "kernel_size", "odd and >= 1", self.kernel_size)


@dataclass
class OptimConfig:
    """Optimiser (methods.md §4: RMSProp, lr 1e-4, momentum 0, weight decay 1e-5)."""

    name: Literal["rmsprop", "adam"] = _field("rmsprop", "optimiser: 'rmsprop' or 'adam'")
    lr: float = _field(1e-4, "initial learning rate")
    weight_decay: float = _field(1e-5, "L2 weight decay")
    momentum: float = _field(0.0, "RMSProp momentum")
    betas: tuple[float, float] = _field((0.9, 0.999), "Adam betas")
    grad_clip: float = _field(0.0, "clip the global gradient norm to this value (0 = off)")
    ema: float = _field(0.0, "decay of an exponential moving average of the weights (0 = off, e.g. 0.999)")
    amp: bool = _field(True, "mixed precision (autocast + gradient scaling) on CUDA; ignored on CPU")

    def __post_init__(self) -> None:
        _require(math.isfinite(self.lr) and self.lr > 0, "lr", "finite and > 0", self.lr)
        _require(math.isfinite(self.weight_decay) and self.weight_decay >= 0, "weight_decay", ">= 0", self.weight_decay)
        _require(0 <= self.momentum < 1, "momentum", "in [0, 1)", self.momentum)
        _require(all(0 <= b < 1 for b in self.betas), "betas", "in [0, 1)", self.betas)
        _require(math.isfinite(self.grad_clip) and self.grad_clip >= 0, "grad_clip", "finite and >= 0", self.grad_clip)
        _require(0 <= self.ema < 1, "ema", "in [0, 1)", self.ema)


@dataclass
class ScheduleConfig:
    """Learning-rate schedule: optional linear warm-up, then steps (methods.md §4: x0.1 at 80 and 160 of 240)."""

    epochs: int = _field(240, "training epochs")
    milestones: list[int] = _field([80, 160], "epochs at which the learning rate is multiplied by gamma")
    gamma: float = _field(0.1, "learning-rate factor at each milestone")
    warmup_epochs: int = _field(0, "epochs of linear learning-rate warm-up (0 = none)")

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, "epochs", ">= 1", self.epochs)
        _require(
            all(a < b for a, b in zip([0, *self.milestones], self.milestones, strict=False)),
            "milestones",
            "positive and strictly increasing",
            self.milestones,
        )
        _require(self.gamma > 0, "gamma", "> 0", self.gamma)
        _require(
            0 <= self.warmup_epochs < self.epochs, "warmup_epochs", f"in [0, epochs={self.epochs})", self.warmup_epochs
        )


@dataclass
class RunConfig:
    """Where and how a run executes."""

    name: str = _field("default", "run name")
    out_dir: str = _field("", "run folder (empty = runs/<name>); see run_dir")
    seed: int = _field(0, "seed of python, numpy and torch")
    device: str = _field("auto", "'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'")
    log_every: int = _field(50, "log training metrics every N optimiser steps")
    val_every: int = _field(1, "validate every N epochs")
    resume: str | None = _field(None, "checkpoint to resume from (model, optimiser, scheduler, RNG, epoch)")
    init_weights: str | None = _field(
        None, "fine-tune: start from these release weights (.safetensors); optimiser and schedule start fresh"
    )
    deterministic: bool = _field(False, "use deterministic algorithms (slower; bit-exact reruns on one machine)")

    def __post_init__(self) -> None:
        _require(self.log_every >= 1, "log_every", ">= 1", self.log_every)
        _require(
            re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(self.device)) is not None,
            "device",
            "'auto', 'cpu', 'cuda' or 'cuda:N'",
            self.device,
        )
        _require(self.val_every >= 1, "val_every", ">= 1", self.val_every)

    @property
    def run_dir(self) -> str:
        """The run folder: ``out_dir``, or ``runs/<name>`` when it is empty."""
        return self.out_dir or f"runs/{self.name}"


@dataclass
class LoggingConfig:
    """Metric sinks (awing.engine.loggers)."""

    console: bool = _field(True, "one line per log call on stderr")
    jsonl: bool = _field(True, "append one JSON object per log call to <run_dir>/metrics.jsonl")
    wandb: bool = _field(False, "log to Weights & Biases (needs the wandb package)")
    wandb_project: str = _field("awing", "Weights & Biases project")
    wandb_mode: Literal["online", "offline", "disabled"] | None = _field(
        None, "Weights & Biases mode; null = the WANDB_MODE environment variable, else wandb's default"
    )


@dataclass
class TrainConfig:
    """Everything a training run needs."""

    data: DataConfig = _field(DataConfig(), "dataset, crops and targets")
    model: ModelConfig = _field(ModelConfig(), "network")
    loss: LossConfig = _field(LossConfig(), "heatmap loss")
    optim: OptimConfig = _field(OptimConfig(), "optimiser")
    schedule: ScheduleConfig = _field(ScheduleConfig(), "learning-rate schedule")
    run: RunConfig = _field(RunConfig(), "run folder, seed, device, logging cadence, resume")
    logging: LoggingConfig = _field(LoggingConfig(), "metric sinks")


# --- generic machinery ------------------------------------------------------------------------------------------


def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a dataclass (annotations are strings under ``from __future__``)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of a dataclass tree, sections included, in definition order."""
    keys = []
    for name, tp in _hints(cls).items():
        keys.append(prefix + name)
        if _is_section(tp):
            keys.extend(_all_keys(tp, f"{prefix}{name}."))
    return keys


def _unknown_key(key: str, root: type, section: type) -> ConfigError:
    valid = {k.lower(): k for k in _all_keys(root)}  # case-insensitive matching
    matches = [valid[k] for k in difflib.get_close_matches(key.lower(), valid, n=1)]
    if not matches:  # a key without its section, e.g. "lr" for "optim.lr"
        leaf = key.rsplit(".", 1)[-1].lower()
        leaves = difflib.get_close_matches(leaf, {k.rsplit(".", 1)[-1] for k in valid}, n=1)
        matches = [v for k, v in valid.items() if leaves and k.rsplit(".", 1)[-1] == leaves[0]]
    if matches:
        return ConfigError(f"unknown config key {key!r}; did you mean {' or '.join(map(repr, matches))}?")
    return ConfigError(f"unknown config key {key!r}; valid keys here: {', '.join(_hints(section))}")


def _merge(dst: dict[str, Any], src: Any, cls: type, root: type, prefix: str = "") -> None:
    """Deep-merge the mapping ``src`` into the plain dict ``dst`` of dataclass ``cls``, checking every key."""
    if not isinstance(src, Mapping):
        where = f"config section {prefix[:-1]!r}" if prefix else "a config"
        raise ConfigError(f"{where} must be a mapping of keys to values, got {src!r}")
    hints = _hints(cls)
    for key, value in src.items():
        if key not in hints:
            raise _unknown_key(f"{prefix}{key}", root, cls)
        if _is_section(hints[key]) and isinstance(value, Mapping):
            _merge(dst[key], value, hints[key], root, f"{prefix}{key}.")
        else:
            dst[key] = value


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is list:
        return f"list[{_type_name(args[0])}]"
    if origin is tuple:
        inner = f"{_type_name(args[0])}, ..." if args[-1] is Ellipsis else ", ".join(map(_type_name, args))
        return f"tuple[{inner}]"
    if _is_section(tp):
        return f"a mapping ({tp.__name__} section)"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the field type ``tp`` and convert it (int -> float, list -> tuple, dict -> section)."""

    def wrong() -> ConfigError:
        return ConfigError(f"config key {key!r} expects {_type_name(tp)}, got {value!r} ({type(value).__name__})")

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_section(tp):
        if not isinstance(value, Mapping):
            raise wrong()
        return _build(tp, value, f"{key}.")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None):
                try:
                    return _coerce(value, arg, key)
                except ConfigError:
                    pass
        raise wrong()
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        raise wrong()
    if origin is list or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise wrong()
        if origin is list:
            return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
        if args[-1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise wrong()
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise wrong()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise wrong()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise wrong() from None
        raise wrong()
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):  # e.g. data.scheme=68
            return str(value)
        raise wrong()
    raise TypeError(f"config key {key!r} has an unsupported field type {tp!r}")


def _build(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    hints = _hints(cls)
    kwargs = {key: _coerce(value, hints[key], prefix + key) for key, value in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        section = f"config section {prefix[:-1]!r}" if prefix else "config"
        raise ConfigError(f"{section}: {err}") from None


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config as nested plain dicts, lists and scalars (YAML- and ``weights_only``-checkpoint-safe)."""
    if not _is_section(type(cfg)):
        raise TypeError(f"config_to_dict expects a dataclass instance, got {type(cfg).__name__}")

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(cfg))


def config_from_dict(data: Mapping[str, Any], cls: type[T] = TrainConfig) -> T:
    """Build ``cls`` from a (possibly partial) nested mapping: missing keys keep their defaults."""
    merged = config_to_dict(cls())
    _merge(merged, data, cls, cls)
    return _build(cls, merged)


def _field_type(cls: type, key: str) -> Any:
    """The type of the field at dotted ``key``, or None when the key does not exist (the merge reports it)."""
    tp: Any = cls
    for part in key.split("."):
        if not _is_section(tp) or part not in _hints(tp):
            return None
        tp = _hints(tp)[part]
    return tp


def _accepts_str(tp: Any) -> bool:
    if tp is str:
        return True
    return typing.get_origin(tp) in (Literal, Union, types.UnionType) and any(
        isinstance(a, str) or _accepts_str(a) for a in typing.get_args(tp)
    )


def parse_override(token: str, cls: type = TrainConfig) -> tuple[str, Any]:
    """Split a ``key=value`` token of config ``cls``; the value is read as YAML (``false``, ``[10,20]``, ``null``).

    A field that takes strings keeps the text as written (``run.name=2024-01-01`` stays a string), unless the
    text reads as YAML null.
    """
    key, sep, text = token.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"config override must look like key=value (e.g. optim.lr=3e-4), got {token!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    if value is not None and not isinstance(value, str) and _accepts_str(_field_type(cls, key)):
        value = text.strip()
    return key, value


def load_config(path: str | Path | None, overrides: Sequence[str] = (), cls: type[T] = TrainConfig) -> T:
    """Defaults of ``cls``, overridden by the YAML file at ``path`` (if any), then by ``key=value`` tokens.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: an unknown key (with the closest valid one), a wrong type or an out-of-range value.
    """
    if isinstance(overrides, str):
        raise TypeError(f"overrides must be a list of key=value strings, got the string {overrides!r}")
    merged = config_to_dict(cls())
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            _merge(merged, {} if data is None else data, cls, cls)
        except (yaml.YAMLError, ConfigError) as err:
            raise ConfigError(f"{path}: {err}") from None
    for token in overrides:
        key, value = parse_override(token, cls)
        for part in reversed(key.split(".")):
            value = {part: value}
        _merge(merged, value, cls, cls)
    return _build(cls, merged)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML; ``load_config(path, cls=type(cfg)) == cfg``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")


def format_config_help(cls: type = TrainConfig) -> str:
    """One line per key: ``key: type = default  # help`` (for ``--help``-style listings)."""
    lines = []

    def walk(section: type, instance: Any, prefix: str) -> None:
        hints = _hints(section)
        for f in dataclasses.fields(section):
            if f.name not in hints:
                continue
            value, tp, key = getattr(instance, f.name), hints[f.name], prefix + f.name
            if _is_section(tp):
                lines.append(f"{key}:  # {f.metadata.get('help', '')}")
                walk(tp, value, f"{key}.")
            else:
                shown = json.dumps(config_to_dict(instance)[f.name])
                lines.append(f"{key}: {_type_name(tp)} = {shown}  # {f.metadata.get('help', '')}")

    walk(cls, cls(), "")
    return "\n".join(lines)
