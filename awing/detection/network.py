"""A compact anchor-based face detector network (RetinaFace-MobileNet-0.25-like, methods.md §10.1).

Layout, for an input of ``B x 3 x H x W`` RGB values in [0, 255] (not normalised: the BatchNorm after the stem
convolution absorbs the scale, which saves two passes over the image; zero padding then means black):

- **Backbone**: MobileNetV1 at width ``width_mult`` (0.25: channels 8-16-32-32-64-64-128x6-256-256), a 3x3 stride-2
  stem then depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, each with BatchNorm and ReLU), trained from
  scratch. Taps C3, C4, C5 at strides 8, 16, 32.
- **Neck**: a feature pyramid of ``fpn_channels`` (1x1 laterals, nearest upsampling, depthwise-separable merges),
  then per level a light SSH-style context module (``context``, :class:`Context`): branches with receptive fields
  3, 5 and 7 built from depthwise-separable 3x3 convolutions, concatenated (C/2 + C/4 + C/4 channels).
- **Heads**: per level one 1x1 convolution predicting, for each of the level's ``A`` anchors, one face logit, four
  box deltas and ten landmark deltas (5 points).

Spatial sizes follow 3x3 stride-2 convolutions with padding 1: a level of stride ``s`` has
``ceil(H / s) x ceil(W / s)`` cells (:meth:`FaceDetectorNet.feature_sizes`). Outputs are concatenated level by
level, cell by cell (row-major), anchor by anchor: the order of :func:`awing.detection.anchors.generate_anchors`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from awing.detection.config import DetectorModelConfig

__all__ = ["ConvBN", "FaceDetectorNet", "VerifierNet", "fuse_batchnorm"]

MOBILENET_CHANNELS = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
"""MobileNetV1 output channels at width 1: the stem, then the 13 depthwise-separable blocks."""
MOBILENET_STRIDES = (2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
TAPS = (5, 11, 13)
"""Indices (into the layer list above) whose outputs are C3, C4 and C5 (strides 8, 16, 32)."""
NUM_LANDMARKS = 5
OUTPUTS_PER_ANCHOR = 1 + 4 + 2 * NUM_LANDMARKS
VERIFIER_SIDE = 48
"""Side of the second stage's square input, pixels (:class:`VerifierNet`)."""
VERIFIER_LAYERS = ((16, 2), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2))
"""(output channels, stride) of :class:`VerifierNet`'s convolutions."""
VERIFIER_HIDDEN = 256


class ConvBN(nn.Module):
    """``Conv2d`` (no bias) + ``BatchNorm2d`` + optional ReLU; ``groups=in_channels`` makes it depthwise.

    :func:`fuse_batchnorm` folds the BatchNorm into the convolution for inference.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1, act: bool = True
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=False
        )
        self.bn: nn.Module = nn.BatchNorm2d(out_channels)
        self.act: nn.Module = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


def separable(in_channels: int, out_channels: int, stride: int = 1, act: bool = True) -> nn.Sequential:
    """Depthwise 3x3 (stride ``stride``, ReLU) then pointwise 1x1 to ``out_channels`` (ReLU when ``act``)."""
    return nn.Sequential(
        ConvBN(in_channels, in_channels, 3, stride, groups=in_channels),
        ConvBN(in_channels, out_channels, 1, act=act),
    )


class Context(nn.Module):
    """Light SSH-style context module: branches of receptive field 3, 5 and 7 with C/2, C/4 and C/4 channels.

    One shared depthwise 3x3 feeds two pointwise convolutions (the 3-branch, C/2, and a C/4 reduction); the
    5-branch is a separable block on the reduction and the 7-branch one more on the 5-branch (SSH's 5x5 and 7x7 as
    stacked 3x3s, sharing their first step). Every block ends in ReLU; the branches are concatenated.

    Shape: ``B x C x H x W`` -> ``B x C x H x W`` (``C`` divisible by 4).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        half, quarter = channels // 2, channels // 4
        self.depthwise = ConvBN(channels, channels, 3, groups=channels)
        self.branch3 = ConvBN(channels, half, 1)
        self.reduce = ConvBN(channels, quarter, 1)
        self.branch5 = separable(quarter, quarter)
        self.branch7 = separable(quarter, quarter)

    def forward(self, x: Tensor) -> Tensor:
        shared = self.depthwise(x)
        branch5 = self.branch5(self.reduce(shared))
        return torch.cat([self.branch3(shared), branch5, self.branch7(branch5)], dim=1)


