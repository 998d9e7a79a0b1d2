"""The ``awing train-detector`` and ``awing eval-detector`` subcommands (argparse wiring for awing.cli).

Exit codes as ``awing train`` / ``awing eval``: 0 done; 1 the run failed (bad data, I/O, a diverging loss); 2 a usage
error: a config file that does not exist, a misspelt key (with the closest valid one), a wrong type or inconsistent
settings; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from awing.config import load_config
from awing.detection.config import DetectorConfig
from awing.engine.commands import add_run_arguments, guarded, resume_path
from awing.engine.loggers import strict_json

__all__ = ["add_eval_detector_parser", "add_train_detector_parser"]

_EPILOG = (
    "Overrides are dotted keys of the detector config with YAML values, e.g. optim.lr=0.01 loss.classification=ohem "
    "loss.alwa.enabled=true data.input_size=640; relative paths (data.root, run.out_dir) are relative to the current "
    "folder."
)


def _load(args: argparse.Namespace) -> DetectorConfig:
    return load_config(args.config, args.overrides, cls=DetectorConfig)


def _run_train(args: argparse.Namespace) -> int:
    from awing.detection.train import train_detector

    cfg = _load(args)
    resume_path(cfg, args)
    result = train_detector(cfg, progress=False if args.no_progress else None)
    best = result.best_ap if math.isfinite(result.best_ap) else None  # None: no validation ran
    print(json.dumps({"run_dir": str(result.run_dir), "epoch": result.epoch, "best_ap": best}))
    return 0


def add_train_detector_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``awing train-detector CONFIG [key=value ...] [--resume]``; its ``run`` returns the exit code."""
    p = subparsers.add_parser(
        "train-detector",
        help="train the face detector from a YAML config",
        description="Train the face detector (methods.md §7-§10). The run folder (run.out_dir, default "
        "runs/<run.name>) receives config.yaml, metrics.jsonl, last.pt, best.pt (highest validation AP at IoU 0.5), "
        "best.safetensors and last.safetensors (load with awing.detection.FaceDetector.from_weights).",
        epilog=_EPILOG,
    )
    add_run_arguments(p, "configs/detector_face_mask.yaml")
    p.set_defaults(run=guarded("train-detector", _run_train))
    return p


def _run_eval(args: argparse.Namespace) -> int:
    from awing.detection.evaluate import run_detector_evaluation

    cfg = _load(args)
    report, out = run_detector_evaluation(
        cfg,
        args.weights,
        split=args.split,
        iou_threshold=args.iou,
        wider_gt=args.wider_gt,
        out_dir=args.out,
        progress=False if args.no_progress else None,
    )
    print(strict_json(report, indent=2))
    print(f"awing eval-detector: wrote {out / 'report.json'}", file=sys.stderr)
    return 0


def add_eval_detector_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``awing eval-detector CONFIG --weights W [key=value ...]``; its ``run`` returns the exit code."""
    p = subparsers.add_parser(
        "eval-detector",
        help="evaluate detector weights: AP at IoU 0.5, recall at the operating threshold, WIDER easy/medium/hard",
        description="Evaluate detector weights on a data set split: AP (all-point interpolated precision-recall, "
        "detections down to score 0.02), recall and precision at inference.score_threshold. With data.name=wider "
        "also the easy / medium / hard APs: the official protocol when wider_face_val.mat and "
        "wider_{easy,medium,hard}_val.mat are found (--wider-gt, or under data.root), else a simplified size-based "
        "one that is not comparable with published numbers (see awing/detection/evaluate.py). Prints the JSON "
        "report and writes report.json. Other data: data.name=dlib data.root=DIR --split training.",
        epilog=_EPILOG,
    )
    p.add_argument("config", type=Path, help="YAML config of the data set and thresholds (e.g. the training one)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--weights", type=Path, required=True, help="detector .safetensors (awing.detection.save_detector)")
    p.add_argument("--split", default=None, help="split to evaluate (default: data.val_split)")
    p.add_argument("--iou", type=float, default=0.5, help="IoU of a match (default 0.5)")
    p.add_argument("--wider-gt", type=Path, default=None, help="folder of the official WIDER FACE .mat files")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: beside the weights)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=guarded("eval-detector", _run_eval))
    return p
