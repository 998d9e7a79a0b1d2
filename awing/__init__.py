"""awing: face alignment by heatmap regression with the Adaptive Wing loss (Wang, Bo & Fuxin, ICCV 2019)."""

from __future__ import annotations

__version__ = "0.1.0"
