"""Building blocks of the stacked hourglass (methods.md §3.2-§3.5).

- :class:`ConvBlock`: FAN's hierarchical, parallel, multi-scale pre-activation block (§3.3).
- :class:`CoordConv`: a convolution on features plus coordinate channels, optionally with boundary-masked
  coordinates (the paper's "CoordConv with boundary coordinates", §3.4a, §3.5).
- :class:`Hourglass`: CoordConv, then a recursive hourglass of ConvBlocks with average pooling and nearest
  upsampling (§3.4b).

Module names equal the official ones (``bn1``, ``conv1``, ``downsample.0``, ``coordconv.conv``, ``b1_4``, ...), so an
official state dict loads without a key mapping (§3.8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BOUNDARY_THRESHOLD = 0.05
"""A pixel belongs to the predicted boundary where the clamped boundary heatmap exceeds this (methods.md §3.4a)."""


def coordinate_grid(
    height: int, width: int, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> Tensor:
    """Coordinate channels ``xx, yy, rr`` of an ``height x width`` grid (methods.md §3.5).

    ``xx[r, c] = 2r/(H-1) - 1`` varies along the rows, ``yy[r, c] = 2c/(W-1) - 1`` along the columns (the official
    naming looks swapped; this orientation is what its weights expect), ``rr = sqrt(xx^2 + yy^2) / max(rr)``, so
    ``rr`` lies in [0, 1]. Computed in float32 like the official code, then cast to ``dtype``.

    Returns:
        Tensor of shape ``3 x H x W`` on ``device``.
    """
    if height < 2 or width < 2:
        raise ValueError(f"coordinate grid needs at least 2 x 2 pixels, got {height} x {width}")
    rows = torch.arange(height, device=device, dtype=torch.float32) / (height - 1) * 2 - 1
    cols = torch.arange(width, device=device, dtype=torch.float32) / (width - 1) * 2 - 1
    xx = rows[:, None].expand(height, width)
    yy = cols[None, :].expand(height, width)
    rr = torch.sqrt(xx**2 + yy**2)
    rr = rr / rr.max()
    return torch.stack((xx, yy, rr)).to(dtype or torch.float32)


def boundary_mask(boundary: Tensor, threshold: float = BOUNDARY_THRESHOLD) -> Tensor:
    """Binary mask of a predicted boundary heatmap: ``clamp(boundary, 0, 1) > threshold`` (methods.md §3.4a).

    Shape: any; returns a bool tensor of the same shape. No gradient flows through the mask.
    """
    return boundary.detach().clamp(0.0, 1.0) > threshold


class CoordConv(nn.Module):
    """``Conv2d`` on ``[x, xx, yy, rr]`` or, with a boundary, ``[x, xx, yy, rr, xx*M, yy*M]`` (methods.md §3.5).

    ``M = boundary_mask(boundary)`` zeroes the extra coordinate copies outside the previous stack's predicted
    boundary. With ``with_coords=False`` it is a plain convolution on ``x`` (ablation). The convolution has a bias, as
    in the official ``CoordConvTh``; grids are built on the input's device and dtype and never stored.

    Args:
        in_channels: channels of ``x`` (without the coordinate channels).
        out_channels: output channels.
        kernel_size, stride, padding: of the convolution.
        with_coords: append ``xx, yy, rr``.
        with_boundary: also append the boundary-masked ``xx, yy`` (needs ``with_coords``); ``forward`` then requires
            ``boundary``.

    Shape:
        - x: ``B x in_channels x H x W``; boundary: ``B x 1 x H x W``.
        - output: ``B x out_channels x H' x W'``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        *,
        with_coords: bool = True,
        with_boundary: bool = False,
    ) -> None:
        super().__init__()
        if with_boundary and not with_coords:
            raise ValueError("with_boundary=True needs with_coords=True (the boundary masks the coordinate channels)")
        self.with_coords = with_coords
        self.with_boundary = with_boundary
        extra = 3 * with_coords + 2 * with_boundary
        self.conv = nn.Conv2d(in_channels + extra, out_channels, kernel_size, stride, padding, bias=True)

    def forward(self, x: Tensor, boundary: Tensor | None = None) -> Tensor:
        if not self.with_coords:
            return self.conv(x)
        batch, _, height, width = x.shape
        grid = coordinate_grid(height, width, device=x.device, dtype=x.dtype)
        channels = [x, grid.expand(batch, -1, -1, -1)]
        if self.with_boundary:
            if boundary is None or boundary.shape != (batch, 1, height, width):
                got = None if boundary is None else tuple(boundary.shape)
                raise ValueError(f"boundary must have shape {(batch, 1, height, width)}, got {got}")
            channels.append(grid[:2] * boundary_mask(boundary).to(x.dtype))
        return self.conv(torch.cat(channels, dim=1))


