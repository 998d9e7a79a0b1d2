"""Face tracking in video: boxes from the previous frame's landmarks, re-detection, track ids, One-Euro smoothing.

Per frame (:meth:`FaceTracker.update`):

1. **Cut check**: a 32 x 24 grey thumbnail of the frame is compared with the previous one; a mean absolute
   difference above ``cut_threshold`` grey levels is a shot cut, which ends every track (the faces after a cut get
   new ``track_id`` values even where they sit where the old ones were).
2. **Tracking** (no detector call): each track's box for this frame is the tight box of its landmarks in the
   previous frame, which is the landmark model's own training box convention (``FaceAligner.predict(image,
   boxes=...)``, no box adapter). A track whose mean point score (``Face.scores``, heatmap maxima) falls below
   ``min_score`` is lost. A track is *tentative* for its first ``confirm_frames`` frames: a lost tentative track
   just ends, a lost confirmed one calls the detector on the same frame to find its face again and is tentative
   again if found (the tentative / confirmed states of multi-object trackers such as SORT and DeepSORT). A
   detector's false box (a background patch, a box across the frame) typically scores just above ``min_score`` on
   its first crop and below it a few frames later; without the tentative state every such box cost a second
   detector call.
3. **Detection** (``FaceAligner.predict(image)``) when there is no track, every ``detect_every`` frames, after a
   cut, or on the frame a confirmed track is lost. Detected faces are matched to the current tracks greedily by
   decreasing IoU of their landmark boxes (at least ``match_iou``): a matched face continues its track (id and smoothing
   state), an unmatched one starts a new track, and a track without a detection ends.
4. **Smoothing** (``smoothing=True``): each track's landmarks pass through a One-Euro filter (Casiez, Roussel &
   Vogel, "1 euro filter", CHI 2012; :class:`OneEuroFilter`), adaptive low-pass filtering whose cut-off rises
   with speed: still faces are held steady, fast ones follow without lag. Speeds are measured in face sizes per
   second (the side of the landmarks' box), so the parameters hold at any resolution. The returned faces carry the
   smoothed landmarks and the pose fitted to them; the next frame's box comes from them too.

``track_id`` values count up from 0 over the tracker's life (:meth:`FaceTracker.reset` keeps counting).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import cv2
import numpy as np

from awing.aligner import Face, FaceAligner
from awing.geometry import points_box
from awing.pose import face_pose

__all__ = ["FaceTracker", "OneEuroFilter"]

_THUMB = (32, 24)


class OneEuroFilter:
    """The One-Euro filter (Casiez et al. 2012) over an array of values (e.g. ``(K, 2)`` landmarks).

    ``x_hat = a x + (1 - a) x_hat_prev`` with ``a = 1 / (1 + tau / dt)``, ``tau = 1 / (2 pi f_c)`` and the cut-off
    ``f_c = min_cutoff + beta |dx_hat|``, where ``dx_hat`` is the speed (per second, divided by ``scale``),
    itself low-passed at ``d_cutoff``. Each value has its own cut-off.

    Args:
        min_cutoff: cut-off (Hz) at rest: lower = steadier and more lag at low speed.
        beta: growth of the cut-off with speed (per unit of ``scale`` per second): higher = less lag when moving.
        d_cutoff: cut-off (Hz) of the speed estimate.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 1.0, d_cutoff: float = 1.0) -> None:
        for name, value in (("min_cutoff", min_cutoff), ("beta", beta), ("d_cutoff", d_cutoff)):
            if not (math.isfinite(value) and value >= 0) or (name != "beta" and value == 0):
                raise ValueError(f"{name} must be a finite number > 0 (beta >= 0), got {value!r}")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Filter the values ``x`` observed at time ``t`` (seconds, increasing) -> the filtered values (float64)."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return self._x.copy()
        dt = float(t) - self._t
        dx = (x - self._x) / dt / max(float(scale), 1e-9)
        self._dx = self._dx + self._alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + self._alpha(cutoff, dt) * (x - self._x)
        self._t = float(t)
        return self._x.copy()


@dataclass
class _Track:
    track_id: int
    face: Face  # the last output (smoothed when smoothing is on)
    smoother: OneEuroFilter | None
    frames: int = 0  # frames it has given a face, its detection's frame included


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def _landmark_box(face: Face) -> np.ndarray:
    return np.array(points_box(face.landmarks), dtype=np.float64)


