"""Tests of awing.losses: AWing loss (golden values, continuity, gradients), the loss weight map, baselines."""

from __future__ import annotations

import doctest
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import ndimage

import awing.losses.awing as awing_module
import awing.losses.baselines as baselines_module
from awing.losses import (
    LOSSES,
    AdaptiveWingLoss,
    adaptive_wing_loss,
    get_loss,
    l1_loss,
    loss_weight_map,
    mse_loss,
    wing_loss,
)

OMEGA, THETA, EPSILON, ALPHA = 14.0, 0.5, 1.0, 2.1

# methods.md §1.2: y -> (A, C, loss at Δ=θ, loss at Δ=1, slope at Δ=0.001).
GOLDEN = {
    0.0: (11.1214, 2.6255, 2.9352, 8.4959, 0.0147),
    0.2: (11.2423, 2.2976, 3.3235, 8.9447, 0.0531),
    0.5: (11.1127, 1.5651, 3.9912, 9.5475, 0.3550),
    0.8: (10.5133, 0.4849, 4.7717, 10.0284, 2.2910),
    1.0: (9.7978, -0.4615, 5.3605, 10.2594, 7.7144),
}


def reference_awing(pred, target, omega=OMEGA, theta=THETA, epsilon=EPSILON, alpha=ALPHA, log_scale=None):
    """Plain elementwise AWing of methods.md §1.1 with autograd; ``log_scale=omega`` gives the §1.4 bug."""
    delta = (pred - target).abs()
    power = alpha - target
    a = omega / (1 + (theta / epsilon) ** power) * power * (theta / epsilon) ** (power - 1) / epsilon
    c = theta * a - omega * torch.log1p((theta / epsilon) ** power)
    log_branch = omega * torch.log1p((delta / (log_scale or epsilon)) ** power)
    return torch.where(delta < theta, log_branch, a * delta - c)


def loss_and_slope(fn, y: float, delta: float) -> tuple[float, float]:
    """Loss and d loss / d delta at one pixel (float64), with ŷ = y + delta."""
    pred = torch.tensor([y + delta], dtype=torch.float64, requires_grad=True)
    loss = fn(pred, torch.tensor([y], dtype=torch.float64)).sum()
    (grad,) = torch.autograd.grad(loss, pred)
    return loss.item(), grad.item()


def awing_sum(pred, target):
    return adaptive_wing_loss(pred, target, reduction="sum")


def assert_continuous_at_theta(fn, y: float, h: float = 1e-7) -> None:
    """Value and slope of fn on either side of Δ = θ agree (the value up to the slope times 2h)."""
    below, above = loss_and_slope(fn, y, THETA - h), loss_and_slope(fn, y, THETA + h)
    jump = above[0] - below[0] - below[1] * 2 * h
    assert abs(jump) < 1e-8, f"value jumps by {jump} at y={y}"
    assert abs(above[1] - below[1]) < 1e-4, f"slope jumps by {above[1] - below[1]} at y={y}"


