"""Training engine: checkpoints, loggers, seeding (the train loop and evaluation build on these)."""

from __future__ import annotations

from awing.engine.checkpoint import CheckpointManager, load_checkpoint, save_checkpoint
from awing.engine.loggers import ConsoleLogger, JsonlLogger, MultiLogger, WandbLogger, build_logger
from awing.engine.seeding import rng_state, seed_everything, set_rng_state

__all__ = [
    "CheckpointManager",
    "ConsoleLogger",
    "JsonlLogger",
    "MultiLogger",
    "WandbLogger",
    "build_logger",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
]

# The train loop and evaluation load on first use (PEP 562): awing.models imports this package for its checkpoint
# reader, and inference must not pull in the training stack. The loop itself: awing.engine.train.train (the
# submodule's name, so it cannot be re-exported here as well).
_LAZY = {
    "StackedHeatmapLoss": "awing.engine.train",
    "TrainResult": "awing.engine.train",
    "Evaluation": "awing.engine.evaluate",
    "evaluate_model": "awing.engine.evaluate",
    "landmark_report": "awing.engine.evaluate",
    "run_evaluation": "awing.engine.evaluate",
}
__all__ += list(_LAZY)


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'awing.engine' has no attribute {name!r}")
