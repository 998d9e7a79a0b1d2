"""awing: face alignment by heatmap regression with the Adaptive Wing loss (Wang, Bo & Fuxin, ICCV 2019)."""

from __future__ import annotations

__version__ = "0.1.0"

from awing.codecs import HeatmapCodec  # noqa: E402
from awing.landmarks import LandmarkScheme, get_scheme  # noqa: E402
from awing.losses import AdaptiveWingLoss, adaptive_wing_loss, loss_weight_map  # noqa: E402

__all__ = [
    "AdaptiveWingLoss",
    "Face",
    "FaceAligner",
    "HeatmapCodec",
    "LandmarkScheme",
    "__version__",
    "adaptive_wing_loss",
    "get_scheme",
    "loss_weight_map",
]


def __getattr__(name: str) -> object:
    """Lazy exports: ``awing.FaceAligner`` and ``awing.Face`` import the inference stack on first use."""
    if name in ("Face", "FaceAligner", "OPENCV", "BUNDLED"):
        from awing import aligner

        return getattr(aligner, name)
    raise AttributeError(f"module 'awing' has no attribute {name!r}")
