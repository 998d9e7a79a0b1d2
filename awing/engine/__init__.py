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
