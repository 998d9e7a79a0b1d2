"""Training engine: checkpoints, loggers, seeding. The training loop and its task hooks live in
:mod:`awing.engine.loop`, landmark training in :mod:`awing.engine.train` (its loop: ``awing.engine.train.train``) and
evaluation in :mod:`awing.engine.evaluate`; import those submodules directly (this package stays light, so the
command-line front end does not load the training stack)."""

from __future__ import annotations

from awing.engine.checkpoint import CheckpointManager, save_checkpoint
from awing.engine.loggers import ConsoleLogger, JsonlLogger, MultiLogger, WandbLogger, build_logger
from awing.engine.seeding import rng_state, seed_everything, set_rng_state
from awing.models.weights import load_checkpoint

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
