"""The operating threshold of an awing detector, chosen on the face-mask **validation** split (never on test photos):
the score of the highest-F1 point of its precision-recall curve at IoU 0.5 (``best_f1_threshold``).

    PYTHONPATH=. python scripts/choose_det_threshold.py runs/det_distill/best.safetensors
    python scripts/bundle_models.py ... --detector-threshold <printed threshold>
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from awing.detection import build_detection_dataset, load_detector
from awing.detection.evaluate import best_f1_threshold, evaluate_detector


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path, help="awing detector .safetensors")
    parser.add_argument("--face-mask", type=Path, default=Path("../shared/data/face-mask-detection"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, settings = load_detector(args.weights)
    metrics = evaluate_detector(model, build_detection_dataset("face_mask", args.face_mask, "val"), settings)
    threshold, f1 = best_f1_threshold(metrics)
    print(f"{args.weights}: face-mask val AP {metrics.ap:.3f}; best F1 {f1:.3f} at score threshold {threshold:.3f} "
          f"(stored: {settings.score_threshold})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
