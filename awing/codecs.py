"""Heatmap codec: landmarks on the heatmap grid <-> one Gaussian heatmap per point.

Coordinates follow ``awing.geometry``: 0-based pixels, pixel centres on integers, float32, never rounded. A
stride-s network maps crop pixels to heatmap pixels by ``x_hm = (x_crop + 0.5) / s - 0.5``
(:meth:`HeatmapCodec.to_heatmap`), so pixel centres map to pixel centres.

Two modes:

- ``"subpixel"`` (default): a Gaussian centred on the exact sub-pixel point, decoded by DARK (Zhang et al.,
  "Distribution-Aware Coordinate Representation for Human Pose Estimation", CVPR 2020).
- ``"awing_official"``: the target/decoder pair of the official AWing code (methods.md §3.6), for checkpoint parity.

>>> import numpy as np
>>> codec = HeatmapCodec(input_size=256, heatmap_size=64)
>>> heatmaps = codec.encode(np.array([[20.3, 40.7], [31.0, 12.25]], dtype=np.float32))
>>> heatmaps.shape
(2, 64, 64)
>>> landmarks_hm, scores = codec.decode(heatmaps)
>>> bool(np.abs(landmarks_hm - [[20.3, 40.7], [31.0, 12.25]]).max() < 0.01)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from awing.geometry import as_size, invert, transform_points

MODES = ("subpixel", "awing_official")

#: The official target: a (6·1 + 1) = 7-pixel square patch with standard deviation 0.25·7 (methods.md §3.6).
OFFICIAL_HALF_SIZE = 3
OFFICIAL_SIGMA = 0.25 * (2 * OFFICIAL_HALF_SIZE + 1)

_LOG_FLOOR = 1e-10
#: Encoding: the float32 just below -4.5 (an exponent above it lies within 3 sigma), the exponent that marks
#: "outside the support" (exp(-50) ~ 2e-22, a normal float32) and the level below which values are zeroed.
_RADIAL_CUT = float(np.nextafter(np.float32(-4.5), np.float32(-np.inf)))
_EXP_SENTINEL = -50.0
_ZERO_BELOW = 1e-20

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


class HeatmapCodec:
    """Encode landmarks as heatmaps and decode heatmaps to sub-pixel landmarks.

    The codec owns the input (crop) size, the heatmap size (hence the stride) and the Gaussian's width; mmpose's
    ``MSRAHeatmap`` codec is the model for this object.

    Args:
        input_size: crop size, an int or (W, H).
        heatmap_size: heatmap size, an int or (W, H).
        sigma: standard deviation of the target Gaussian in heatmap pixels. ``"subpixel"``: default 1.5.
            ``"awing_official"``: fixed at 1.75 (``None`` or 1.75 only).
        mode: ``"subpixel"`` or ``"awing_official"``.
        modulation: ``"subpixel"`` decoding only: DARK's Gaussian blur before the log (see below).

    **subpixel.** ``encode`` draws ``exp(-((x - cx)^2 + (y - cy)^2) / (2 sigma^2))`` around the exact point
    (cx, cy) (peak 1 at the point itself, not at a pixel), zero where the distance exceeds ``3 sigma``.
    ``decode`` takes the first argmax (r, c) of each channel, then DARK's refinement: blur the heatmap with a
    Gaussian of the same sigma (kernel radius ceil(3 sigma), zero padding; skipped when ``modulation=False``), take
    ``L = log(max(h, 1e-10))`` and its central differences at (r, c) (moved one pixel inward when (r, c) is on the
    map's edge): gradient g and Hessian Hs. The offset is the Newton step ``-Hs^-1 g`` clamped to [-0.5, 0.5] per
    axis around (r, c) (the argmax is the pixel nearest the peak); when Hs is not negative definite (flat or
    degenerate maps) it is a quarter pixel toward the larger raw neighbour on each axis instead (0 on ties). On
    the codec's own targets log h is exactly quadratic near the peak, so the step is exact without modulation;
    with it, the zero padding biases points within ~3 sigma of the edge (round trip, 2 px from the edge: mean
    0.0004 / 0.0015 / 0.009 px for sigma 1 / 1.5 / 2). On maps with added noise, modulation halves the error.

    **awing_official** (methods.md §3.6). The official code works in corner coordinates ``u = x_hm + 0.5`` (cell c
    spans [c, c + 1); it floors crop/4). Expressed on our pixel-centre grid: ``encode`` puts the peak 1 at the cell
    ``(floor(x_hm + 0.5), floor(y_hm + 0.5))`` of a 7x7 patch with std 1.75 (border value 0.23), zero outside the
    patch. ``decode`` takes the argmax (r, c) and, when 0 < c < W-1 and 0 < r < H-1, shifts by
    ``0.25 * sign(h[r, c+1] - h[r, c-1])`` in x and ``0.25 * sign(h[r+1, c] - h[r-1, c])`` in y: the official
    ``u = c + 0.5 + shift`` is ``x_hm = c + shift``. The round-trip error is at most 0.5 + 0.25 px.

    **Outside the grid.** A point whose centre lies outside [-0.5, W - 0.5) x [-0.5, H - 0.5), a NaN point and an
    invisible point all give an all-zero channel (in both modes; the official code draws clipped patches for
    points just outside). An all-zero channel decodes to (0, 0) with score 0.
    """

    def __init__(
        self,
        input_size: int | tuple[int, int] = 256,
        heatmap_size: int | tuple[int, int] = 64,
        sigma: float | None = None,
        mode: str = "subpixel",
        modulation: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.input_size = as_size(input_size, "input_size")
        self.heatmap_size = as_size(heatmap_size, "heatmap_size")
        if min(self.heatmap_size) < 3:
            raise ValueError(f"heatmap_size must be at least 3 x 3 (a 3x3 stencil decodes), got {heatmap_size!r}")
        self.mode = mode
        if mode == "awing_official":
            if sigma is not None and sigma != OFFICIAL_SIGMA:
                raise ValueError(
                    f"mode 'awing_official' uses the fixed std {OFFICIAL_SIGMA} (7x7 patch); got sigma={sigma!r}"
                )
            sigma = OFFICIAL_SIGMA
        elif sigma is None:
            sigma = 1.5
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma < math.inf:
            raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")
        self.sigma = float(sigma)
        self.stride = (self.input_size[0] / self.heatmap_size[0], self.input_size[1] / self.heatmap_size[1])
        # DARK's modulation restricted to the 3x3 pixels around the argmax: blurred = band @ window @ band.T,
        # band[i, i:i + 2R + 1] = Gaussian taps (radius R = ceil(3 sigma)), window = the (2R + 3)^2 pixels there.
        self.modulation = bool(modulation)
        self._blur_radius = math.ceil(3 * self.sigma) if self.modulation else 0
        taps = np.arange(-self._blur_radius, self._blur_radius + 1, dtype=np.float64)
        self._blur_band = np.zeros((3, 2 * self._blur_radius + 3))
        for i in range(3):
            self._blur_band[i, i : i + len(taps)] = np.exp(-(taps**2) / (2 * self.sigma**2))

    def __repr__(self) -> str:
        return (
            f"HeatmapCodec(input_size={self.input_size}, heatmap_size={self.heatmap_size}, "
            f"sigma={self.sigma}, mode={self.mode!r}, modulation={self.modulation})"
        )

    # -- frames -------------------------------------------------------------------------------------------------

    def _stride_like(self, points: ArrayT) -> ArrayT:
        if isinstance(points, torch.Tensor):
            return points.new_tensor(self.stride)
        return np.asarray(self.stride, dtype=points.dtype)

    @staticmethod
    def _as_points(points: ArrayT) -> ArrayT:
        if not isinstance(points, torch.Tensor):
            points = np.asarray(points, dtype=np.float32)
        elif not points.is_floating_point():
            points = points.float()
        if points.ndim == 0 or points.shape[-1] != 2:
            raise ValueError(f"points must have shape (..., 2), got {tuple(points.shape)}")
        return points

    def to_heatmap(self, points_crop: ArrayT) -> ArrayT:
        """Crop pixels -> heatmap pixels: ``x_hm = (x_crop + 0.5) / s - 0.5``. Shape (..., 2), numpy or torch."""
        points_crop = self._as_points(points_crop)
        return (points_crop + 0.5) / self._stride_like(points_crop) - 0.5

    def to_crop(self, points_hm: ArrayT) -> ArrayT:
        """Heatmap pixels -> crop pixels: ``x_crop = (x_hm + 0.5) * s - 0.5``. Shape (..., 2), numpy or torch."""
        points_hm = self._as_points(points_hm)
        return (points_hm + 0.5) * self._stride_like(points_hm) - 0.5

    # -- encode -------------------------------------------------------------------------------------------------

    def encode(self, landmarks_hm: ArrayT, visible: np.ndarray | torch.Tensor | None = None) -> ArrayT:
        """Target heatmaps, vectorised over faces and points, on the points' device.

        One implementation for both kinds: numpy points (one face in a DataLoader worker) and tensors (a batch
        encoded on the training device, :func:`awing.data.targets.heatmap_targets`) give the same float32 values
        (on another device up to its ``exp``'s last bit).

        Args:
            landmarks_hm: (..., K, 2) points (x, y) in heatmap pixels: a torch tensor, a numpy array or a list.
            visible: optional (..., K) booleans (tensor, array or list); False gives an all-zero channel.

        Returns:
            float32 (..., K, H, W): a tensor on the points' device for tensor points, else a numpy array.
        """
        is_tensor = isinstance(landmarks_hm, torch.Tensor)
        points = landmarks_hm.float() if is_tensor else torch.from_numpy(np.array(landmarks_hm, dtype=np.float32))
        if points.ndim < 2 or points.shape[-1] != 2:
            raise ValueError(f"landmarks_hm must have shape (..., K, 2), got {tuple(points.shape)}")
        width, height = self.heatmap_size
        x, y = points.unbind(-1)
        valid = (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5)  # False for NaN
        if visible is not None:
            mask = visible if isinstance(visible, torch.Tensor) else torch.from_numpy(np.array(visible))
            if mask.shape != valid.shape:
                raise ValueError(f"visible must have shape {tuple(valid.shape)}, got {tuple(mask.shape)}")
            valid &= mask.to(device=points.device, dtype=torch.bool)
        x, y = torch.where(valid, x, 0.0), torch.where(valid, y, 0.0)  # no NaN below
        if self.mode == "awing_official":
            x, y = torch.floor(x + 0.5), torch.floor(y + 0.5)
        dx = torch.arange(width, dtype=torch.float32, device=points.device) - x[..., None]  # (..., K, W)
        dy = torch.arange(height, dtype=torch.float32, device=points.device) - y[..., None]  # (..., K, H)
        # Separable exponent -(dx^2 + dy^2) / (2 sigma^2) = log_gx + log_gy; -inf outside the official square patch
        # and in the channels of invalid points.
        scale = -0.5 / self.sigma**2
        log_gx, log_gy = dx * dx * scale, dy * dy * scale
        if self.mode == "awing_official":
            log_gx = log_gx.masked_fill(dx.abs() > OFFICIAL_HALF_SIZE, -math.inf)
            log_gy = log_gy.masked_fill(dy.abs() > OFFICIAL_HALF_SIZE, -math.inf)
        log_gx = log_gx.masked_fill(~valid[..., None], -math.inf)
        exponent = log_gy[..., :, None] + log_gx[..., None, :]  # (..., K, H, W)
        # Support: subpixel r <= 3 sigma (exponent >= -4.5, decided on float32 sums, the same on every device);
        # official: the patch. Outside, the exponent becomes _EXP_SENTINEL and its exp is zeroed: an underflowing
        # exp takes a slow path on CPU (about 50x), exp(-50) does not.
        cut = _RADIAL_CUT if self.mode == "subpixel" else _EXP_SENTINEL
        heatmaps = F.threshold(exponent, cut, _EXP_SENTINEL, inplace=True).exp_()
        F.threshold(heatmaps, _ZERO_BELOW, 0.0, inplace=True)
        return heatmaps if is_tensor else heatmaps.numpy()

    # -- decode -------------------------------------------------------------------------------------------------

    def decode(
        self, heatmaps: torch.Tensor | np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[np.ndarray, np.ndarray]:
        """Landmarks and peak scores from heatmaps, vectorised over batch and points.

        The work is done in numpy on the CPU (a torch tensor is copied there, and the results go back to its
        device): after the argmax only a few pixels per point remain, and NumPy's small-array calls cost a few
        microseconds where torch's cost tens (68 points at 32 x 32: 0.38 against 0.76 ms on one CPU thread).

        Args:
            heatmaps: (B, K, H, W) or (K, H, W), torch tensor or numpy array, H x W equal to ``heatmap_size``.

        Returns:
            ``(landmarks_hm, scores)``: float32 (B, K, 2) and (B, K) (without B for a (K, H, W) input), of the
            input's kind (numpy in, numpy out; a tensor in, tensors on its device out). The score is the raw peak.
        """
        is_tensor = isinstance(heatmaps, torch.Tensor)
        if is_tensor and heatmaps.is_floating_point():
            work = heatmaps.detach().cpu()
            work = (work if work.dtype == torch.float64 else work.float()).numpy()
        elif isinstance(heatmaps, np.ndarray) and np.issubdtype(heatmaps.dtype, np.floating):
            work = heatmaps if heatmaps.dtype == np.float64 else heatmaps.astype(np.float32, copy=False)
        else:
            raise TypeError(f"heatmaps must be a floating torch tensor or numpy array, got {type(heatmaps)!r}")
        width, height = self.heatmap_size
        if work.ndim not in (3, 4) or tuple(work.shape[-2:]) != (height, width):
            raise ValueError(
                f"heatmaps must have shape (B, K, {height}, {width}) or (K, {height}, {width}), got {tuple(work.shape)}"
            )
        lead = work.shape[:-2]
        work = np.ascontiguousarray(work).reshape(-1, height, width)
        flat = work.reshape(len(work), -1)
        peak = flat.argmax(axis=1)  # the first maximum in row-major order
        scores = flat[np.arange(len(flat)), peak]
        row, col = np.divmod(peak, width)
        if self.mode == "awing_official":
            offset = self._official_offset(work, row, col)
        else:
            offset = self._dark_offset(work, row, col)
        landmarks = (np.stack((col, row), axis=1) + offset).astype(np.float32).reshape(*lead, 2)
        scores = scores.astype(np.float32).reshape(lead)
        if is_tensor:
            return torch.from_numpy(landmarks).to(heatmaps.device), torch.from_numpy(scores).to(heatmaps.device)
        return landmarks, scores

    @staticmethod
    def _patches(work: np.ndarray, row: np.ndarray, col: np.ndarray, radius: int) -> np.ndarray:
        """(N, 2r+1, 2r+1) windows of ``work`` (N, H, W) centred on (row, col), zero outside the map."""
        height, width = work.shape[-2:]
        steps = np.arange(-radius, radius + 1)
        rows, cols = row[:, None] + steps, col[:, None] + steps
        inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
        flat = rows.clip(0, height - 1)[:, :, None] * width + cols.clip(0, width - 1)[:, None, :]
        windows = np.take_along_axis(work.reshape(len(work), -1), flat.reshape(len(work), -1), axis=1)
        return windows.reshape(inside.shape) * inside

    @staticmethod
    def _quarter_shift(window: np.ndarray) -> np.ndarray:
        """0.25 * sign(right - left), 0.25 * sign(below - above) of the 3x3 windows' centres -> (N, 2)."""
        return 0.25 * np.stack(
            (np.sign(window[:, 1, 2] - window[:, 1, 0]), np.sign(window[:, 2, 1] - window[:, 0, 1])), axis=1
        )

    def _official_offset(self, work: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
        height, width = work.shape[-2:]
        shift = self._quarter_shift(self._patches(work, row, col, 1))
        interior = (col > 0) & (col < width - 1) & (row > 0) & (row < height - 1)
        return shift * interior[:, None]

    def _dark_offset(self, work: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
        height, width = work.shape[-2:]
        # The 3x3 stencil stays inside the map: on an edge it moves one pixel in (one-sided differences).
        stencil = np.stack((col.clip(1, width - 2), row.clip(1, height - 2)), axis=1)
        radius = self._blur_radius
        patch = self._patches(work, stencil[:, 1], stencil[:, 0], radius + 1)  # (N, 2R + 3, 2R + 3)
        band = self._blur_band.astype(work.dtype)
        logs = np.log(np.maximum(band @ patch @ band.T, _LOG_FLOOR))  # blurred 3x3 around the stencil
        gx = 0.5 * (logs[:, 1, 2] - logs[:, 1, 0])
        gy = 0.5 * (logs[:, 2, 1] - logs[:, 0, 1])
        hxx = logs[:, 1, 2] - 2 * logs[:, 1, 1] + logs[:, 1, 0]
        hyy = logs[:, 2, 1] - 2 * logs[:, 1, 1] + logs[:, 0, 1]
        hxy = 0.25 * (logs[:, 2, 2] - logs[:, 2, 0] - logs[:, 0, 2] + logs[:, 0, 0])
        det = hxx * hyy - hxy * hxy
        definite = (hxx < 0) & (det > 0)
        safe_det = np.where(definite, det, 1.0)
        newton = -np.stack((hyy * gx - hxy * gy, hxx * gy - hxy * gx), axis=1) / safe_det[:, None]
        newton = newton + (stencil - np.stack((col, row), axis=1))
        fallback = self._quarter_shift(self._patches(work, row, col, 1))
        return np.where(definite[:, None], newton.clip(-0.5, 0.5), fallback)


def flip_heatmaps_back(heatmaps: torch.Tensor, flip_index: Any) -> torch.Tensor:
    """Heatmaps predicted on mirrored crops -> heatmaps of the unmirrored crops.

    Mirror the width axis, then channel ``k`` takes mirrored channel ``flip_index[k]`` (the network sees the left
    eye of a mirrored face as a right eye). On a stride-s grid the crop mirror ``x' = S - 1 - x`` maps heatmap
    column ``c`` to ``W - 1 - c`` exactly.

    Shape: ``B x K x H x W`` in and out; ``flip_index`` a permutation of ``range(K)``.
    """
    index = torch.as_tensor(flip_index, dtype=torch.long, device=heatmaps.device)
    if heatmaps.ndim != 4 or index.shape != (heatmaps.shape[1],):
        raise ValueError(
            f"expected B x K x H x W heatmaps and a flip_index of K entries, got shapes {tuple(heatmaps.shape)} "
            f"and {tuple(index.shape)}"
        )
    return heatmaps.flip(-1).index_select(1, index)


def heatmaps_to_landmarks(
    heatmaps: torch.Tensor | np.ndarray, codec: HeatmapCodec, matrices: Sequence[np.ndarray] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``B x K x H x W`` heatmaps (tensor or array) and map the points back to image pixels by the inverse
    crop matrices.

    ``matrices``: ``B`` image -> crop ``2 x 3`` matrices. Returns float32 landmarks ``(B, K, 2)`` in image pixels
    and float32 peak scores ``(B, K)``.
    """
    if isinstance(heatmaps, torch.Tensor):
        heatmaps = heatmaps.detach().cpu().numpy()
    points_hm, peaks = codec.decode(heatmaps)
    points_crop = codec.to_crop(points_hm)
    matrices = np.asarray(matrices, dtype=np.float64).reshape(-1, 2, 3)
    if len(matrices) != len(points_crop):
        raise ValueError(f"{len(points_crop)} heatmaps but {len(matrices)} crop matrices")
    points_img = [transform_points(invert(m), p) for m, p in zip(matrices, points_crop, strict=True)]
    landmarks = np.stack(points_img) if points_img else np.zeros((0, *points_crop.shape[1:]), np.float32)
    return landmarks.astype(np.float32), peaks
