"""Train the detector's second stage (:class:`~awing.detection.network.VerifierNet`) on the crops of
``scripts/build_verifier_set.py`` and write a detector file holding both stages.

Run from the repository root: ``PYTHONPATH=. python scripts/train_verifier.py --data data/verifier --out
runs/verifier/detector.safetensors [--detector awing/assets/detector.safetensors]``.

Loss per crop: the sigmoid focal loss (``awing.losses``, alpha 0.25, gamma 2) of the face logit on faces (1) and
non-faces (0), normalised by the number of faces in the batch, plus the smooth L1 loss (beta 0.02) of the four edge
offsets on faces and part faces (-1), averaged. Augmentation per crop: horizontal flip (the offsets mirrored), grey (30
%), a 3 x 3 box blur (20 %), brightness and contrast (x 0.7-1.3, +-25 levels). AdamW, cosine learning rate, ``--epochs``
passes; the epoch with the best face / non-face AP on the validation crops is kept. The output file is the first stage's
weights and settings with the verifier added and ``proposal_threshold`` set; its ``score_threshold`` (now on the
verifier's probability) is to be chosen on validation (``scripts/choose_det_threshold.py``).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from awing.detection import load_detector, save_detector
from awing.detection.evaluate import average_precision, precision_recall
from awing.detection.network import FaceDetectorNet, VerifierNet
from awing.losses import sigmoid_focal_loss

SMOOTH_L1_BETA = 0.02


def augment(crops: torch.Tensor, offsets: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """``N x 3 x S x S`` float crops and ``(N, 4)`` offsets, flipped / greyed / blurred / re-lit at random."""
    n = len(crops)
    flip = torch.rand(n, generator=generator) < 0.5
    crops = torch.where(flip[:, None, None, None], crops.flip(-1), crops)
    mirrored = torch.stack([-offsets[:, 2], offsets[:, 1], -offsets[:, 0], offsets[:, 3]], dim=1)
    offsets = torch.where(flip[:, None], mirrored, offsets)
    grey = torch.rand(n, generator=generator) < 0.3
    crops = torch.where(grey[:, None, None, None], crops.mean(dim=1, keepdim=True).expand_as(crops), crops)
    blur = torch.rand(n, generator=generator) < 0.2
    crops = torch.where(blur[:, None, None, None], F.avg_pool2d(crops, 3, 1, 1, count_include_pad=False), crops)
    gain = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=generator)
    shift = 50 * torch.rand(n, 1, 1, 1, generator=generator) - 25
    return (crops * gain + shift).clamp(0, 255), offsets


def losses(model: VerifierNet, crops, labels, offsets) -> tuple[torch.Tensor, torch.Tensor]:
    """(classification, offset) losses of a batch (module docstring)."""
    logits, predicted = model(crops)
    judged = labels >= 0
    faces = max(int((labels == 1).sum()), 1)
    cls = sigmoid_focal_loss(logits[judged], (labels[judged] == 1).float(), reduction="sum") / faces
    boxed = labels != 0
    box = F.smooth_l1_loss(predicted[boxed], offsets[boxed], beta=SMOOTH_L1_BETA) if boxed.any() else logits.sum() * 0
    return cls, box


@torch.inference_mode()
def validate(model: VerifierNet, crops: np.ndarray, labels: np.ndarray, offsets: np.ndarray) -> tuple[float, float]:
    """(face / non-face AP, mean absolute offset error of the faces) on the validation crops."""
    model.eval()
    logits, predicted = [], []
    for start in range(0, len(crops), 1024):
        batch = torch.from_numpy(crops[start : start + 1024]).permute(0, 3, 1, 2).float()
        out = model(batch)
        logits.append(out[0])
        predicted.append(out[1])
    scores = torch.sigmoid(torch.cat(logits)).numpy()
    judged = labels >= 0
    precision, recall, _ = precision_recall(scores[judged], labels[judged].astype(np.int64), int((labels == 1).sum()))
    faces = labels == 1
    error = float(np.abs(torch.cat(predicted).numpy()[faces] - offsets[faces]).mean())
    return average_precision(recall, precision), error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/verifier"))
    parser.add_argument("--detector", type=Path, default=Path("awing/assets/detector.safetensors"))
    parser.add_argument("--out", type=Path, required=True, help="detector .safetensors with both stages")
    parser.add_argument("--proposal-threshold", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    train, val = (np.load(args.data / f"{split}.npz") for split in ("train", "val"))
    crops = torch.from_numpy(train["crops"]).permute(0, 3, 1, 2)  # uint8, made float per batch
    labels = torch.from_numpy(train["labels"].astype(np.int64))
    offsets = torch.from_numpy(np.nan_to_num(train["offsets"]))
    model = VerifierNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * math.ceil(len(crops) / args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=steps, pct_start=0.05)
    best_ap, best_state = -1.0, None
    for epoch in range(args.epochs):
        model.train()
        started, totals = time.time(), np.zeros(2)
        order = torch.randperm(len(crops), generator=generator)
        for start in range(0, len(order), args.batch_size):
            index = order[start : start + args.batch_size]
            batch, target = augment(crops[index].float(), offsets[index], generator)
            cls, box = losses(model, batch, labels[index], target)
            optimizer.zero_grad(set_to_none=True)
            (cls + box).backward()
            optimizer.step()
            schedule.step()
            totals += (cls.item(), box.item())
        ap, error = validate(model, val["crops"], val["labels"], val["offsets"])
        batches = math.ceil(len(order) / args.batch_size)
        print(f"epoch {epoch + 1}: loss cls {totals[0] / batches:.4f} box {totals[1] / batches:.4f}; val AP {ap:.4f} "
              f"(offset error {error:.4f}); {time.time() - started:.0f} s", flush=True)  # fmt: skip
        if ap > best_ap:
            best_ap, best_state = ap, copy.deepcopy(model.state_dict())
    first, settings = load_detector(args.detector)
    config = copy.deepcopy(first.config)
    config.verifier = True
    both = FaceDetectorNet(config)
    both.load_state_dict({**first.state_dict(), **{f"verifier.{k}": v for k, v in best_state.items()}})
    settings.proposal_threshold = args.proposal_threshold
    partial = args.out.with_name(args.out.name + ".partial.safetensors")
    save_detector(both.eval(), partial, settings, extra_metadata={"verifier_val_ap": f"{best_ap:.4f}"})
    os.replace(partial, args.out)  # never a half-written file at the output path
    print(f"best val AP {best_ap:.4f} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
