"""The ``awing train`` and ``awing eval`` subcommands (argparse wiring for awing.cli).

Exit codes: 0 done; 1 the run failed (bad data, I/O, a diverging loss); 2 a usage error: a config file that does
not exist, a misspelt key (with the closest valid one), a wrong type or inconsistent settings; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

from awing.config import ConfigError, TrainConfig, load_config
from awing.engine.loggers import strict_json

__all__ = ["add_eval_parser", "add_train_parser"]

_EPILOG = (
    "Overrides are dotted keys of the config with YAML values, e.g. optim.lr=3e-4 schedule.milestones=[10,20] "
    "model.with_boundary=false; relative paths (data.root, run.out_dir) are relative to the current folder."
)


def guarded(command: str, run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Map exceptions to exit codes with one ``awing <command>: error: ...`` line on stderr."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (ConfigError, FileNotFoundError) as err:
            print(f"awing {command}: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as err:
            print(f"awing {command}: interrupted" + (f"; {err}" if str(err) else ""), file=sys.stderr)
            return 130
        except (ArithmeticError, ImportError, OSError, RuntimeError, ValueError) as err:
            print(f"awing {command}: error: {error_message(err)}", file=sys.stderr)
            return 1

    return wrapper


def error_message(err: BaseException) -> str:
    """``str(err)``, except for an error re-raised from a DataLoader worker: torch puts the worker's whole traceback
    in its message; only the original error's last line is kept (``Type: message`` -> ``message``).

    >>> error_message(ValueError("Caught ValueError in DataLoader worker process 0.\\nOriginal Traceback (most "
    ...     "recent call last):\\n  File \\"x.py\\", line 1\\nawing.data.io.DataError: a.png: truncated\\n"))
    'a.png: truncated'
    """
    text = str(err)
    if "Original Traceback (most recent call last)" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    kind, _, message = last.partition(": ")
    return message if message and kind.replace(".", "").replace("_", "").isalnum() else last


def add_run_arguments(p: argparse.ArgumentParser, example: str) -> None:
    """The arguments every training command shares: CONFIG, key=value overrides, --resume, --no-progress."""
    p.add_argument("config", type=Path, help=f"YAML config (e.g. {example})")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run from <run folder>/last.pt (another checkpoint: run.resume=PATH)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs still go to stderr)")


def resume_path(cfg, args: argparse.Namespace) -> None:
    """``--resume`` without ``run.resume``: continue from ``<run folder>/last.pt``."""
    if args.resume and cfg.run.resume is None:
        cfg.run.resume = str(Path(cfg.run.run_dir) / "last.pt")


def _load(args: argparse.Namespace) -> TrainConfig:
    return load_config(args.config, args.overrides)


def _run_train(args: argparse.Namespace) -> int:
    from awing.engine.train import train

    cfg = _load(args)
    resume_path(cfg, args)
    result = train(cfg, progress=False if args.no_progress else None)
    best = result.best_metric if math.isfinite(result.best_metric) else None  # None: no validation ran
    print(json.dumps({"run_dir": str(result.run_dir), "epoch": result.epoch, "best_metric": best}))
    return 0


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``awing train CONFIG [key=value ...] [--resume]``; its ``run`` returns the exit code."""
    p = subparsers.add_parser(
        "train",
        help="train a landmark network from a YAML config",
        description="Train a landmark network. The run folder (run.out_dir, default runs/<run.name>) receives "
        "config.yaml, metrics.jsonl, last.pt, best.pt (lowest validation NME), best.safetensors and "
        "last.safetensors. Multi-GPU: torchrun --nproc_per_node N --no-python awing train CONFIG ...",
        epilog=_EPILOG,
    )
    add_run_arguments(p, "configs/aflw_cpu.yaml")
    p.set_defaults(run=guarded("train", _run_train))
    return p


def _run_eval(args: argparse.Namespace) -> int:
    from awing.engine.evaluate import run_evaluation

    cfg = _load(args)
    report, out = run_evaluation(
        cfg,
        args.weights,
        split=args.split,
        norm=args.norm,
        threshold=args.threshold,
        flip=args.flip,
        out_dir=args.out,
        progress=False if args.no_progress else None,
    )
    print(strict_json(report, indent=2))
    print(f"awing eval: wrote {out / 'report.json'} and {out / 'ced.png'}", file=sys.stderr)
    return 0


def add_eval_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``awing eval CONFIG --weights W [key=value ...]``; its ``run`` returns the exit code."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate landmark weights: NME, FR, AUC overall and per subset, CED plot",
        description="Evaluate weights on a data set split: NME (every normalisation, the primary one named), "
        "FR and AUC at --threshold, per subset (WFLW attributes, 300W common/challenging, AFLW yaw bins). Prints "
        "the JSON report and writes report.json and ced.png. Another data set: data.name=aflw2000-3d "
        "data.root=... data.scheme=21 --split test.",
        epilog=_EPILOG,
    )
    p.add_argument("config", type=Path, help="YAML config of the model's data set and crop (e.g. the training one)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--weights", type=Path, required=True, help="weights: .safetensors (release) or .pt / .pth")
    p.add_argument("--split", default=None, help="split to evaluate (default: data.val_split)")
    p.add_argument(
        "--norm",
        choices=("inter_ocular", "inter_pupil", "box"),
        default=None,
        help="primary NME normalisation for FR, AUC and the CED (default: box for AFLW, inter_pupil for COFW, "
        "else inter_ocular); the others are reported too",
    )
    p.add_argument("--threshold", type=float, default=0.10, help="FR / AUC threshold (default 0.10)")
    p.add_argument("--flip", action="store_true", help="flip test: average with the mirrored crop's heatmaps")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: beside the weights)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=guarded("eval", _run_eval))
    return p
