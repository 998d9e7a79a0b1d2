"""awing: face alignment by heatmap regression with the Adaptive Wing loss (Wang, Bo & Fuxin, ICCV 2019)."""

from __future__ import annotations

from awing.landmarks import LandmarkScheme, get_scheme
from awing.losses import AdaptiveWingLoss, adaptive_wing_loss, loss_weight_map
from awing.version import __version__

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
    """Lazy exports: ``awing.FaceAligner``, ``awing.Face`` and ``awing.HeatmapCodec`` import OpenCV and the
    inference stack on first use, so ``import awing.losses`` needs only torch."""
    if name in ("Face", "FaceAligner", "OPENCV", "BUNDLED"):
        from awing import aligner

        return getattr(aligner, name)
    if name == "HeatmapCodec":
        from awing.codecs import HeatmapCodec

        return HeatmapCodec
    raise AttributeError(f"module 'awing' has no attribute {name!r}")