class FaceTracker:
    """Tracks the faces of a frame sequence with a :class:`~awing.aligner.FaceAligner` (module docstring).

    Args:
        aligner: the aligner; its detector finds faces (``None``: the whole frame is one face, never lost).
        detect_every: run the detector at least every this many frames (1 = every frame).
        min_score: a track whose mean point score falls below this is lost (re-detection on the same frame);
            0.45 lies between the bundled model's score on a background crop (0.33 in the lost-face test) and on its
            most turned validation faces (AFLW68-3D val, |yaw| >= 60: 0.61 lowest, 0.76 5th percentile of 179);
            detected faces below it are dropped. Not used without a detector (nothing could find the face again).
        smoothing: One-Euro smoothing of each track's landmarks.
        min_cutoff, beta, d_cutoff: :class:`OneEuroFilter` parameters (``beta`` per face size per second).
        cut_threshold: mean absolute thumbnail difference (grey levels, 0-255) that counts as a shot cut.
        match_iou: the least IoU of landmark boxes for a detection to continue a track.
        confirm_frames: frames a new track must give a face (its detection's frame included) before its loss calls
            the detector (module docstring). 5: the former bundled detector's false box on the
            ``scripts/bench_video.py`` clip lived up to 4 frames (detector calls per 100 uncompressed frames of it,
            before a re-found track became tentative again: 13 with 0, 11-12 with 3, 10 with 5); a real face lost
            while tentative is looked for again at the next periodic detection.

    >>> from awing.models import StackedHourglass
    >>> model = StackedHourglass(num_stacks=1, num_landmarks=68, features=16, depth=1, input_size=32)
    >>> tracker = FaceTracker(FaceAligner(model, detector=None, device="cpu"))
    >>> frames = [np.zeros((60, 80, 3), np.uint8)] * 3
    >>> [[f.track_id for f in faces] for faces in tracker.track(frames)]
    [[0], [0], [0]]
    """

    def __init__(
        self,
        aligner: FaceAligner,
        *,
        detect_every: int = 10,
        min_score: float = 0.45,
        smoothing: bool = True,
        min_cutoff: float = 1.0,
        beta: float = 50.0,
        d_cutoff: float = 1.0,
        cut_threshold: float = 30.0,
        match_iou: float = 0.3,
        confirm_frames: int = 5,
    ) -> None:
        if isinstance(detect_every, bool) or not isinstance(detect_every, int) or detect_every < 1:
            raise ValueError(f"detect_every must be a positive int, got {detect_every!r}")
        if isinstance(confirm_frames, bool) or not isinstance(confirm_frames, int) or confirm_frames < 0:
            raise ValueError(f"confirm_frames must be an int >= 0, got {confirm_frames!r}")
        self.confirm_frames = confirm_frames
        self.aligner = aligner
        self.detect_every = detect_every
        self.min_score = float(min_score) if aligner.detector is not None else -math.inf
        self.cut_threshold, self.match_iou = float(cut_threshold), float(match_iou)
        self.smoothing = bool(smoothing)
        self.filter_params = {"min_cutoff": min_cutoff, "beta": beta, "d_cutoff": d_cutoff}
        OneEuroFilter(**self.filter_params)  # validate now
        self.detections = 0
        """Detector calls so far (for benchmarks)."""
        self._next_id = 0
        self.reset()

    def reset(self) -> None:
        """Forget every track (ids keep counting up)."""
        self._tracks: list[_Track] = []
        self._thumb: np.ndarray | None = None
        self._since_detect = 0

    def track(self, frames: Iterable[np.ndarray], fps: float = 25.0) -> Iterator[list[Face]]:
        """:meth:`update` on each RGB frame, frame ``i`` at time ``i / fps``; yields each frame's faces."""
        for index, frame in enumerate(frames):
            yield self.update(frame, index / fps)

    def update(self, image: np.ndarray, t: float) -> list[Face]:
        """The faces of the next frame (RGB array) at time ``t`` (seconds), each with its ``track_id``."""
        if self._is_cut(image):
            self._tracks = []
        faces: list[Face] | None = None
        if self._tracks and self._since_detect + 1 < self.detect_every:
            faces = self._follow(image)
        if faces is None:
            faces = self._detect(image)
        else:
            self._since_detect += 1
        out = [self._smooth(pair, t) for pair in faces]
        self._tracks = [track for track, _ in faces]
        for track in self._tracks:
            track.frames += 1
        return out

    def _is_cut(self, image: np.ndarray) -> bool:
        grey = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
        thumb = cv2.resize(grey, _THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)
        previous, self._thumb = self._thumb, thumb
        return previous is not None and float(np.abs(thumb - previous).mean()) > self.cut_threshold

    def _follow(self, image: np.ndarray) -> list[tuple[_Track, Face]] | None:
        """Landmarks from the tracks' boxes, without the lost tentative tracks; ``None`` when a confirmed track is
        lost (the frame is then re-detected)."""
        boxes = [_landmark_box(track.face) for track in self._tracks]
        kept = []
        for track, face in zip(self._tracks, self.aligner.predict(image, boxes=boxes), strict=True):
            if float(face.scores.mean()) >= self.min_score:
                kept.append((track, face))
            elif track.frames >= self.confirm_frames:
                track.frames = 0  # should the detector find it again, it is tentative again
                return None
        return kept

    def _detect(self, image: np.ndarray) -> list[tuple[_Track, Face]]:
        self.detections += 1
        self._since_detect = 0
        found = [f for f in self.aligner.predict(image) if float(f.scores.mean()) >= self.min_score]
        pairs = sorted(
            (
                (_box_iou(_landmark_box(track.face), _landmark_box(face)), i, j)
                for i, track in enumerate(self._tracks)
                for j, face in enumerate(found)
            ),
            reverse=True,
        )
        owner: dict[int, _Track] = {}
        used: set[int] = set()
        for iou, i, j in pairs:
            if iou >= self.match_iou and i not in used and j not in owner:
                owner[j] = self._tracks[i]
                used.add(i)
        out = []
        for j, face in enumerate(found):
            track = owner.get(j)
            if track is None:
                smoother = OneEuroFilter(**self.filter_params) if self.smoothing else None
                track = _Track(self._next_id, face, smoother)
                self._next_id += 1
            out.append((track, face))
        return out

    def _smooth(self, pair: tuple[_Track, Face], t: float) -> Face:
        track, face = pair
        if track.smoother is not None:
            box = points_box(face.landmarks)
            size = max(box[2] - box[0], box[3] - box[1], 1.0)
            landmarks = track.smoother(face.landmarks, t, scale=size).astype(np.float32)
            face = replace(face, landmarks=landmarks, pose=face_pose(landmarks, face.scheme))
        track.face = replace(face, track_id=track.track_id)
        return track.face

    @property
    def tracks(self) -> list[int]:
        """The ids of the live tracks."""
        return [track.track_id for track in self._tracks]
