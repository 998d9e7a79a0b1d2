"""Bundle a landmark model and a face detector as the weights ``FaceAligner.from_pretrained()`` loads.

Run from the repository root::

    python scripts/calibrate_box_adapter.py --detector runs/detector/best.safetensors --json adapter.json
    python scripts/bundle_models.py --landmarks runs/aflw68_cpu --detector runs/detector/best.safetensors \
        --adapter adapter.json                         # writes awing/assets/landmarks_68.safetensors, detector.*

``--landmarks`` is a training run folder (its ``best.safetensors``, ``config.yaml`` and ``metrics.jsonl`` are read)
or a weights file (``.safetensors`` / ``.pth``; a ``config.yaml`` beside it is its run's, or pass ``--config``).
``--detector`` is a run folder of ``awing train-detector`` or a :func:`~awing.detection.save_detector` file, read
the same way. Both models are rebuilt and re-saved in float32 with their own writers, so a bundled file is exactly
what the loaders expect.

Written to ``--out`` (default ``awing/assets``):

- ``landmarks_<K>.safetensors`` (``save_weights``): inference settings (``data`` = crop_scale, codec, sigma,
  input_size and heatmap_size of the training config; ``box_adapter`` from ``--adapter``) and provenance:
  ``trained_on`` (data set and split), ``training_run`` (run name), ``training_config`` (the resolved config as
  JSON, without machine paths: no ``run`` / ``logging`` sections, no ``data.root``), ``validation`` (the best
  epoch's ``val_*`` metrics of ``metrics.jsonl``, JSON, when present), ``trained_with_awing`` (the training
  version, when the source file says it), ``training_command`` (when given), ``box_adapter_calibration`` (the
  calibration record of ``--adapter``, JSON, when present). Only a 68-point model may go to ``awing/assets``
  (``from_pretrained()`` loads ``landmarks_68.safetensors``).
- ``detector.safetensors`` (``save_detector``, stored thresholds kept unless ``--detector-threshold`` sets the
  operating score threshold) with the same provenance keys, from the
  detector's run.

The adapter file is the JSON of ``scripts/calibrate_box_adapter.py`` (``{"box_adapter": {...}, "calibration":
{...}}``) or a bare ``{"shift_x", "shift_y", "scale"}``. When it records ``detector_sha256``, the detector file
must be that one (``--force`` skips the check).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from awing.aligner import ASSETS_DIR
from awing.calibration import file_sha256
from awing.config import TrainConfig, config_to_dict, load_config
from awing.detection import save_detector
from awing.detection.config import DetectorConfig
from awing.detection.detector import load_detector
from awing.geometry import BoxAdapter
from awing.inference import InferenceSettings
from awing.models.weights import model_from_state_dict, read_weights, save_weights

WEIGHTS_NAME = "best.safetensors"
BUNDLED_POINTS = 68


def resolve_source(path: Path, config: Path | None = None) -> tuple[Path, Path | None]:
    """(weights file, run folder or ``None``) of a run folder or weights file; the run folder holds the config.

    A folder gives its ``best.safetensors``; a file's folder counts as its run when it holds ``config.yaml`` (or
    ``config`` is given, which then replaces it).
    """
    if path.is_dir():
        weights, run_dir = path / WEIGHTS_NAME, path
    else:
        weights, run_dir = path, path.parent
    if not weights.is_file():
        raise FileNotFoundError(f"weights not found: {weights}")
    if config is None and not (run_dir / "config.yaml").is_file():
        run_dir = None
    return weights, run_dir


def best_validation(run_dir: Path | None) -> dict[str, Any] | None:
    """``epoch``, ``step`` and the ``val_*`` entries of the last ``"best": true`` record of ``metrics.jsonl``."""
    path = None if run_dir is None else run_dir / "metrics.jsonl"
    if path is None or not path.is_file():
        return None
    best = None
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line) if line.strip() else {}
        if record.get("best") is True:
            best = record
    if best is None:
        return None
    return {k: v for k, v in best.items() if k in ("epoch", "step") or k.startswith("val_")}


def portable_config(cfg: TrainConfig | DetectorConfig) -> dict[str, Any]:
    """The resolved config without machine paths: no ``run`` and ``logging`` sections, no ``data.root``."""
    config = {k: v for k, v in config_to_dict(cfg).items() if k not in ("run", "logging")}
    config["data"] = {k: v for k, v in config["data"].items() if k != "root"}
    return config


def provenance(cfg: TrainConfig | DetectorConfig, run_dir: Path | None, command: str | None) -> dict[str, str]:
    """Provenance metadata entries (str -> str) of a training config and its run folder."""
    out = {
        "trained_on": f"{cfg.data.name}, {cfg.data.train_split} split",
        "training_run": cfg.run.name,
        "training_config": json.dumps(portable_config(cfg), separators=(",", ":")),
    }
    validation = best_validation(run_dir)
    if validation is not None:
        out["validation"] = json.dumps({"split": cfg.data.val_split, **validation})
    if command is not None:
        out["training_command"] = command
    return out


def read_adapter(path: Path) -> tuple[BoxAdapter, dict[str, Any] | None]:
    """The adapter of ``path`` and its calibration record (``None`` for a bare adapter)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    if "box_adapter" in data:
        return BoxAdapter.from_dict(data["box_adapter"]), data.get("calibration")
    return BoxAdapter.from_dict(data), None


