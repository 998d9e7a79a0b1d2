"""Metric loggers: console (stderr), JSON Lines (one object per line) and Weights & Biases (optional).

Every logger has ``log(step, metrics)``, ``log_config(config)`` and ``close()``; :class:`MultiLogger` fans out
to several. wandb is imported only when a :class:`WandbLogger` is created. Progress bars belong to the train loop.

>>> import io
>>> stream = io.StringIO()
>>> ConsoleLogger(stream).log(120, {"epoch": 3, "loss": 0.012345678, "lr": 1e-4})
>>> stream.getvalue()
'step 120 | epoch 3 | loss 0.01235 | lr 0.0001\\n'
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

from awing.config import LoggingConfig

__all__ = ["ConsoleLogger", "JsonlLogger", "Logger", "MultiLogger", "WandbLogger", "build_logger", "strict_json"]


def strict_json(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that writes valid JSON only: NaN and infinite floats become ``null`` (``allow_nan=False``).

    >>> strict_json({"nme": float("nan"), "auc": [0.5, float("inf")]})
    '{"nme": null, "auc": [0.5, null]}'
    """

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, Mapping):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(obj), allow_nan=False, **kwargs)


class Logger(Protocol):
    """What the train loop calls."""

    def log(self, step: int, metrics: Mapping[str, Any]) -> None: ...

    def log_config(self, config: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


def _scalar_metrics(step: int, metrics: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    """Check ``step`` and turn each metric into a plain scalar (one-element tensors and numpy scalars via .item())."""
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(f"step must be an int, got {step!r}")
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping of names to numbers, got {type(metrics).__name__}")
    out = {}
    for key, value in metrics.items():
        if not isinstance(key, str):
            raise TypeError(f"metric names must be strings, got {key!r}")
        if not isinstance(value, (bool, int, float, str)) and hasattr(value, "item"):
            try:
                value = value.item()
            except (ValueError, RuntimeError):  # several elements (numpy, torch)
                pass
        if not isinstance(value, (bool, int, float, str)):
            raise TypeError(f"metric {key!r} must be a number, a string or a one-element tensor, got {value!r}")
        out[key] = value
    return out


def _format_value(value: bool | int | float | str) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4g}"
    return str(value)


class ConsoleLogger:
    """One line per :meth:`log` call: ``step 120 | loss 0.01235 | lr 0.0001``.

    Args:
        stream: where to write; None = ``sys.stderr`` at call time (results go to stdout, logs to stderr).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        return sys.stderr if self._stream is None else self._stream

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        values = _scalar_metrics(step, metrics)
        parts = [f"step {step}"] + [f"{k} {_format_value(v)}" for k, v in values.items()]
        print(" | ".join(parts), file=self.stream, flush=True)

    def log_config(self, config: Mapping[str, Any]) -> None:
        print("config " + json.dumps(config, separators=(",", ":")), file=self.stream, flush=True)

    def close(self) -> None:
        """Nothing to release (the stream is not ours)."""


class JsonlLogger:
    """Appends ``{"step": step, **metrics}`` as one JSON line per :meth:`log` call to ``path``, flushed each time.

    The file is opened in append mode, so a resumed run continues the same file. The config is not written here
    (the run folder holds it as YAML).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        values = _scalar_metrics(step, metrics)
        if "step" in values:
            raise ValueError("'step' is reserved in JSONL records; pass it as the step argument")
        self._file.write(strict_json({"step": step, **values}) + "\n")
        self._file.flush()

    def log_config(self, config: Mapping[str, Any]) -> None:
        """No-op: the resolved config is saved beside the metrics (awing.config.save_config)."""

    def close(self) -> None:
        self._file.close()


class WandbLogger:
    """Weights & Biases run; ``wandb`` is imported here, not at module import.

    Args:
        project: wandb project.
        name: run name.
        mode: "online", "offline" or "disabled"; None leaves it to ``WANDB_MODE`` / wandb's default.
        run_dir: folder under which wandb writes its files (``<run_dir>/wandb``).
        config: the resolved config, recorded with the run.

    Raises:
        ImportError: wandb is not installed.
    """

    def __init__(
        self,
        project: str,
        name: str | None = None,
        mode: str | None = None,
        run_dir: str | os.PathLike | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            import wandb
        except ImportError as err:
            raise ImportError(
                "Weights & Biases logging (logging.wandb=true) needs the wandb package: "
                "pip install 'awing[wandb]', or set logging.wandb=false"
            ) from err
        if run_dir is not None:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=project,
            name=name,
            mode=mode,
            dir=None if run_dir is None else str(run_dir),
            config=None if config is None else dict(config),
        )

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        self._run.log(_scalar_metrics(step, metrics), step=step)

    def log_config(self, config: Mapping[str, Any]) -> None:
        self._run.config.update(dict(config), allow_val_change=True)

    def close(self) -> None:
        self._run.finish()


class MultiLogger:
    """Fans every call out to ``loggers``; :meth:`close` closes them all even if one fails. A context manager."""

    def __init__(self, loggers: Sequence[Logger]) -> None:
        self.loggers = list(loggers)

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        for logger in self.loggers:
            logger.log(step, metrics)

    def log_config(self, config: Mapping[str, Any]) -> None:
        for logger in self.loggers:
            logger.log_config(config)

    def close(self) -> None:
        errors = []
        for logger in self.loggers:
            try:
                logger.close()
            except Exception as err:  # close the others first, then report
                errors.append(err)
        if errors:
            raise errors[0]

    def __enter__(self) -> MultiLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_logger(
    cfg: LoggingConfig, run_dir: str | os.PathLike, name: str | None = None, config: Mapping[str, Any] | None = None
) -> MultiLogger:
    """The loggers a :class:`awing.config.LoggingConfig` asks for.

    Args:
        cfg: which sinks (``console``, ``jsonl``, ``wandb``) and the wandb project and mode.
        run_dir: the run folder; JSONL goes to ``<run_dir>/metrics.jsonl``.
        name: run name (wandb).
        config: the resolved config as a dict (wandb records it).
    """
    loggers: list[Logger] = []
    if cfg.console:
        loggers.append(ConsoleLogger())
    if cfg.jsonl:
        loggers.append(JsonlLogger(Path(run_dir) / "metrics.jsonl"))
    if cfg.wandb:
        loggers.append(WandbLogger(cfg.wandb_project, name=name, mode=cfg.wandb_mode, run_dir=run_dir, config=config))
    return MultiLogger(loggers)