class FaceDetectorNet(nn.Module):
    """The detector network (see the module docstring).

    Args:
        config: :class:`~awing.detection.config.DetectorModelConfig` (width, FPN channels, context, anchors,
            classifier prior).

    Shape:
        - input: ``B x 3 x H x W`` float, RGB in [0, 255].
        - output: ``(logits, box_deltas, landmark_deltas)`` of shapes ``B x N``, ``B x N x 4``, ``B x N x 10`` with
          ``N = sum_levels A * ceil(H / s) * ceil(W / s)``.
    """

    def __init__(self, config: DetectorModelConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DetectorModelConfig()
        channels = [max(8, int(c * config.width_mult)) for c in MOBILENET_CHANNELS]
        layers: list[nn.Module] = [ConvBN(3, channels[0], 3, MOBILENET_STRIDES[0])]
        for i in range(1, len(channels)):
            layers.append(separable(channels[i - 1], channels[i], MOBILENET_STRIDES[i]))
        self.stage3 = nn.Sequential(*layers[: TAPS[0] + 1])
        self.stage4 = nn.Sequential(*layers[TAPS[0] + 1 : TAPS[1] + 1])
        self.stage5 = nn.Sequential(*layers[TAPS[1] + 1 : TAPS[2] + 1])
        width = config.fpn_channels
        self.lateral = nn.ModuleList(ConvBN(channels[t], width, 1) for t in TAPS)
        self.merge = nn.ModuleList(separable(width, width) for _ in TAPS[:-1])
        self.context = nn.ModuleList(Context(width) if config.context else nn.Identity() for _ in TAPS)
        self.heads = nn.ModuleList(
            nn.Conv2d(width, len(sizes) * OUTPUTS_PER_ANCHOR, 1) for sizes in config.anchor_sizes
        )
        self.verifier = VerifierNet() if config.verifier else None
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        self.reset_heads()

    def reset_heads(self) -> None:
        """Head init of RetinaNet (methods.md §7): weights ``N(0, 0.01^2)``; face-logit biases
        ``-ln((1 - pi) / pi)`` for the prior ``pi = config.prior_prob``; other biases 0."""
        prior = self.config.prior_prob
        for head in self.heads:
            nn.init.normal_(head.weight, std=0.01)
            bias = torch.zeros(head.out_channels)
            bias[::OUTPUTS_PER_ANCHOR] = -math.log((1 - prior) / prior)
            with torch.no_grad():
                head.bias.copy_(bias)

    @staticmethod
    def feature_sizes(
        height: int, width: int, strides: tuple[int, ...] | list[int] = (8, 16, 32)
    ) -> list[tuple[int, int]]:
        """``(rows, cols)`` of each level for an ``height x width`` input: ``ceil(size / s)`` per stride ``s``."""
        return [(-(-height // s), -(-width // s)) for s in strides]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a B x 3 x H x W image batch, got shape {tuple(x.shape)}")
        c3 = self.stage3(x)
        c4 = self.stage4(c3)
        c5 = self.stage5(c4)
        p5 = self.lateral[2](c5)
        p4 = self.merge[1](self.lateral[1](c4) + F.interpolate(p5, size=c4.shape[-2:], mode="nearest"))
        p3 = self.merge[0](self.lateral[0](c3) + F.interpolate(p4, size=c3.shape[-2:], mode="nearest"))
        outputs = []
        for feature, context, head in zip((p3, p4, p5), self.context, self.heads, strict=True):
            out = head(context(feature))  # B x A*15 x h x w
            outputs.append(out.permute(0, 2, 3, 1).reshape(out.shape[0], -1, OUTPUTS_PER_ANCHOR))
        out = torch.cat(outputs, dim=1)
        return out[..., 0], out[..., 1:5], out[..., 5:]


class VerifierNet(nn.Module):
    """The second stage (:mod:`awing.detection.verifier`): face logit and box-edge offsets of square crops.

    3x3 convolutions with BatchNorm and ReLU (channels and strides :data:`VERIFIER_LAYERS`: 16/2, 32/2, 32, 64/2,
    64, 128/2, so ``128 x 3 x 3`` features), a 256-unit fully connected layer with ReLU, then 5 outputs. Input not
    normalised, as the first stage's. About 0.43 M parameters and 5 M multiply-adds per crop.

    Shape:
        - input: ``N x 3 x 48 x 48`` float, RGB in [0, 255].
        - output: ``(logits, offsets)`` of shapes ``(N,)`` and ``(N, 4)`` (``x0, y0, x1, y1`` edge shifts in units
          of the crop square's side; :func:`awing.detection.verifier.refine_boxes`).
    """

    def __init__(self) -> None:
        super().__init__()
        layers, width = [], 3
        for channels, stride in VERIFIER_LAYERS:
            layers.append(ConvBN(width, channels, 3, stride))
            width = channels
        self.features = nn.Sequential(*layers)
        side = VERIFIER_SIDE // math.prod(stride for _, stride in VERIFIER_LAYERS)
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(width * side * side, VERIFIER_HIDDEN), nn.ReLU(True))
        self.head = nn.Linear(VERIFIER_HIDDEN, 5)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, VERIFIER_SIDE, VERIFIER_SIDE):
            raise ValueError(f"expected an N x 3 x {VERIFIER_SIDE} x {VERIFIER_SIDE} batch, got {tuple(x.shape)}")
        out = self.head(self.hidden(self.features(x)))
        return out[:, 0], out[:, 1:]


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every :class:`ConvBN`'s BatchNorm into its convolution, in place (eval mode required); returns ``model``.

    The fused model computes the same function in eval mode with one op fewer per layer; it can no longer train
    its BatchNorm statistics.
    """
    if model.training:
        raise ValueError("fuse_batchnorm needs a model in eval mode (call model.eval() first)")
    for module in model.modules():
        if isinstance(module, ConvBN) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv = fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = nn.Identity()
    return model