def bundle_landmarks(
    source: Path, out: Path, adapter: BoxAdapter, extra: dict[str, str], config: Path | None, command: str | None
) -> Path:
    """Re-save the landmark model of ``source`` into ``out`` with its settings and provenance; returns the file."""
    weights, run_dir = resolve_source(source, config)
    config_path = config if config is not None else None if run_dir is None else run_dir / "config.yaml"
    if config_path is None:
        raise SystemExit(f"no config.yaml beside {weights}: pass --config (the training config of these weights)")
    cfg = load_config(config_path, cls=TrainConfig)
    state_dict, info = read_weights(weights, input_size=cfg.data.input_size)
    model_config = info.config
    for name in ("input_size", "heatmap_size"):
        if getattr(cfg.data, name) != getattr(model_config, name):
            raise SystemExit(
                f"{config_path} has data.{name}={getattr(cfg.data, name)} but the model in {weights} has "
                f"{getattr(model_config, name)}: not the training config of these weights"
            )
    if out.resolve() == ASSETS_DIR.resolve() and model_config.num_landmarks != BUNDLED_POINTS:
        raise SystemExit(
            f"only a {BUNDLED_POINTS}-point model goes to {ASSETS_DIR} (it has {model_config.num_landmarks}); "
            "pass --out another folder"
        )
    settings = InferenceSettings(cfg.data.crop_scale, cfg.data.codec, cfg.data.sigma, adapter)
    metadata = settings.to_metadata()
    sizes = {"input_size": model_config.input_size, "heatmap_size": model_config.heatmap_size}
    metadata["data"] = json.dumps({**json.loads(metadata["data"]), **sizes})  # checked against the model on load
    metadata.update(provenance(cfg, run_dir, command))
    if info.awing_version is not None:
        metadata["trained_with_awing"] = info.awing_version
    model = model_from_state_dict(state_dict, model_config).float()
    path = out / f"landmarks_{model_config.num_landmarks}.safetensors"
    return save_weights(model, path, scheme=info.scheme, extra_metadata={**metadata, **extra})


def bundle_detector(source: Path, out: Path, command: str | None, score_threshold: float | None = None) -> Path:
    """Re-save the detector of ``source`` into ``out`` with its thresholds (``score_threshold`` replaces the stored
    operating threshold) and provenance; returns the file."""
    weights, run_dir = resolve_source(source)
    model, inference = load_detector(weights)
    if score_threshold is not None:
        inference = dataclasses.replace(inference, score_threshold=score_threshold)
    metadata = {}
    if run_dir is not None:
        metadata = provenance(load_config(run_dir / "config.yaml", cls=DetectorConfig), run_dir, command)
    return save_detector(model.float(), out / "detector.safetensors", inference, extra_metadata=metadata)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--landmarks", type=Path, required=True, help="landmark run folder or weights file")
    parser.add_argument("--detector", type=Path, required=True, help="detector run folder or weights file")
    parser.add_argument("--adapter", type=Path, required=True, help="JSON of calibrate_box_adapter.py")
    parser.add_argument("--out", type=Path, default=ASSETS_DIR, help=f"output folder (default {ASSETS_DIR})")
    parser.add_argument("--config", type=Path, default=None, help="landmark training config (default: the run's)")
    parser.add_argument("--training-command", default=None, help="the landmark training command, for provenance")
    parser.add_argument("--detector-command", default=None, help="the detector training command, for provenance")
    parser.add_argument(
        "--detector-threshold", type=float, default=None, help="operating score threshold (default: the stored one)"
    )
    parser.add_argument("--force", action="store_true", help="skip the adapter's detector checksum check")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    adapter, calibration = read_adapter(args.adapter)
    extra = {}
    if calibration is not None:
        expected = calibration.get("detector_sha256")
        detector_file = resolve_source(args.detector)[0]
        if expected is not None and not args.force and file_sha256(detector_file) != expected:
            raise SystemExit(
                f"{args.adapter} was calibrated for another detector file (sha256 {expected[:12]}...) than "
                f"{detector_file}; re-run scripts/calibrate_box_adapter.py or pass --force"
            )
        extra["box_adapter_calibration"] = json.dumps(calibration, separators=(",", ":"))
    written = [
        bundle_landmarks(args.landmarks, args.out, adapter, extra, args.config, args.training_command),
        bundle_detector(args.detector, args.out, args.detector_command, args.detector_threshold),
    ]
    for path in written:
        print(f"{path}  {path.stat().st_size / 2**20:.2f} MiB ({path.stat().st_size} bytes)")
    print(f"box adapter: {json.dumps(adapter.to_dict())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
