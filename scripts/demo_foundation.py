"""Demo of awing's foundation on a real annotated face: crop, heatmap codec, boundary map, AWing loss, decode.

Usage: python scripts/demo_foundation.py IMAGE [--pts IMAGE.pts] [--out DIR]

Reads 68 annotated points (iBUG ``.pts`` beside the image), crops the face to 256 x 256 around their box, encodes 68
sub-pixel Gaussian heatmaps and the boundary heatmap on the 64 x 64 grid, scores a perturbed "prediction" with the
AWing loss and its weighted loss map (and plain MSE for comparison), decodes the heatmaps back to original-image
pixels and prints the round-trip error. Writes DIR/demo.png (crop with points | heatmaps | boundary | weight map).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from awing.boundary import boundary_heatmap
from awing.codecs import HeatmapCodec
from awing.data.io import read_image, read_pts
from awing.geometry import box_to_crop_matrix, invert, points_box, transform_points, warp_image
from awing.landmarks import get_scheme
from awing.losses import AdaptiveWingLoss, loss_weight_map, mse_loss

INPUT_SIZE, HEATMAP_SIZE = 256, 64


def targets(landmarks_crop: np.ndarray, codec: HeatmapCodec) -> np.ndarray:
    """(K + 1) x 64 x 64: K landmark heatmaps and the boundary heatmap last (methods.md §3.1)."""
    landmarks_hm = codec.to_heatmap(landmarks_crop)
    heatmaps = codec.encode(landmarks_hm)
    boundary = boundary_heatmap(landmarks_hm, get_scheme(len(landmarks_crop)), heatmap_size=HEATMAP_SIZE)
    return np.concatenate([heatmaps, boundary[None]], axis=0)


def panel(values: np.ndarray, size: int) -> np.ndarray:
    """A [0, max] map as a size x size colour picture."""
    scaled = np.clip(values / max(float(values.max()), 1e-6) * 255.0, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(cv2.resize(scaled, (size, size), interpolation=cv2.INTER_NEAREST), cv2.COLORMAP_JET)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", type=Path)
    parser.add_argument("--pts", type=Path, help="iBUG .pts file (default: the image path with .pts)")
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    image = read_image(args.image)
    landmarks_img = read_pts(args.pts or args.image.with_suffix(".pts"))
    crop_matrix = box_to_crop_matrix(points_box(landmarks_img), INPUT_SIZE, scale=1.25)
    crop = warp_image(image, crop_matrix, INPUT_SIZE)
    landmarks_crop = transform_points(crop_matrix, landmarks_img)
    codec = HeatmapCodec(input_size=INPUT_SIZE, heatmap_size=HEATMAP_SIZE)

    target = torch.from_numpy(targets(landmarks_crop, codec))[None]
    rng = np.random.default_rng(args.seed)
    jitter = rng.normal(0.0, 4.0, landmarks_crop.shape).astype(np.float32)  # about 1 heatmap pixel
    prediction = torch.from_numpy(targets(landmarks_crop + jitter, codec))[None]
    prediction = prediction + 0.02 * torch.from_numpy(rng.standard_normal(prediction.shape).astype(np.float32))

    criterion = AdaptiveWingLoss()
    decoded_hm, scores = codec.decode(target[:, :-1])
    decoded_img = transform_points(invert(crop_matrix), codec.to_crop(decoded_hm[0].numpy()))
    round_trip = np.linalg.norm(decoded_img - landmarks_img, axis=1)
    report = {
        "image": str(args.image),
        "points": len(landmarks_img),
        "awing_loss_weighted": float(criterion(prediction, target)),
        "awing_loss_unweighted": float(AdaptiveWingLoss(use_weight_map=False)(prediction, target)),
        "mse_loss": float(mse_loss(prediction, target)),
        "round_trip_error_img_px": {"mean": float(round_trip.mean()), "max": float(round_trip.max())},
        "min_peak_score": float(scores.min()),
    }

    args.out.mkdir(parents=True, exist_ok=True)
    shown = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
    for x, y in landmarks_crop:
        cv2.circle(shown, (round(float(x)), round(float(y))), 2, (0, 255, 0), -1, cv2.LINE_AA)
    weight_map = loss_weight_map(target)
    maps = [target[0, :-1].max(0).values.numpy(), target[0, -1].numpy(), weight_map[0].max(0).values.numpy()]
    picture = np.concatenate([shown] + [panel(m, INPUT_SIZE) for m in maps], axis=1)
    out_path = args.out / "demo.png"
    cv2.imwrite(str(out_path), picture)
    report["picture"] = str(out_path)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
