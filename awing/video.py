"""Frame sources for video prediction: a video file, a folder of frames, or a webcam, as RGB frames with times.

:func:`open_frames` picks the source: an ``int`` (or a string of digits that is not an existing path) is a webcam
index (``0`` = the first webcam), a folder is a sequence of frames (its images sorted by name,
:func:`awing.imread.list_images`), anything else a video file read by ``cv2.VideoCapture`` (the containers and
codecs of OpenCV's FFmpeg: ``.mp4``, ``.avi``, ``.mov``, ``.mkv``, ...).

Every source iterates :class:`Frame` objects: the frame's index in the source (0-based, counting skipped frames),
its time in seconds (video: ``index / fps``; folder: ``index / fps`` with the ``fps`` given; webcam: seconds since
the first frame), and the RGB uint8 image. ``every=N`` keeps frames 0, N, 2N, ... (a video file skips the others
with ``grab()``, without decoding them); ``max_frames`` stops after that many kept frames.

Errors: a source that cannot be opened raises :class:`awing.data.io.DataError` naming it at :func:`open_frames`.
A video that stops before the frame count of its header (truncated or corrupt), or gives no frame at all, raises
``DataError`` *after* yielding every frame it could decode, so the caller keeps what it wrote. A folder frame that
cannot be read is a :class:`Frame` with ``image=None`` and ``error`` set; the frames after it follow.

A video file or folder is decoded one frame ahead on a worker thread (:class:`_ReadAhead`; OpenCV's decoders release
the GIL), so decoding overlaps the caller's work on the previous frame; a webcam is read live, without a buffer.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from awing.data.io import DataError, read_image
from awing.imread import list_images

__all__ = ["VIDEO_EXTENSIONS", "Frame", "FrameSource", "is_video_input", "open_frames"]

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
DEFAULT_FPS = 25.0
"""Frame rate of a folder of frames, and of a video whose header gives none."""


@dataclass(eq=False)
class Frame:
    """One frame: ``index`` in the source, ``time`` in seconds, RGB uint8 ``image`` (``None`` with ``error``)."""

    index: int
    time: float
    image: np.ndarray | None
    error: str | None = None


def is_video_input(text: str) -> bool:
    """True for a webcam index (digits that are not an existing path) or a path with a video file suffix."""
    path = Path(text)
    return (text.isdigit() and not path.exists()) or path.suffix.lower() in VIDEO_EXTENSIONS


class FrameSource:
    """Iterable of :class:`Frame` from one source (module docstring); ``name`` names it in messages and outputs.

    Attributes:
        name: the path, or ``"webcam N"``.
        fps: frames per second of the source (``DEFAULT_FPS`` when unknown).
        expected: frame count announced by the source (video header, folder size), ``None`` when unknown.
    """

    def __init__(self, source: str | int | Path, *, every: int = 1, max_frames: int | None = None, fps=None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)):
            raise ValueError(f"max_frames must be a positive int or None, got {max_frames!r}")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be a positive int or None, got {max_frames!r}")
        self.every, self.max_frames = every, max_frames
        self._files: list[Path] | None = None
        self._capture = None
        self._reader: _ReadAhead | None = None
        if isinstance(source, str) and source.isdigit() and not Path(source).exists():
            source = int(source)
        if isinstance(source, int):
            self.kind, self.name = "webcam", f"webcam {source}"
            self._capture = self._open(cv2.VideoCapture(source), "cannot be opened (is a camera connected?)")
            self.fps, self.expected = self._capture_fps(), None
        elif Path(source).is_dir():
            self.kind, self.name = "folder", str(source)
            self._files = list_images(source)
            if not self._files:
                raise DataError(f"{source}: no image files in this folder of frames")
            self.fps, self.expected = float(fps or DEFAULT_FPS), len(self._files)
        else:
            self.kind, self.name = "video", str(source)
            if not Path(source).is_file():
                raise DataError(f"{source}: no such video file")
            message = "cannot be opened as a video (not a video file, or a format OpenCV cannot decode)"
            self._capture = self._open(cv2.VideoCapture(str(source)), message)
            count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
            self.fps, self.expected = float(fps or self._capture_fps()), count if count > 0 else None

    def _open(self, capture: cv2.VideoCapture, message: str) -> cv2.VideoCapture:
        if not capture.isOpened():
            capture.release()
            raise DataError(f"{self.name}: {message}")
        return capture

    def _capture_fps(self) -> float:
        fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        return fps if np.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS

    def close(self) -> None:
        if self._reader is not None:
            self._reader.stop()
        if self._capture is not None:
            self._capture.release()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        frames = self._folder() if self._files is not None else self._video()
        if self.kind != "webcam":
            if self._reader is not None:
                self._reader.stop()
            frames = self._reader = _ReadAhead(frames)
        for kept, frame in enumerate(frames):
            if self.max_frames is not None and kept >= self.max_frames:
                return
            yield frame

    def _folder(self) -> Iterator[Frame]:
        for index in range(0, len(self._files), self.every):
            try:
                yield Frame(index, index / self.fps, read_image(self._files[index]))
            except DataError as err:
                yield Frame(index, index / self.fps, None, str(err))

    def _video(self) -> Iterator[Frame]:
        start = time.monotonic()
        index = 0
        while True:
            if index % self.every:
                ok = self._capture.grab()
            else:
                ok, bgr = self._capture.read()
                if ok and bgr is not None:
                    stamp = time.monotonic() - start if self.kind == "webcam" else index / self.fps
                    yield Frame(index, stamp, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                ok = ok and bgr is not None
            if not ok:
                break
            index += 1
        if self.kind == "video":
            if index == 0:
                raise DataError(f"{self.name}: no frame could be decoded (corrupt or empty video)")
            if self.expected is not None and index < self.expected:
                raise DataError(
                    f"{self.name}: truncated or corrupt: decoding stopped after {index} of the {self.expected} "
                    "frames its header announces"
                )


class _ReadAhead:
    """Iterates ``frames`` while a worker thread produces the next one (at most ``depth`` waiting).

    An exception of ``frames`` is raised by this iterator in its place, after the frames before it. :meth:`stop`
    (also when the iteration ends) ends the worker and waits for it, so the source can then be released.
    """

    _END = object()

    def __init__(self, frames: Iterator[Frame], depth: int = 1) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(frames,), name="awing-frames", daemon=True)
        self._thread.start()

    def _put(self, item: tuple) -> bool:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, frames: Iterator[Frame]) -> None:
        try:
            for frame in frames:
                if not self._put((frame, None)):
                    return
        except Exception as err:  # handed to the consumer, in order
            self._put((self._END, err))
            return
        self._put((self._END, None))

    def __iter__(self) -> Iterator[Frame]:
        try:
            while True:
                frame, error = self._queue.get()
                if frame is self._END:
                    if error is not None:
                        raise error
                    return
                yield frame
        finally:
            self.stop()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


def open_frames(
    source: str | int | Path, *, every: int = 1, max_frames: int | None = None, fps: float | None = None
) -> FrameSource:
    """The :class:`FrameSource` of a video file, a folder of frames or a webcam index (module docstring).

    ``fps`` overrides the source's frame rate (the time stamps); a folder's default is :data:`DEFAULT_FPS`.
    """
    return FrameSource(source, every=every, max_frames=max_frames, fps=fps)