class ConvBlock(nn.Module):
    """FAN's hierarchical, parallel, multi-scale residual block (methods.md §3.3).

    Three chained pre-activated (BN, ReLU) 3x3 convolutions without bias, ``in -> out/2 -> out/4 -> out/4``; their
    outputs are concatenated (``out`` channels) and added to the input, or to ``BN -> ReLU -> 1x1 conv`` of it when
    ``in != out``. No activation after the addition.

    Shape: ``B x in_channels x H x W -> B x out_channels x H x W``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels % 4 != 0:
            raise ValueError(f"ConvBlock out_channels must be a multiple of 4, got {out_channels}")
        half, quarter = out_channels // 2, out_channels // 4
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, quarter, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = nn.Conv2d(quarter, quarter, 3, padding=1, bias=False)
        self.downsample = None
        if in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.BatchNorm2d(in_channels),
                nn.ReLU(inplace=True),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
            )

    def forward(self, x: Tensor) -> Tensor:
        out1 = self.conv1(F.relu(self.bn1(x), inplace=True))
        out2 = self.conv2(F.relu(self.bn2(out1), inplace=True))
        out3 = self.conv3(F.relu(self.bn3(out2), inplace=True))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat((out1, out2, out3), dim=1) + residual


class Hourglass(nn.Module):
    """CoordConv followed by a recursive hourglass of ConvBlocks (methods.md §3.4).

    Level ``L`` returns ``b1_L(x) + up(b3_L(inner(b2_L(avgpool(x)))))``, where ``inner`` is level ``L-1`` or, at
    ``L = 1``, ``b2_plus_1``; ``up`` is nearest-neighbour x2. Modules register in the official order
    (b1_4, b2_4, b1_3, ..., b2_plus_1, b3_1, ..., b3_4).

    Args:
        features: channels throughout.
        depth: number of 2x downsamplings; H and W must be divisible by ``2**depth``.
        with_coords, with_boundary: of the leading :class:`CoordConv` (1x1).

    Shape: ``B x features x H x W`` (and boundary ``B x 1 x H x W``) -> ``B x features x H x W``.
    """

    def __init__(self, features: int, depth: int, *, with_coords: bool = True, with_boundary: bool = False) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"hourglass depth must be >= 1, got {depth}")
        self.depth = depth
        self.coordconv = CoordConv(features, features, 1, with_coords=with_coords, with_boundary=with_boundary)
        self._add_level(depth, features)

    def _add_level(self, level: int, features: int) -> None:
        self.add_module(f"b1_{level}", ConvBlock(features, features))
        self.add_module(f"b2_{level}", ConvBlock(features, features))
        if level > 1:
            self._add_level(level - 1, features)
        else:
            self.add_module(f"b2_plus_{level}", ConvBlock(features, features))
        self.add_module(f"b3_{level}", ConvBlock(features, features))

    def _level(self, level: int, x: Tensor) -> Tensor:
        upper = getattr(self, f"b1_{level}")(x)
        lower = getattr(self, f"b2_{level}")(F.avg_pool2d(x, 2, stride=2))
        inner = self._level(level - 1, lower) if level > 1 else getattr(self, f"b2_plus_{level}")(lower)
        lower = getattr(self, f"b3_{level}")(inner)
        return upper + F.interpolate(lower, scale_factor=2.0, mode="nearest")

    def forward(self, x: Tensor, boundary: Tensor | None = None) -> Tensor:
        return self._level(self.depth, self.coordconv(x, boundary))
