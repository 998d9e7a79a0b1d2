"""Tests of awing.models layers and the stacked hourglass (methods.md §3.1-§3.5)."""

from __future__ import annotations

import math

import pytest
import torch

from awing.models import (
    BOUNDARY_THRESHOLD,
    PRESETS,
    ConvBlock,
    CoordConv,
    Hourglass,
    ModelConfig,
    StackedHourglass,
    boundary_mask,
    build_model,
    coordinate_grid,
    get_config,
    infer_config,
)

SMALL = {"num_stacks": 2, "num_landmarks": 5, "features": 32, "depth": 2, "input_size": 64}


class TestCoordinateGrid:
    def test_values(self):
        grid = coordinate_grid(3, 5)
        assert grid.shape == (3, 3, 5)
        xx, yy, rr = grid
        # xx varies along rows, yy along columns (methods.md §3.5)
        torch.testing.assert_close(xx[:, 0], torch.tensor([-1.0, 0.0, 1.0]))
        torch.testing.assert_close(xx[1], torch.zeros(5))
        torch.testing.assert_close(yy[0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
        torch.testing.assert_close(yy[:, 3], torch.full((3,), 0.5))
        assert rr[1, 2] == 0 and rr[0, 0] == 1 and rr[2, 4] == 1
        torch.testing.assert_close(rr[0, 2], torch.tensor(1 / math.sqrt(2)))
        torch.testing.assert_close(rr[1, 3], torch.tensor(0.5 / math.sqrt(2)))

    def test_device_dtype(self, device, dtype):
        grid = coordinate_grid(4, 4, device=device, dtype=dtype)
        assert grid.device.type == device.type and grid.dtype == dtype

    def test_too_small(self):
        with pytest.raises(ValueError, match="at least 2 x 2"):
            coordinate_grid(1, 8)


class TestBoundaryMask:
    def test_rule(self):
        boundary = torch.tensor([-1.0, 0.0, 0.04, BOUNDARY_THRESHOLD, 0.0501, 0.5, 1.0, 3.0], requires_grad=True)
        expected = torch.tensor([False, False, False, False, True, True, True, True])
        mask = boundary_mask(boundary)
        assert mask.dtype == torch.bool and not mask.requires_grad
        assert torch.equal(mask, expected)

    def test_threshold(self):
        assert torch.equal(boundary_mask(torch.tensor([0.2, 0.4]), threshold=0.3), torch.tensor([False, True]))


class TestCoordConv:
    @staticmethod
    def _identity(in_channels: int, **kwargs) -> CoordConv:
        """A 1x1 CoordConv whose convolution copies its input, so the output shows the concatenated channels."""
        layer = CoordConv(in_channels, in_channels + 5 if kwargs.get("with_boundary") else in_channels + 3, 1, **kwargs)
        with torch.no_grad():
            n = layer.conv.in_channels
            layer.conv.weight.copy_(torch.eye(n).view(n, n, 1, 1))
            layer.conv.bias.zero_()
        return layer

    def test_channel_order_with_boundary(self):
        layer = self._identity(2, with_boundary=True)
        x = torch.randn(2, 2, 4, 6)
        boundary = torch.zeros(2, 1, 4, 6)
        boundary[0, 0, 1, 2] = 0.5
        boundary[1, 0, 3, 5] = 2.0
        boundary[1, 0, 0, 0] = 0.05  # not above the threshold
        out = layer(x, boundary)
        grid = coordinate_grid(4, 6)
        assert out.shape == (2, 7, 4, 6)
        torch.testing.assert_close(out[:, :2], x)
        torch.testing.assert_close(out[:, 2:5], grid.expand(2, -1, -1, -1))
        expected = torch.zeros(2, 2, 4, 6)
        expected[0, :, 1, 2] = grid[:2, 1, 2]
        expected[1, :, 3, 5] = grid[:2, 3, 5]
        torch.testing.assert_close(out[:, 5:], expected)
        # row 1 of 4, column 2 of 6: xx = 2/3 - 1, yy = 4/5 - 1
        assert out[0, 5, 1, 2].item() == pytest.approx(-1 / 3) and out[0, 6, 1, 2].item() == pytest.approx(-0.2)

    def test_without_boundary(self):
        layer = self._identity(1)
        out = layer(torch.zeros(3, 1, 5, 5))
        torch.testing.assert_close(out[:, 1:], coordinate_grid(5, 5).expand(3, -1, -1, -1))

    def test_without_coords_is_plain_conv(self):
        layer = CoordConv(4, 8, 3, padding=1, with_coords=False)
        assert layer.conv.in_channels == 4
        x = torch.randn(1, 4, 6, 6)
        torch.testing.assert_close(layer(x), layer.conv(x))

    def test_errors(self):
        with pytest.raises(ValueError, match="needs with_coords"):
            CoordConv(4, 4, 1, with_coords=False, with_boundary=True)
        layer = CoordConv(4, 4, 1, with_boundary=True)
        with pytest.raises(ValueError, match=r"boundary must have shape \(1, 1, 8, 8\), got None"):
            layer(torch.zeros(1, 4, 8, 8))
        with pytest.raises(ValueError, match=r"got \(1, 2, 8, 8\)"):
            layer(torch.zeros(1, 4, 8, 8), torch.zeros(1, 2, 8, 8))

    def test_gradcheck(self):
        layer = CoordConv(2, 3, 3, padding=1, with_boundary=True).double()
        x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
        boundary = torch.rand(1, 1, 4, 4, dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda t: layer(t, boundary), (x,))


class TestConvBlock:
    def test_shapes_and_downsample(self):
        block = ConvBlock(8, 16)
        assert block(torch.randn(2, 8, 5, 5)).shape == (2, 16, 5, 5)
        assert [c.out_channels for c in (block.conv1, block.conv2, block.conv3)] == [8, 4, 4]
        assert block.downsample is not None and ConvBlock(16, 16).downsample is None

    def test_identity_residual(self):
        block = ConvBlock(8, 8).eval()
        for conv in (block.conv1, block.conv2, block.conv3):
            torch.nn.init.zeros_(conv.weight)
        x = torch.randn(1, 8, 3, 3)
        torch.testing.assert_close(block(x), x)

    def test_hierarchy(self):
        """conv2 sees conv1's output and conv3 sees conv2's: with BN at identity, a positive input, conv1 summing its
        inputs and conv2/conv3 copying, the three groups of output channels are equal (minus the residual)."""
        block = ConvBlock(4, 4).eval()
        with torch.no_grad():
            block.conv1.weight.zero_()
            block.conv1.weight[:, :, 1, 1] = 1.0
            for conv in (block.conv2, block.conv3):
                conv.weight.zero_()
                conv.weight[0, 0, 1, 1] = 1.0
        x = torch.rand(1, 4, 3, 3)
        out = block(x) - x
        total = x.sum(1)
        for channel in range(4):
            torch.testing.assert_close(out[0, channel], total[0], rtol=1e-4, atol=1e-5)

    def test_error(self):
        with pytest.raises(ValueError, match="multiple of 4, got 6"):
            ConvBlock(4, 6)

    def test_gradcheck(self):
        block = ConvBlock(4, 8).double().eval()
        x = torch.randn(1, 4, 3, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(block, (x,))


class TestHourglass:
    def test_official_registration_order(self):
        names = [name for name, _ in Hourglass(8, 4).named_children()]
        levels = ["b1_4", "b2_4", "b1_3", "b2_3", "b1_2", "b2_2", "b1_1", "b2_1", "b2_plus_1"]
        assert names == ["coordconv", *levels, "b3_1", "b3_2", "b3_3", "b3_4"]

    def test_shape_and_errors(self):
        hg = Hourglass(8, 3)
        assert hg(torch.randn(2, 8, 16, 24)).shape == (2, 8, 16, 24)
        with pytest.raises(ValueError, match="depth must be >= 1"):
            Hourglass(8, 0)

    def test_depth_one(self):
        """depth 1: b1_1(x) + up(b3_1(b2_plus_1(b2_1(avgpool(x))))) with zeroed coordinate conv -> identity."""
        hg = Hourglass(4, 1, with_coords=False).eval()
        with torch.no_grad():
            hg.coordconv.conv.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
            hg.coordconv.conv.bias.zero_()
            for block in (hg.b1_1, hg.b2_1, hg.b2_plus_1, hg.b3_1):
                for conv in (block.conv1, block.conv2, block.conv3):
                    conv.weight.zero_()
        x = torch.randn(1, 4, 4, 4)
        pooled = torch.nn.functional.avg_pool2d(x, 2)
        expected = x + pooled.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        torch.testing.assert_close(hg(x), expected)


class TestModelConfig:
    def test_defaults_are_official(self):
        cfg = PRESETS["official"]
        assert (cfg.num_stacks, cfg.num_landmarks, cfg.features, cfg.depth, cfg.input_size) == (4, 98, 256, 4, 256)
        assert cfg.heatmap_size == 64 and cfg.out_channels == 99 and cfg.stride_multiple == 64

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"features": 12}, ValueError, "multiple of 8, got 12"),
            ({"input_size": 100}, ValueError, "multiple of 4 \\* 2\\*\\*depth = 64, got 100"),
            ({"num_stacks": 0}, ValueError, "num_stacks must be >= 1"),
            ({"num_landmarks": 98.0}, TypeError, "num_landmarks must be int"),
            ({"coordconv": 1}, TypeError, "coordconv must be bool"),
        ],
    )
    def test_errors(self, kwargs, error, match):
        with pytest.raises(error, match=match):
            ModelConfig(**kwargs)

    def test_dict_round_trip(self):
        cfg = ModelConfig(**SMALL, with_boundary=False)
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg
        with pytest.raises(ValueError, match="unknown ModelConfig keys \\['width'\\]"):
            ModelConfig.from_dict({"width": 3})

    def test_get_config(self):
        assert get_config("cpu_small", num_landmarks=68).num_landmarks == 68
        assert get_config({"num_stacks": 1}).num_stacks == 1
        with pytest.raises(ValueError, match="unknown model preset 'big'; valid presets"):
            get_config("big")
        with pytest.raises(ValueError, match="unknown ModelConfig fields \\['stacks'\\]"):
            get_config("official", stacks=2)
        with pytest.raises(TypeError, match="got int"):
            get_config(3)

    @pytest.mark.parametrize(
        "overrides",
        [{}, {"with_boundary": False}, {"coordconv": False}, {"num_stacks": 1}, {"num_stacks": 3, "depth": 3}],
    )
    def test_infer_config(self, overrides):
        cfg = ModelConfig(**{**SMALL, **overrides})
        state = StackedHourglass(**cfg.to_dict()).state_dict()
        assert infer_config(state, input_size=cfg.input_size) == cfg

    def test_infer_config_ambiguous_boundary(self):
        """Without CoordConv the head's extra channel cannot be told from a landmark: the official head is assumed
        unless the caller says otherwise."""
        cfg = ModelConfig(**SMALL, coordconv=False, with_boundary=False)
        state = StackedHourglass(**cfg.to_dict()).state_dict()
        assert infer_config(state, input_size=64, with_boundary=False) == cfg
        guessed = infer_config(state, input_size=64)
        assert guessed.with_boundary and guessed.num_landmarks == cfg.num_landmarks - 1

    def test_infer_config_error(self):
        with pytest.raises(ValueError, match="not a stacked-hourglass state dict: missing"):
            infer_config({"fc.weight": torch.zeros(1)})


