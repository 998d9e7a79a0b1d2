"""Losses: Adaptive Wing with its weighted loss map (methods.md §1, §2), baselines for ablations, and the detector's
focal loss, ALWA loss-weight adjustment and noisy-anchor soft labels (methods.md §7-§9)."""

from __future__ import annotations

from awing.losses.alwa import ALWA
from awing.losses.awing import AdaptiveWingLoss, adaptive_wing_loss, loss_weight_map
from awing.losses.baselines import LOSSES, get_loss, l1_loss, mse_loss, wing_loss
from awing.losses.focal import SigmoidFocalLoss, focal_prior_bias, sigmoid_focal_loss
from awing.losses.noisy_anchor import cleanliness, noisy_anchor_weights, normalize_weights, select_candidates

__all__ = [
    "LOSSES",
    "AdaptiveWingLoss",
    "adaptive_wing_loss",
    "get_loss",
    "l1_loss",
    "loss_weight_map",
    "mse_loss",
    "wing_loss",
    "ALWA",
    "SigmoidFocalLoss",
    "cleanliness",
    "focal_prior_bias",
    "noisy_anchor_weights",
    "normalize_weights",
    "select_candidates",
    "sigmoid_focal_loss",
]
