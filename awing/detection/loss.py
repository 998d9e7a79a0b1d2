"""The detector's multi-task loss: classification + box + 5-point regression (methods.md §7-§10).

``total = alwa_weight · cls_weight · L_cls + box_weight · L_box + landmark_weight · L_landmarks`` with

- ``L_cls``: the sigmoid focal loss (``classification="focal"``, methods.md §7) summed over all non-ignored anchors,
  or RetinaFace's cross-entropy with online hard-negative mining (``"ohem"``: every positive plus the
  ``ohem_neg_pos x max(positives, 1)`` highest-loss negatives of each image; one logit per anchor, so the 2-way
  softmax cross-entropy is the binary cross-entropy of the logit difference). Divided by the number of positive
  anchors in the batch, clamped to >= 1.
- ``L_box``: smooth-L1 on the encoded deltas (:func:`~awing.detection.anchors.encode_boxes`), summed over the four
  deltas and the positives, divided by the same count.
- ``L_landmarks``: smooth-L1 on the encoded 5 points of the positives whose face has points, divided by their count
  (clamped to >= 1). Faces without points train only the box and classification heads.

**Noisy anchors** (``noisy.enabled``, methods.md §9): positives become each face's top-N candidates
(:func:`~awing.detection.anchors.match_anchors` with ``top_n``); their classification target is the cleanliness
``c = α IoU(decoded box, face) + (1 - α) sigmoid(logit)`` and their classification and box losses are re-weighted by
``r`` normalised to keep each total (:mod:`awing.losses.noisy_anchor`). The landmark loss keeps the IoU-threshold
positives. **ALWA** (methods.md §8) is a training-loop hook (:func:`build_alwa`): pass ``alwa_weight=alwa.cls_weight``
and call ``alwa.step(out["cls"], out["box"])`` after the optimiser step.

Targets, one dict per image (tensors on the logits' device): ``boxes`` ``(G, 4)`` xyxy input pixels, ``landmarks``
``(G, 5, 2)``, ``landmark_mask`` ``(G,)`` bool, ``ignore`` ``(G,)`` bool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from awing.detection.anchors import (
    IGNORE,
    NEGATIVE,
    POSITIVE,
    decode_boxes,
    encode_boxes,
    encode_landmarks,
    match_anchors,
    paired_box_iou,
)
from awing.detection.config import DetectionLossConfig
from awing.losses.alwa import ALWA
from awing.losses.focal import sigmoid_focal_loss
from awing.losses.noisy_anchor import cleanliness, noisy_anchor_weights, normalize_weights

__all__ = ["TARGET_KEYS", "DetectionLoss", "build_alwa"]

TARGET_KEYS = ("boxes", "landmarks", "landmark_mask", "ignore")


def build_alwa(config: DetectionLossConfig) -> ALWA | None:
    """The ALWA hook of ``config.alwa`` (``None`` when disabled)."""
    if not config.alwa.enabled:
        return None
    return ALWA(config.alwa.interval, config.alwa.statistic, config.alwa.weighted)


def _check_targets(targets: Sequence[Mapping[str, Tensor]], batch: int) -> None:
    if len(targets) != batch:
        raise ValueError(f"expected {batch} target dicts (one per image), got {len(targets)}")
    for i, target in enumerate(targets):
        missing = [k for k in TARGET_KEYS if k not in target]
        if missing:
            raise ValueError(f"targets[{i}] lacks {missing}; expected keys {TARGET_KEYS}")
        count = target["boxes"].shape[0]
        shapes = {
            "boxes": (count, 4),
            "landmarks": (count, 5, 2),
            "landmark_mask": (count,),
            "ignore": (count,),
        }
        for key, shape in shapes.items():
            if tuple(target[key].shape) != shape:
                raise ValueError(f"targets[{i}][{key!r}] must have shape {shape}, got {tuple(target[key].shape)}")


class DetectionLoss(nn.Module):
    """Multi-task detection loss (see the module docstring).

    Args:
        config: :class:`~awing.detection.config.DetectionLossConfig`.
        variances: box-coding variances of the model (``DetectorModelConfig.variances``).

    Shape:
        - logits ``B x A``, box_deltas ``B x A x 4``, landmark_deltas ``B x A x 10``, anchors ``A x 4``.
        - output: dict of scalars ``loss``, ``cls`` (with ``cls_weight`` but without ``alwa_weight``), ``box``,
          ``landmarks`` (with their weights), and ``num_pos``.
    """

    def __init__(self, config: DetectionLossConfig | None = None, variances: Sequence[float] = (0.1, 0.2)) -> None:
        super().__init__()
        self.config = config or DetectionLossConfig()
        self.variances = tuple(float(v) for v in variances)

    def _match(self, anchors: Tensor, target: Mapping[str, Tensor], top_n: int | None):
        cfg = self.config
        return match_anchors(
            anchors,
            target["boxes"].to(anchors.dtype),
            target["ignore"].bool(),
            pos_iou=cfg.pos_iou,
            neg_iou=cfg.neg_iou,
            low_quality_iou=cfg.low_quality_iou,
            top_n=top_n,
        )

    def forward(
        self,
        logits: Tensor,
        box_deltas: Tensor,
        landmark_deltas: Tensor,
        anchors: Tensor,
        targets: Sequence[Mapping[str, Tensor]],
        alwa_weight: float = 1.0,
    ) -> dict[str, Tensor]:
        cfg = self.config
        batch, num_anchors = logits.shape
        if box_deltas.shape != (batch, num_anchors, 4) or landmark_deltas.shape != (batch, num_anchors, 10):
            raise ValueError(
                f"expected box_deltas {(batch, num_anchors, 4)} and landmark_deltas {(batch, num_anchors, 10)} for "
                f"logits {(batch, num_anchors)}, got {tuple(box_deltas.shape)} and {tuple(landmark_deltas.shape)}"
            )
        if anchors.shape != (num_anchors, 4):
            raise ValueError(f"anchors must have shape {(num_anchors, 4)}, got {tuple(anchors.shape)}")
        _check_targets(targets, batch)
        noisy = cfg.noisy.top_n if cfg.noisy.enabled else None
        device = logits.device
        labels = torch.zeros(batch, num_anchors, dtype=torch.int8, device=device)
        box_parts, landmark_parts = [], []  # (image, anchor, target box) and (image, anchor, target points)
        for b, target in enumerate(targets):
            standard = self._match(anchors, target, None)
            match = self._match(anchors, target, noisy) if noisy is not None else standard
            labels[b] = match.labels
            pos = torch.nonzero(match.labels == POSITIVE).flatten()
            box_parts.append((torch.full_like(pos, b), pos, target["boxes"][match.matched[pos]].to(logits.dtype)))
            lm_pos = torch.nonzero(standard.labels == POSITIVE).flatten()
            lm_pos = lm_pos[target["landmark_mask"].bool()[standard.matched[lm_pos]]]
            points = target["landmarks"][standard.matched[lm_pos]].to(logits.dtype)
            landmark_parts.append((torch.full_like(lm_pos, b), lm_pos, points))
        pos_b, pos_a, pos_boxes = (torch.cat(part) for part in zip(*box_parts, strict=True))
        num_pos = pos_a.numel()
        normalizer = max(num_pos, 1)

        positive = labels == POSITIVE
        cls_targets = positive.to(logits.dtype)
        box_loss = F.smooth_l1_loss(
            box_deltas[pos_b, pos_a],
            encode_boxes(pos_boxes, anchors[pos_a], self.variances),
            beta=cfg.smooth_l1_beta,
            reduction="none",
        ).sum(dim=-1)
        if noisy is not None and num_pos:
            predicted = decode_boxes(box_deltas[pos_b, pos_a].detach(), anchors[pos_a], self.variances)
            loc = paired_box_iou(predicted, pos_boxes)
            score = torch.sigmoid(logits[pos_b, pos_a].detach())
            cls_targets[pos_b, pos_a] = cleanliness(loc, score, cfg.noisy.alpha)
            reweight = noisy_anchor_weights(loc, score, cfg.noisy.alpha, cfg.noisy.gamma)
            box_loss = box_loss * normalize_weights(reweight, box_loss)

        if cfg.classification == "focal":
            cls_elem = sigmoid_focal_loss(logits, cls_targets, cfg.focal_alpha, cfg.focal_gamma)
            selected = labels != IGNORE
        else:
            cls_elem = F.binary_cross_entropy_with_logits(logits, cls_targets, reduction="none")
            selected = positive | self._hard_negatives(cls_elem.detach(), labels, positive)
        weight = selected.to(logits.dtype)
        if noisy is not None and num_pos:
            weight[pos_b, pos_a] = normalize_weights(reweight, cls_elem[pos_b, pos_a])
        cls_loss = (cls_elem * weight).sum() / normalizer

        lm_b, lm_a, lm_points = (torch.cat(part) for part in zip(*landmark_parts, strict=True))
        landmark_loss = F.smooth_l1_loss(
            landmark_deltas[lm_b, lm_a],
            encode_landmarks(lm_points, anchors[lm_a], self.variances),
            beta=cfg.smooth_l1_beta,
            reduction="sum",
        ) / max(lm_a.numel(), 1)
        cls_term = cfg.cls_weight * cls_loss
        box_term = cfg.box_weight * box_loss.sum() / normalizer
        landmark_term = cfg.landmark_weight * landmark_loss
        return {
            "loss": alwa_weight * cls_term + box_term + landmark_term,
            "cls": cls_term,
            "box": box_term,
            "landmarks": landmark_term,
            "num_pos": torch.tensor(float(num_pos), device=device),
        }

    def _hard_negatives(self, loss: Tensor, labels: Tensor, positive: Tensor) -> Tensor:
        """Per image, the ``ohem_neg_pos x max(positives, 1)`` negatives with the highest loss -> ``B x A`` bool."""
        negative = labels == NEGATIVE
        ranked = torch.where(negative, loss, torch.full_like(loss, -1.0))
        order = ranked.argsort(dim=1, descending=True)
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
        quota = self.config.ohem_neg_pos * positive.sum(dim=1).clamp(min=1)
        return negative & (rank < quota[:, None])