def heatmaps(shape, seed=0, dtype=torch.float32, density=0.3):
    """Sparse targets in [0, 1] with exact 0, 0.2 and 1 values, and noisy predictions."""
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=gen, dtype=dtype)
    target[target > density] = 0.0
    target.view(-1)[:: max(target.numel() // 7, 1)] = 0.2
    target.view(-1)[3 :: max(target.numel() // 5, 1)] = 1.0
    pred = target + 0.4 * torch.randn(shape, generator=gen, dtype=dtype)
    return pred, target


def small_chunks(monkeypatch, elements: int) -> None:
    """Make the AWing pass work in chunks of ``elements`` (whatever the thread count)."""
    monkeypatch.setattr(awing_module, "_CPU_CHUNK", max(elements // torch.get_num_threads(), 1))


def official_patch() -> torch.Tensor:
    """The official 7 x 7 landmark Gaussian (std 1.75 heatmap px, peak 1), methods.md §3.6."""
    yy, xx = torch.meshgrid(torch.arange(7.0), torch.arange(7.0), indexing="ij")
    return torch.exp(-((xx - 3) ** 2 + (yy - 3) ** 2) / (2 * 1.75**2))


class TestAdaptiveWingLoss:
    def test_smoke(self, device, dtype):
        pred, target = heatmaps((2, 3, 8, 8), dtype=dtype)
        loss = adaptive_wing_loss(pred.to(device), target.to(device))
        assert loss.shape == () and loss.dtype == dtype and loss.device.type == device.type
        assert loss.item() > 0

    @pytest.mark.parametrize("reduction, shape", [("none", (2, 3, 5, 6)), ("mean", ()), ("sum", ())])
    def test_shape_per_reduction(self, reduction, shape):
        pred, target = heatmaps((2, 3, 5, 6))
        assert adaptive_wing_loss(pred, target, reduction=reduction).shape == shape
        assert AdaptiveWingLoss(reduction=reduction)(pred, target).shape == shape

    @pytest.mark.parametrize("y", sorted(GOLDEN))
    def test_golden_table(self, y):
        a, c, at_theta, at_one, slope_small = GOLDEN[y]
        sign = -1.0 if y > 0.5 else 1.0  # stay near [0, 1]; the loss only depends on |Δ|
        loss_theta, slope_theta = loss_and_slope(awing_sum, y, sign * THETA)
        loss_one, slope_one = loss_and_slope(awing_sum, y, sign * 1.0)
        _, slope_tiny = loss_and_slope(awing_sum, y, sign * 0.001)
        assert loss_theta == pytest.approx(at_theta, abs=1e-4)
        assert loss_one == pytest.approx(at_one, abs=1e-4)
        assert sign * slope_theta == pytest.approx(a, abs=1e-4)  # slope at θ equals A (continuity)
        assert sign * slope_one == pytest.approx(a, abs=1e-4)  # linear branch
        assert sign * slope_one - loss_one == pytest.approx(c, abs=2e-4)  # C = A · 1 - loss(1)
        assert sign * slope_tiny == pytest.approx(slope_small, abs=1e-4)

    def test_y0_prediction_1(self):
        loss = adaptive_wing_loss(torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
        assert loss.item() == pytest.approx(8.4959, abs=1e-4)

    @pytest.mark.parametrize("y", [0.0, 0.25, 0.5, 0.75, 1.0])
    def test_continuity_at_theta(self, y):
        assert_continuous_at_theta(awing_sum, y)
        assert_continuous_at_theta(lambda p, t: reference_awing(p, t), y)
        # The ω/ε port bug of methods.md §1.4 (Δ/ω in the log branch) fails the same check.
        with pytest.raises(AssertionError, match="jumps"):
            assert_continuous_at_theta(lambda p, t: reference_awing(p, t, log_scale=OMEGA), y)

    @pytest.mark.parametrize("constants", [{}, {"omega": 10.0, "theta": 0.3, "epsilon": 2.0, "alpha": 2.5}])
    @pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
    @pytest.mark.parametrize("weighted", [False, True])
    def test_matches_reference_across_chunks(self, monkeypatch, constants, reduction, weighted):
        small_chunks(monkeypatch, 3 * 40)  # 3 planes per chunk, a partial last chunk
        pred, target = heatmaps((2, 5, 5, 8), dtype=torch.float64)
        weight = torch.rand(2, 5, 1, 8, dtype=torch.float64) if weighted else None
        p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
        loss = adaptive_wing_loss(p1, target, weight, reduction=reduction, **constants)
        expected = reference_awing(p2, target, **constants) * (1.0 if weight is None else weight)
        expected = {"none": expected, "mean": expected.mean(), "sum": expected.sum()}[reduction]
        torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
        seed = torch.randn_like(loss)
        loss.backward(seed)
        expected.backward(seed)
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-9, atol=1e-12)

    def test_float32_matches_float64(self):
        pred, target = heatmaps((4, 6, 16, 16), dtype=torch.float64)
        loss64 = AdaptiveWingLoss()(pred, target)
        loss32 = AdaptiveWingLoss()(pred.float(), target.float())
        assert loss32.item() == pytest.approx(loss64.item(), rel=1e-5)

    @pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
    def test_gradcheck(self, reduction):
        pred, target = heatmaps((2, 2, 4, 5), dtype=torch.float64, density=0.6)
        pred.requires_grad_()
        weight = torch.rand(2, 2, 1, 1, dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda p: adaptive_wing_loss(p, target, weight, reduction=reduction), pred)
        module = AdaptiveWingLoss(reduction=reduction)
        assert torch.autograd.gradcheck(lambda p: module(p, target), pred)

    def test_zero_error(self):
        target = torch.tensor([0.0, 0.05, 0.1, 0.2, 0.5, 0.9, 1.0], dtype=torch.float64)
        for dtype, reduction in ((torch.float64, "sum"), (torch.float32, "sum"), (torch.float32, "mean")):
            pred = target.to(dtype).clone().requires_grad_()
            loss = adaptive_wing_loss(pred, target.to(dtype), reduction=reduction)
            loss.backward()
            assert loss.item() == pytest.approx(0.0, abs=1e-12)
            assert torch.equal(pred.grad, torch.zeros_like(pred.grad))

    def test_gradient_sign_symmetry(self):
        target = torch.tensor([0.0, 0.3, 0.5, 0.7, 1.0], dtype=torch.float64)
        for delta in (1e-3, 0.2, 0.5, 0.8):
            up = (target + delta).requires_grad_()
            down = (target - delta).requires_grad_()
            loss_up = adaptive_wing_loss(up, target, reduction="none")
            loss_down = adaptive_wing_loss(down, target, reduction="none")
            torch.testing.assert_close(loss_up, loss_down)
            loss_up.sum().backward()
            loss_down.sum().backward()
            torch.testing.assert_close(up.grad, -down.grad)
            assert (up.grad > 0).all()

    def test_backward_scaled_and_twice(self):
        pred, target = heatmaps((2, 3, 6, 6))
        p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
        adaptive_wing_loss(p1, target).backward()
        loss = adaptive_wing_loss(p2, target) * 3.0
        loss.backward(retain_graph=True)
        torch.testing.assert_close(p2.grad, 3.0 * p1.grad)
        loss.backward()
        torch.testing.assert_close(p2.grad, 6.0 * p1.grad)

    def test_target_and_weight_get_no_gradient(self):
        pred, target = heatmaps((1, 2, 4, 4))
        target.requires_grad_()
        weight = torch.rand(1, 2, 1, 1, requires_grad=True)
        adaptive_wing_loss(pred.requires_grad_(), target, weight).backward()
        assert target.grad is None and weight.grad is None and pred.grad is not None

    def test_no_grad_and_half_precision(self):
        pred, target = heatmaps((2, 3, 8, 8))
        expected = adaptive_wing_loss(pred, target)
        with torch.no_grad():
            assert adaptive_wing_loss(pred, target).item() == pytest.approx(expected.item(), rel=1e-6)
        half = adaptive_wing_loss(pred.bfloat16(), target.bfloat16())
        assert half.dtype == torch.bfloat16
        assert half.item() == pytest.approx(expected.item(), rel=2e-2)

    @pytest.mark.parametrize("kernel_size", [1, 3, 5])
    @pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
    def test_module_equals_functional(self, monkeypatch, kernel_size, reduction):
        small_chunks(monkeypatch, 2 * 12 * 10)  # 2 planes per chunk: several chunks and a partial last one
        pred, target = heatmaps((3, 5, 12, 10), dtype=torch.float64, density=0.25)
        visibility = (torch.rand(3, 5, 1, 1) > 0.3).double()
        for weight in (None, visibility):
            module = AdaptiveWingLoss(kernel_size=kernel_size, reduction=reduction)
            p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
            got = module(p1, target, weight)
            weight_map = loss_weight_map(target, kernel_size=kernel_size)
            expected = adaptive_wing_loss(
                p2, target, weight_map * (1.0 if weight is None else weight), reduction=reduction
            )
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
            got.sum().backward()
            expected.sum().backward()
            torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-10, atol=1e-14)

    def test_module_without_map_and_repr(self):
        pred, target = heatmaps((2, 3, 8, 8))
        module = AdaptiveWingLoss(use_weight_map=False, omega=10.0)
        assert module(pred, target).item() == pytest.approx(adaptive_wing_loss(pred, target, omega=10.0).item())
        assert "use_weight_map=False" in repr(module) and "omega=10.0" in repr(module)

    def test_empty(self):
        empty = torch.zeros(0, 3, 4, 4, requires_grad=True)
        assert adaptive_wing_loss(empty, torch.zeros(0, 3, 4, 4), reduction="sum").item() == 0.0
        assert adaptive_wing_loss(empty, torch.zeros(0, 3, 4, 4), reduction="none").shape == (0, 3, 4, 4)

    def test_error_shape_mismatch(self):
        with pytest.raises(ValueError, match=r"same shape, got \(2, 3\) and \(3, 2\)"):
            adaptive_wing_loss(torch.zeros(2, 3), torch.zeros(3, 2))

    def test_error_not_tensors(self):
        with pytest.raises(TypeError, match="target must be a torch.Tensor, got list"):
            adaptive_wing_loss(torch.zeros(2), [0.0, 0.0])
        with pytest.raises(TypeError, match="floating-point"):
            adaptive_wing_loss(torch.zeros(2, dtype=torch.long), torch.zeros(2))

    @pytest.mark.parametrize("bad, low, high", [(-0.5, "-0.5", "0.9"), (1.25, "0", "1.25"), (math.nan, "nan", "nan")])
    def test_error_target_range(self, bad, low, high):
        target = torch.tensor([[0.0, 0.9], [0.3, bad]])
        with pytest.raises(ValueError, match=rf"\[0, 1\], got min {low} and max {high}"):
            adaptive_wing_loss(torch.zeros(2, 2), target)
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            AdaptiveWingLoss()(torch.zeros(2, 2), target)

    def test_error_reduction(self):
        with pytest.raises(ValueError, match=r"one of \('none', 'mean', 'sum'\), got 'avg'"):
            adaptive_wing_loss(torch.zeros(2), torch.zeros(2), reduction="avg")
        with pytest.raises(ValueError, match="reduction must be one of"):
            AdaptiveWingLoss(reduction="max")

    def test_error_weight(self):
        with pytest.raises(ValueError, match=r"weight of shape \(3,\) does not broadcast to pred's shape \(2, 2\)"):
            adaptive_wing_loss(torch.zeros(2, 2), torch.zeros(2, 2), torch.ones(3))
        with pytest.raises(ValueError, match="does not broadcast"):
            adaptive_wing_loss(torch.zeros(2, 2), torch.zeros(2, 2), torch.ones(2, 2, 2))

    def test_error_constants(self):
        with pytest.raises(ValueError, match="alpha must be > 2"):
            adaptive_wing_loss(torch.zeros(2), torch.zeros(2), alpha=2.0)
        with pytest.raises(ValueError, match="epsilon must be > 0, got 0"):
            AdaptiveWingLoss(epsilon=0)
        with pytest.raises(ValueError, match="kernel_size must be a positive odd integer, got 2"):
            AdaptiveWingLoss(kernel_size=2)
        with pytest.raises(ValueError, match=r"\(\.\.\., H, W\) targets"):
            AdaptiveWingLoss()(torch.zeros(4), torch.zeros(4))


class TestLossWeightMap:
    def test_nan_options_and_out_of_range_targets_are_refused(self):
        target = torch.zeros(1, 1, 4, 4)
        for name in ("threshold", "weight"):  # a NaN threshold would switch the map off without a word
            with pytest.raises(ValueError, match=f"{name} must be finite"):
                loss_weight_map(target, **{name: float("nan")})
        for bad in (1.5, -0.1, float("nan")):
            target[0, 0, 1, 1] = bad
            with pytest.raises(ValueError, match=r"target values must lie in \[0, 1\]"):
                loss_weight_map(target)

    @staticmethod
    def scipy_map(target: torch.Tensor, size: int = 3) -> torch.Tensor:
        planes = target.reshape(-1, *target.shape[-2:]).numpy()
        dilated = np.stack([ndimage.grey_dilation(p, size=(size, size)) for p in planes])
        return torch.from_numpy((dilated > 0.2) * 10.0 + 1.0).to(target.dtype).view(target.shape)

    @pytest.mark.parametrize("shape", [(2, 3, 9, 11), (4, 7, 7), (1, 1, 1, 5), (3, 1, 6)])
    def test_equals_scipy_grey_dilation(self, shape):
        _, target = heatmaps(shape, density=0.15)
        target.view(-1)[1::3] = 0.2  # the equality case is background (strict >)
        torch.testing.assert_close(loss_weight_map(target), self.scipy_map(target), rtol=0, atol=0)

    def test_equality_case(self):
        target = torch.zeros(1, 2, 5, 5)
        target[0, 0, 2, 2] = 0.2
        target[0, 1, 2, 2] = torch.nextafter(torch.tensor(0.2), torch.tensor(1.0))
        weights = loss_weight_map(target)
        assert (weights[0, 0] == 1).all()
        assert weights[0, 1].sum().item() == 25 + 9 * 10

    @pytest.mark.parametrize("kernel_size", [1, 5, 7])
    @pytest.mark.parametrize("shape", [(2, 2, 13, 10), (3, 2, 3)])
    def test_kernel_sizes(self, kernel_size, shape):
        _, target = heatmaps(shape, density=0.05)
        expected = self.scipy_map(target, size=kernel_size)
        torch.testing.assert_close(loss_weight_map(target, kernel_size=kernel_size), expected, rtol=0, atol=0)

    def test_official_patch_gives_61_pixels(self):
        patch = official_patch()
        assert patch.max().item() == 1.0
        assert round(patch[0, 3].item(), 2) == 0.23 and round(patch[3, 6].item(), 2) == 0.23
        target = torch.zeros(2, 64, 64)
        target[0, 20:27, 30:37] = patch
        target[1, 0:7, 57:64] = patch  # at a corner: the map stays inside the plane
        weights = loss_weight_map(target)
        assert (weights[0] == 11).sum().item() == 61
        assert (weights[0] == 1).sum().item() == 64 * 64 - 61
        assert (weights[1] == 11).sum().item() == 61 - 2 * 3  # two of the four tips lose their 3-pixel outer row
        torch.testing.assert_close(weights, self.scipy_map(target), rtol=0, atol=0)

    def test_options_dtype_device_and_no_grad(self, device):
        target = torch.zeros(3, 6, 6, dtype=torch.float64, device=device, requires_grad=True)
        with torch.no_grad():
            target[1, 3, 3] = 0.5
        weights = loss_weight_map(target, threshold=0.4, weight=4.0)
        assert weights.dtype == torch.float64 and weights.device == target.device and not weights.requires_grad
        assert weights.sum().item() == 3 * 36 + 9 * 4.0

    def test_errors(self):
        with pytest.raises(ValueError, match=r"\(\.\.\., H, W\) tensor, got shape \(5,\)"):
            loss_weight_map(torch.zeros(5))
        with pytest.raises(ValueError, match="positive odd integer, got 4"):
            loss_weight_map(torch.zeros(2, 4, 4), kernel_size=4)
        with pytest.raises(TypeError, match="target must be a torch.Tensor"):
            loss_weight_map(np.zeros((4, 4)))


class TestWingLoss:
    def test_golden_values(self):
        err = torch.tensor([0.0, 3.0, -3.0, 12.0], dtype=torch.float64, requires_grad=True)
        loss = wing_loss(err, torch.zeros(4, dtype=torch.float64), reduction="none")
        join = 10.0 - 10.0 * math.log(6.0)  # C = w - w ln(1 + w/ε) = -7.9176
        expected = [0.0, 10.0 * math.log(2.5), 10.0 * math.log(2.5), 12.0 - join]
        torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64))
        assert loss[3].item() == pytest.approx(19.9176, abs=1e-4)
        loss.sum().backward()
        torch.testing.assert_close(err.grad, torch.tensor([0.0, 2.0, -2.0, 1.0], dtype=torch.float64))

    def test_continuity_at_width(self):
        h = 1e-7
        below = loss_and_slope(lambda p, t: wing_loss(p, t, reduction="sum"), 0.0, 10.0 - h)
        above = loss_and_slope(lambda p, t: wing_loss(p, t, reduction="sum"), 0.0, 10.0 + h)
        assert abs(above[0] - below[0]) < 10 * h
        assert below[1] == pytest.approx(10.0 / 12.0)  # w / (ε + w): the slope jumps to 1, as in the paper
        assert above[1] == 1.0

    def test_gradcheck_and_weight(self):
        pred = (torch.randn(2, 3, 4, dtype=torch.float64) * 8).requires_grad_()
        target = torch.zeros(2, 3, 4, dtype=torch.float64)
        weight = torch.rand(3, 1, dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda p: wing_loss(p, target, weight), pred)
        none = wing_loss(pred, target, weight, reduction="none")
        assert wing_loss(pred, target, weight, reduction="sum").item() == pytest.approx(none.sum().item())

    def test_errors(self):
        with pytest.raises(ValueError, match="omega and epsilon must be > 0"):
            wing_loss(torch.zeros(2), torch.zeros(2), epsilon=0.0)
        with pytest.raises(ValueError, match="same shape"):
            wing_loss(torch.zeros(2), torch.zeros(3))


class TestBaselines:
    @pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
    def test_match_torch(self, reduction):
        pred, target = torch.randn(2, 3, 4), torch.rand(2, 3, 4)
        torch.testing.assert_close(
            mse_loss(pred, target, reduction=reduction), torch.nn.functional.mse_loss(pred, target, reduction=reduction)
        )
        torch.testing.assert_close(
            l1_loss(pred, target, reduction=reduction), torch.nn.functional.l1_loss(pred, target, reduction=reduction)
        )

    def test_weight(self):
        pred, target = torch.tensor([1.0, 3.0]), torch.zeros(2)
        assert mse_loss(pred, target, torch.tensor([2.0, 0.0]), reduction="sum").item() == 2.0
        assert l1_loss(pred, target, torch.tensor([0.0, 0.5])).item() == 0.75

    def test_registry(self):
        assert set(LOSSES) >= {"awing", "wing", "mse", "l1"}
        assert get_loss("awing") is adaptive_wing_loss and get_loss("mse") is mse_loss
        with pytest.raises(ValueError, match=r"unknown loss 'huber'; valid names: \['awing', 'l1', 'mse', 'wing'\]"):
            get_loss("huber")

    def test_errors(self):
        with pytest.raises(ValueError, match="reduction must be one of"):
            l1_loss(torch.zeros(2), torch.zeros(2), reduction="avg")
        with pytest.raises(TypeError, match="weight must be a torch.Tensor or None, got float"):
            mse_loss(torch.zeros(2), torch.zeros(2), 2.0)


@pytest.mark.parametrize("module", [awing_module, baselines_module])
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_import_needs_only_torch():
    """``import awing.losses`` (and every ``awing.losses.*``) loads neither OpenCV nor awing's data/inference code."""
    code = (
        "import sys, awing.losses, awing.losses.awing, awing.losses.focal, awing.losses.alwa, "
        "awing.losses.noisy_anchor, awing.losses.baselines, awing.losses.native\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('cv2', 'scipy', 'yaml', 'safetensors') "
        "or m in ('awing.codecs', 'awing.geometry', 'awing.data', 'awing.models'))\n"
        "print(bad)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
