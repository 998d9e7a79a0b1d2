"""Video inputs of ``awing predict``: video files, webcam indices and (with ``--video``) folders of frames.

Each video is tracked (:class:`awing.tracking.FaceTracker`) and gives one JSON line per processed frame::

    {"video": "clip.mp4", "frame": 12, "time": 0.48, "width": 640, "height": 480,
     "faces": [{"box": ..., "box_score": ..., "landmarks": ..., "scores": ..., "scheme": "68",
                "pose": {"yaw": ..., "pitch": ..., "roll": ...}, "track_id": 0}]}

``frame`` is the index in the source (with ``--every N``: 0, N, 2N, ...) and ``time`` its time in seconds. A folder
frame that cannot be read gives ``{"video", "frame", "time", "error"}``. Without ``--out`` the lines go to stdout;
with ``--out DIR`` to ``DIR/<name>.jsonl`` (``<name>``: the file's stem, ``webcam<N>`` for a webcam), written and
flushed line by line, so a video that breaks off keeps every line before the break. ``--save-vis DIR`` writes the
overlay video ``DIR/<name>.mp4`` (MPEG-4 Part 2; ``.avi`` with Motion-JPEG where OpenCV has no MPEG-4 encoder):
landmarks, the box, head-pose axes (red x, green y, blue z) and ``#track_id`` on every face.

A video that cannot be opened, is truncated or corrupt is reported on stderr (naming it) and counts as a failed
input (exit code 1); the other inputs are processed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from awing.data.io import DataError
from awing.video import FrameSource, is_video_input, open_frames

__all__ = ["overlay", "predict_video", "run_videos", "split_video_inputs"]


def split_video_inputs(inputs: list[str], folders_are_videos: bool) -> tuple[list[str], list[str]]:
    """``(videos, images)``: video files and webcam indices (and folders, with ``folders_are_videos``) apart."""
    videos, images = [], []
    for text in inputs:
        is_video = is_video_input(text) or (folders_are_videos and Path(text).is_dir())
        (videos if is_video else images).append(text)
    return videos, images


def overlay(image: np.ndarray, faces: list[Any]) -> np.ndarray:
    """The frame (RGB) with every face's landmarks, box, pose axes and ``#track_id`` drawn on it."""
    from awing.viz import draw_axes, draw_landmarks

    if not faces:
        return image
    canvas = draw_landmarks(image, np.stack([f.landmarks for f in faces]), np.stack([f.box for f in faces]))
    posed = [f for f in faces if f.pose is not None]
    if posed:
        labels = [f"#{f.track_id}" if f.track_id is not None else "" for f in posed]
        canvas = draw_axes(canvas, np.stack([f.pose.axes() for f in posed]), labels)
    return canvas


class _VideoOut:
    """Overlay video writer, opened on the first frame (its size); ``.mp4`` or, failing that, ``.avi`` MJPG."""

    def __init__(self, stem: Path, fps: float) -> None:
        self.stem, self.fps = stem, fps
        self.writer: cv2.VideoWriter | None = None
        self.path: Path | None = None

    def write(self, rgb: np.ndarray) -> None:
        if self.writer is None:
            self.stem.parent.mkdir(parents=True, exist_ok=True)
            size = (rgb.shape[1], rgb.shape[0])
            for suffix, codec in ((".mp4", "mp4v"), (".avi", "MJPG")):
                path = self.stem.with_name(self.stem.name + suffix)
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), self.fps, size)
                if writer.isOpened():
                    self.writer, self.path = writer, path
                    break
                writer.release()
            else:
                raise OSError(f"cannot open an overlay video writer for {self.stem}")
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def predict_video(
    tracker: Any,
    source: FrameSource,
    stream: IO[str],
    vis_stem: Path | None = None,
    progress: bool | None = None,
) -> int:
    """Track every frame of ``source``, one JSON line each to ``stream``; returns the count of failed frames.

    Raises :class:`~awing.data.io.DataError` when the video breaks off (after writing every frame before it).
    """
    from tqdm import tqdm

    total = None
    if source.expected is not None:
        total = -(-source.expected // source.every)
        total = total if source.max_frames is None else min(total, source.max_frames)
    vis = None if vis_stem is None else _VideoOut(vis_stem, source.fps / source.every)
    failed = 0
    bar = tqdm(total=total, desc=Path(source.name).name, unit="frame", file=sys.stderr, disable=progress is False)
    try:
        for frame in source:
            record: dict[str, Any] = {"video": source.name, "frame": frame.index, "time": round(frame.time, 6)}
            if frame.image is None:
                record["error"] = frame.error
                failed += 1
            else:
                faces = tracker.update(frame.image, frame.time)
                height, width = frame.image.shape[:2]
                record.update(width=width, height=height, faces=[f.to_dict() for f in faces])
                if vis is not None:
                    vis.write(overlay(frame.image, faces))
            stream.write(json.dumps(record, ensure_ascii=stream is sys.stdout) + "\n")
            stream.flush()
            bar.update(1)
    finally:
        bar.close()
        if vis is not None:
            vis.close()
    return failed


def _name(text: str, taken: set[str]) -> str:
    path = Path(text)
    name = f"webcam{text}" if text.isdigit() and not path.exists() else (path.stem or path.name)
    if name in taken:
        name = path.name
    taken.add(name)
    return name


def run_videos(aligner: Any, videos: list[str], args: argparse.Namespace) -> int:
    """``awing predict`` on the video inputs: returns the number of failed inputs (each reported on stderr)."""
    from awing.tracking import FaceTracker

    failures = 0
    taken: set[str] = set()
    for text in videos:
        name = _name(text, taken)
        tracker = FaceTracker(aligner, detect_every=args.detect_every, smoothing=not args.no_smooth)
        stream = sys.stdout
        try:
            with open_frames(text, every=args.every, max_frames=args.max_frames) as source:
                if args.out is not None:
                    args.out.mkdir(parents=True, exist_ok=True)
                    stream = (args.out / f"{name}.jsonl").open("w", encoding="utf-8", errors="backslashreplace")
                vis = None if args.save_vis is None else args.save_vis / name
                bad = predict_video(tracker, source, stream, vis, False if args.no_progress else None)
            if bad:
                print(f"awing predict: {text}: {bad} frame(s) could not be read", file=sys.stderr)
                failures += 1
        except (DataError, OSError) as err:
            print(f"awing predict: {err}", file=sys.stderr)
            failures += 1
        finally:
            if stream is not sys.stdout:
                stream.close()
    return failures
