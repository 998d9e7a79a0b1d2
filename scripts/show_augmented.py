"""Overlay picture of augmented training samples: a visual check of crop, augmentation, flip and targets.

Each sample is shown twice: its evaluation crop (no augmentation) and its augmented training crop, with

- the points of weight 1 as dots: orange for "left_*" points (image left), blue for "right_*", white for the centre
  line; a flip must keep orange on the image's left side;
- a black cross at the peak of each landmark heatmap (decoded): it must sit on its dot;
- the boundary heatmap in green.

The header of a tile gives the index, the rotation, the scale and "flip" when the sample is mirrored.

    python scripts/show_augmented.py [--root ../shared/data/aflw-21] [--count 8] [--out awing_augmented.png]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

from awing.config import AugmentConfig
from awing.data import AFLWDataset, LandmarkTrainingSet
from awing.geometry import is_mirrored

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "aflw-21"
COLOURS = {"left": (255, 140, 0), "right": (0, 120, 255), "centre": (255, 255, 255)}  # RGB


def tile(item: dict, data: LandmarkTrainingSet, title: str) -> np.ndarray:
    """One sample of ``data`` as an RGB uint8 image: crop, boundary in green, dots and decoded peaks, a title bar."""
    image = item["image"].numpy()  # the (S, S, 3) uint8 RGB crop
    size = image.shape[0]
    names, codec = data.scheme.point_names, data.codec
    heatmaps = data.targets(item).numpy()  # the landmark heatmaps as the trainer encodes them, then the boundary
    boundary = cv2.resize(heatmaps[-1], (size, size), interpolation=cv2.INTER_LINEAR)
    canvas = image.astype(np.float32)
    canvas[:, :, 1] = np.maximum(canvas[:, :, 1], 255 * boundary)
    canvas = canvas.astype(np.uint8)
    peaks = codec.to_crop(codec.decode(heatmaps[: len(names)])[0])
    weight = item["point_weight"].numpy()
    for k, (x, y) in enumerate(item["landmarks_crop"].numpy()):
        if weight[k] == 0:
            continue
        side = names[k].split("_", 1)[0]
        colour = COLOURS.get(side, COLOURS["centre"])
        cv2.circle(canvas, (round(x), round(y)), 3, colour, -1, lineType=cv2.LINE_AA)
        px, py = (round(v) for v in peaks[k])
        cv2.drawMarker(canvas, (px, py), (0, 0, 0), cv2.MARKER_CROSS, 7, 1)
    bar = np.full((18, size, 3), 40, np.uint8)
    cv2.putText(bar, title, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack((bar, canvas))


def describe(item: dict, plain: dict) -> str:
    """``i=<index> rot=<deg> zoom=<factor>[ flip]``, read off the sample's matrix and its evaluation crop's.

    The second row of a matrix, ``k * s * (-sin, cos)``, is the same with or without a horizontal flip.
    """
    row, plain_row = item["matrix"].numpy()[1, :2], plain["matrix"].numpy()[1, :2]
    angle = math.degrees(math.atan2(-row[0], row[1]))
    zoom = math.hypot(*row) / math.hypot(*plain_row)
    flip = " flip" if is_mirrored(item["matrix"].numpy()) else ""
    return f"i={int(item['index'])} rot={angle:+.0f} zoom={zoom:.2f}{flip}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="AFLW-21 folder (datasets/aflw/README.md)")
    parser.add_argument("--count", type=int, default=8, help="number of samples")
    parser.add_argument("--epoch", type=int, default=0, help="augmentation epoch")
    parser.add_argument("--seed", type=int, default=0, help="augmentation seed")
    parser.add_argument("--out", type=Path, default=Path("awing_augmented.png"), help="output PNG")
    args = parser.parse_args(argv)

    dataset = AFLWDataset(args.root, split="val")
    evaluation = LandmarkTrainingSet(dataset)
    train = LandmarkTrainingSet(dataset, augment=AugmentConfig(), seed=args.seed)
    train.set_epoch(args.epoch)
    indices = np.linspace(0, len(dataset) - 1, args.count).round().astype(int)
    tiles = []
    for index in indices:
        plain, augmented = evaluation[int(index)], train[int(index)]
        tiles.append(tile(plain, evaluation, f"i={index} evaluation crop"))
        tiles.append(tile(augmented, train, describe(augmented, plain)))
    columns = 4
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    grid = np.vstack(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