def _loss(outputs: list[torch.Tensor]) -> torch.Tensor:
    return sum((out**2).mean() for out in outputs)


class TestStackedHourglass:
    @pytest.mark.parametrize(
        ("overrides", "channels", "size"),
        [
            ({"num_stacks": 1}, 6, 16),
            ({}, 6, 16),
            ({"num_stacks": 4, "depth": 1, "input_size": 32}, 6, 8),
            ({"input_size": 128, "features": 16}, 6, 32),
            ({"with_boundary": False}, 5, 16),
            ({"coordconv": False}, 6, 16),
        ],
    )
    def test_output_shapes(self, overrides, channels, size):
        cfg = ModelConfig(**{**SMALL, **overrides})
        model = StackedHourglass(**cfg.to_dict()).eval()
        with torch.inference_mode():
            outputs = model(torch.rand(2, 3, cfg.input_size, cfg.input_size))
        assert len(outputs) == cfg.num_stacks
        assert all(out.shape == (2, channels, size, size) for out in outputs)

    def test_every_parameter_gets_a_gradient(self):
        model = StackedHourglass(**SMALL)  # boundary and CoordConv on
        _loss(model(torch.rand(2, 3, 64, 64))).backward()
        for name, param in model.named_parameters():
            assert param.grad is not None, f"{name} has no gradient"
            assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"
            assert param.grad.abs().sum() > 0, f"{name} has a zero gradient"

    def test_official_counts(self):
        model = build_model("official")
        assert len(model.state_dict()) == 1137
        assert sum(p.numel() for p in model.parameters()) == 24_153_036
        assert sum(p.numel() for p in build_model("official", num_landmarks=68).parameters()) == 24_099_156
        coord_in = [getattr(model, f"m{i}").coordconv.conv.in_channels for i in range(4)]
        assert coord_in == [259, 261, 261, 261] and model.conv1.conv.in_channels == 6

    def test_no_grid_in_state_dict(self):
        model = StackedHourglass(**SMALL)
        buffers = {name.rsplit(".", 1)[1] for name, _ in model.named_buffers()}
        assert buffers == {"running_mean", "running_var", "num_batches_tracked"}

    def test_batch_independence(self):
        model = StackedHourglass(**SMALL).eval()
        x = torch.rand(3, 3, 64, 64)
        with torch.inference_mode():
            whole = model(x)[-1]
            single = torch.cat([model(x[i : i + 1])[-1] for i in range(3)])
        torch.testing.assert_close(whole, single, rtol=1e-4, atol=1e-5)

    def test_boundary_feeds_next_stack(self):
        """Raising stack 0's boundary output above the threshold changes stack 1 through the masked coordinates
        only (al0's boundary column is zeroed)."""
        model = StackedHourglass(**SMALL).eval()
        with torch.no_grad():
            model.al0.weight[:, -1].zero_()
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            model.l0.bias[-1] = -10.0  # boundary everywhere below the threshold: masked channels all zero
            low = model(x)
            model.l0.bias[-1] = 10.0  # everywhere above: masked channels equal xx, yy
            high = model(x)
        torch.testing.assert_close(low[0][:, :-1], high[0][:, :-1])
        assert not torch.allclose(low[1], high[1])

    def test_device_dtype(self, device, dtype):
        model = StackedHourglass(**SMALL).to(device=device, dtype=dtype)
        outputs = model(torch.rand(2, 3, 64, 64, device=device, dtype=dtype))
        assert all(o.device.type == device.type and o.dtype == dtype for o in outputs)

    def test_autocast(self, device):
        model = StackedHourglass(**SMALL).to(device).eval()
        x = torch.rand(2, 3, 64, 64, device=device)
        half = torch.float16 if device.type == "cuda" else torch.bfloat16
        with torch.inference_mode():
            reference = model(x)[-1]
            with torch.autocast(device.type, dtype=half):
                low = model(x)[-1]
        assert low.dtype == half and torch.isfinite(low).all()
        torch.testing.assert_close(low.float(), reference, rtol=0.1, atol=0.1)

    @pytest.mark.parametrize(
        ("x", "error", "match"),
        [
            (torch.rand(1, 1, 64, 64), ValueError, r"B x 3 x H x W with H and W multiples of 16, got shape \(1, 1,"),
            (torch.rand(1, 3, 64, 72), ValueError, "multiples of 16"),
            (torch.rand(3, 64, 64), ValueError, "got shape"),
            (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, "float tensor"),
        ],
    )
    def test_input_errors(self, x, error, match):
        with pytest.raises(error, match=match):
            StackedHourglass(**SMALL)(x)

    def test_non_square_input(self):
        model = StackedHourglass(**SMALL).eval()
        with torch.inference_mode():
            assert model(torch.rand(1, 3, 64, 96))[-1].shape == (1, 6, 16, 24)
