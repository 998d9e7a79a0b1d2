"""Training engine: the training loop and its task hooks, landmark training and evaluation, checkpoints, loggers,
seeding. The loop itself: :func:`awing.engine.train.train` (the submodule's name, so it is not re-exported here)."""

from __future__ import annotations

from awing.engine.checkpoint import CheckpointManager, save_checkpoint
from awing.engine.evaluate import Evaluation, evaluate_model, landmark_report, run_evaluation
from awing.engine.loggers import ConsoleLogger, JsonlLogger, MultiLogger, WandbLogger, build_logger
from awing.engine.loop import TrainingTask, TrainResult, run_training
from awing.engine.seeding import rng_state, seed_everything, set_rng_state
from awing.engine.train import StackedHeatmapLoss
from awing.models.weights import load_checkpoint

__all__ = [
    "CheckpointManager",
    "ConsoleLogger",
    "Evaluation",
    "JsonlLogger",
    "MultiLogger",
    "StackedHeatmapLoss",
    "TrainResult",
    "TrainingTask",
    "WandbLogger",
    "build_logger",
    "evaluate_model",
    "landmark_report",
    "load_checkpoint",
    "rng_state",
    "run_evaluation",
    "run_training",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
]
